"""The load process for many concurrent streams (bench/suite.py's ``many_streams``).

    .venv/bin/python -m bench.load --url URL --token JWT --streams 500 --rate 20 --window 10

Opens ``streams`` runs at once on a running Keel, each on its own thread and each answering
words ``1000 / rate`` ms apart (the bench model's directive), more words than the test needs.
Each word is stamped with the model's clock when it was sent, so every token's delay from the
model to this reader is known. Once every stream is answering (its first text_delta arrived),
or after ``ramp`` seconds at most, it counts for ``window`` seconds the tokens the answering
streams received (delivered; Keel may join several into one text_delta) against what the model
offers them in that time (``answering x rate x window``), and their delays.
Then it closes the streams, cancels every run (``POST /v1/runs/{id}/cancel``: a Keel run goes
on without its client), waits until Keel has finished them all and serves no stream, and
(with ``--pid``) until Keel's process uses under 5 % of a core, and prints one JSON line. The
wall time is bounded by ramp + window + drain, not by how slowly Keel delivers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from bisect import bisect_left, bisect_right
from typing import Any

import httpx

from bench.servers import directive, stamp_delays

OPEN_STREAMS = re.compile(r"^keel_open_streams (\S+)$", re.M)
RUNS_FINISHED = re.compile(r'^keel_runs_total\{[^}]*status="(\w+)"[^}]*\} (\S+)$', re.M)


def window_counts(
    arrivals: list[list[float]], opened: float, window: float, rate: float
) -> tuple[int, float, int]:
    """(delivered, offered, answering) over ``[opened, opened + window]``.

    ``arrivals`` holds each stream's sorted text_delta arrival times. A stream counts once it
    is answering when the window opens (its first event arrived by then): the model then
    offers it ``rate`` events a second for the whole window; events after the window's end,
    and those of streams that began answering later, are not counted.
    """
    delivered, answering = 0, 0
    for times in arrivals:
        if not times or times[0] > opened:
            continue
        answering += 1
        delivered += bisect_right(times, opened + window) - bisect_left(times, opened)
    return delivered, answering * rate * window, answering


class Stream:
    """One run's stream as the load process saw it."""

    def __init__(self) -> None:
        """An unopened stream."""
        self.run_id = ""
        self.arrivals: list[float] = []  # one per token
        self.delays: list[tuple[float, float]] = []  # (arrival, seconds since the model sent it)
        self.status = ""  # run_finished's status, when read before the window closed
        self.refused = 0  # the HTTP status of a refused run
        self.dropped = ""  # the transport error that ended the stream early, and when
        self.started = asyncio.Event()  # run_started read (its run_id known), or the end
        self.answering = asyncio.Event()  # the first text_delta arrived, or the end


async def _drive(c: httpx.AsyncClient, tid: str, message: str, t0: float, s: Stream) -> None:
    try:
        async with c.stream(
            "POST", f"/v1/threads/{tid}/runs", json={"input": {"message": message}}
        ) as r:
            if r.status_code != 200:
                s.refused = r.status_code
                return
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "text_delta":
                    now, now_ns = time.perf_counter() - t0, time.monotonic_ns()
                    delays = stamp_delays(json.loads(line[6:])["data"]["text"], now_ns)
                    s.arrivals.extend([now] * len(delays))
                    s.delays.extend((now, d) for d in delays)
                    s.answering.set()
                elif line.startswith("data: ") and event in ("run_started", "run_finished"):
                    body = json.loads(line[6:])
                    if event == "run_started":
                        s.run_id = body["run_id"]
                        s.started.set()
                    else:
                        s.status = body["data"]["status"]
    except httpx.TransportError as exc:
        s.dropped = f"{type(exc).__name__} at {time.perf_counter() - t0:.1f} s"
    finally:
        s.started.set()
        s.answering.set()


async def _metrics(c: httpx.AsyncClient) -> tuple[float, dict[str, float]]:
    """Keel's open SSE streams and its finished runs by status, from ``/metrics``."""
    text = (await c.get("/metrics")).text
    found = OPEN_STREAMS.search(text)
    runs: dict[str, float] = {}
    for status, value in RUNS_FINISHED.findall(text):
        runs[status] = runs.get(status, 0.0) + float(value)
    return float(found.group(1)) if found else 0.0, runs


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _quiet(pid: int, below: float = 0.05, over_s: float = 1.0) -> None:
    """Return once ``pid`` used under ``below`` of a core over ``over_s`` seconds."""
    while True:
        before = _cpu_s(pid)
        await asyncio.sleep(over_s)
        if _cpu_s(pid) - before < below * over_s:
            return


def p95(xs: list[float]) -> float:
    """The 95th percentile (nan when empty)."""
    return statistics.quantiles(xs, n=20)[-1] if len(xs) > 1 else float("nan")


