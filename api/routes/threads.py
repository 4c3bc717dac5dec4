"""Threads, runs and their streams: ``/v1/threads`` and ``/v1/replay``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from api.deps import CurrentIdentity, Services, Svc, TraceId
from api.sse import SseResponse, frames
from api.text import StorableText
from core.errors import Conflict, NotFound
from core.identity import Identity
from runs.event_log import Frame, LiveStream, paced
from runs.metrics import OPEN_STREAMS
from runs.scheduler import Ticket

router = APIRouter(prefix="/v1", tags=["threads"])

_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "SSE stream of envelopes"}
}
Message = Annotated[StorableText, StringConstraints(min_length=1, max_length=16_000)]
# A seq is a Postgres bigint: a larger Last-Event-ID or ?after= is a 422, not a failed query.
MAX_SEQ = 2**63 - 1


class ThreadOut(BaseModel):
    """A thread of the caller's."""

    thread_id: str
    title: str | None = None
    created_at: datetime


class RunInput(BaseModel):
    """What the user asks."""

    model_config = ConfigDict(extra="forbid")

    message: Message


class RunRequest(BaseModel):
    """Body of ``POST /v1/threads/{thread_id}/runs``."""

    model_config = ConfigDict(extra="forbid")

    input: RunInput
    agent: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")] = "research"
    checkpoint_id: Annotated[StorableText, StringConstraints(max_length=64)] | None = None


class ConfirmRequest(BaseModel):
    """Body of ``POST /v1/runs/{run_id}/confirm``: the caller's decision on a held tool call."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    comment: Annotated[StorableText, StringConstraints(max_length=1000)] | None = None
    confirmation_id: Annotated[StorableText, StringConstraints(max_length=64)] | None = Field(
        default=None, description="The confirmation_required event's id; checked when given"
    )


class CheckpointOut(BaseModel):
    """One checkpoint of a thread, for time travel."""

    checkpoint_id: str
    parent_checkpoint_id: str | None
    step: int
    node: str | None = Field(description="The node whose writes produced this checkpoint")
    next: list[str]
    ts: str | None


Release = Callable[[], Awaitable[None]]


async def stream_slot(svc: Services, identity: Identity) -> Release:
    """Take one of the caller's concurrent stream slots (429 when the tier's are taken).

    The returned release is idempotent: the stream's end and the response's background task
    both call it, so a stream whose body never starts gives its slot back too.
    """
    await svc.quotas.open_stream(identity)
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            await svc.quotas.close_stream(identity)

    return release


async def admitted(
    svc: Services, identity: Identity, start: Callable[[Ticket], Awaitable[str]]
) -> tuple[Release, str]:
    """A stream slot and a run ticket for the caller (429 when over either quota), then the run.

    ``start`` starts the run with the ticket and returns its id; if it raises, the ticket and
    the slot are given back. Returns the slot's release and the run's id.
    """
    release = await stream_slot(svc, identity)
    try:
        ticket = await svc.scheduler.submit(identity)  # 429 here when over quota
    except BaseException:
        await release()
        raise
    try:
        return release, await start(ticket)
    except BaseException:
        await ticket.finish()
        await release()
        raise


def sse_response(
    frames: AsyncIterator[dict[str, str]],
    trace_id: str,
    release: Release,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    """An SSE response of ``frames`` that counts as an open stream and gives its slot back."""

    async def counted() -> AsyncIterator[dict[str, str]]:
        OPEN_STREAMS.inc()
        try:
            async for frame in frames:
                yield frame
        finally:
            OPEN_STREAMS.dec()
            await release()

    return EventSourceResponse(
        counted(),
        ping=15,
        headers={"X-Trace-Id": trace_id, **(headers or {})},
        background=BackgroundTask(release),
    )


def _sse(stream: LiveStream, trace_id: str, release: Release, *, pace: bool = False) -> SseResponse:
    """The SSE response of ``stream``; its reader is cut off when the fan-out drops it."""
    bursts: AsyncIterator[list[Frame]] = paced(aiter(stream)) if pace else aiter(stream)
    return SseResponse(
        _counted(frames(bursts), release),
        dropped=stream.dropped,
        headers={"X-Trace-Id": trace_id},
        background=BackgroundTask(release),
    )


def _live(svc: Services, thread_id: str, after: int, **kw: Any) -> LiveStream:
    quiet_s = svc.settings.streams.ping_s
    return LiveStream(svc.event_log, svc.broker, thread_id, after, quiet_s=quiet_s, **kw)


@router.post("/threads", status_code=201, response_model=ThreadOut)
async def create_thread(svc: Svc, identity: CurrentIdentity) -> ThreadOut:
    """Create a thread owned by the caller; 429 once the tier's ``max_threads`` are kept."""
    cap = svc.quotas.limits_for(identity).max_threads
    return ThreadOut.model_validate(await svc.store.create_thread(identity, str(uuid.uuid4()), cap))


