"""Human in the loop (confirmation): a held tool call waits here for the caller's decision.

The researcher's tool pipeline has already told the UI (``confirmation_required``,
``awaiting_confirmation``) and put the call in ``pending``; this node only calls LangGraph's
``interrupt``, so the checkpoint keeps the call and the run ends ``interrupted``.
``POST /v1/runs/{run_id}/confirm`` resumes the thread with
``Command(resume={"approve", "comment", "confirmation_id"})``; the node runs again, gets the
decision back from ``interrupt`` and hands it to the researcher. It emits nothing, since a
resumed node runs from its start.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graphs.context import RunContext
from graphs.state import State

NODE = "confirm"


async def confirm(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Pause until the caller approves or rejects the held call."""
    pending = dict(state.get("pending") or {})
    shown = {k: v for k, v in pending.get("args", {}).items() if k != "idempotency_key"}
    answer = interrupt(
        {
            "confirmation_id": pending.get("confirmation_id"),
            "tool_name": pending.get("tool_name"),
            "version": pending.get("version"),
            "args": shown,
        }
    )
    decision = answer if isinstance(answer, dict) else {}
    if decision.get("confirmation_id") not in (None, pending.get("confirmation_id")):
        decision = {"approve": False, "comment": "the confirmation was for another call"}
    return {
        "pending": {
            **pending,
            "decision": {
                "approve": decision.get("approve") is True,
                "comment": decision.get("comment"),
            },
        }
    }
