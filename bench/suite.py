"""Keel against LangGraph servers and the physical limits: the figures in one process tree.

    .venv/bin/keel bench [--quick] [--n 20] [--only first_event,quota] [--out bench]

Starts embedded Postgres, the scripted model (bench/servers.py: fixed latency per request,
fixed plan, answers of a set length and pace), Keel's API, ``langgraph dev`` and Aegra (when
``.venv-aegra`` is built: ``make aegra``) on the same graph and model, each in its own
process, then runs each figure with the parties interleaved and reports medians. Writes
``<out>/results.json`` (one row per figure) and ``<out>/RESULTS.md`` (the table for the
README). Absolute times on a shared 2-core machine move; ratios taken side by side in one run
are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from bench import servers
from bench.host import load_average, machine
from bench.servers import Proc, directive

LATENCY_MS = 10.0  # per model request: the LLM is present but does not dominate
PLAN_STEPS = (
    3  # the planner's maximum: memory_router, planner, 3 x researcher, summarizer, remember
)
ANSWER_WORDS = 5
MESSAGE = "What is the answer?"


@dataclass
class Row:
    """One figure: A against B, their ratio and the goal."""

    figure: str
    key: str
    a: float
    b: float
    n: int
    goal: str  # "<= 1.25" or ">= 2"
    unit: str = "s"
    a_label: str = "Keel"
    b_label: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    table: str = "scripted"  # "scripted": the scripted model; "local": the packaged local model
    wall_s: float = 0.0  # wall time of the figure that measured this row (its rows share it)
    group: str = ""  # the figure (FIGURES key) that measured this row

    @property
    def ratio(self) -> float:
        """A ÷ B (0 when B is 0)."""
        return self.a / self.b if self.b else 0.0

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets the goal (None: no goal, reported for information)."""
        if not self.goal:
            return None
        op, target = self.goal.split()
        return self.ratio <= float(target) if op == "<=" else self.ratio >= float(target)

    def json(self) -> dict[str, Any]:
        """The row as written to results.json."""
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


class Stack:
    """The processes under test, started on first use and stopped together."""

    def __init__(self, work: Path, profile: str = "") -> None:
        self.work = work
        self.profile = profile
        self._pg: Any = None
        self._procs: dict[str, Proc] = {}
        self._token = ""

    @property
    def pg_url(self) -> str:
        if self._pg is None:
            from core.db import EmbeddedPostgres

            self._pg = EmbeddedPostgres(self.work / "pg")
            self._pg.start()
        return str(self._pg.url)

    def _proc(self, name: str, start: Callable[[], Proc]) -> Proc:
        if name not in self._procs:
            proc = start()
            try:
                proc.wait()
            except BaseException:
                proc.stop()
                raise
            self._procs[name] = proc
        return self._procs[name]

    @property
    def model(self) -> str:
        return self._proc(
            "model", lambda: servers.start_model(LATENCY_MS, 0.0, PLAN_STEPS, ANSWER_WORDS)
        ).url

    @property
    def keel(self) -> str:
        model, db = self.model, self.pg_url
        return self._proc(
            "keel", lambda: servers.start_keel(db, model, self.work / "keel", self.profile)
        ).url

    @property
    def langgraph(self) -> str:
        model = self.model
        return self._proc("langgraph", lambda: servers.start_langgraph(model, self.work / "lg")).url

    @property
    def aegra(self) -> str:
        """Aegra's URL (its venv must exist: see ``servers.aegra_missing``)."""

        def start() -> Proc:
            db = servers.aegra_database(self.pg_url)
            return servers.start_aegra(db, self.model, self.work / "aegra")

        return self._proc("aegra", start).url

    def restart(self, name: str) -> None:
        """Stop ``name``'s process; the next use starts a fresh one."""
        proc = self._procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def raw(self, events: int, frame_bytes: int) -> str:
        return self._proc(
            f"raw-{events}-{frame_bytes}", lambda: servers.start_raw(events, frame_bytes)
        ).url

    def pid(self, name: str) -> int:
        """The process id of a party already started (``keel``, ``model``, ``langgraph``)."""
        return self._procs[name].proc.pid

    @property
    def token(self) -> str:
        if not self._token:
            from core.identity import issue_token
            from core.settings import Settings

            settings = Settings(**json.loads(servers.keel_settings_json("x", "x", "x")))
            self._token = issue_token(settings.auth, user="bench", tenant="bench", scopes=[])
        return self._token

    def keel_client(self, url: str = "", **kw: Any) -> httpx.AsyncClient:
        kw.setdefault("limits", httpx.Limits(max_connections=1000, max_keepalive_connections=1000))
        return httpx.AsyncClient(
            base_url=url or self.keel,
            timeout=300,
            headers={"Authorization": f"Bearer {self.token}"},
            **kw,
        )

    def sdk_client(self, url: str) -> LangGraphClient:
        """The official LangGraph SDK client on an Agent Protocol server (langgraph dev, Aegra)."""
        return get_client(url=url, timeout=300)

    def stop(self) -> None:
        for proc in reversed(list(self._procs.values())):
            proc.stop()
        if self._pg is not None:
            self._pg.stop()


@dataclass
class RunTimes:
    """Marks of one streamed run, in seconds from the POST."""

    first_event: float
    finished: float
    events: int
    deltas: int = 0
    first_delta: float = 0.0  # the first text_delta (the first token)
    last_delta: float = 0.0
    tokens: int = 0  # words in the text_delta events
    answering: float = 0.0  # Keel's agent_status summarizing: the answer's model call begins