@router.get("/threads/{thread_id}", response_model=ThreadOut)
async def get_thread(thread_id: str, svc: Svc, identity: CurrentIdentity) -> ThreadOut:
    """One thread of the caller's (404 for anyone else's)."""
    return ThreadOut.model_validate(await svc.store.thread(identity, thread_id))


@router.get("/threads", response_model=list[ThreadOut])
async def list_threads(
    svc: Svc, identity: CurrentIdentity, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[ThreadOut]:
    """The caller's own threads, newest first."""
    return [ThreadOut.model_validate(r) for r in await svc.store.threads(identity, limit)]


@router.post("/threads/{thread_id}/runs", responses=_SSE)
async def create_run(
    thread_id: str, body: RunRequest, svc: Svc, identity: CurrentIdentity, trace_id: TraceId
) -> SseResponse:
    """Start a run and stream its events; the run goes on if the client disconnects.

    An untitled thread is named after this question.
    """
    thread = await svc.store.thread(identity, thread_id)
    if body.agent not in svc.settings.agents:
        raise NotFound(f"agent {body.agent!r} is not configured")
    if thread["title"] is None:
        await svc.store.name_thread(thread_id, body.input.message)
    if body.checkpoint_id is not None:
        config: Any = {
            "configurable": {"thread_id": thread_id, "checkpoint_id": body.checkpoint_id}
        }
        if await svc.graph.checkpointer.aget_tuple(config) is None:  # type: ignore[union-attr]
            raise NotFound(f"checkpoint {body.checkpoint_id} not found in this thread")
    run_id = str(uuid.uuid4())
    # Subscribed before the run starts, the stream gets every event of it live (each one
    # already durable), with no read of the log.
    stream = _live(svc, thread_id, 0, until_run=run_id, run_id=run_id)
    stream.subscribe()

    async def start(ticket: Ticket) -> str:
        await svc.executor.start(
            identity=identity,
            thread_id=thread_id,
            run_id=run_id,
            trace_id=trace_id,
            message=body.input.message,
            agent=body.agent,
            checkpoint_id=body.checkpoint_id,
            ticket=ticket,
            max_duration_s=svc.quotas.limits_for(identity).max_run_duration_s,
        )
        return run_id

    try:
        release, _ = await admitted(svc, identity, start)
    except BaseException:
        stream.close()
        raise
    return _sse(stream, trace_id, release)


@router.get("/threads/{thread_id}/stream", responses=_SSE)
async def stream_thread(
    thread_id: str,
    svc: Svc,
    identity: CurrentIdentity,
    trace_id: TraceId,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_SEQ)] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
) -> SseResponse:
    """Events after ``Last-Event-ID`` (or ``?after=``), then live until the active run ends."""
    await svc.store.thread(identity, thread_id)
    start = last_event_id if last_event_id is not None else (after or 0)
    active = svc.executor.local_run(thread_id) or await svc.store.active_run(thread_id)
    release = await stream_slot(svc, identity)
    return _sse(_live(svc, thread_id, start, until_run=active), trace_id, release)


@router.get("/replay/{thread_id}", responses=_SSE)
async def replay_thread(
    thread_id: str,
    svc: Svc,
    identity: CurrentIdentity,
    trace_id: TraceId,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    pace: Literal["fast", "original"] = "fast",
) -> Response:
    """Re-stream the recorded events of a thread from the event log (never from checkpoints).

    ``pace=fast`` (the default) sends frames that Postgres formats from the stored JSON, a
    page at a time; ``pace=original`` keeps the recorded gaps between events (each capped
    at 5 s).
    """
    await svc.store.thread(identity, thread_id)
    release = await stream_slot(svc, identity)
    if pace == "fast":
        return StreamingResponse(
            _counted(svc.event_log.frames(thread_id, after, run_id), release),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Trace-Id": trace_id},
            background=BackgroundTask(release),
        )
    return _sse(_live(svc, thread_id, after, run_id=run_id), trace_id, release, pace=True)


async def _counted(chunks: AsyncIterator[str], release: Release) -> AsyncIterator[str]:
    OPEN_STREAMS.inc()
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        OPEN_STREAMS.dec()
        await release()


class CancelOut(BaseModel):
    """Answer of a cancel request."""

    run_id: str
    status: Literal["cancelling"]


@router.post("/runs/{run_id}/cancel", status_code=202, response_model=CancelOut)
async def cancel_run(run_id: str, svc: Svc, identity: CurrentIdentity) -> CancelOut:
    """Cancel a queued or running run of the caller's; it ends with ``run_finished{cancelled}``."""
    run = await svc.store.run(identity, run_id)
    if run["status"] not in ("queued", "running"):
        raise Conflict(f"run {run_id} is not active (status {run['status']})")
    await svc.executor.cancel(run_id)
    return CancelOut(run_id=run_id, status="cancelling")


