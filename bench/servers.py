"""The processes a benchmark compares, side by side on one machine (bench/suite.py uses them).

- ``model``: the scripted OpenAI-compatible server (tests/fakes) with a fixed latency per
  request and per streamed word, a plan of ``steps`` tool-less steps and an answer of
  ``words`` words, so every run of the research graph is the same and the LLM does not dominate;
- ``keel``: Keel's API (uvicorn, one process) on a Postgres URL;
- ``langgraph``: ``langgraph dev`` (LangGraph's API server, in-memory runtime) on the same
  ``langgraph.json`` graph and the same model, analytics and version checks off;
- ``aegra``: Aegra (``aegra-api`` in ``.venv-aegra``, ``make aegra``), an open Postgres-backed
  Agent Protocol server, on the same graph, model and Postgres server (a database of its own);
- ``raw``: a bare Starlette ``StreamingResponse`` of SSE frames (the physical limit of a stream);
- ``relay``: a pass-through to another OpenAI-compatible server that records each chat request's
  body, so a request Keel made can be replayed against the model directly (``local_model``);
- the packaged local model is started by ``graphs.llm.LocalModelServer``, as ``keel serve`` does.

Each runs in its own process so the load generator never shares an interpreter with a server.

    .venv/bin/python -m bench.servers model --port 9001 --latency-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Aegra's venv (`make aegra`): aegra-api's pins conflict with the project's venv.
AEGRA_PYTHON = ROOT / ".venv-aegra" / "bin" / "python"


def aegra_python() -> Path:
    """The Python of Aegra's venv: ``BENCH_AEGRA_PYTHON`` or ``AEGRA_PYTHON``."""
    return Path(os.environ.get("BENCH_AEGRA_PYTHON") or AEGRA_PYTHON)


