"""Soak (agentic resource overload, LLM10): mixed load on loopback against one ``keel serve``
process — runs, resumed streams, replays, history, feedback, refused requests — in bounded
request loops; the API's RSS, open file descriptors and Postgres connections are sampled and
their slopes after warm-up reported. Quick: 20 rounds; ``make chaos``: 30 minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.chaos.conftest import FULL, ApiProcess, scaled
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import parse

ROUNDS = scaled(20, 10**9)
DURATION_S = scaled(10**9, 30 * 60)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _slope(ys: list[float]) -> float:
    """Least-squares slope per sample."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    den = sum((x - mx) ** 2 for x in range(n))
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / den


def test_mixed_load_keeps_rss_fds_and_connections_flat(
    api_factory: Callable[..., ApiProcess],
    fake_llm: FakeOpenAI,
    figure: Callable[[str, str], None],
) -> None:
    api = api_factory()
    assert api.proc is not None
    pid = api.proc.pid
    db = api.env["KEEL_DATABASE__URL"].rsplit("/", 1)[1]
    samples: list[tuple[int, int, int]] = []
    started = time.monotonic()
    rounds = 0
    with api.client() as c, api.client("mallory", "globex") as other:
        while rounds < ROUNDS and time.monotonic() - started < DURATION_S:
            rounds += 1
            tid = c.post("/v1/threads").json()["thread_id"]
            with c.stream(
                "POST", f"/v1/threads/{tid}/runs", json={"input": {"message": f"q{rounds}"}}
            ) as r:
                frames = parse(r.iter_lines())
            assert frames and frames[-1].data["type"] == "run_finished"
            run_id = frames[0].data["run_id"]
            with c.stream("GET", f"/v1/threads/{tid}/stream", headers={"Last-Event-ID": "2"}) as r:
                assert len(parse(r.iter_lines())) == len(frames) - 2
            assert c.get(f"/v1/replay/{tid}").status_code == 200
            assert c.get(f"/v1/threads/{tid}/history").status_code == 200
            assert c.post("/v1/feedback", json={"run_id": run_id, "rating": "thumbs_up"}).is_success
            assert other.get(f"/v1/replay/{tid}").status_code == 404
            assert c.post(f"/v1/threads/{tid}/runs", content=b"{").status_code == 422
            assert c.get("/v1/threads").status_code == 200
            conns = api.sql("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = %s", db)
            samples.append((_rss_kb(pid), len(os.listdir(f"/proc/{pid}/fd")), conns[0]["n"]))
    warm = samples[len(samples) // 4 :]
    rss, fds, pgc = ([s[i] for s in warm] for i in range(3))
    figure(
        "soak",
        f"{rounds} rounds ({'30 min' if FULL else 'quick'}, {time.monotonic() - started:.0f} s, "
        f"8 requests each): after warm-up RSS {rss[0] // 1024}->{rss[-1] // 1024} MB "
        f"(slope {_slope(rss):+.1f} kB/round), fds {fds[0]}->{fds[-1]} (slope "
        f"{_slope(fds):+.3f}/round, max {max(fds)}), Postgres connections {pgc[0]}->{pgc[-1]} "
        f"(max {max(pgc)})",
    )
    assert max(fds) - min(fds) <= 20, fds
    assert max(pgc) <= 10 + 5, pgc  # pool_max + listener + tool servers' connections
    assert _slope(fds) < 0.1
