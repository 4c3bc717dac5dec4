"""Postgres outage mid-stream (agentic resource overload, LLM10): restart Postgres in immediate
mode while a run streams, repeatedly.

While it is down the API answers 503 problem+json with Retry-After (never a hang or a 500); once
it is back, requests succeed again (the time to the first success is the figure), the run ends
with ``run_finished`` and a client resuming with ``Last-Event-ID`` reads every event exactly
once, gap-free.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from core.db import EmbeddedPostgres
from tests.chaos.conftest import assert_gap_free, scaled
from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import DEFAULT_PLAN, FakeOpenAI
from tests.sse import iter_frames

RESTARTS = scaled(1, 10)
ANSWER = " ".join(f"word{i}" for i in range(120))


@pytest.fixture
def pg() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's basetemp: concurrent pytest runs prune each other's old basetemps,
    # and this server lives through minutes of restarts.
    root = Path(tempfile.mkdtemp(prefix="keel-chaos-pg-"))
    server = EmbeddedPostgres(root / "pg")
    server.start()
    yield server
    server.stop(quiet=True)
    shutil.rmtree(root, ignore_errors=True)


def _crash(pg: EmbeddedPostgres) -> None:
    """Stop in immediate mode (no checkpoint, clients cut off), as a crash would."""
    stop = [pg._bin("pg_ctl"), "-D", str(pg.data_dir), "-w", "-t", "120", "-m", "immediate"]
    pg._run([*stop, "stop"], timeout=180)


def _start(pg: EmbeddedPostgres) -> None:
    """Start after a crash; crash recovery on a loaded machine can outlast pg_ctl's 60 s."""
    try:
        pg.start()
    except RuntimeError:
        for _ in range(600):
            try:
                psycopg.connect(pg.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.5)
        raise


def test_postgres_restarts_mid_stream(
    pg: EmbeddedPostgres,
    fake_llm: FakeOpenAI,
    tmp_path: Path,
    figure: Callable[[str, str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("CRITICAL", logger="psycopg.pool")
    settings = make_settings(pg.url, fake_llm.base_url, tmp_path / "keel")
    down_statuses: Counter[str] = Counter()
    recoveries: list[float] = []
    endings: Counter[str] = Counter()
    with LiveServer(settings) as live, live.client() as c:
        for _ in range(RESTARTS):
            fake_llm.reset()
            fake_llm.script.extend([DEFAULT_PLAN, "A finding.", ANSWER])
            fake_llm.delay_s = 0.01
            tid = c.post("/v1/threads").json()["thread_id"]
            seqs: list[int] = []
            with c.stream(
                "POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "Go"}}
            ) as resp:
                assert resp.status_code == 200
                for frame in iter_frames(resp.iter_lines()):
                    seqs.append(int(frame.id or 0))
                    if frame.data["type"] == "text_delta":
                        break
            _crash(pg)
            for method, path in [
                ("POST", "/v1/threads"),
                ("GET", "/v1/threads"),
                ("GET", f"/v1/threads/{tid}/stream"),
                ("GET", f"/v1/replay/{tid}"),
            ]:
                r = c.request(method, path, timeout=30)
                ok = (
                    r.status_code == 503
                    and r.headers.get("retry-after") == "5"
                    and r.headers["content-type"] == "application/problem+json"
                )
                down_statuses[f"{r.status_code}{'' if ok else ' (bad)'}"] += 1
            _start(pg)
            restarted = time.monotonic()
            while c.post("/v1/threads", timeout=30).status_code != 201:
                time.sleep(0.05)
            recoveries.append(time.monotonic() - restarted)
            with c.stream(
                "GET",
                f"/v1/threads/{tid}/stream",
                headers={"Last-Event-ID": str(seqs[-1])},
                timeout=httpx.Timeout(60, read=60),
            ) as resp:
                assert resp.status_code == 200
                for frame in iter_frames(resp.iter_lines()):
                    seqs.append(int(frame.id or 0))
                    if frame.data["type"] == "run_finished":
                        endings[frame.data["data"]["status"]] += 1
                        break
            assert_gap_free(seqs)
            assert live.sql("SELECT count(*) AS n FROM events WHERE thread_id = %s", tid)[0][
                "n"
            ] == len(seqs)
    figure(
        "postgres outage",
        f"{RESTARTS} immediate restarts mid-stream: answers while down {dict(down_statuses)}; "
        f"recovery after restart median {statistics.median(recoveries):.2f} s, "
        f"max {max(recoveries):.2f} s; runs ended {dict(endings)}; resumed streams gap-free",
    )
    assert set(down_statuses) == {"503"}
    assert sum(endings.values()) == RESTARTS
