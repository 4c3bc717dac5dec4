"""The feedback loop (practice 17): explicit ratings, implicit signals, summaries, routing.

- **Stored with their context.** ``POST /v1/feedback`` keeps one rating per user per run (a
  second replaces the first) and ``POST /v1/signals`` appends implicit signals. Both copy the
  run's trace_id, thread, user, tenant, agent, agent variant, model and the versions of the
  tools the run called (from its ``tool_call`` events), so a row explains itself without joins.
- **Derived on the server.** A new run in a thread that starts within
  ``feedback.follow_up_window_s`` (60 s) of the previous run's end records ``not_resolved`` on
  that previous run; a ``regenerate`` signal counts against its run like a thumbs down.
- **Summarised.** ``summary`` gives satisfaction (thumbs up ÷ ratings) with a 95 % Wilson
  interval, and signal counts, by agent variant, model, tool version and day, per tenant.
- **Used.** When an agent configures several ``variants`` and ``routing.policy: thompson``,
  ``VariantRouter`` picks one per run by Thompson sampling on a Beta(1 + good, 1 + bad)
  posterior per variant and tier (good: thumbs up; bad: thumbs down, regenerate,
  not_resolved), exploring uniformly with probability ``exploration_floor``. It is seeded
  (``routing.seed``) for tests and reports its reason, which ``run_started`` carries.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from core.errors import NotFound
from core.identity import Identity
from core.settings import AgentSettings, Settings
from runs.store import RunStore

Rating = Literal["thumbs_up", "thumbs_down"]
SignalKind = Literal["copy", "follow_up", "dwell_ms", "regenerate", "not_resolved"]
NEGATIVE_SIGNALS = ("regenerate", "not_resolved")
_Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (0, 0 for no observations)."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return (centre - half) / denom, (centre + half) / denom


@dataclass(frozen=True)
class RunContextRow:
    """What a feedback row copies from its run."""

    run_id: str
    thread_id: str
    trace_id: str
    agent: str
    agent_variant: str | None
    tool_versions: dict[str, str]


class FeedbackStore:
    """Feedback and signals in Postgres, always scoped to the caller's tenant.

    The one implementation (embedded and production mode both run Postgres): no protocol.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], settings: Settings, runs: RunStore) -> None:
        """Use the app's pool; the model name comes from ``settings``, runs from ``runs``."""
        self.pool = pool
        self.settings = settings
        self.runs = runs

    async def run_of(self, identity: Identity, run_id: str) -> RunContextRow:
        """The caller's own run ``run_id`` (a run of a thread the caller owns) and its context.

        Raises:
            NotFound: no such run of the caller's (another user's or tenant's run included).
        """
        try:
            row = await self.runs.run(identity, run_id)
        except NotFound:
            raise NotFound(f"no run {run_id}") from None
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT body->'data'->>'tool_name' AS tool,"
                " body->'data'->>'version' AS version FROM events"
                " WHERE thread_id = %s AND run_id = %s AND type = 'tool_call'",
                (row["thread_id"], run_id),
            )
            tools = {r["tool"]: r["version"] for r in await cur.fetchall()}
        return RunContextRow(
            row["run_id"],
            row["thread_id"],
            row["trace_id"],
            row["agent"],
            row["agent_variant"],
            tools,
        )

    def _model(self, run: RunContextRow) -> str:
        agent = self.settings.agents.get(run.agent)
        variant = agent.variants.get(run.agent_variant or "") if agent else None
        return (variant.model if variant and variant.model else None) or self.settings.llm.model

    async def _write(
        self,
        identity: Identity,
        run_id: str,
        table: Literal["feedback", "signals"],
        own: dict[str, Any],
        on_conflict: str = "",
    ) -> RunContextRow:
        """One row about the caller's run in ``table``, then the caller's run and its context.

        The columns feedback and signals share (who, which run, what produced it) come first,
        then the table's ``own``.
        """
        run = await self.run_of(identity, run_id)
        row = {
            "run_id": run.run_id,
            "user_id": identity.user_id,
            "tenant": identity.tenant,
            "thread_id": run.thread_id,
            "trace_id": run.trace_id,
            "agent": run.agent,
            "agent_variant": run.agent_variant,
            "model": self._model(run),
            "tool_versions": Jsonb(run.tool_versions),
            **own,
        }
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {table} ({', '.join(row)})"
                f" VALUES ({', '.join(['%s'] * len(row))}){on_conflict}",
                tuple(row.values()),
            )
        return run

    async def rate(
        self,
        identity: Identity,
        run_id: str,
        rating: Rating,
        reason: str | None,
        comment: str | None,
    ) -> RunContextRow:
        """Store (or replace) the caller's rating of ``run_id``."""
        return await self._write(
            identity,
            run_id,
            "feedback",
            {"rating": rating, "reason": reason, "comment": comment},
            " ON CONFLICT (run_id, user_id) DO UPDATE SET rating = EXCLUDED.rating,"
            " reason = EXCLUDED.reason, comment = EXCLUDED.comment, updated_at = now()",
        )

    async def signal(
        self,
        identity: Identity,
        run_id: str,
        kind: SignalKind,
        value: float | None = None,
        source: Literal["client", "server"] = "client",
    ) -> RunContextRow:
        """Append one implicit signal about ``run_id``."""
        own = {"kind": kind, "value": value, "source": source}
        return await self._write(identity, run_id, "signals", own)

    async def note_follow_up(self, identity: Identity, answered_run_id: str) -> None:
        """Record ``not_resolved`` on the thread's previous run: it ended moments ago.

        The executor finds that run in the statement that records the new one.
        """
        await self.signal(identity, answered_run_id, "not_resolved", source="server")

    async def summary(self, tenant: str, days: int) -> dict[str, list[dict[str, Any]]]:
        """Satisfaction and signal rates of ``tenant``'s last ``days`` days, by dimension."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, key in (
            ("by_variant", "coalesce(agent || ':' || agent_variant, agent)"),
            ("by_model", "model"),
            ("by_day", "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
            ("by_tool_version", "tv.key || '@' || tv.value"),
        ):
            tool_join = ", jsonb_each_text(tool_versions) tv" if name == "by_tool_version" else ""
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT {key} AS k, count(*) AS n,"
                    " count(*) FILTER (WHERE rating = 'thumbs_up') AS up"
                    f" FROM feedback{tool_join} WHERE tenant = %s"
                    " AND created_at > now() - make_interval(days => %s) GROUP BY 1",
                    (tenant, days),
                )
                ratings = {r["k"]: (r["n"], r["up"]) for r in await cur.fetchall()}
                cur = await conn.execute(
                    f"SELECT {key} AS k, kind, count(*) AS n FROM signals{tool_join}"
                    " WHERE tenant = %s AND created_at > now() - make_interval(days => %s)"
                    " GROUP BY 1, 2",
                    (tenant, days),
                )
                signals: dict[str, dict[str, int]] = {}
                for r in await cur.fetchall():
                    signals.setdefault(r["k"], {})[r["kind"]] = r["n"]
            rows = []
            for k in sorted({*ratings, *signals}):
                n, up = ratings.get(k, (0, 0))
                low, high = wilson(up, n)
                rows.append(
                    {
                        "key": k,
                        "ratings": n,
                        "thumbs_up": up,
                        "satisfaction": round(up / n, 4) if n else None,
                        "ci95": [round(low, 4), round(high, 4)] if n else None,
                        "signals": signals.get(k, {}),
                    }
                )
            out[name] = rows
        return out

    async def outcomes(self, agent: str, tier: str) -> dict[str, tuple[int, int]]:
        """(good, bad) per variant of ``agent`` over runs of ``tier``'s users (all tenants).

        Good: a thumbs up. Bad: a thumbs down, a regenerate, a question left ``not_resolved``.
        """
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT r.agent_variant AS v,"
                " count(*) FILTER (WHERE f.rating = 'thumbs_up') AS good,"
                " count(*) FILTER (WHERE f.rating = 'thumbs_down') AS bad"
                " FROM feedback f JOIN runs r USING (run_id)"
                " WHERE r.agent = %s AND r.tier = %s AND r.agent_variant IS NOT NULL"
                " GROUP BY 1",
                (agent, tier),
            )
            out = {r["v"]: (r["good"], r["bad"]) for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT r.agent_variant AS v, count(*) AS bad"
                " FROM signals s JOIN runs r USING (run_id)"
                " WHERE r.agent = %s AND r.tier = %s AND r.agent_variant IS NOT NULL"
                " AND s.kind = ANY(%s) GROUP BY 1",
                (agent, tier, list(NEGATIVE_SIGNALS)),
            )
            for r in await cur.fetchall():
                good, bad = out.get(r["v"], (0, 0))
                out[r["v"]] = (good, bad + r["bad"])
        return out


class VariantRouter:
    """Picks an agent's variant per run: Thompson sampling on feedback, with a floor."""

    def __init__(self, settings: Settings, seed: int | None = None) -> None:
        """Route for ``settings.agents``; ``seed`` makes the choices reproducible."""
        self.settings = settings
        self.rng = random.Random(seed)

    def choose(
        self, agent: AgentSettings, outcomes: dict[str, tuple[int, int]]
    ) -> tuple[str | None, str]:
        """The variant for the next run and why (``None``: the agent has no variants)."""
        names = sorted(agent.variants)
        if not names:
            return None, "no variants"
        routing = agent.routing
        if routing.policy == "fixed" or len(names) == 1:
            chosen = routing.default or names[0]
            return chosen, "fixed"
        if self.rng.random() < routing.exploration_floor:
            return self.rng.choice(names), f"exploration (floor {routing.exploration_floor:g})"
        draws = {}
        for name in names:
            good, bad = outcomes.get(name, (0, 0))
            draws[name] = self.rng.betavariate(1 + good, 1 + bad)
        chosen = max(names, key=lambda n: draws[n])
        shown = ", ".join(
            f"{n}: {outcomes.get(n, (0, 0))[0]}+/{outcomes.get(n, (0, 0))[1]}- draw {draws[n]:.3f}"
            for n in names
        )
        return chosen, f"thompson ({shown})"