def _say(a: argparse.Namespace, t0: float, what: str) -> None:
    if a.verbose:
        print(f"{time.perf_counter() - t0:6.1f} s: {what}", file=sys.stderr, flush=True)


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=a.streams + 10, max_keepalive_connections=a.streams)
    headers = {"Authorization": f"Bearer {a.token}"}
    # Enough words to be answering still when the window closes, however late it opens.
    words = int(a.rate * (a.ramp + a.window) * 1.2) + 10
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=600, limits=limits, headers=headers) as c,
        httpx.AsyncClient(base_url=a.url, timeout=20, headers=headers) as control,
    ):
        sem = asyncio.Semaphore(20)

        async def thread() -> str:
            async with sem:
                r = await control.post("/v1/threads")
                r.raise_for_status()
                return str(r.json()["thread_id"])

        t_threads = time.perf_counter()
        tids = await asyncio.gather(*(thread() for _ in range(a.streams)))
        t_threads = time.perf_counter() - t_threads
        _, finished_before = await _metrics(control)
        message = f"Stream please. {directive(words, 1000 / a.rate, stamp=True)}"
        streams = [Stream() for _ in tids]
        t0 = time.perf_counter()
        tasks = [
            asyncio.create_task(_drive(c, tid, message, t0, s))
            for tid, s in zip(tids, streams, strict=True)
        ]
        try:
            async with asyncio.timeout(a.ramp):
                await asyncio.gather(*(s.answering.wait() for s in streams))
        except TimeoutError:
            pass
        opened = time.perf_counter() - t0
        _say(a, t0, f"window opens, {sum(bool(x.arrivals) for x in streams)} answering")
        await asyncio.sleep(a.window)
        closed = time.perf_counter() - t0
        retries = [0]
        statuses: dict[str, float] = {}  # runs finished during the test, by status
        asking = asyncio.Semaphore(a.cancel_concurrency)  # cancels on their own connections

        async def cancel(s: Stream, task: asyncio.Task[None]) -> None:
            await s.started.wait()
            task.cancel()  # the client goes away; the run would go on without it
            while s.run_id and not s.status:
                try:
                    async with asking:
                        r = await control.post(f"/v1/runs/{s.run_id}/cancel")
                except httpx.TimeoutException:
                    retries[0] += 1
                    continue
                if r.status_code in (202, 409):  # 409: it finished meanwhile
                    return
                if r.status_code != 503:  # 503: Keel's pool is busy; ask again
                    r.raise_for_status()
                retries[0] += 1
                await asyncio.sleep(0.5)

        async def drain() -> None:
            await asyncio.gather(*(cancel(s, t) for s, t in zip(streams, tasks, strict=True)))
            await asyncio.gather(*tasks, return_exceptions=True)
            _say(a, t0, "cancels sent")
            runs = a.streams - sum(bool(s.refused) for s in streams)
            while True:
                open_streams, after = await _metrics(control)
                finished = sum(after.values()) - sum(finished_before.values())
                if open_streams == 0 and finished >= runs:
                    statuses.update({k: v - finished_before.get(k, 0.0) for k, v in after.items()})
                    return
                _say(a, t0, f"{finished:g} of {runs} runs finished")
                await asyncio.sleep(0.2)
            if a.pid:
                await _quiet(a.pid)

        idle = True
        try:
            async with asyncio.timeout(a.drain_timeout):
                await drain()
        except TimeoutError:
            idle = False  # reported: the next figure would start on a busy API
        drained = time.perf_counter() - t0
    arrivals = [s.arrivals for s in streams]
    delivered, offered, answering = window_counts(arrivals, opened, a.window, a.rate)
    from_start = sum(bisect_right(times, closed) for times in arrivals)
    in_window = [
        d
        for st in streams
        if st.arrivals and st.arrivals[0] <= opened
        for at, d in st.delays
        if opened <= at <= opened + a.window
    ]
    return {
        "streams": a.streams,
        "threads_s": round(t_threads, 2),
        "answering": answering,
        "window_s": a.window,
        "window_opened_s": round(opened, 2),
        "offered_events": offered,
        "delivered_events": delivered,
        "delivered_per_s": delivered / a.window,
        "offered_per_s": offered / a.window,
        # The same from the first POST to the window's end, over every stream.
        "from_start_s": round(closed, 2),
        "from_start_delivered_per_s": from_start / closed,
        "from_start_offered_per_s": a.streams * a.rate,
        "words_per_run": words,
        "refused": sum(bool(s.refused) for s in streams),
        "refused_statuses": sorted({s.refused for s in streams if s.refused}),
        "delay_p95_s": p95(in_window),
        "delay_p50_s": statistics.median(in_window) if in_window else float("nan"),
        "delay_samples": len(in_window),
        "dropped": sum(bool(s.dropped) for s in streams),
        "drops": sorted({s.dropped for s in streams if s.dropped})[:5],
        "cancel_retries": retries[0],
        "drain_s": round(drained - closed, 2),
        "idle": idle,
        "runs_by_status": {k: v for k, v in statuses.items() if v},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--rate", type=float, default=20.0, help="words per second per stream")
    p.add_argument("--window", type=float, default=10.0, help="measurement window, seconds")
    p.add_argument("--ramp", type=float, default=30.0, help="longest wait for the window")
    p.add_argument("--drain-timeout", type=float, default=180.0, help="seconds")
    p.add_argument("--verbose", action="store_true", help="progress on stderr")
    p.add_argument("--pid", type=int, default=0, help="Keel's process: wait for it to idle")
    p.add_argument("--cancel-concurrency", type=int, default=32, help="cancels in flight")
    print(json.dumps(asyncio.run(main_async(p.parse_args()))))


if __name__ == "__main__":
    main()
