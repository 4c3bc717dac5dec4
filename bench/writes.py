"""What a run writes to Postgres per graph step, against one raw commit (suite figure).

    .venv/bin/python -m bench.writes [--runs 20] [--database-url URL]

Runs the research graph through Keel's own ``RunExecutor`` in this process (scripted model,
no HTTP) with its Postgres checkpointer and event log wrapped in timers, so the writes are the
product's real ones (``aput_writes`` and ``aput`` per step, the event-log batches as the
executor's writer forms them). Each run's writes are then re-issued alone on a copy thread and
timed, interleaved with ``INSERT`` of one small row + commit on the same pool.
Per step = (checkpoint + event-log time of a run) / the run's steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from core.db import migrate, open_pool
from core.events import Event, RunFinished
from core.identity import Identity
from core.settings import Settings
from graphs.graph import build_graph
from runs.event_log import Broker, EventLog
from runs.executor import RunExecutor


class RecordingSaver(AsyncPostgresSaver):
    """The Postgres checkpointer, keeping each write's arguments to re-issue them alone."""

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]

    async def aput(self, *args: Any, **kw: Any) -> Any:
        self.calls.append(("aput", args, kw))
        return await super().aput(*args, **kw)

    async def aput_writes(self, *args: Any, **kw: Any) -> None:
        self.calls.append(("aput_writes", args, kw))
        await super().aput_writes(*args, **kw)


class RecordingLog(EventLog):
    """The event log, keeping each batch as the executor's writer formed it."""

    batches: list[list[Event]]

    async def append(self, events: Sequence[Event]) -> None:
        self.batches.append(list(events))
        await super().append(events)


class LegacyLog(EventLog):
    """The event-log append before issue 12, kept to show the optimisation's before and after.

    A transaction of executemany + UPDATE + NOTIFY, bodies as Jsonb of ``model_dump``.
    """

    async def append(self, events: Sequence[Event]) -> None:
        from psycopg.types.json import Jsonb

        last = events[-1]
        note = json.dumps({"i": self.instance, "t": last.thread_id, "s": last.seq})
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO events (thread_id, seq, run_id, type, ts, body)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (e.thread_id, e.seq, e.run_id, e.type, e.ts, Jsonb(e.model_dump(mode="json")))
                    for e in events
                ],
            )
            for e in events:
                if isinstance(e, RunFinished):
                    await cur.execute(
                        "UPDATE runs SET status = %s, finished_at = now(), usage = %s"
                        " WHERE run_id = %s",
                        (e.data.status, Jsonb(e.data.usage.model_dump()), e.run_id),
                    )
            await cur.execute("SELECT pg_notify(%s, %s)", ("keel_events", note))


def _on_thread(config: Any, thread_id: str) -> Any:
    return {**config, "configurable": {**config["configurable"], "thread_id": thread_id}}


async def _reissue_checkpoints(
    saver: RecordingSaver, target: AsyncPostgresSaver, thread_id: str
) -> float:
    """Re-issue a run's checkpoint writes on a new thread, one at a time; total seconds.

    During a run they overlap with the graph's own work (checkpoints are written in the
    background), so timing them there would count the event loop's other work; alone, each
    costs what Postgres and the driver cost.
    """
    spent = 0.0
    for name, args, kw in saver.calls:
        t0 = time.perf_counter()
        await getattr(AsyncPostgresSaver, name)(
            target, _on_thread(args[0], thread_id), *args[1:], **kw
        )
        spent += time.perf_counter() - t0
    return spent


async def _reissue_events(
    batches: list[list[Event]], thread_id: str, writer: EventLog, append: Any
) -> float:
    """Re-issue a run's event batches on a new thread with ``append``; total seconds."""
    spent = 0.0
    for batch in batches:
        moved = [e.model_copy(update={"thread_id": thread_id}) for e in batch]
        t0 = time.perf_counter()
        await append(writer, moved)
        spent += time.perf_counter() - t0
    return spent