def _delta_text(body: Any) -> str | None:
    """The text of a text_delta (Keel's envelope or LangGraph's custom event), else None."""
    if not isinstance(body, dict) or body.get("type") != "text_delta":
        return None
    return str(body["data"]["text"])


def _mark_delta(t: RunTimes, text: str, now: float) -> None:
    t.deltas += 1
    t.tokens += len(text.split())
    t.first_delta = t.first_delta or now
    t.last_delta = now


async def _read_stream(r: httpx.Response, t0: float) -> RunTimes:
    r.raise_for_status()
    t = RunTimes(0.0, 0.0, 0)
    event = ""
    async for line in r.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
            if not t.events:
                t.first_event = time.perf_counter() - t0
            t.events += 1
        elif event in ("text_delta", "custom") and line.startswith("data: "):
            text = _delta_text(json.loads(line[6:]))
            if text is not None:
                _mark_delta(t, text, time.perf_counter() - t0)
        elif event == "agent_status" and '"summarizing"' in line and not t.answering:
            t.answering = time.perf_counter() - t0
    t.finished = time.perf_counter() - t0
    return t


async def keel_thread(c: httpx.AsyncClient) -> str:
    r = await c.post("/v1/threads")
    r.raise_for_status()
    return str(r.json()["thread_id"])


async def keel_run(c: httpx.AsyncClient, message: str = MESSAGE, tid: str = "") -> RunTimes:
    tid = tid or await keel_thread(c)
    t0 = time.perf_counter()
    body = {"input": {"message": message}}
    async with c.stream("POST", f"/v1/threads/{tid}/runs", json=body) as r:
        return await _read_stream(r, t0)


async def sdk_thread(c: LangGraphClient) -> str:
    return str((await c.threads.create())["thread_id"])


async def sdk_run(c: LangGraphClient, message: str = MESSAGE, tid: str = "") -> RunTimes:
    """A streamed run of ``research`` through the LangGraph SDK (``stream_mode=["custom"]``).

    The first event is the server's first part (``metadata``); the first token is the first
    custom part whose data is a text_delta.
    """
    tid = tid or await sdk_thread(c)
    t = RunTimes(0.0, 0.0, 0)
    t0 = time.perf_counter()
    async for part in c.runs.stream(
        tid,
        "research",
        input={"messages": [{"role": "user", "content": message}]},
        stream_mode=["custom"],
    ):
        now = time.perf_counter() - t0
        if not t.events:
            t.first_event = now
        t.events += 1
        if part.event == "error":
            raise RuntimeError(f"run failed: {part.data}")
        text = _delta_text(part.data) if part.event.startswith("custom") else None
        if text is not None:
            _mark_delta(t, text, now)
    t.finished = time.perf_counter() - t0
    return t


async def bare_astream(message: str = MESSAGE) -> float:
    """The same graph with ``graph.astream`` in this process: no checkpointer, no HTTP."""
    from langchain_core.messages import HumanMessage

    from core.settings import Settings
    from graphs.context import RunContext
    from graphs.graph import build_graph

    settings = Settings(**json.loads(servers.keel_settings_json("x", _model_url, "x")))
    graph = _bare_graph.setdefault("g", build_graph(None))
    context = RunContext(llm=settings.llm, run_id=uuid.uuid4().hex, thread_id=uuid.uuid4().hex)
    t0 = time.perf_counter()
    async for _ in graph.astream(
        {"messages": [HumanMessage(message)]}, context=context, stream_mode="custom"
    ):
        pass
    return time.perf_counter() - t0


_bare_graph: dict[str, Any] = {}
_model_url = ""

Figure = Callable[["Stack", "Args"], Coroutine[Any, Any, list[Row]]]


@dataclass
class Args:
    """What the figures read from the command line."""

    n: int
    quick: bool


async def fig_sse_vs_astream(s: Stack, a: Args) -> list[Row]:
    """Keel HTTP SSE run ÷ bare ``graph.astream`` (same graph, same model, 7 node steps)."""
    global _model_url
    _model_url = s.model
    keel, bare = [], []
    async with s.keel_client() as c:
        await keel_run(c)
        await bare_astream()
        for i in range(a.n):
            for side in ("keel", "bare") if i % 2 else ("bare", "keel"):
                if side == "keel":
                    keel.append((await keel_run(c)).finished)
                else:
                    bare.append(await bare_astream())
    k, b = median(keel), median(bare)
    return [
        Row(
            "Keel HTTP SSE run ÷ bare graph.astream (no checkpointer)",
            "sse_vs_astream",
            k,
            b,
            a.n,
            "<= 1.25",
            b_label="graph.astream in process",
            note=f"7 node steps, 5 model calls of {LATENCY_MS:g} ms latency each; Keel with"
            " its Postgres checkpointer and event log (embedded Postgres)",
        )
    ]


@dataclass
class Peer:
    """A server a figure runs the research graph on: Keel over httpx, the others over the SDK."""

    key: str  # "keel", "langgraph" or "aegra"
    thread: Callable[[], Awaitable[str]]
    run: Callable[[str], Awaitable[RunTimes]]  # a run on the thread given ("": a new one)


def peer_label(key: str) -> str:
    """How a table names the peer ``key``."""
    if key == "aegra":
        return f"Aegra {servers.aegra_version()} (Postgres)"
    return "langgraph dev (in-memory runtime)"


