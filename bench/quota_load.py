"""Quota load test on loopback: abusive users at 10x their quota beside normal users at half.

Runs the API and the scripted OpenAI server each in its own process, then drives 20 normal
users (pro tier, at half their runs-per-minute) for the same time: alone; beside 20 abusive
users (free tier, at 10x theirs) whose allowed runs are already spent (only their over-quota
traffic); and beside fresh abusers (their allowed burst included). Reports rejections per
group, the normal users' p95 run latency with / without the abusers (per round, and over the
runs of every round pooled: a 30 s phase gives only ~60 runs, so its p95 is its 3rd-slowest),
and the cost of one run's quota work against a run.

    .venv/bin/python bench/quota_load.py [--seconds 40] [--rounds 1] [--redis]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from core.db import EmbeddedPostgres, free_port  # noqa: E402
from core.identity import Identity, issue_token  # noqa: E402
from core.quotas import Quotas  # noqa: E402
from core.settings import AuthSettings, QuotaSettings  # noqa: E402

USERS = 20
FREE_RPM = 2  # the abusers' quota (free tier): they send 10x, 20 runs per minute
PRO_RPM = 12  # the normal users' quota (pro tier): they send half, 6 runs per minute
LLM_DELAY_S = 0.1  # per streamed word: a run waits on its model like a real one


def _serve_llm(port: int) -> None:
    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI()
    fake.port = port
    fake.delay_s = LLM_DELAY_S
    fake.start()
    while True:
        time.sleep(3600)


def _serve_api(port: int) -> None:
    import uvicorn

    from api.app import create_app
    from core.settings import Settings

    uvicorn.run(create_app(Settings()), host="127.0.0.1", port=port, log_level="warning")


def _wait_http(url: str, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def _run(client: httpx.AsyncClient, token: str, thread_id: str) -> tuple[int, float]:
    """POST a run and read it to its end: (status code, seconds)."""
    t0 = time.perf_counter()
    async with client.stream(
        "POST",
        f"/v1/threads/{thread_id}/runs",
        json={"input": {"message": "hi"}},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        if resp.status_code != 200:
            await resp.aread()
            if resp.status_code == 429:
                assert resp.headers["retry-after"].isdigit()
                # Over the user's quota, or (a run within it) over the tier's slot share.
                assert resp.json()["limit"] in ("runs_per_minute", "capacity")
            return resp.status_code, time.perf_counter() - t0
        async for line in resp.aiter_lines():
            if line.startswith("event: run_finished"):
                break
    return 200, time.perf_counter() - t0


async def _new_thread(client: httpx.AsyncClient, token: str) -> str:
    r = await client.post("/v1/threads", headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    thread_id: str = r.json()["thread_id"]
    return thread_id


async def _user(
    client: httpx.AsyncClient, token: str, per_minute: float, seconds: float, offset: float
) -> list[tuple[int, float]]:
    """Send runs evenly at ``per_minute`` for ``seconds`` (each awaited before the next)."""
    period = 60.0 / per_minute
    out: list[tuple[int, float]] = []
    start = time.monotonic() + offset
    thread_id = await _new_thread(client, token)
    n = 0
    while (due := start + n * period) < start - offset + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        code, took = await _run(client, token, thread_id)
        out.append((code, took))
        if code == 200:
            thread_id = await _new_thread(client, token)
        n += 1
    return out


async def _spend(client: httpx.AsyncClient, token: str) -> float:
    """Use up a free user's runs for the current minute (each on its own thread).

    Returns when (``time.monotonic()``) the first of them was admitted: the user's window
    renews 60 s after it.
    """
    spent = 0
    first = 0.0
    while spent < FREE_RPM:
        t0 = time.monotonic()
        code, _ = await _run(client, token, await _new_thread(client, token))
        assert code in (200, 429), code
        if code == 200 and not spent:
            first = t0
        spent += code == 200
        if code == 429:
            await asyncio.sleep(0.2)  # the tier's slots were busy: try again
    return first


async def _scenario(
    base_url: str, seconds: float, abusers: bool, prespent: bool = False
) -> dict[str, Any]:
    auth = AuthSettings()
    tag = uuid.uuid4().hex[:6]
    normal = [
        issue_token(auth, user=f"n{i}-{tag}", tenant="bench", scopes=[], tier="pro")
        for i in range(USERS)
    ]
    abusive = [
        issue_token(auth, user=f"a{i}-{tag}", tenant="bench", scopes=[], tier="free")
        for i in range(USERS)
    ]
    # No keep-alive: uvicorn drops idle connections after 5 s, racing a reuse by the client.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        spend: dict[str, float] = {}
        if abusers and prespent:
            # Steady state: the abusers' allowed runs are already spent, so what follows is
            # only their over-quota traffic (the window lasts 60 s, longer than the test).
            t0 = time.monotonic()
            firsts = await asyncio.gather(*(_spend(client, t) for t in abusive))
            spent_at = time.monotonic()
            spend = {
                "spend_s": round(spent_at - t0, 1),
                # A user's window renews 60 s after its first spent run: if that falls
                # inside the phase, the user gets runs again in it.
                "renewals_due_in_phase": sum(f + 60 < spent_at + seconds for f in firsts),
            }
        jobs = [
            _user(client, t, PRO_RPM / 2, seconds, offset=i * 60 / (PRO_RPM / 2) / USERS)
            for i, t in enumerate(normal)
        ]
        if abusers:
            jobs += [
                _user(client, t, FREE_RPM * 10, seconds, offset=i * 0.15)
                for i, t in enumerate(abusive)
            ]
        results = await asyncio.gather(*jobs)
    normal_res = [r for user in results[:USERS] for r in user]
    abuse_res = [r for user in results[USERS:] for r in user]
    lat = sorted(t for c, t in normal_res if c == 200)
    out: dict[str, Any] = {
        "normal_runs": len(normal_res),
        "normal_rejected": sum(c != 200 for c, _ in normal_res),
        "normal_p50_s": round(statistics.median(lat), 3),
        "normal_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3),
        "normal_mean_s": round(statistics.fmean(lat), 3),
        "_latencies": lat,
    }
    out.update(spend)
    if abusers:
        per_user_ok = [sum(c == 200 for c, _ in user) for user in results[USERS:]]
        rejected = [t for c, t in abuse_res if c == 429]
        out.update(
            abuser_requests=len(abuse_res),
            abuser_admitted=sum(per_user_ok),
            abuser_admitted_max_per_user=max(per_user_ok),
            abuser_429=len(rejected),
            abuser_other=sum(c not in (200, 429) for c, _ in abuse_res),
            abuser_429_p50_ms=round(statistics.median(rejected) * 1000, 1) if rejected else None,
        )
    return out


async def _check_cost(storage_url: str, n: int = 2000) -> float:
    """Mean seconds of one run's quota work (admit + release) on ``storage_url``."""
    q = Quotas(
        QuotaSettings(
            storage_url=storage_url,
            key_prefix=f"bench{uuid.uuid4().hex[:6]}",
            free={"runs_per_minute": 10**6, "concurrent_runs": 10**6},
        )
    )
    who = Identity("bench", "bench")
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            await q.start_run(who)
            await q.finish_run(who, 10)
        return (time.perf_counter() - t0) / n
    finally:
        await q.close()


