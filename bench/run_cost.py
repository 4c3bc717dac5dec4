"""What one run costs the API process and Postgres: CPU ms and commits per run.

Starts the scripted model and Keel's API (each in its own process, ``bench/quota_load.py``'s
``served``) on a fresh database of a Postgres server, runs ``--runs`` runs of the default one-step
plan with ``--concurrency`` in flight, and reads the API process's CPU time from /proc and the
database's commits and rows from ``pg_stat_database`` before and after.

    .venv/bin/python bench/run_cost.py [--runs 120] [--concurrency 4] [--root CHECKOUT]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

``--root`` measures another checkout's code (e.g. a ``git worktree`` of an older commit, with
this checkout's venv) for an A/B comparison; run the two alternately on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.quota_load import _new_thread, _run, served  # noqa: E402
from core.identity import issue_token  # noqa: E402
from core.settings import AuthSettings  # noqa: E402


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _db_stats(server_url: str, db: str) -> tuple[int, int, int]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit, tup_inserted, tup_updated FROM pg_stat_database"
            " WHERE datname = %s",
            (db,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def _drive(base_url: str, runs: int, concurrency: int) -> None:
    token = issue_token(AuthSettings(), user="cost", tenant="bench", scopes=[], tier="pro")
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def worker(n: int) -> None:
            for _ in range(n):
                code, _ = await _run(client, token, await _new_thread(client, token))
                assert code == 200, code

        await asyncio.gather(*(worker(runs // concurrency) for _ in range(concurrency)))


def main() -> int:
    """Measure and print one line of figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=120)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout whose API is measured")
    p.add_argument(
        "--database-url",
        default=os.environ.get(
            "KEEL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    a = p.parse_args()
    env = {
        "KEEL_QUOTAS__PRO__RUNS_PER_MINUTE": "100000",
        "KEEL_QUOTAS__PRO__CONCURRENT_RUNS": "1000",
        "KEEL_QUOTAS__MAX_ACTIVE_RUNS": "1000",
    }
    with served(a.database_url, env, script=a.root / "bench" / "quota_load.py") as stack:
        asyncio.run(_drive(stack.base_url, 8, 1))  # warm: pools, model client, prepared tables
        time.sleep(1)
        s0 = _db_stats(stack.server_url, stack.db)
        c0, t0 = _cpu_s(stack.api.pid), time.perf_counter()
        asyncio.run(_drive(stack.base_url, a.runs, a.concurrency))
        took, cpu = time.perf_counter() - t0, _cpu_s(stack.api.pid) - c0
        time.sleep(1)
        s1 = _db_stats(stack.server_url, stack.db)
    n = a.runs // a.concurrency * a.concurrency
    commits, inserted, updated = ((y - x) / n for x, y in zip(s0, s1, strict=True))
    print(
        f"root={a.root} runs={n} in_flight={a.concurrency} wall={took:.1f}s"
        f" api_cpu_per_run={cpu / n * 1000:.1f}ms commits_per_run={commits:.1f}"
        f" rows_inserted_per_run={inserted:.1f} rows_updated_per_run={updated:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
