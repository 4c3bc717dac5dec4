"""The Agent Protocol's wire shapes, made from Keel's records: runs, threads, states, stream parts.

A protocol stream is a translation of the run's durable event log, so every part that comes
from an event carries that event's ``seq`` as its SSE ``id`` and a ``join_stream`` with
``Last-Event-ID`` resumes exactly where the client stopped:

- ``custom``: every Keel envelope, as is (Keel's typed events);
- ``messages`` (mode ``messages-tuple``): each ``text_delta`` as an ``AIMessageChunk`` with
  the run's answer id, and its metadata (``langgraph_node``, ``run_id``);
- ``error``: a run's ``error`` event, whatever the modes;
- ``values`` and ``updates``: read from the run's checkpoints when its ``run_finished`` is
  reached, before that event's own parts; they carry no ``id`` (they are state, not log).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.types import Interrupt, StateSnapshot
from pydantic import BaseModel

# Assistant ids are derived from the agent's name, so they are stable across restarts and
# replicas without being stored.
_ASSISTANTS = uuid.UUID("6a1b8d52-2f0c-4f4e-9a57-6b2d1f0c7e11")
# Keel's run statuses as the protocol's: a cancelled run is "interrupted" (by the user), and
# a run whose graph paused on a held tool call succeeded (its thread is "interrupted").
RUN_STATUS = {
    "queued": "pending",
    "running": "running",
    "success": "success",
    "error": "error",
    "timeout": "timeout",
    "cancelled": "interrupted",
    "interrupted": "success",
}


def assistant_id(agent: str) -> str:
    """The assistant id of the configured agent ``agent``."""
    return str(uuid.uuid5(_ASSISTANTS, agent))


def answer_id(run_id: str) -> str:
    """The id of the answer message a run writes (see the summarizer)."""
    return f"answer-{run_id}"


def jsonable(value: Any) -> Any:
    """``value`` with messages and models as the plain JSON LangGraph clients read."""
    if isinstance(value, BaseMessage):
        return value.model_dump(mode="json")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def run_out(row: dict[str, Any], strategy: str = "reject") -> dict[str, Any]:
    """A ``runs`` row as the protocol's Run."""
    return {
        "run_id": row["run_id"],
        "thread_id": row["thread_id"],
        "assistant_id": assistant_id(row["agent"]),
        "created_at": row["created_at"].isoformat(),
        "updated_at": (row["updated_at"] or row["created_at"]).isoformat(),
        "status": RUN_STATUS.get(row["status"], row["status"]),
        "metadata": {"trace_id": row["trace_id"], "agent_variant": row.get("agent_variant")},
        "multitask_strategy": strategy,
        "kwargs": {},
    }


def _interrupt(intr: Interrupt) -> dict[str, Any]:
    value = jsonable(intr.value)
    if isinstance(value, dict) and "confirmation_id" in value:
        value = {**value, **_inbox_view(value)}
    return {"value": value, "id": intr.id}


def _inbox_view(held: dict[str, Any]) -> dict[str, Any]:
    """A held tool call in the human-in-the-loop schemas UIs render as buttons.

    LangChain's (``action_requests``/``review_configs``: Agent Chat UI's Approve / Reject)
    and Agent Inbox's older one (``action_request``/``config``: Accept / Ignore). Only
    approving or rejecting the call as it will be made: no edits, no replies (the
    confirmation calls exactly the held arguments).
    """
    tool, args = held.get("tool_name"), held.get("args", {})
    needs = ", ".join(held.get("permissions") or []) or "no special permissions"
    description = f"{tool} waits for your approval ({needs})."
    return {
        "action_requests": [{"name": tool, "args": args, "description": description}],
        "review_configs": [{"action_name": tool, "allowed_decisions": ["approve", "reject"]}],
        "action_request": {"action": tool, "args": args},
        "config": {
            "allow_accept": True,
            "allow_ignore": True,
            "allow_respond": False,
            "allow_edit": False,
        },
        "description": description,
    }


def interrupts_of(snap: StateSnapshot) -> list[dict[str, Any]]:
    """The interrupts the thread's graph waits on (a held tool call's confirmation)."""
    return [_interrupt(i) for task in snap.tasks for i in task.interrupts]