@dataclass
class Served:
    """The model and API processes of ``served``, on database ``db`` of ``server_url``."""

    base_url: str
    api: subprocess.Popen[bytes]
    server_url: str
    db: str


@contextmanager
def served(
    server_url: str | None, env: dict[str, str], script: Path = Path(__file__)
) -> Iterator[Served]:
    """The scripted model and Keel's API, each in its own process (``script``'s ``llm`` and
    ``api`` modes), on a fresh database of ``server_url`` (an embedded Postgres when None), with
    ``env`` over the test config; stopped, and the database dropped, on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    pg: EmbeddedPostgres | None = None
    if not server_url:
        pg = EmbeddedPostgres(Path("/tmp") / f"keel-bench-pg-{uuid.uuid4().hex[:6]}")
        pg.start()
        server_url = pg.url
    db = f"keel_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        llm_port, api_port = free_port(), free_port()
        full_env = {
            **os.environ,
            "KEEL_ENV": "test",
            "KEEL_DATABASE__URL": server_url.rsplit("/", 1)[0] + f"/{db}",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "OPENAI_API_KEY": "bench",
            "KEEL_LOG__LEVEL": "WARNING",
            **env,
        }
        me = [sys.executable, str(script)]
        procs.append(subprocess.Popen([*me, "llm", "--port", str(llm_port)], env=full_env))
        procs.append(subprocess.Popen([*me, "api", "--port", str(api_port)], env=full_env))
        _wait_http(f"http://127.0.0.1:{llm_port}/health")
        _wait_http(f"http://127.0.0.1:{api_port}/healthz")
        yield Served(f"http://127.0.0.1:{api_port}", procs[1], server_url, db)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if pg is not None:
            pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "llm", "api"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of phases")
    parser.add_argument("--redis", action="store_true", help="quota storage in Redis")
    parser.add_argument("--database-url", default=os.environ.get("KEEL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if args.mode == "llm":
        _serve_llm(args.port)
        return 0
    if args.mode == "api":
        _serve_api(args.port)
        return 0

    env = {
        "KEEL_QUOTAS__STORAGE_URL": "redis://127.0.0.1:6379/14" if args.redis else "memory://",
        "KEEL_QUOTAS__KEY_PREFIX": f"bench{uuid.uuid4().hex[:6]}",
        "KEEL_QUOTAS__FREE__RUNS_PER_MINUTE": str(FREE_RPM),
        "KEEL_QUOTAS__FREE__POLICY": "reject",
        "KEEL_QUOTAS__PRO__RUNS_PER_MINUTE": str(PRO_RPM),
        "KEEL_QUOTAS__PRO__POLICY": "reject",
        # The shipped tier shapes (config/dev.yaml, prod.yaml): one run at a time per
        # free user, nothing queued, and free runs on at most a quarter of the slots.
        "KEEL_QUOTAS__MAX_ACTIVE_RUNS": "16",
        "KEEL_QUOTAS__FREE__CONCURRENT_RUNS": "1",
        "KEEL_QUOTAS__FREE__MAX_QUEUED": "0",
        "KEEL_QUOTAS__FREE__MAX_ACTIVE_SHARE": os.environ.get("BENCH_FREE_SHARE", "0.125"),
    }
    with served(args.database_url, env) as stack:
        base = stack.base_url
        asyncio.run(_scenario(base, 8, abusers=False))  # warm-up
        # Rounds interleave the three phases (order rotated each round) so that drift in the
        # shared machine's load falls on all of them alike; the figures are per-round ratios.
        phases = {
            "alone": lambda: _scenario(base, args.seconds, abusers=False),
            "over_quota": lambda: _scenario(base, args.seconds, abusers=True, prespent=True),
            "fresh": lambda: _scenario(base, args.seconds, abusers=True),
        }
        names = list(phases)
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = names[r % 3 :] + names[: r % 3]
            rounds.append({name: asyncio.run(phases[name]()) for name in order})
        pooled = {n: sorted(t for x in rounds for t in x[n].pop("_latencies")) for n in names}
        p95 = {n: v[int(0.95 * (len(v) - 1))] for n, v in pooled.items()}
        ratios_over = [x["over_quota"]["normal_p95_s"] / x["alone"]["normal_p95_s"] for x in rounds]
        ratios_fresh = [x["fresh"]["normal_p95_s"] / x["alone"]["normal_p95_s"] for x in rounds]
        alone_mean = statistics.fmean(x["alone"]["normal_mean_s"] for x in rounds)
        cost_mem = asyncio.run(_check_cost("memory://"))
        cost_redis = asyncio.run(_check_cost("redis://127.0.0.1:6379/14"))
        report = {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "storage": "redis" if args.redis else "memory",
            "per_round": rounds,
            "normal_rejected_total": sum(x[n]["normal_rejected"] for x in rounds for n in names),
            "abuser_other_than_200_or_429": sum(
                x[n]["abuser_other"] for x in rounds for n in ("over_quota", "fresh")
            ),
            "abuser_admitted_max_per_user": max(
                x[n]["abuser_admitted_max_per_user"]
                for x in rounds
                for n in ("over_quota", "fresh")
            ),
            "p95_ratio_over_quota_per_round": [round(v, 3) for v in ratios_over],
            "p95_ratio_incl_allowed_runs_per_round": [round(v, 3) for v in ratios_fresh],
            "p95_ratio_over_quota_median": round(statistics.median(ratios_over), 3),
            "normal_p95_pooled_s": {n: round(v, 3) for n, v in p95.items()},
            "p95_ratio_over_quota_pooled": round(p95["over_quota"] / p95["alone"], 3),
            "p95_ratio_incl_allowed_runs_pooled": round(p95["fresh"] / p95["alone"], 3),
            "p95_ratio_incl_allowed_runs_median": round(statistics.median(ratios_fresh), 3),
            "abuser_admitted_bound_per_user": FREE_RPM * -(-int(args.seconds) // 60),
            "quota_check_us_memory": round(cost_mem * 1e6, 1),
            "quota_check_us_redis": round(cost_redis * 1e6, 1),
            "quota_check_share_of_mean_run_memory_pct": round(100 * cost_mem / alone_mean, 4),
            "quota_check_share_of_mean_run_redis_pct": round(100 * cost_redis / alone_mean, 4),
        }
        print(json.dumps(report, indent=2))
        return 0


if __name__ == "__main__":
    sys.exit(main())
