"""Agent Protocol threads: create, read, search, update, delete, state and history.

Threads are Keel's own (the ``threads`` table, owned by the caller's tenant and user): one
made here is one ``/v1`` sees, and the ownership filter of the run store applies to every
read, so another tenant's or user's thread is 404. State and history are the graph's
checkpoints on that thread, read only after ownership is checked.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentIdentity, Services, Svc
from api.protocol.wire import state_out, thread_out
from core.errors import Conflict, Invalid
from core.identity import Identity

router = APIRouter(tags=["agent protocol: threads"])
# Keel's latest run status → the thread's protocol status (no run: idle).
_THREAD_STATUS = {"queued": "busy", "running": "busy", "error": "error", "timeout": "error"}


def config_of(thread_id: str, checkpoint_id: str | None = None) -> Any:
    """The graph config that reads ``thread_id`` (at ``checkpoint_id`` when given)."""
    conf: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


async def snapshot(
    svc: Services, thread_id: str, checkpoint_id: str | None = None
) -> StateSnapshot:
    """The thread's latest state (or at ``checkpoint_id``); ownership is the caller's to check."""
    return await svc.graph.aget_state(config_of(thread_id, checkpoint_id))


async def thread_view(svc: Services, identity: Identity, row: dict[str, Any]) -> dict[str, Any]:
    """The caller's thread ``row`` with its state and status, as the protocol's Thread."""
    snap = await snapshot(svc, row["thread_id"])
    runs = await svc.store.thread_runs(identity, row["thread_id"], 1, 0)
    status = _THREAD_STATUS.get(runs[0]["status"], "idle") if runs else "idle"
    if status == "idle" and any(t.interrupts for t in snap.tasks):
        status = "interrupted"
    return thread_out(row, snap, status)


class ThreadCreate(BaseModel):
    """Body of ``POST /threads``."""

    model_config = ConfigDict(extra="ignore")

    thread_id: uuid.UUID | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"


@router.post("/threads")
async def create_thread(body: ThreadCreate, svc: Svc, identity: CurrentIdentity) -> dict[str, Any]:
    """Create a thread of the caller's; with ``if_exists=do_nothing`` an own one is returned."""
    thread_id = str(body.thread_id or uuid.uuid4())
    cap = svc.quotas.limits_for(identity).max_threads
    try:
        row = await svc.store.create_thread(identity, thread_id, cap, body.metadata)
    except Conflict:
        if body.if_exists != "do_nothing":
            raise
        row = await svc.store.thread(identity, thread_id)  # someone else's: 404
    return await thread_view(svc, identity, row)


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: str, svc: Svc, identity: CurrentIdentity) -> dict[str, Any]:
    """One thread of the caller's, with its latest values and interrupts."""
    return await thread_view(svc, identity, await svc.store.thread(identity, thread_id))


class ThreadPatch(BaseModel):
    """Body of ``PATCH /threads/{thread_id}``."""

    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] = Field(default_factory=dict)


@router.patch("/threads/{thread_id}")
async def update_thread(
    thread_id: str, body: ThreadPatch, svc: Svc, identity: CurrentIdentity
) -> dict[str, Any]:
    """Merge ``metadata`` into the thread's."""
    row = await svc.store.update_thread(identity, thread_id, body.metadata)
    return await thread_view(svc, identity, row)


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, svc: Svc, identity: CurrentIdentity) -> Response:
    """Delete the thread, its runs, events and checkpoints; a live run is cancelled first."""
    await svc.store.thread(identity, thread_id)
    if active := svc.executor.local_run(thread_id) or await svc.store.active_run(thread_id):
        await svc.executor.cancel(active)
    await svc.store.delete_thread(identity, thread_id)
    await svc.graph.checkpointer.adelete_thread(thread_id)  # type: ignore[union-attr]
    if svc.memory is not None and svc.memory.session is not None:
        await svc.memory.session.forget_thread(identity.tenant, thread_id)
    return Response(status_code=204)


class ThreadSearch(BaseModel):
    """Body of ``POST /threads/search`` (and ``/count``)."""

    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] = Field(default_factory=dict)
    ids: list[str] | None = Field(default=None, max_length=1000)
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


@router.post("/threads/search")
async def search_threads(
    body: ThreadSearch, svc: Svc, identity: CurrentIdentity
) -> list[dict[str, Any]]:
    """The caller's threads matching ``metadata`` (containment) and ``ids``, newest first.

    A ``status`` filter applies to the page read, so a page may hold fewer threads.
    """
    rows = await svc.store.search_threads(
        identity, metadata=body.metadata, ids=body.ids, limit=body.limit, offset=body.offset
    )
    threads = [await thread_view(svc, identity, row) for row in rows]
    return [t for t in threads if body.status in (None, t["status"])]


