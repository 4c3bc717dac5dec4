"""Tracing overhead per run: spans exported by OTLP vs tracing disabled, same stack.

    .venv/bin/python -m bench.tracing_overhead [--runs 50]

Starts embedded Postgres, the scripted OpenAI-compatible model server (tests/fakes) and a
local OTLP receiver that accepts and discards batches, then two API processes on the same
database: ``on`` (``tracing.enabled``, FastAPI/psycopg/httpx instrumentation, run/node/LLM/tool
spans, exported by the OTLP/HTTP batch exporter to the receiver) and ``off``
(``tracing.enabled: false``). Runs alternate between them, one at a time; each is timed from
the POST to its ``run_finished`` event. Prints the medians and their ratio as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx

os.environ.setdefault("KEEL_ENV", "test")

from core.db import EmbeddedPostgres, free_port  # noqa: E402
from core.identity import issue_token  # noqa: E402
from core.settings import Settings  # noqa: E402


class _Sink(BaseHTTPRequestHandler):
    batches = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).batches += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


def _serve(port: int, db: str, llm: str, tracing: str) -> None:
    import uvicorn

    from api.app import create_app

    settings = Settings(
        env="test",
        data_dir=Path(tempfile.mkdtemp(prefix="keel-bench-")),
        database={"url": db},
        llm={"provider": "openai", "base_url": llm, "model": "fake", "api_key": "x"},
        tracing=json.loads(tracing),
        quotas={"free": {"runs_per_minute": 100_000, "concurrent_runs": 4}},
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def _wait(url: str) -> None:
    end = time.monotonic() + 90
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _one_run(c: httpx.Client) -> float:
    tid = c.post("/v1/threads").json()["thread_id"]
    t0 = time.perf_counter()
    with c.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "go"}}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event: run_finished"):
                break
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    """Run the comparison and print one JSON row."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--serve", nargs=4, metavar=("PORT", "DB", "LLM", "TRACING"))
    a = p.parse_args()
    if a.serve:
        _serve(int(a.serve[0]), a.serve[1], a.serve[2], a.serve[3])
        return
    from tests.fakes.openai_server import FakeOpenAI

    sink = HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{sink.server_port}/v1/traces"
    modes = {
        "on": {"enabled": True, "otlp_endpoint": otlp},
        "off": {"enabled": False},
    }
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        pg.start()
        fake = FakeOpenAI()
        fake.start()
        procs: dict[str, subprocess.Popen[bytes]] = {}
        urls: dict[str, str] = {}
        try:
            for mode, tracing in modes.items():
                port = free_port()
                procs[mode] = subprocess.Popen(
                    [sys.executable, "-m", "bench.tracing_overhead", "--serve", str(port)]
                    + [pg.url, fake.base_url, json.dumps(tracing)],
                    env={**os.environ, "KEEL_ENV": "test"},
                )
                urls[mode] = f"http://127.0.0.1:{port}"
            for url in urls.values():
                _wait(f"{url}/healthz")
            token = issue_token(Settings().auth, user="bench", tenant="bench", scopes=[])
            clients = {
                m: httpx.Client(
                    base_url=u, timeout=60, headers={"Authorization": f"Bearer {token}"}
                )
                for m, u in urls.items()
            }
            times: dict[str, list[float]] = {m: [] for m in modes}
            for m in modes:  # warm-up, not counted
                _one_run(clients[m])
            for i in range(a.runs):
                for m in ("on", "off") if i % 2 else ("off", "on"):
                    times[m].append(_one_run(clients[m]))
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(30)
            fake.stop()
            pg.stop()
            sink.shutdown()
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(
        json.dumps(
            {
                "figure": "tracing overhead per run (OTLP export on / tracing off)",
                "ratio": round(on / off, 3),
                "on_ms": round(on, 1),
                "off_ms": round(off, 1),
                "n": a.runs,
                "otlp_batches": _Sink.batches,
            }
        )
    )


if __name__ == "__main__":
    main()
