"""The run store: the ``threads`` and ``runs`` tables and who owns them (practice 3's records).

A thread is the caller's when its tenant and user are the caller's, and a run is the caller's
when its thread is. That filter is written once, in ``_OWN_THREADS``: every read made on a
caller's behalf selects from it, so another tenant's or user's thread or run is ``NotFound``
(404), never its data.

The executor's statements on ``runs`` live here too: recording a run under the
double-texting policy, claiming it under a lease, renewing the leases, taking over runs whose
lease lapsed (their process died), and the final status when a run's last events could not be
written. One write stays outside on
purpose: ``EventLog.append`` (runs/event_log.py) closes a run in the same statement as the
batch holding its ``run_finished``, a measured saving of one round trip and one commit per
run, which also lets whoever sees the event see the run's final status. Retention
(runs/retention.py) deletes old threads with their runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.errors import Conflict, LimitReached, NotFound
from core.identity import Identity
from core.quotas import THREADS
from core.settings import Settings

# The caller's threads: the one place the ownership filter is written.
_OWN_THREADS = "SELECT * FROM threads WHERE tenant = %(tenant)s AND user_id = %(user_id)s"
_THREAD_COLUMNS = "t.thread_id, t.title, t.created_at, t.updated_at, t.metadata"
# What a run's record says of it, for the caller (``runs.started_at`` is its creation).
_RUN_COLUMNS = (
    "r.run_id, r.thread_id, r.trace_id, r.agent, r.agent_variant, r.status,"
    " r.started_at AS created_at, coalesce(r.finished_at, r.heartbeat_at) AS updated_at"
)
# Whether run ``r`` was resumed by a run that may have applied the decision: one that ended
# before starting (cancelled while queued, failed, timed out) leaves the graph interrupted, and
# the held call is still found in its checkpoint, so the caller may decide again.
_DECIDED = (
    "(r.resumed_by IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs x"
    " WHERE x.run_id = r.resumed_by AND x.status IN ('cancelled', 'error', 'timeout')))"
)
# The newest unfinished run (queued or running) of a thread. A run whose owner died counts:
# a replica's sweep resumes it or, its attempts used up, closes it, within a lease or so.
_ACTIVE = """
  SELECT run_id FROM runs WHERE thread_id = %(thread_id)s AND status IN ('queued', 'running')
  ORDER BY started_at DESC LIMIT 1
"""
# A run is recorded, unless the double-texting policy rejects it because the thread has a live
# run (returned as busy); also returned: the thread's previous run if it answered within the
# follow-up window (a new message that soon says the answer did not resolve the question).
_RECORD = f"""
WITH busy AS ({_ACTIVE}), answered AS (
  SELECT run_id FROM runs WHERE thread_id = %(thread_id)s AND status = 'success'
    AND finished_at > now() - make_interval(secs => %(window_s)s)
  ORDER BY finished_at DESC LIMIT 1
), recorded AS (
  INSERT INTO runs (run_id, thread_id, trace_id, agent, agent_variant, tier, status, resumes,
    owner, lease_expires_at, request)
  SELECT %(run_id)s, %(thread_id)s, %(trace_id)s, %(agent)s, %(variant)s, %(tier)s, 'queued',
    %(resumes)s, %(owner)s, now() + make_interval(secs => %(lease_s)s), %(request)s
  WHERE NOT (%(reject)s AND EXISTS (SELECT 1 FROM busy))
)
SELECT (SELECT run_id FROM busy) AS busy, (SELECT run_id FROM answered) AS answered
"""
# A run starts: unless another run still writes to the thread, take it (owner, lease, one
# more attempt) and mark it running; either way read the thread's last seq. A running run
# whose owner died still counts: it is resumed, or closed, by a sweep soon.
_CLAIM = """
WITH busy AS (
  SELECT NOT %(force)s AND EXISTS (
    SELECT 1 FROM runs WHERE thread_id = %(thread_id)s AND status = 'running'
      AND run_id <> %(run_id)s
  ) AS b
), claimed AS (
  UPDATE runs SET status = 'running', owner = %(owner)s, attempts = attempts + 1,
    heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => %(lease_s)s)
  WHERE run_id = %(run_id)s AND NOT (SELECT b FROM busy)
)
SELECT (SELECT b FROM busy) AS busy,
  (SELECT coalesce(max(seq), 0) FROM events WHERE thread_id = %(thread_id)s) AS seq
