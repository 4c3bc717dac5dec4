"""The tool audit trail (practice 1): one append-only row per tool call, allowed or denied.

Each row says who (tenant, user) called which tool and version, with which arguments, under
which trace_id, whether the gateway allowed it (``denied``: invalid arguments, a missing
permission, an exhausted quota or an open circuit — the server was not called) and how it
ended (``ok`` or the error code). A call that needs confirmation (``tools.confirm``) adds a
``held`` row when it is offered, then an ``approved`` or ``rejected`` row naming who decided,
when, the ``confirmation_id`` and their comment. Arguments are redacted before they are
stored: values of keys that look like secrets are replaced and long strings are cut, so code
and documents do not pile up in the audit table. A trigger refuses UPDATE and DELETE on the table.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

_SECRET = re.compile(r"pass(word)?|secret|token|api_?key|authorization|credential", re.I)
_MAX_CHARS = 200


def redact(value: Any, key: str = "") -> Any:
    """``value`` with secret-looking keys replaced and long strings cut."""
    if key and _SECRET.search(key):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value[:50]]
    if isinstance(value, str) and len(value) > _MAX_CHARS:
        return value[:_MAX_CHARS] + f"… [{len(value)} chars]"
    return value


class ToolAudit:
    """Writes ``tool_audit`` rows on the app's pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        """Use ``pool``."""
        self.pool = pool

    async def record(
        self,
        *,
        trace_id: str,
        tenant: str,
        user_id: str,
        tool: str,
        version: str,
        args: dict[str, Any],
        decision: str,
        outcome: str,
        confirmation_id: str | None = None,
        comment: str | None = None,
    ) -> None:
        """Append one row; a failed write is logged and never fails the call."""
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO tool_audit"
                    " (trace_id, tenant, user_id, tool, version, args, decision, outcome,"
                    " confirmation_id, comment) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        trace_id,
                        tenant,
                        user_id,
                        tool,
                        version,
                        Jsonb(redact(args)),
                        decision,
                        outcome,
                        confirmation_id,
                        comment,
                    ),
                )
        except Exception:
            log.exception("could not write the tool audit row", extra={"keel": {"tool": tool}})