@asynccontextmanager
async def peers(s: Stack) -> AsyncIterator[list[Peer]]:
    """Keel, ``langgraph dev`` and Aegra (unless its venv is missing), each warmed by a run."""
    async with AsyncExitStack() as stack:
        kc = await stack.enter_async_context(s.keel_client())
        found = [Peer("keel", partial(keel_thread, kc), partial(keel_run, kc, MESSAGE))]
        urls = {"langgraph": s.langgraph}
        if missing := servers.aegra_missing():
            print(missing, flush=True)
        else:
            urls["aegra"] = s.aegra
        for key, url in urls.items():
            c = await stack.enter_async_context(s.sdk_client(url))
            found.append(Peer(key, partial(sdk_thread, c), partial(sdk_run, c, MESSAGE)))
        for peer in found:
            await peer.run("")
        yield found


def rotated(ps: list[Peer], i: int) -> list[Peer]:
    """The order of repetition ``i``: each party goes first in turn."""
    k = i % len(ps)
    return ps[k:] + ps[:k]


# Per peer: the keys of its time-to-first-token, whole-run and concurrent rows.
ROW_KEYS = {
    "langgraph": ("first_token", "run_vs_langgraph", "concurrent"),
    "aegra": ("first_token_aegra", "run_vs_aegra", "concurrent_aegra"),
}
WHOLE_RUN_NOTES = {
    "langgraph": "informative: Keel writes checkpoints and events to Postgres, langgraph dev"
    " keeps them in memory",
    "aegra": "informative: both write checkpoints to Postgres (Aegra with LangGraph's Postgres"
    " checkpointer, its runs in tables of its own in a database of its own on the same server)",
}


async def fig_first_event(s: Stack, a: Args) -> list[Row]:
    """Time to first event, first token and whole run: Keel ÷ each peer, interleaved."""
    times: dict[str, list[RunTimes]] = {}
    async with peers(s) as ps:
        for i in range(a.n):
            tids = {p.key: await p.thread() for p in ps}
            for p in rotated(ps, i):
                times.setdefault(p.key, []).append(await p.run(tids[p.key]))
    # A run without a text_delta would count 0 s as its first token.
    for key, ts in times.items():
        if not all(t.deltas for t in ts):
            raise RuntimeError(f"{key}: a run streamed no text_delta")

    def med(key: str, mark: str) -> float:
        return median([getattr(t, mark) for t in times[key]])

    rows = [
        Row(
            "time to first event: Keel ÷ langgraph dev",
            "first_event",
            med("keel", "first_event"),
            med("langgraph", "first_event"),
            a.n,
            "<= 0.5",
            b_label=peer_label("langgraph"),
            note="from the POST of the run to its first SSE event; Keel's first event is"
            " run_started after the run is recorded in Postgres, LangGraph's is `metadata`",
        )
    ]
    for key in [k for k in times if k != "keel"]:
        name = "langgraph dev" if key == "langgraph" else "Aegra"
        token_key, run_key, _ = ROW_KEYS[key]
        rows.append(
            Row(
                f"time to first token: Keel ÷ {name}",
                token_key,
                med("keel", "first_delta"),
                med(key, "first_delta"),
                a.n,
                "<= 0.5",
                b_label=peer_label(key),
                note="from the POST of the run to its first text_delta (LangGraph servers: the"
                " first custom event of type text_delta, read with langgraph-sdk), after the"
                " plan and research steps",
            )
        )
        rows.append(
            Row(
                f"whole run over HTTP: Keel ÷ {name}",
                run_key,
                med("keel", "finished"),
                med(key, "finished"),
                a.n,
                "",
                b_label=peer_label(key),
                note=WHOLE_RUN_NOTES[key],
            )
        )
    return rows


async def _throughput(run: Callable[[], Awaitable[RunTimes]], total: int, inflight: int) -> float:
    sem = asyncio.Semaphore(inflight)

    async def one() -> None:
        async with sem:
            await run()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    return total / (time.perf_counter() - t0)


async def fig_concurrent(s: Stack, a: Args) -> list[Row]:
    """Runs per second with 50 in flight: Keel ÷ each peer, interleaved."""
    inflight = 10 if a.quick else 50
    # One burst of `inflight` runs per repetition (two bursts before: 2.7 min of a 12.8-min
    # run); every side gets the same burst, so the ratio keeps its meaning.
    total = inflight
    reps = max(1, min(a.n, 3))
    rates: dict[str, list[float]] = {}
    async with peers(s) as ps:
        for i in range(reps):
            for p in rotated(ps, i):
                rate = await _throughput(partial(p.run, ""), total, inflight)
                rates.setdefault(p.key, []).append(rate)
    return [
        Row(
            f"concurrent runs/s ({inflight} in flight): Keel ÷"
            f" {'langgraph dev' if key == 'langgraph' else 'Aegra'}",
            ROW_KEYS[key][2],
            median(rates["keel"]),
            median(rates[key]),
            reps,
            ">= 2",
            unit="runs/s",
            b_label=peer_label(key),
            note=f"{total} runs started at once per repetition (runs/s = {total} ÷ the time until"
            " the last one ended), each on a new thread, read to the end; 3 repetitions, not"
            " 20: each is tens of seconds at this load",
        )
        for key in rates
        if key != "keel"
    ]