def tally(rows: Iterable[tuple[str, bool]]) -> dict[str, tuple[int, int]]:
    """(good, bad) per variant from (variant, liked) observations."""
    out: dict[str, tuple[int, int]] = {}
    for variant, liked in rows:
        good, bad = out.get(variant, (0, 0))
        out[variant] = (good + liked, bad + (not liked))
    return out


async def export_rows(
    pool: AsyncConnectionPool[Any], tenant: str | None = None
) -> list[dict[str, Any]]:
    """Feedback joined with its run's question, answer and tool calls (``keel feedback export``).

    One row per rating, oldest first: ready to be written as JSONL for evaluation or
    fine-tuning datasets.
    """
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT f.*, (SELECT body->'data'->>'message' FROM events e"
            "   WHERE e.thread_id = f.thread_id AND e.run_id = f.run_id"
            "   AND e.type = 'run_started' LIMIT 1) AS question,"
            " (SELECT coalesce(string_agg(body->'data'->>'text', '' ORDER BY seq), '')"
            "   FROM events e WHERE e.thread_id = f.thread_id AND e.run_id = f.run_id"
            "   AND e.type = 'text_delta') AS answer,"
            " (SELECT coalesce(jsonb_agg(jsonb_build_object("
            "     'tool', body->'data'->>'tool_name', 'version', body->'data'->>'version',"
            "     'args', body->'data'->'args') ORDER BY seq), '[]')"
            "   FROM events e WHERE e.thread_id = f.thread_id AND e.run_id = f.run_id"
            "   AND e.type = 'tool_call') AS tool_calls"
            " FROM feedback f WHERE %s::text IS NULL OR f.tenant = %s"
            " ORDER BY f.created_at",
            (tenant, tenant),
        )
        rows = await cur.fetchall()
    return [
        {
            **{k: v for k, v in row.items() if k not in ("created_at", "updated_at")},
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }
        for row in rows
    ]