class Proc:
    """A server child process and its URL; ``stop`` ends it (only this process)."""

    def __init__(self, name: str, args: list[str], url: str, health: str, **kw: Any) -> None:
        """Start ``args``; ``health`` is polled by ``wait``."""
        self.name, self.url, self.health = name, url, health
        self.log = tempfile.NamedTemporaryFile(prefix=f"keel-bench-{name}-", suffix=".log")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, **kw)

    def wait(self, timeout_s: float = 120) -> None:
        """Return once the health URL answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + self.health, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.log.flush()
        tail = Path(self.log.name).read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not come up:\n{tail}")

    def stop(self) -> None:
        """Terminate the process (kill after 20 s) and drop its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    from core.db import free_port as _free

    return _free()


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.servers", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "KEEL_ENV": "test", "PYTHONPATH": str(ROOT)}
    for var in ("DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(var, None)
    env.update(extra)
    return env


def start_model(latency_ms: float, word_ms: float, steps: int, words: int) -> Proc:
    """The scripted model server in its own process."""
    port = free_port()
    args = _py("model", "--port", str(port), "--latency-ms", str(latency_ms))
    args += ["--word-ms", str(word_ms), "--steps", str(steps), "--words", str(words)]
    return Proc("model", args, f"http://127.0.0.1:{port}/v1", "/models", env=_env(), cwd=ROOT)


def keel_settings_json(
    db_url: str, llm_url: str, data_dir: str, llm: dict[str, Any] | None = None
) -> str:
    """Keel's bench settings: the test config with the scripted model and room for load.

    ``llm`` overrides fields of the model settings (the local-model figure's model name and
    answer length).
    """
    from core.settings import StreamSettings

    limits = {
        "runs_per_minute": 10**6,
        "concurrent_runs": 10**4,
        "max_queued": 10**4,
        "max_active_share": 1.0,
        "concurrent_streams": 10**4,
        "max_threads": 10**6,
    }
    return json.dumps(
        {
            "env": "test",
            "data_dir": data_dir,
            "database": {"url": db_url, "pool_max": 20},
            "llm": {
                "provider": "openai",
                "base_url": llm_url,
                "model": "fake",
                "api_key": "x",
                **(llm or {}),
            },
            "quotas": {"max_active_runs": 10**4, "free": limits},
            "log": {"level": "WARNING", "json_logs": True},
            # The peer has no session memory (vector store + embedding per turn): the
            # comparison is of the service around the same graph, so Keel runs without it too.
            "memory": {"session": {"enabled": False}},
            # The product's stream settings (the test config turns text coalescing off).
            "streams": StreamSettings().model_dump(),
        }
    )


def start_keel(
    db_url: str,
    llm_url: str,
    data_dir: Path,
    profile: str = "",
    llm: dict[str, Any] | None = None,
    name: str = "keel",
) -> Proc:
    """Keel's API on ``db_url`` in its own process (under cProfile with ``profile``)."""
    port = free_port()
    args = _py("keel", "--port", str(port), "--profile", profile, "--settings")
    args.append(keel_settings_json(db_url, llm_url, str(data_dir), llm))
    return Proc(name, args, f"http://127.0.0.1:{port}", "/healthz", env=_env(), cwd=ROOT)


def start_langgraph(llm_url: str, work: Path) -> Proc:
    """``langgraph dev`` on the project's graph, run from the scratch folder ``work``."""
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["graphs"] = {k: str(ROOT / v.removeprefix("./")) for k, v in config["graphs"].items()}
    config["dependencies"] = [str(ROOT)]
    work.mkdir(parents=True, exist_ok=True)
    (work / "langgraph.json").write_text(json.dumps(config))
    port = free_port()
    env = _env(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="1",
        KEEL_LLM__PROVIDER="openai",
        KEEL_LLM__BASE_URL=llm_url,
        KEEL_LLM__MODEL="fake",
        KEEL_LLM__API_KEY="x",
        LOG_LEVEL="WARNING",
    )
    langgraph = str(Path(sys.executable).parent / "langgraph")
    args = [langgraph, "dev", "--port", str(port), "--no-browser", "--no-reload"]
    return Proc("langgraph", args, f"http://127.0.0.1:{port}", "/ok", env=env, cwd=work)


def aegra_database(server_url: str) -> str:
    """Create the database ``aegra`` on the Postgres server of ``server_url``; its URL.

    Aegra's schema asks for the ``uuid-ossp`` extension (its ``uuid_generate_v4()``), which the
    embedded Postgres build does not ship: the database also looks for extensions under
    ``bench/aegra`` (``extension_control_path``, Postgres 18), where ``uuid-ossp`` defines
    ``uuid_generate_v4()`` on the built-in ``gen_random_uuid()``. A server that has its own
    uuid-ossp uses that one (``$system`` comes first).
    """
    import psycopg

    path = f"$system:{ROOT / 'bench' / 'aegra'}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "aegra"')
        conn.execute(f"ALTER DATABASE aegra SET extension_control_path = '{path}'")
    return server_url.rsplit("/", 1)[0] + "/aegra"


def aegra_launch(
    python: str, agents: list[str], db_url: str, model_url: str, port: int, work: Path, **env: str
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start Aegra serving Keel's graph as each of ``agents``.

    ``uvicorn aegra_api.main:app`` from the venv of ``python`` (one holding aegra-api and Keel)
    on 127.0.0.1:``port``, with an ``aegra.json`` written to ``work`` naming
    ``graphs/graph.py:graph``, the database ``db_url``, the OpenAI-compatible model at
    ``model_url``, no auth (``AUTH_TYPE=noop``); ``env`` adds variables (Aegra's pool sizes,
    log level). Its health URL is ``/health``.
    """
    work.mkdir(parents=True, exist_ok=True)
    config = work / "aegra.json"
    graph = f"{ROOT}/graphs/graph.py:graph"
    config.write_text(json.dumps({"graphs": {agent: graph for agent in agents}}))
    drop = ("KEEL_", "DATABASE", "OPENAI_")
    full = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    full |= {
        "KEEL_ENV": "test",
        "KEEL_LLM__PROVIDER": "openai",
        "KEEL_LLM__BASE_URL": model_url,
        "KEEL_LLM__MODEL": "fake",
        "KEEL_LLM__API_KEY": "x",
        "AUTH_TYPE": "noop",
        "AEGRA_CONFIG": str(config),
        "DATABASE_URL": db_url,
        "PYTHONPATH": str(ROOT),
        **env,
    }
    args = [python, "-m", "uvicorn", "aegra_api.main:app", "--host", "127.0.0.1"]
    return [*args, "--port", str(port)], full


def aegra_version() -> str:
    """The aegra-api version ``bench/aegra/requirements.lock`` pins."""
    lock = (ROOT / "bench" / "aegra" / "requirements.lock").read_text()
    found = re.search(r"^aegra-api==(\S+)", lock, re.M)
    return found.group(1) if found else "?"


def aegra_missing() -> str:
    """Why Aegra cannot be started here, as a line to print ("" when it can)."""
    python = aegra_python()
    if python.exists():
        return ""
    return f"Aegra rows skipped: no {python} (build its venv with `make aegra`)"


def start_aegra(db_url: str, model_url: str, work: Path) -> Proc:
    """Aegra on the research graph, the database ``db_url`` and the model at ``model_url``.

    Aegra gets the room for load Keel gets (a pool of 20 connections; its defaults are 2 for
    SQLAlchemy and 6 for LangGraph's checkpointer) and logs warnings only, as Keel does.
    """
    port = free_port()
    args, env = aegra_launch(
        str(aegra_python()),
        ["research"],
        db_url,
        model_url,
        port,
        work,
        LOG_LEVEL="WARNING",
        SQLALCHEMY_POOL_SIZE="20",
        LANGGRAPH_MAX_POOL_SIZE="20",
    )
    return Proc("aegra", args, f"http://127.0.0.1:{port}", "/health", env=env, cwd=work)


def start_raw(events: int, frame_bytes: int) -> Proc:
    """The bare Starlette SSE stream in its own process."""
    port = free_port()
    args = _py("raw", "--port", str(port), "--events", str(events), "--bytes", str(frame_bytes))
    return Proc("raw", args, f"http://127.0.0.1:{port}", "/ok", env=_env(), cwd=ROOT)


def start_relay(target: str, record: Path) -> Proc:
    """A pass-through to the OpenAI-compatible ``target``; each chat body goes to ``record``."""
    port = free_port()
    args = _py("relay", "--port", str(port), "--target", target, "--record", str(record))
    return Proc("relay", args, f"http://127.0.0.1:{port}/v1", "/models", env=_env(), cwd=ROOT)


DIRECTIVE = re.compile(r"\[bench words=(\d+) word_ms=([\d.]+)( stamp)?\]")


def directive(words: int, word_ms: float, stamp: bool = False) -> str:
    """Put this in a run's message to get an answer of ``words`` words, ``word_ms`` apart.

    With ``stamp`` each word is ``s<ns>``: the model's ``time.monotonic_ns()`` when it sent
    the word (one clock for every process on the machine), so a reader can tell its delay.
    """
    return f"[bench words={words} word_ms={word_ms:g}{' stamp' if stamp else ''}]"


def stamp_delays(text: str, now_ns: int) -> list[float]:
    """Seconds from the model sending each stamped word of ``text`` to ``now_ns``."""
    return [(now_ns - int(w[1:])) / 1e9 for w in text.split() if w.startswith("s")]


def _serve_model(a: argparse.Namespace) -> None:
    """An OpenAI-compatible model with a fixed latency and a fixed plan of ``a.steps`` steps.

    The answer's length and pace come from a ``directive`` in the question (default:
    ``a.words`` words ``a.word_ms`` apart), so one server can serve every figure.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    plan = json.dumps(
        {"steps": [{"description": f"step {i}", "tool": "none"} for i in range(a.steps)]}
    )

    async def chat(request: Request) -> Response:
        body = await request.json()
        if a.latency_ms:
            await asyncio.sleep(a.latency_ms / 1000)
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            text = plan if body.get("response_format") else "A finding."
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "finish_reason": "stop", "message": message}
            return JSONResponse(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "fake",
                    "choices": [choice],
                    "usage": usage,
                }
            )
        found = DIRECTIVE.search(json.dumps(body))
        words = int(found.group(1)) if found else a.words
        pause = (float(found.group(2)) if found else a.word_ms) / 1000
        stamped = bool(found and found.group(3))

        def frame(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            payload = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "fake",
                "choices": [choice],
            }
            return f"data: {json.dumps(payload)}\n\n"

        async def chunks() -> AsyncIterator[str]:
            yield frame({"role": "assistant", "content": ""})
            for i in range(words):
                if pause:
                    await asyncio.sleep(pause)
                word = f"s{time.monotonic_ns()}" if stamped else f"w{i}"
                yield frame({"content": f" {word}" if i else word})
            yield frame({}, "stop")
            end = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "fake",
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", lifespan="off")