async def fig_stream_rate(s: Stack, a: Args) -> list[Row]:
    """Tokens per second on one stream: Keel ÷ a bare Starlette StreamingResponse of them."""
    words = 300 if a.quick else 1000
    reps = min(a.n, 10)
    msg = f"{MESSAGE} {directive(words, 0)}"
    async with s.keel_client() as c:
        probe = await keel_run(c, msg)
        raw_url = s.raw(probe.tokens, 260)  # one frame per token
        keel, raw, events = [], [], []
        async with httpx.AsyncClient(base_url=raw_url, timeout=120) as rc:
            for i in range(reps):
                for side in ("keel", "raw") if i % 2 else ("raw", "keel"):
                    if side == "keel":
                        t = await keel_run(c, msg)
                        keel.append(t.tokens / (t.last_delta - t.answering))
                        events.append(t.deltas)
                    else:
                        t0 = time.perf_counter()
                        async with rc.stream("GET", "/stream") as r:
                            t = await _read_stream(r, t0)
                        raw.append(t.tokens / t.last_delta)
    k, r_ = median(keel), median(raw)
    return [
        Row(
            "tokens/s on one stream: Keel ÷ raw Starlette writing the same tokens",
            "stream_rate",
            k,
            r_,
            reps,
            ">= 0.6",
            unit="tokens/s",
            b_label="Starlette StreamingResponse",
            note=f"one run answering {probe.tokens} model words with no pause; Keel: tokens ÷"
            " the time from agent_status summarizing (the answer's model request starts) to the"
            " last token's arrival; raw: the same number of ~260-byte frames, one token each,"
            " ÷ the time from the request to the last frame. Keel sent them in"
            f" {median(events):g} text_delta events (median; text joined over"
            f" {_window_ms():g} ms)",
            extra={"keel_text_delta_events": events},
        )
    ]


def _window_ms() -> float:
    from core.settings import StreamSettings

    return StreamSettings().delta_window_ms