"""
# Runs whose lease lapsed are taken by the caller, a few at a time; two replicas sweeping at
# once take disjoint rows (SKIP LOCKED, and the lapse is checked again on the locked row). The
# caller's own runs are left out: it is alive, and renews their leases once it can.
_TAKE_OVER = """
UPDATE runs r SET owner = %(owner)s, attempts = r.attempts + 1, heartbeat_at = now(),
  lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE r.status IN ('queued', 'running') AND r.lease_expires_at < now() AND r.run_id IN (
  SELECT run_id FROM runs WHERE status IN ('queued', 'running') AND lease_expires_at < now()
    AND owner IS DISTINCT FROM %(owner)s
  ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING r.run_id, r.thread_id, r.trace_id, r.agent, r.agent_variant, r.status, r.attempts,
  r.request, extract(epoch FROM now() - r.started_at) * 1000 AS age_ms,
  (SELECT coalesce(max(seq), 0) FROM events e WHERE e.thread_id = r.thread_id) AS seq,
  EXISTS (SELECT 1 FROM events e WHERE e.thread_id = r.thread_id AND e.run_id = r.run_id
    AND e.type = 'run_started') AS started
"""


# Record a configuration of an agent (the next version number unless already known), then
# list the agent's versions; a concurrent insert of the same number is skipped (the caller
# retries, and finds its configuration numbered by the other or numbers it next).
_ASSISTANT_VERSIONS = """
WITH ins AS (
  INSERT INTO assistant_versions (agent, version, config_hash, config)
  SELECT %(agent)s, coalesce(max(version), 0) + 1, %(hash)s, %(config)s
    FROM assistant_versions WHERE agent = %(agent)s
  ON CONFLICT DO NOTHING
  RETURNING version, config_hash, config, created_at
)
SELECT version, config_hash, config, created_at FROM ins
UNION ALL
SELECT version, config_hash, config, created_at FROM assistant_versions WHERE agent = %(agent)s
ORDER BY version DESC
"""


def _owner(identity: Identity) -> dict[str, Any]:
    return {"tenant": identity.tenant, "user_id": identity.user_id}


class RunStore:
    """The ``threads`` and ``runs`` tables: the caller's view of them and the executor's writes."""

    def __init__(self, pool: AsyncConnectionPool[Any], settings: Settings) -> None:
        """Use the app's pool; staleness and the follow-up window come from ``settings``."""
        self.pool = pool
        self.settings = settings

    async def _one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            row: dict[str, Any] | None = await cur.fetchone()
        return row

    async def _found(self, sql: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        """The one row ``sql`` returns, or ``NotFound`` naming ``what``."""
        row = await self._one(sql, params)
        if row is None:
            raise NotFound(f"{what} not found")
        return row

    async def _all(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            rows: list[dict[str, Any]] = await cur.fetchall()
        return rows

    # The caller's threads and runs.

    async def thread(self, identity: Identity, thread_id: str) -> dict[str, Any]:
        """The caller's thread (id, title, created_at).

        Raises:
            NotFound: no such thread of the caller's (another tenant's or user's included).
        """
        return await self._found(
            f"SELECT {_THREAD_COLUMNS} FROM ({_OWN_THREADS}) t WHERE t.thread_id = %(thread_id)s",
            {**_owner(identity), "thread_id": thread_id},
            f"thread {thread_id}",
        )

    async def name_thread(self, thread_id: str, question: str) -> None:
        """Title an untitled thread after its first question (first line, at most 80 chars)."""
        line = " ".join(question.split())
        title = line if len(line) <= 80 else line[:79].rstrip() + "…"
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE threads SET title = %(title)s"
                " WHERE thread_id = %(thread_id)s AND title IS NULL",
                {"thread_id": thread_id, "title": title},
            )

    async def threads(self, identity: Identity, limit: int) -> list[dict[str, Any]]:
        """The caller's newest ``limit`` threads, newest first."""
        return await self._all(
            f"SELECT {_THREAD_COLUMNS} FROM ({_OWN_THREADS}) t"
            " ORDER BY t.created_at DESC LIMIT %(limit)s",
            {**_owner(identity), "limit": limit},
        )

    async def create_thread(
        self,
        identity: Identity,
        thread_id: str,
        cap: int,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a thread owned by the caller, unless the caller keeps ``cap`` already.

        Raises:
            LimitReached: the caller keeps ``cap`` threads (the count and the insert are one
                statement).
            Conflict: ``thread_id`` is taken (by anyone: whose is not told).
        """
        try:
            row = await self._one(
                "INSERT INTO threads (thread_id, tenant, user_id, metadata)"
                " SELECT %(thread_id)s, %(tenant)s, %(user_id)s, %(metadata)s"
                f" WHERE (SELECT count(*) FROM ({_OWN_THREADS}) t) < %(cap)s"
                " RETURNING thread_id, title, created_at, updated_at, metadata",
                {
                    **_owner(identity),
                    "thread_id": thread_id,
                    "cap": cap,
                    "metadata": Jsonb(metadata or {}),
                },
            )
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"thread {thread_id} already exists") from None
        if row is None:
            raise LimitReached(
                f"the {identity.tier} tier keeps at most {cap} threads; delete some first",
                limit=THREADS,
            )
        return row

    async def run(self, identity: Identity, run_id: str) -> dict[str, Any]:
        """The caller's run: run_id, thread_id, trace_id, agent, agent_variant, status, times.

        Raises:
            NotFound: no such run of the caller's (another tenant's or user's included).
        """
        return await self._own_run(identity, run_id, _RUN_COLUMNS)

    async def _own_run(self, identity: Identity, run_id: str, columns: str) -> dict[str, Any]:
        """``columns`` (of ``runs r``) of the caller's run ``run_id``; NotFound if not theirs."""
        return await self._found(
            f"SELECT {columns} FROM runs r JOIN ({_OWN_THREADS}) t USING (thread_id)"
            " WHERE r.run_id = %(run_id)s",
            {**_owner(identity), "run_id": run_id},
            f"run {run_id}",
        )

    async def search_threads(
        self,
        identity: Identity,
        *,
        metadata: dict[str, Any],
        ids: list[str] | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        """The caller's threads whose metadata contains ``metadata`` (and among ``ids``)."""
        return await self._all(
            f"SELECT {_THREAD_COLUMNS} FROM ({_OWN_THREADS}) t"
            " WHERE t.metadata @> %(metadata)s"
            " AND (%(ids)s::text[] IS NULL OR t.thread_id = ANY(%(ids)s::text[]))"
            " ORDER BY t.created_at DESC LIMIT %(limit)s OFFSET %(offset)s",
            {
                **_owner(identity),
                "metadata": Jsonb(metadata),
                "ids": ids,
                "limit": limit,
                "offset": offset,
            },
        )

    async def update_thread(
        self, identity: Identity, thread_id: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``metadata`` into the caller's thread's metadata.

        Raises:
            NotFound: no such thread of the caller's.
        """
        return await self._found(
            "UPDATE threads t SET metadata = t.metadata || %(metadata)s, updated_at = now()"
            f" FROM ({_OWN_THREADS}) o WHERE t.thread_id = o.thread_id"
            f" AND t.thread_id = %(thread_id)s RETURNING {_THREAD_COLUMNS}",
            {**_owner(identity), "thread_id": thread_id, "metadata": Jsonb(metadata)},
            f"thread {thread_id}",
        )

    async def delete_thread(self, identity: Identity, thread_id: str) -> None:
        """Delete the caller's thread with its runs and events (checkpoints are the caller's).

        Raises:
            NotFound: no such thread of the caller's.
        """
        await self._found(
            f"DELETE FROM threads t USING ({_OWN_THREADS}) o WHERE t.thread_id = o.thread_id"
            " AND t.thread_id = %(thread_id)s RETURNING t.thread_id",
            {**_owner(identity), "thread_id": thread_id},
            f"thread {thread_id}",
        )

    async def thread_runs(
        self, identity: Identity, thread_id: str, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """The runs of the caller's thread, newest first (empty for anyone else's thread)."""
        return await self._all(
            f"SELECT {_RUN_COLUMNS} FROM runs r JOIN ({_OWN_THREADS}) t USING (thread_id)"
            " WHERE r.thread_id = %(thread_id)s"
            " ORDER BY r.started_at DESC LIMIT %(limit)s OFFSET %(offset)s",
            {**_owner(identity), "thread_id": thread_id, "limit": limit, "offset": offset},
        )

    async def assistant_versions(self, agent: str, config: dict[str, Any]) -> list[dict[str, Any]]:
        """The versions of ``agent``'s configuration, newest first, ``config`` recorded first.

        ``config`` (the agent's configuration as served) gets the next version number the
        first time it is seen; a configuration seen before keeps its number. Each row:
        version, config, created_at.
        """
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        params = {"agent": agent, "hash": digest, "config": Jsonb(config)}
        for _ in range(3):  # two replicas numbering a new configuration at once: one retries
            rows = await self._all(_ASSISTANT_VERSIONS, params)
            if any(r["config_hash"] == digest for r in rows):
                return rows
        raise Conflict(f"could not number the configuration of agent {agent}")

    async def runs_of_trace(self, identity: Identity, trace_id: str) -> list[dict[str, Any]]:
        """The caller's runs recorded under ``trace_id`` (run_id, thread_id, status), oldest first.

        Raises:
            NotFound: the caller has no run under ``trace_id``.
        """
        rows = await self._all(
            "SELECT r.run_id, r.thread_id, r.status"
            f" FROM runs r JOIN ({_OWN_THREADS}) t USING (thread_id)"
            " WHERE r.trace_id = %(trace_id)s ORDER BY r.started_at",
            {**_owner(identity), "trace_id": trace_id},
        )
        if not rows:
            raise NotFound(f"trace {trace_id} not found")
        return rows

    # Confirmation of a held tool call.

    async def awaiting_confirmation(self, identity: Identity, run_id: str) -> dict[str, Any]:
        """The caller's run ``run_id`` (run_id, thread_id, agent) if it waits for a decision.

        Raises:
            NotFound: no such run of the caller's.
            Conflict: the run is not ``interrupted``, was decided already, or a later run on
                its thread (other than its resume) superseded it.
        """
        row = await self._own_run(
            identity,
            run_id,
            f"r.run_id, r.thread_id, r.agent, r.status, {_DECIDED} AS decided,"
            " EXISTS (SELECT 1 FROM runs l WHERE l.thread_id = r.thread_id"
            "  AND l.started_at > r.started_at AND l.resumes IS DISTINCT FROM r.run_id)"
            " AS superseded",
        )
        if row["status"] != "interrupted" or row["decided"]:
            raise Conflict(f"run {run_id} is not awaiting confirmation (status {row['status']})")
        if row["superseded"]:
            raise Conflict(f"run {run_id} was superseded by a later run on its thread")
        return row

    async def claim_confirmation(self, run_id: str, resumed_by: str) -> None:
        """Mark the interrupted ``run_id`` as decided by the run ``resumed_by``.

        Raises:
            Conflict: another decision claimed it first.
        """
        row = await self._one(
            "UPDATE runs r SET resumed_by = %(by)s WHERE run_id = %(run_id)s"
            f" AND status = 'interrupted' AND NOT {_DECIDED} RETURNING run_id",
            {"by": resumed_by, "run_id": run_id},
        )
        if row is None:
            raise Conflict(f"run {run_id} was confirmed already")

    async def release_confirmation(self, run_id: str, resumed_by: str) -> None:
        """Undo ``claim_confirmation`` when the resuming run could not start."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET resumed_by = NULL WHERE run_id = %s AND resumed_by = %s",
                (run_id, resumed_by),
            )

    # The executor's writes.

    async def active_run(self, thread_id: str) -> str | None:
        """The newest unfinished run (queued or running, on any replica) of ``thread_id``."""
        row = await self._one(_ACTIVE, {"thread_id": thread_id})
        return row["run_id"] if row else None

    async def record(
        self,
        *,
        identity: Identity,
        run_id: str,
        thread_id: str,
        trace_id: str,
        agent: str,
        variant: str | None,
        resumes: str | None,
        reject: bool,
        owner: str,
        request: dict[str, Any],
    ) -> tuple[str | None, str | None]:
        """Record a run leased to ``owner``; returns the thread's unfinished and answered runs.

        With ``reject``, a thread with an unfinished run records nothing (the caller refuses
        the run). The answered run is the thread's last success within
        ``feedback.follow_up_window_s``. ``request`` is what a replica that takes the run over
        needs to start it again.
        """
        row = await self._one(
            _RECORD,
            {
                "run_id": run_id,
                "thread_id": thread_id,
                "trace_id": trace_id,
                "agent": agent,
                "variant": variant,
                "tier": identity.tier,
                "reject": reject,
                "window_s": self.settings.feedback.follow_up_window_s,
                "resumes": resumes,
                "owner": owner,
                "lease_s": self.settings.runs.stale_after_s,
                "request": Jsonb(request),
            },
        )
        assert row is not None
        return row["busy"], row["answered"]

    async def claim(self, thread_id: str, run_id: str, owner: str, *, force: bool) -> int | None:
        """Take the run for ``owner``, mark it running and return the thread's last seq.

        Without ``force``, another running run on the thread blocks the claim: then nothing
        changes and ``None`` is returned.
        """
        row = await self._one(
            _CLAIM,
            {
                "thread_id": thread_id,
                "run_id": run_id,
                "owner": owner,
                "lease_s": self.settings.runs.stale_after_s,
                "force": force,
            },
        )
        assert row is not None
        return None if row["busy"] else int(row["seq"])

    async def heartbeat(self, run_ids: list[str], owner: str) -> set[str]:
        """Renew ``owner``'s leases on ``run_ids``; returns those it still holds.

        A run missing from the answer was taken over by another replica after its lease
        lapsed (this process stalled or lost the database for a whole lease).
        """
        rows = await self._all(
            "UPDATE runs SET heartbeat_at = now(),"
            " lease_expires_at = now() + make_interval(secs => %(lease_s)s)"
            " WHERE run_id = ANY(%(ids)s) AND owner = %(owner)s RETURNING run_id",
            {"ids": run_ids, "owner": owner, "lease_s": self.settings.runs.stale_after_s},
        )
        return {r["run_id"] for r in rows}

    async def take_over(self, owner: str, limit: int = 20) -> list[dict[str, Any]]:
        """Take up to ``limit`` unfinished runs whose lease lapsed (their owner died).

        Each row: run_id, thread_id, trace_id, agent, agent_variant, status, attempts (this
        take-over included), request, age_ms (since the run started), seq (the thread's last)
        and started (whether the run's ``run_started`` is in the log).
        """
        return await self._all(
            _TAKE_OVER,
            {"owner": owner, "lease_s": self.settings.runs.stale_after_s, "limit": limit},
        )

    async def finish(self, run_id: str, status: str, usage: dict[str, int]) -> None:
        """Close the run's row when its events (and so ``run_finished``) could not be written."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET status = %s, finished_at = now(), usage = %s WHERE run_id = %s",
                (status, Jsonb(usage), run_id),
            )