@router.post("/threads/count")
async def count_threads(body: ThreadSearch, svc: Svc, identity: CurrentIdentity) -> int:
    """How many of the caller's threads match (up to 10 000)."""
    body = body.model_copy(update={"limit": 10_000, "offset": 0})
    return len(await search_threads(body, svc, identity))


@router.get("/threads/{thread_id}/state")
async def get_state(thread_id: str, svc: Svc, identity: CurrentIdentity) -> dict[str, Any]:
    """The thread's latest state: values, next nodes, tasks and their interrupts."""
    await svc.store.thread(identity, thread_id)
    return state_out(await snapshot(svc, thread_id))


@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state_at(
    thread_id: str, checkpoint_id: str, svc: Svc, identity: CurrentIdentity
) -> dict[str, Any]:
    """The thread's state at one of its checkpoints."""
    await svc.store.thread(identity, thread_id)
    return state_out(await snapshot(svc, thread_id, checkpoint_id))


class CheckpointRef(BaseModel):
    """A checkpoint named by the client."""

    model_config = ConfigDict(extra="ignore")

    checkpoint_id: str | None = None


class StateAt(BaseModel):
    """Body of ``POST /threads/{thread_id}/state/checkpoint``."""

    model_config = ConfigDict(extra="ignore")

    checkpoint: CheckpointRef


@router.post("/threads/{thread_id}/state/checkpoint")
async def post_state_at(
    thread_id: str, body: StateAt, svc: Svc, identity: CurrentIdentity
) -> dict[str, Any]:
    """The thread's state at the checkpoint in the body."""
    await svc.store.thread(identity, thread_id)
    return state_out(await snapshot(svc, thread_id, body.checkpoint.checkpoint_id))


class StateUpdate(BaseModel):
    """Body of ``POST /threads/{thread_id}/state``."""

    model_config = ConfigDict(extra="ignore")

    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: CheckpointRef | None = None


@router.post("/threads/{thread_id}/state")
async def update_state(
    thread_id: str, body: StateUpdate, svc: Svc, identity: CurrentIdentity
) -> dict[str, Any]:
    """Write ``values`` to the thread's state as if ``as_node`` had; 409 while a run is live."""
    await svc.store.thread(identity, thread_id)
    if svc.executor.local_run(thread_id) or await svc.store.active_run(thread_id):
        raise Conflict(f"thread {thread_id} has a live run")
    at = body.checkpoint_id or (body.checkpoint.checkpoint_id if body.checkpoint else None)
    try:
        config = await svc.graph.aupdate_state(
            config_of(thread_id, at), body.values, as_node=body.as_node
        )
    except (InvalidUpdateError, ValueError, KeyError) as exc:
        raise Invalid(f"the state update was refused: {exc}") from None
    conf = config["configurable"]
    return {
        "checkpoint": {
            "thread_id": thread_id,
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
            "checkpoint_id": conf.get("checkpoint_id"),
            "checkpoint_map": None,
        }
    }


class HistoryQuery(BaseModel):
    """Body of ``POST /threads/{thread_id}/history``."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=10, ge=1, le=1000)
    before: str | CheckpointRef | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None


@router.post("/threads/{thread_id}/history")
async def history(
    thread_id: str, body: HistoryQuery, svc: Svc, identity: CurrentIdentity
) -> list[dict[str, Any]]:
    """The thread's checkpoints, newest first, each as a ThreadState (time travel)."""
    await svc.store.thread(identity, thread_id)
    before = body.before.checkpoint_id if isinstance(body.before, CheckpointRef) else body.before
    at = body.checkpoint.checkpoint_id if body.checkpoint else None
    snaps = svc.graph.aget_state_history(
        config_of(thread_id, at),
        limit=body.limit,
        before=config_of(thread_id, before) if before else None,
        filter=body.metadata,
    )
    return [state_out(s) async for s in snaps]


@router.get("/threads/{thread_id}/history")
async def get_history(
    thread_id: str,
    svc: Svc,
    identity: CurrentIdentity,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """``POST /threads/{thread_id}/history`` with its two simple filters as query parameters."""
    return await history(thread_id, HistoryQuery(limit=limit, before=before), svc, identity)