def _checkpoint(config: Any) -> dict[str, Any] | None:
    if not config:
        return None
    conf = config.get("configurable", {})
    return {
        "thread_id": conf.get("thread_id"),
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf.get("checkpoint_id"),
        "checkpoint_map": None,
    }


def state_out(snap: StateSnapshot) -> dict[str, Any]:
    """A checkpoint as the protocol's ThreadState."""
    return {
        "values": jsonable(snap.values),
        "next": list(snap.next),
        "checkpoint": _checkpoint(snap.config),
        "metadata": jsonable(snap.metadata or {}),
        "created_at": snap.created_at,
        "parent_checkpoint": _checkpoint(snap.parent_config),
        "tasks": [
            {
                "id": t.id,
                "name": t.name,
                "error": None if t.error is None else str(t.error),
                "interrupts": [_interrupt(i) for i in t.interrupts],
                "checkpoint": None,
                "state": None,
                "result": jsonable(t.result) if t.result is not None else None,
            }
            for t in snap.tasks
        ],
        "interrupts": interrupts_of(snap),
    }


def thread_out(row: dict[str, Any], snap: StateSnapshot | None, status: str) -> dict[str, Any]:
    """A ``threads`` row and its latest state as the protocol's Thread."""
    interrupts: dict[str, list[dict[str, Any]]] = {}
    for task in snap.tasks if snap else ():
        if task.interrupts:
            interrupts[task.id] = [
                {"value": jsonable(i.value), "id": i.id} for i in task.interrupts
            ]
    return {
        "thread_id": row["thread_id"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "metadata": row["metadata"],
        "status": status,
        "values": jsonable(snap.values) if snap else {},
        "interrupts": interrupts,
    }


def values_out(snap: StateSnapshot) -> dict[str, Any]:
    """The state's values, with ``__interrupt__`` when the graph waits on a decision."""
    values: dict[str, Any] = jsonable(snap.values)
    if interrupts := interrupts_of(snap):
        values["__interrupt__"] = interrupts
    return values


def updates_out(steps: list[StateSnapshot]) -> list[dict[str, Any]]:
    """Each step of a run (its checkpoints, oldest first) as ``{node: what it changed}``.

    The first snapshot is the state the run started from; a step's node is the one its
    predecessor had next (the input's own step, ``__start__``, is left out as LangGraph does).
    Of ``messages``, only the messages the step added are given.
    """
    out: list[dict[str, Any]] = []
    for prev, snap in zip(steps, steps[1:], strict=False):
        if not prev.next or prev.next[0].startswith("__"):  # the input is no node's update
            continue
        changed: dict[str, Any] = {}
        for key, value in snap.values.items():
            before = prev.values.get(key)
            if key == "messages":
                seen = {getattr(m, "id", None) for m in before or ()}
                value = [m for m in value if getattr(m, "id", None) not in seen]
                if value:
                    changed[key] = jsonable(value)
            elif value != before:
                changed[key] = jsonable(value)
        out.append({prev.next[0]: changed})
    return out


def sse(event: str, data: Any, seq: int | None = None) -> dict[str, str]:
    """One SSE frame for sse-starlette; ``seq`` becomes its ``id``."""
    frame = {"event": event, "data": json.dumps(data, default=str)}
    if seq is not None:
        frame["id"] = str(seq)
    return frame


def event_parts(body: dict[str, Any], modes: Iterable[str]) -> list[dict[str, str]]:
    """The protocol frames one Keel envelope becomes under the requested stream ``modes``."""
    modes = set(modes)
    seq = int(body["seq"])
    frames: list[dict[str, str]] = []
    kind = body["type"]
    if kind == "text_delta" and modes & {"messages-tuple", "messages"}:
        chunk = {
            "type": "AIMessageChunk",
            "content": body["data"]["text"],
            "id": answer_id(body["run_id"]),
            "additional_kwargs": {},
            "response_metadata": {},
            "tool_calls": [],
            "tool_call_chunks": [],
            "invalid_tool_calls": [],
            "name": None,
        }
        meta = {
            "langgraph_node": body.get("node"),
            "run_id": body["run_id"],
            "thread_id": body["thread_id"],
        }
        frames.append(sse("messages", [chunk, meta], seq))
    if kind == "error":
        data = body["data"]
        frames.append(
            sse("error", {"error": data.get("code"), "message": data.get("message")}, seq)
        )
    if "custom" in modes:
        frames.append(sse("custom", body, seq))
    return frames