async def measure(db_url: str, model_url: str, runs: int) -> dict[str, Any]:
    """Medians over ``runs`` runs, each followed by ``raw`` commits."""
    pool = await open_pool(db_url, 1, 4)
    # The product's two commit modes for checkpoints (database.checkpoint_commit).
    async_pool = await open_pool(db_url, 1, 4, synchronous_commit=False)
    settings = Settings(
        env="test",
        data_dir=Path(tempfile.gettempdir()),
        database={"url": db_url},
        llm={"provider": "openai", "base_url": model_url, "model": "fake", "api_key": "x"},
        memory={"session": {"enabled": False}},
    )
    try:
        async with pool.connection() as conn:
            await migrate(conn)
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial, v text)")
        targets = {"sync": AsyncPostgresSaver(pool), "async": AsyncPostgresSaver(async_pool)}
        saver = RecordingSaver(pool)
        # LangGraph may use a shallow copy of the saver (serde allow-lists): share one list.
        saver.calls = []
        await saver.setup()
        log = RecordingLog(pool, "bench")
        log.batches = []
        executor = RunExecutor(settings, build_graph(saver), pool, log, Broker())
        who = Identity("bench", "bench")
        per_step, ckpt_step, log_step, raw, batches, events, steps = [], [], [], [], [], [], []
        legacy_step: list[float] = []
        ckpt_sync: list[float] = []
        ckpt_async: list[float] = []
        for i in range(runs + 1):
            saver.calls.clear()
            log.batches.clear()
            tid, rid = uuid.uuid4().hex, uuid.uuid4().hex
            async with pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO threads (thread_id, tenant, user_id) VALUES (%s, 'b', 'b')",
                    (tid,),
                )
            handle = await executor.start(
                identity=who,
                thread_id=tid,
                run_id=rid,
                trace_id=uuid.uuid4().hex,
                message="What is the answer?",
                agent="research",
            )
            assert handle.task is not None
            await handle.task
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT status FROM runs WHERE run_id = %s", (rid,))
                row = await cur.fetchone()
            if not row or row["status"] != "success":
                raise RuntimeError(f"bench run ended {row and row['status']}; see the log")
            n_steps = sum(1 for c in saver.calls if c[0] == "aput") - 1  # not the input
            copies = [uuid.uuid4().hex for _ in range(2)]
            async with pool.connection() as conn:
                for copy in copies:
                    await conn.execute(
                        "INSERT INTO threads (thread_id, tenant, user_id) VALUES (%s, 'b', 'b')",
                        (copy,),
                    )
            modes = ["sync", "async"] if i % 2 else ["async", "sync"]
            by_mode = {
                m: await _reissue_checkpoints(saver, targets[m], c)
                for m, c in zip(modes, copies, strict=True)
            }
            ckpt = by_mode[settings.database.checkpoint_commit]
            ckpt_sync.append(by_mode["sync"])
            ckpt_async.append(by_mode["async"])
            sides = [("now", EventLog.append), ("legacy", LegacyLog.append)]
            spent = {}
            for (side, append), copy in zip(sides if i % 2 else sides[::-1], copies, strict=True):
                spent[side] = await _reissue_events(log.batches, copy, log, append)
            evlog = spent["now"]
            for _ in range(5):
                async with pool.connection() as conn:
                    t0 = time.perf_counter()
                    await conn.execute(
                        "INSERT INTO bench_raw (v) VALUES (%s)", (json.dumps({"i": i}),)
                    )
                    raw.append(time.perf_counter() - t0)
            if i == 0:  # warm-up
                raw.clear()
                ckpt_sync.clear()
                ckpt_async.clear()
                continue
            steps.append(n_steps)
            ckpt_step.append(ckpt / n_steps)
            log_step.append(evlog / n_steps)
            legacy_step.append(spent["legacy"] / n_steps)
            per_step.append((ckpt + evlog) / n_steps)
            batches.append(len(log.batches))
            events.append(sum(len(b) for b in log.batches))
        med = statistics.median
        return {
            "per_step": med(per_step),
            "raw_commit": med(raw),
            "n": runs,
            "checkpoint_per_step": med(ckpt_step),
            "event_log_per_step": med(log_step),
            "event_log_per_step_before": med(legacy_step),
            "checkpoint_commit": settings.database.checkpoint_commit,
            "checkpoint_per_step_sync_commit": med(ckpt_sync) / med(steps),
            "checkpoint_per_step_async_commit": med(ckpt_async) / med(steps),
            "steps_per_run": med(steps),
            "event_batches_per_run": med(batches),
            "events_per_run": med(events),
        }
    finally:
        await async_pool.close()
        await pool.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--database-url", default="")
    a = p.parse_args()
    from bench.servers import start_model

    model = start_model(10.0, 0.0, 3, 5)
    pg = None
    try:
        model.wait()
        url = a.database_url
        if not url:
            from core.db import EmbeddedPostgres

            tmp = tempfile.TemporaryDirectory(prefix="keel-bench-")
            pg = EmbeddedPostgres(Path(tmp.name) / "pg")
            pg.start()
            url = pg.url
        res = asyncio.run(measure(url, model.url, a.runs))
        res["ratio"] = res["per_step"] / res["raw_commit"]
        print(json.dumps(res))
    finally:
        model.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