async def fig_many_streams(s: Stack, a: Args) -> list[Row]:
    """Many concurrent streams at 20 tokens/s each, over a bounded window, from a load process."""
    import subprocess
    import sys

    streams = int(os.environ.get("BENCH_STREAMS", 50 if a.quick else 500))
    rate = 20.0
    window = float(os.environ.get("BENCH_STREAMS_WINDOW", 3.0 if a.quick else 10.0))
    ramp = float(os.environ.get("BENCH_STREAMS_RAMP", 5.0 if a.quick else 25.0))
    drain = 30.0 if a.quick else 45.0
    cmd = [sys.executable, "-m", "bench.load", "--url", s.keel, "--token", s.token]
    cmd += ["--streams", str(streams), "--rate", str(rate), "--window", str(window)]
    cmd += ["--ramp", str(ramp), "--drain-timeout", str(drain), "--pid", str(s.pid("keel"))]
    out = await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=600, cwd=servers.ROOT
    )
    if out.returncode:
        raise RuntimeError(f"load process failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["idle"]:
        drained = f"Keel was idle {res['drain_s']:g} s after the window"
    else:
        # Still busy with cancelled runs: a fresh Keel process for the figures after this one.
        s.restart("keel")
        drained = f"Keel was still busy {drain:g} s after the window, so it was restarted"
        print(f"many_streams: {drained}", flush=True)
    setup = (
        f"a separate load process opens {streams} runs at once, each answering"
        f" {res['words_per_run']} words {1000 / rate:g} ms apart (more than the test lasts),"
        " each word stamped with the model's clock; tokens are words of text_delta events"
        f" (Keel joins text over {_window_ms():g} ms). After the window it closes the"
        f" streams, cancels the runs ({res['cancel_retries']} cancels retried) and waits until"
        f" Keel has finished them, serves no stream and uses under 5 % CPU: {drained}."
        f" Refused runs: {res['refused']} {res['refused_statuses']}. One repetition: a window"
        " holds thousands of tokens"
    )
    answering, offered = res["answering"], res["offered_per_s"]
    rows = [
        Row(
            f"{streams} concurrent streams at {rate:g} tokens/s: delivered ÷ offered, in the"
            f" first {res['from_start_s']:g} s",
            "many_streams",
            res["from_start_delivered_per_s"],
            res["from_start_offered_per_s"],
            1,
            "",
            unit="tokens/s",
            b_label="offered",
            note=f"informative: tokens received from the first POST to the window's end ÷"
            f" {streams} x {rate:g} a second; this includes the runs' start (plan and"
            f" research steps before the answer streams). {setup}",
            extra=res,
        ),
        Row(
            f"the same, streams already answering: delivered ÷ offered over {window:g} s",
            "many_streams_answering",
            res["delivered_per_s"],
            offered,
            1,
            ">= 0.9",
            unit="tokens/s",
            b_label=f"offered to {answering} answering",
            note=f"the window opens once every stream is answering (its first text_delta"
            f" arrived) or after {ramp:g} s at most: here at {res['window_opened_s']:g} s, with"
            f" {answering} of {streams} answering; their tokens within the window ÷"
            f" {rate:g} a second each. The other runs are still starting meanwhile",
        ),
    ]
    return [*rows, *_many_streams_delay_rows(res, window, drain)]


def _many_streams_delay_rows(res: dict[str, Any], window: float, drain: float) -> list[Row]:
    """The window's p95 delay from the model to the reader, and the time to idle after it."""
    idle_s = res["drain_s"] if res["idle"] else float("inf")
    return [
        Row(
            "the same: p95 delay from the model sending a token to the client reading it",
            "many_streams_delay",
            res["delay_p95_s"],
            0.25,
            1,
            "<= 1",
            b_label="limit 250 ms",
            note=f"over the {res['delay_samples']} tokens of the window (median"
            f" {res['delay_p50_s'] * 1000:.0f} ms); the model stamps each word with its"
            " monotonic clock, the load process reads it on arrival (one machine, one clock)",
        ),
        Row(
            "time until Keel is idle after the load stops (no run, no stream, CPU < 5 %)",
            "many_streams_idle",
            idle_s,
            10.0,
            1,
            "<= 1",
            b_label="limit 10 s",
            note=f"from the window's end (clients close, runs are cancelled) to no run, no open"
            f" stream and under 5 % of a core over 1 s; at most {drain:g} s are waited,"
            " then Keel is restarted (inf)",
        ),
    ]


def _rss_kb(pid: int) -> float:
    """The resident set of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def _open_streams(c: httpx.AsyncClient) -> float:
    """Keel's open SSE streams, from /metrics."""
    from bench.load import OPEN_STREAMS

    found = OPEN_STREAMS.search((await c.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


async def fig_idle_streams(s: Stack, a: Args) -> list[Row]:
    """RSS Keel adds per open idle stream (live tails of a run that sends nothing for now)."""
    from contextlib import AsyncExitStack

    n = int(os.environ.get("BENCH_IDLE_STREAMS", 200 if a.quick else 2000))
    msg = f"{MESSAGE} {directive(2, 300_000)}"  # one word, then five minutes of nothing
    many = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with s.keel_client() as c, s.keel_client(limits=many) as sc, AsyncExitStack() as held:
        tid = await keel_thread(c)
        run = asyncio.create_task(keel_run(c, msg, tid))
        while await _open_streams(c) < 1:
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # the run is past its plan and research, in its long pause
        before = _rss_kb(s.pid("keel"))
        gate = asyncio.Semaphore(50)
        retried = [0]

        async def one() -> None:
            async with gate:
                for _ in range(20):  # 503: Keel's pool was busy for a moment; ask again
                    r = await held.enter_async_context(
                        sc.stream("GET", f"/v1/threads/{tid}/stream")
                    )
                    if r.status_code != 503:
                        r.raise_for_status()
                        return
                    await r.aclose()
                    retried[0] += 1
                    await asyncio.sleep(0.5)
                r.raise_for_status()

        await asyncio.gather(*(one() for _ in range(n)))
        deadline = time.monotonic() + 120
        while await _open_streams(c) < n + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        after = _rss_kb(s.pid("keel"))
        n_open = int(await _open_streams(c)) - 1  # the run's own stream is the one more
        log = (await c.get(f"/v1/replay/{tid}")).text  # the log so far; it ends at once
        run_id = json.loads(log.split("data: ", 1)[1].split("\n", 1)[0])["run_id"]
        await c.post(f"/v1/runs/{run_id}/cancel")
        await run
    per = (after - before) / max(n_open, 1)
    return [
        Row(
            f"{n_open:,} open idle streams: RSS added per stream",
            "idle_stream_rss",
            per,
            50.0,
            1,
            "<= 1",
            unit="KiB",
            b_label="limit 50 KiB",
            note=f"one run pauses 5 min after its first word; {n} GET /v1/threads/{{id}}/stream"
            f" readers follow it (live tails with nothing to send); Keel's VmRSS"
            f" {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with them open"
            f" ({retried[0]} opens retried after a 503)",
        )
    ]


async def fig_replay(s: Stack, a: Args) -> list[Row]:
    """bench.replay's figures (its own Postgres and server), with this run's repetitions."""
    from bench import replay

    rows = await asyncio.to_thread(replay.measure, a.n)
    goals = {
        "replay_http": "<= 0.02",
        "replay_read": "<= 0.02",
        "replay_read_cached": "<= 0.02",
        "replay_growth": "<= 12",
    }
    labels = dict.fromkeys(
        ("replay_http", "replay_read", "replay_read_cached"), "aget_state_history"
    )
    return [
        Row(
            r["figure"],
            r["key"],
            r["a"],
            r["b"],
            r["n"],
            goals[r["key"]],
            b_label=labels.get(r["key"], "t(100 events)"),
            extra={k: v for k, v in r.items() if k in ("events", "checkpoints")},
        )
        for r in rows
    ]


async def fig_write_per_step(s: Stack, a: Args) -> list[Row]:
    """Checkpoint + event-log write per step ÷ one raw Postgres commit."""
    from bench import writes

    res = await writes.measure(s.pg_url, s.model, a.n)
    return [
        Row(
            "checkpoint + event-log write per step ÷ one raw Postgres commit",
            "write_per_step",
            res["per_step"],
            res["raw_commit"],
            res["n"],
            "<= 2",
            b_label="INSERT of one row + commit",
            note="aput_writes + aput of a real research-graph step's checkpoint, plus the"
            " event-log append of that step's events, on embedded Postgres",
            extra={k: v for k, v in res.items() if k not in ("per_step", "raw_commit", "n")},
        )
    ]


async def fig_quota(s: Stack, a: Args) -> list[Row]:
    """One run's quota work (admit + release, memory storage) ÷ one scripted-model run."""
    from bench.quota_load import _check_cost

    runs = []
    async with s.keel_client() as c:
        await keel_run(c)
        for _ in range(a.n):
            runs.append((await keel_run(c)).finished)
    costs = [await _check_cost("memory://", 200) for _ in range(a.n)]
    q, r = median(costs), median(runs)
    return [
        Row(
            "quota check ÷ scripted-model run",
            "quota",
            q,
            r,
            a.n,
            "<= 0.01",
            b_label="one Keel run over HTTP",
            note="admit + release of core.quotas on memory:// (bench.quota_load), mean of 200"
            " per repetition",
        )
    ]


def _checkpoint_bytes(db_url: str, thread_id: str) -> int:
    import psycopg

    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(octet_length(checkpoint::text)), 0) FROM checkpoints"
            "         WHERE thread_id = %(t)s)"
            "     + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs"
            "         WHERE thread_id = %(t)s)"
            "     + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes"
            "         WHERE thread_id = %(t)s)",
            {"t": thread_id},
        ).fetchone()
    return int(row[0]) if row else 0


async def fig_growth(s: Stack, a: Args) -> list[Row]:
    """Per-turn cost as one thread grows: checkpoint bytes written by a turn, replay time.

    The ratio compares the last two marks. A turn's checkpoint bytes grow until the
    short-term window (``memory.short_term_budget_tokens``) is full, about 70 of this bench's
    short turns, and are flat after it: older turns leave the state for the summary, so a
    thread's total grows linearly. Hence the default marks 10, 100, 200 (ratio 200 ÷ 100);
    ``BENCH_GROWTH_TURNS=10,100,200,1000`` adds the issue's 1,000 turns (about 3 minutes more).
    """
    default = "10,30" if a.quick else "10,100,200"
    marks = [int(x) for x in os.environ.get("BENCH_GROWTH_TURNS", default).split(",")]
    at: dict[int, dict[str, float]] = {}
    async with s.keel_client() as c:
        tid = await keel_thread(c)
        before = 0
        for turn in range(1, marks[-1] + 1):
            if turn in marks:
                before = await asyncio.to_thread(_checkpoint_bytes, s.pg_url, tid)
            run = await keel_run(c, tid=tid)
            if turn in marks:
                total = await asyncio.to_thread(_checkpoint_bytes, s.pg_url, tid)
                replays = []
                for _ in range(max(3, min(a.n, 10))):
                    t0 = time.perf_counter()
                    async with c.stream("GET", f"/v1/replay/{tid}") as r:
                        async for _chunk in r.aiter_bytes():
                            pass
                    replays.append(time.perf_counter() - t0)
                at[turn] = {
                    "turn_bytes": float(total - before),
                    "total_bytes": float(total),
                    "replay_s": median(replays),
                    "run_s": run.finished,
                }
    lo, hi = marks[-2], marks[-1]
    extra = {str(k): v for k, v in at.items()}
    note = f"one thread, {hi} turns; at turns {', '.join(map(str, marks))}: " + "; ".join(
        f"turn {k}: {v['turn_bytes'] / 1024:.1f} KiB written, thread {v['total_bytes'] / 2**20:.2f}"
        f" MiB, replay {v['replay_s'] * 1000:.1f} ms, run {v['run_s'] * 1000:.0f} ms"
        for k, v in at.items()
    )
    return [
        Row(
            f"checkpoint bytes written by turn {hi} ÷ by turn {lo} (constant = linear growth)",
            "growth_bytes",
            at[hi]["turn_bytes"],
            at[lo]["turn_bytes"],
            1,
            "<= 1.2",
            unit="bytes",
            a_label=f"turn {hi}",
            b_label=f"turn {lo}",
            note=note,
            extra=extra,
        ),
        Row(
            f"replay of the whole thread at {hi} turns ÷ at {lo} turns",
            "growth_replay",
            at[hi]["replay_s"],
            at[lo]["replay_s"],
            max(3, min(a.n, 10)),
            f"<= {1.2 * hi / lo:g}",
            b_label=f"{lo} turns",
            note=f"linear growth: at most {hi / lo:g} x (+20 %)",
        ),
    ]


LOCAL_QUESTION = "Why is the sky blue? Explain it in one paragraph."
LOCAL_MAX_TOKENS = 96  # the answer's length cap, the same through Keel and directly
# Shorter plan and research steps than the product's: the figure is about the answer's stream.
LOCAL_LLM: dict[str, Any] = {
    "model": "local",
    "max_tokens": LOCAL_MAX_TOKENS,
    "plan_max_tokens": 128,
    "step_max_tokens": 48,
}


@dataclass
class Answer:
    """The tokens of one streamed answer: arrival times (s from the request) and text."""

    times: list[float]
    text: str

    @property
    def decode_rate(self) -> float:
        """Tokens per second from the first token to the last (the prompt's evaluation excluded)."""
        span = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        return (len(self.times) - 1) / span if span > 0 else float("nan")


async def keel_answer(c: httpx.AsyncClient, message: str) -> tuple[Answer, float]:
    """One Keel run: its text_delta events (the summarizer's tokens) and the whole run's time."""
    tid = await keel_thread(c)
    times, parts, event = [], [], ""
    t0 = time.perf_counter()
    body = {"input": {"message": message}}
    async with c.stream("POST", f"/v1/threads/{tid}/runs", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "text_delta":
                    times.append(time.perf_counter() - t0)
            elif event == "text_delta" and line.startswith("data: "):
                parts.append(json.loads(line[6:])["data"]["text"])
    return Answer(times, "".join(parts)), time.perf_counter() - t0


async def direct_answer(c: httpx.AsyncClient, body: dict[str, Any]) -> Answer:
    """The same chat request streamed from the llama.cpp server itself: one chunk per token."""
    times, parts = [], []
    t0 = time.perf_counter()
    async with c.stream("POST", "/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            text = (choices[0].get("delta") or {}).get("content")
            if text:
                times.append(time.perf_counter() - t0)
                parts.append(text)
    return Answer(times, "".join(parts))


def summarizer_request(record: Path) -> dict[str, Any]:
    """The summarizer's chat request among those a relay recorded (the last streamed one)."""
    from graphs import prompts

    bodies = [json.loads(line) for line in record.read_text().splitlines() if line]
    found = [
        b
        for b in bodies
        if b.get("stream") and b["messages"] and b["messages"][0]["content"] == prompts.SUMMARIZER
    ]
    if not found:
        raise RuntimeError(f"no summarizer request among the {len(bodies)} recorded")
    body: dict[str, Any] = found[-1]
    return body


async def fig_local_model(s: Stack, a: Args) -> list[Row]:
    """The packaged local model's tokens/s through a Keel run ÷ from its llama.cpp server."""
    from core.settings import Settings
    from graphs.llm import LocalModelServer

    local = Settings().llm.local
    llama = LocalModelServer(local, Settings().data_dir / "models", s.work / "llama.log")
    llm = LOCAL_LLM
    reps = min(a.n, 2 if a.quick else 3)
    stopping: list[Callable[[], None]] = [llama.stop]
    # BENCH_LOCAL_MODEL=scripted: the scripted model stands in (a cheap smoke of this code).
    scripted = os.environ.get("BENCH_LOCAL_MODEL") == "scripted"
    try:
        base = s.model if scripted else await asyncio.to_thread(llama.start)
        # Record the summarizer's request once through a relay, so the direct side sends
        # the very prompt, max_tokens and temperature Keel sent; measured runs go direct.
        record = s.work / "local-requests.jsonl"
        relay = servers.start_relay(base, record)
        stopping.append(relay.stop)
        await asyncio.to_thread(relay.wait)
        probe = servers.start_keel(
            s.pg_url, relay.url, s.work / "keel-local-probe", llm=llm, name="keel-local-probe"
        )
        stopping.append(probe.stop)
        await asyncio.to_thread(probe.wait)
        async with s.keel_client(probe.url) as c:
            await keel_answer(c, LOCAL_QUESTION)
        probe.stop()
        relay.stop()
        body = summarizer_request(record)
        keel = servers.start_keel(s.pg_url, base, s.work / "keel-local", llm=llm, name="keel-local")
        stopping.append(keel.stop)
        await asyncio.to_thread(keel.wait)
        kept: list[Answer] = []
        direct: list[Answer] = []
        runs: list[float] = []
        async with (
            s.keel_client(keel.url) as kc,
            # A new connection per request: llama.cpp drops idle keep-alive connections.
            httpx.AsyncClient(
                base_url=base, timeout=300, limits=httpx.Limits(max_keepalive_connections=0)
            ) as dc,
        ):
            await direct_answer(dc, body)
            for i in range(reps):
                for side in ("keel", "direct") if i % 2 else ("direct", "keel"):
                    if side == "keel":
                        answer, took = await keel_answer(kc, LOCAL_QUESTION)
                        kept.append(answer)
                        runs.append(took)
                    else:
                        direct.append(await direct_answer(dc, body))
    finally:
        for stop in reversed(stopping):
            stop()
    k = median([x.decode_rate for x in kept])
    d = median([x.decode_rate for x in direct])
    served = (
        "the scripted model standing in (BENCH_LOCAL_MODEL=scripted)"
        if scripted
        else f"{local.file} on xllamacpp ({local.threads} threads), started as `keel serve`"
        " starts it"
    )
    same = sum(x.text == direct[0].text for x in kept)
    return [
        Row(
            "local LLM tokens/s through Keel ÷ the llama.cpp server directly",
            "local_model",
            k,
            d,
            reps,
            ">= 0.95",
            unit="tokens/s",
            b_label="llama.cpp server directly",
            note=f"{served}; tokens/s = (tokens - 1) / (last token's arrival - first token's) at"
            f" the client, so prompt evaluation is excluded on both sides. Keel: the"
            f' summarizer\'s text_delta events of a whole research run ("{LOCAL_QUESTION}");'
            f" directly: the summarizer's recorded chat request (same prompt, max_tokens"
            f" {LOCAL_MAX_TOKENS}, temperature 0, i.e. greedy, so no seed applies) replayed to"
            f" /v1/chat/completions with stream on. Keel runs with plan_max_tokens"
            f" {LOCAL_LLM['plan_max_tokens']} and step_max_tokens {LOCAL_LLM['step_max_tokens']}"
            " (the product's: 256, 160) to keep a run short. A measured run makes its own"
            " prompt (its plan and findings), so its answer can differ from the recorded one"
            f" (extra: same_answer, token counts). {reps} interleaved repetitions, not 20: a"
            " Keel run on this model takes tens of seconds on this machine",
            extra={
                "tokens_keel": [len(x.times) for x in kept],
                "tokens_direct": [len(x.times) for x in direct],
                "same_answer": f"{same} of {len(kept)}",
                "keel_run_s": runs,
                "direct_ttft_s": [round(x.times[0], 3) for x in direct if x.times],
                "model": "scripted" if scripted else local.file,
            },
            table="local",
        )
    ]


# Not in a plain `keel bench`: a Keel run on the local model takes tens of seconds here.
OPT_IN = ("local_model",)

FIGURES: dict[str, Figure] = {
    "sse_vs_astream": fig_sse_vs_astream,
    "first_event": fig_first_event,
    "concurrent": fig_concurrent,
    "replay": fig_replay,
    "stream_rate": fig_stream_rate,
    "write_per_step": fig_write_per_step,
    "quota": fig_quota,
    "growth": fig_growth,
    "idle_streams": fig_idle_streams,
    "many_streams": fig_many_streams,  # last: it leaves Keel busy at worst (then restarts it)
    "local_model": fig_local_model,
}


def _fmt(x: float, unit: str) -> str:
    if unit == "s":
        return f"{x * 1000:.2f} ms" if x < 10 else f"{x:.1f} s"
    return f"{x:,.1f} {unit}"


def table(rows: list[Row]) -> str:
    """The results as a markdown table, with each figure's wall time."""
    lines = [
        "| figure | Keel | baseline / limit | ratio | goal | met? | n | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        lines.append(
            f"| {r.figure} | {_fmt(r.a, r.unit)} | {_fmt(r.b, r.unit)} ({r.b_label}) |"
            f" {r.ratio:.4g} | {r.goal or '—'} | {met} | {r.n} | {r.wall_s:.0f} s |"
        )
    return "\n".join(lines)


def tables(rows: list[Row]) -> str:
    """The scripted-model table, then the local-model one when it was measured."""
    scripted = [r for r in rows if r.table == "scripted"]
    local = [r for r in rows if r.table == "local"]
    out = []
    if scripted:
        out.append(f"Scripted model ({LATENCY_MS:g} ms per request):\n\n{table(scripted)}")
    if local:
        out.append(f"Packaged local model:\n\n{table(local)}")
    return "\n\n".join(out)


def wall_by_table(rows: list[Row]) -> dict[str, float]:
    """Seconds spent on each table's figures (a figure's rows share its wall time)."""
    walls: dict[str, dict[str, float]] = {}
    for r in rows:
        walls.setdefault(r.table, {})[r.group] = r.wall_s
    return {table: sum(w.values()) for table, w in walls.items()}


def write(rows: list[Row], out: Path, argv: str, started: datetime, took: float, load: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_average": {"start": load, "end": load_average()},
        "command": argv,
        "seconds": round(took, 1),
        "seconds_by_table": {k: round(v, 1) for k, v in wall_by_table(rows).items()},
    }
    (out / "results.json").write_text(
        json.dumps({**meta, "rows": [r.json() for r in rows]}, indent=1) + "\n"
    )
    notes = "\n".join(f"- **{r.figure}**: {r.note}" for r in rows if r.note)
    split = ", ".join(f"{k} model figures {v:.0f} s" for k, v in wall_by_table(rows).items())
    (out / "RESULTS.md").write_text(
        f"# Benchmark results\n\n{meta['date']}, {meta['machine']}, shared with other jobs"
        f" (load average {load} at the start, {load_average()} at the end); `{argv}` took"
        f" {meta['seconds']} s ({took / 60:.1f} min; {split}; per figure: column *wall*, rows"
        f" of one figure share it). Medians of interleaved repetitions (column *n*).\n\n"
        f"{tables(rows)}\n\n{notes}\n"
    )


async def run(names: list[str], a: Args, work: Path, profile: str = "") -> list[Row]:
    stack = Stack(work, profile)
    rows: list[Row] = []
    t_all = time.perf_counter()
    try:
        for name in names:
            t0 = time.perf_counter()
            got = await FIGURES[name](stack, a)
            wall = time.perf_counter() - t0
            for r in got:
                r.wall_s, r.group = wall, name
                print(
                    f"{r.key:18s} {r.ratio:10.4g}  goal {r.goal or '-':8s}"
                    f" ({_fmt(r.a, r.unit)} vs {_fmt(r.b, r.unit)}; n={r.n})",
                    flush=True,
                )
            rows += got
            print(
                f"-- {name}: {wall:.0f} s (total {time.perf_counter() - t_all:.0f} s)",
                flush=True,
            )
    finally:
        stack.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="keel bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repetitions, smaller loads")
    p.add_argument("--n", type=int, default=None, help="repetitions per figure (default 20)")
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated: {', '.join(FIGURES)}; +name adds to the default figures",
    )
    p.add_argument("--out", default=str(servers.ROOT / "bench"), help="folder for the results")
    p.add_argument(
        "--local-model",
        action="store_true",
        help="add local_model (the packaged model through Keel ÷ directly; minutes of its"
        " own); the same as --only +local_model",
    )
    ns = p.parse_args(argv)
    # `--only +local_model`: the default figures plus the named ones.
    asked = [x for x in ns.only.split(",") if x]
    added = [x.removeprefix("+") for x in asked if x.startswith("+")]
    names = [x for x in asked if not x.startswith("+")]
    if not names:
        names = [x for x in FIGURES if x not in OPT_IN]
    if ns.local_model:
        added.append("local_model")
    names += [x for x in added if x not in names]
    unknown = set(names) - set(FIGURES)
    if unknown:
        p.error(f"unknown figures: {', '.join(sorted(unknown))}")
    a = Args(n=ns.n or (3 if ns.quick else 20), quick=ns.quick)
    started, t0, load = datetime.now(UTC), time.perf_counter(), load_average()
    # BENCH_PROFILE=1: Keel's API runs under cProfile; its summary goes to <out>/profile-*.txt.
    profile = ""
    if os.environ.get("BENCH_PROFILE"):
        Path(ns.out).mkdir(parents=True, exist_ok=True)
        profile = str(Path(ns.out).resolve() / f"profile-{'-'.join(names)}.txt")
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        rows = asyncio.run(run(names, a, Path(tmp), profile))
    command = "keel bench " + " ".join(argv if argv is not None else sys.argv[1:])
    took = time.perf_counter() - t0
    write(rows, Path(ns.out), command.strip(), started, took, load)
    print(tables(rows))
    split = ", ".join(f"{k} model figures {v:.0f} s" for k, v in wall_by_table(rows).items())
    print(f"keel bench took {took:.0f} s ({took / 60:.1f} min: {split});", end=" ")
    print(f"load average now {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