def _serve_keel(a: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app
    from core.settings import Settings

    settings = Settings(**json.loads(a.settings))
    app = create_app(settings)
    if not a.profile:
        uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")
        return
    import cProfile
    import io
    import pstats
    import signal

    # uvicorn re-raises SIGTERM after its graceful shutdown: exit so the summary is written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    prof = cProfile.Profile()
    prof.enable()
    try:
        uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")
    finally:
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
        Path(a.profile).write_text(out.getvalue())


def _serve_raw(a: argparse.Namespace) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    pad = "x" * max(0, a.bytes - 60)

    async def stream(_: Request) -> Response:
        async def frames() -> AsyncIterator[str]:
            for seq in range(1, a.events + 1):
                body = json.dumps({"seq": seq, "type": "text_delta", "data": {"text": pad}})
                yield f"id: {seq}\nevent: text_delta\ndata: {body}\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    async def ok(_: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/stream", stream), Route("/ok", ok)])
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


def _serve_relay(a: argparse.Namespace) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    client = httpx.AsyncClient(base_url=a.target.rstrip("/"), timeout=300)
    record = Path(a.record)

    async def relay(request: Request) -> Response:
        body = await request.body()
        path = request.url.path.removeprefix("/v1")
        if path.endswith("/chat/completions"):
            with record.open("a") as f:
                f.write(json.dumps(json.loads(body)) + "\n")
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        upstream = await client.send(
            client.build_request(request.method, path, content=body, headers=headers),
            stream=True,
        )
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
            background=BackgroundTask(upstream.aclose),
        )

    app = Starlette(routes=[Route("/v1/{path:path}", relay, methods=["GET", "POST"])])
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", lifespan="off")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["model", "keel", "raw", "relay"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--word-ms", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--words", type=int, default=5)
    p.add_argument("--settings", default="{}")
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--bytes", type=int, default=250)
    p.add_argument("--profile", default="", help="keel: write a cProfile summary here on exit")
    p.add_argument("--target", default="", help="relay: the base URL to pass requests to")
    p.add_argument("--record", default="", help="relay: append chat request bodies here")
    a = p.parse_args()
    serve = {"model": _serve_model, "keel": _serve_keel, "raw": _serve_raw, "relay": _serve_relay}
    serve[a.what](a)


if __name__ == "__main__":
    main()