async def _held_call(svc: Services, thread_id: str) -> dict[str, Any] | None:
    """The tool call the thread's graph is interrupted on, from its latest checkpoint."""
    config: Any = {"configurable": {"thread_id": thread_id}}
    snap = await svc.graph.aget_state(config)
    for task in snap.tasks:
        for intr in task.interrupts:
            if isinstance(intr.value, dict) and intr.value.get("confirmation_id"):
                return intr.value
    return None


async def pending_decision(
    svc: Services, identity: Identity, run_id: str, confirmation_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The caller's interrupted run ``run_id`` and the tool call it holds.

    Raises:
        NotFound: no such run of the caller's.
        Conflict: the run is not waiting for a decision (or not on ``confirmation_id``).
    """
    run = await svc.store.awaiting_confirmation(identity, run_id)
    held = await _held_call(svc, run["thread_id"])
    if held is None or confirmation_id not in (None, held["confirmation_id"]):
        raise Conflict(f"run {run_id} has no pending confirmation {confirmation_id or ''}")
    return run, held


async def apply_decision(
    svc: Services,
    identity: Identity,
    pending: tuple[dict[str, Any], dict[str, Any]],
    body: ConfirmRequest,
    trace_id: str,
    ticket: Ticket,
) -> str:
    """Claim the held call's decision and start the run that resumes the graph with it.

    Returns the new run's id; the claim is undone if that run could not start.
    """
    run, held = pending
    new_run = str(uuid.uuid4())
    await svc.store.claim_confirmation(run["run_id"], new_run)
    try:
        await _resume(svc, identity, run, held, body, new_run, trace_id, ticket)
    except BaseException:
        await svc.store.release_confirmation(run["run_id"], new_run)
        raise
    return new_run


@router.post("/runs/{run_id}/confirm", responses=_SSE)
async def confirm_run(
    run_id: str,
    body: ConfirmRequest,
    svc: Svc,
    identity: CurrentIdentity,
    trace_id: TraceId,
) -> SseResponse:
    """Approve or reject the tool call an ``interrupted`` run of the caller's is waiting on.

    Starts a new run on the same thread that resumes the graph with the decision and streams
    it like any run: approved, the tool is called once with the held arguments; rejected, it
    is not called and the run goes on to its answer. 404 for another tenant's or user's run;
    409 when the run is not waiting (already decided, superseded by a later run, or never
    interrupted).
    """
    pending = await pending_decision(svc, identity, run_id, body.confirmation_id)
    thread_id: str = pending[0]["thread_id"]
    # The resumed run's id is known once it starts: its stream reads the log from here.
    after = await svc.event_log.last_seq(thread_id)
    release, new_run = await admitted(
        svc, identity, lambda ticket: apply_decision(svc, identity, pending, body, trace_id, ticket)
    )
    return _sse(_live(svc, thread_id, after, until_run=new_run, run_id=new_run), trace_id, release)


async def _resume(
    svc: Services,
    identity: Identity,
    run: dict[str, Any],
    held: dict[str, Any],
    body: ConfirmRequest,
    new_run: str,
    trace_id: str,
    ticket: Ticket,
) -> None:
    """Start ``new_run``: it resumes ``run``'s interrupted graph with the caller's decision."""
    verb = "Approved" if body.approve else "Rejected"
    await svc.executor.start(
        identity=identity,
        thread_id=run["thread_id"],
        run_id=new_run,
        trace_id=trace_id,
        message=f"{verb} {held.get('tool_name')}" + (f": {body.comment}" if body.comment else ""),
        agent=run["agent"],
        ticket=ticket,
        max_duration_s=svc.quotas.limits_for(identity).max_run_duration_s,
        resume={
            "approve": body.approve,
            "comment": body.comment,
            "confirmation_id": held["confirmation_id"],
        },
        resumes_run_id=run["run_id"],
    )


@router.get("/threads/{thread_id}/history", response_model=list[CheckpointOut])
async def thread_history(
    thread_id: str,
    svc: Svc,
    identity: CurrentIdentity,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CheckpointOut]:
    """The thread's checkpoints, newest first, for time travel."""
    await svc.store.thread(identity, thread_id)
    config: Any = {"configurable": {"thread_id": thread_id}}
    snaps = [s async for s in svc.graph.aget_state_history(config, limit=limit + 1)]
    out: list[CheckpointOut] = []
    for i, snap in enumerate(snaps[:limit]):
        parent = snaps[i + 1] if i + 1 < len(snaps) else None
        meta = snap.metadata or {}
        parent_cfg = snap.parent_config or {}
        out.append(
            CheckpointOut(
                checkpoint_id=snap.config["configurable"]["checkpoint_id"],
                parent_checkpoint_id=parent_cfg.get("configurable", {}).get("checkpoint_id"),
                step=int(meta.get("step", -1)),
                node=(
                    parent.next[0]
                    if parent and parent.next
                    else ("input" if meta.get("source") == "input" else None)
                ),
                next=list(snap.next),
                ts=snap.created_at,
            )
        )
    return out
