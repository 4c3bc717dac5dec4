"""Agent Protocol runs: create (background), stream, wait, join, join_stream, get, list, cancel.

A protocol run is a Keel run: the same executor starts it (quota ticket, fair scheduler,
double-texting policy, tool gateway, event log), so it is seen by ``/v1`` too. What the
protocol adds is its input convention and its stream:

- input ``{"messages": [..., {"role": "user", "content": ...}]}`` (or Keel's ``{"message"}``):
  the last message, a user's, is the run's question, under the ``id`` the client gave it;
- ``command: {"resume": ...}`` decides the tool call the thread's graph holds, exactly as
  ``POST /v1/runs/{run_id}/confirm`` does (see ``decision``);
- ``multitask_strategy`` is the run's double-texting policy; ``rollback`` cancels the live run
  and starts from the checkpoint that run started from (its events stay in the log);
- streams are translated from the durable event log (``api/protocol/wire.py``), so a
  ``join_stream`` with ``Last-Event-ID`` resumes without a gap or a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sse_starlette import EventSourceResponse

from api.deps import CurrentIdentity, Services, Svc, TraceId
from api.protocol.assistants import resolve
from api.protocol.threads import CheckpointRef, config_of, snapshot
from api.protocol.wire import assistant_id, event_parts, run_out, sse, updates_out, values_out
from api.routes.threads import (
    MAX_SEQ,
    ConfirmRequest,
    Message,
    admitted,
    apply_decision,
    pending_decision,
    sse_response,
    stream_slot,
)
from core.errors import Conflict, Invalid, NotFound
from core.identity import Identity
from runs.event_log import LiveStream
from runs.scheduler import Ticket

router = APIRouter(tags=["agent protocol: runs"])
StreamMode = Literal["values", "updates", "messages-tuple", "messages", "custom", "events", "debug"]
_SUPPORTED = {"values", "updates", "messages-tuple", "messages", "custom"}
_ALL_MODES = ["values", "updates", "messages-tuple", "custom"]
_MESSAGE = TypeAdapter(Message)
MAX_ID = 128
# The answer types of LangChain's human-in-the-loop decisions and Agent Inbox's responses
# that approve or reject a call as it is ("edit" would change the held arguments).
_ANSWERS = ("approve", "reject", "accept", "ignore", "response")
# A run-creating route of a thread: (thread_id, body, svc, identity, trace_id) -> its answer.
_Threaded = Callable[[str, "RunCreate", Services, Identity, str], Awaitable[Response]]


class RunCreate(BaseModel):
    """Body of the run-creating routes; fields Keel does not act on are ignored."""

    model_config = ConfigDict(extra="ignore")

    assistant_id: str
    input: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    stream_mode: StreamMode | list[StreamMode] = "values"
    metadata: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint: CheckpointRef | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = None
    on_disconnect: Literal["cancel", "continue"] = "continue"
    if_not_exists: Literal["create", "reject"] = "reject"
    interrupt_before: Any = None
    interrupt_after: Any = None
    webhook: str | None = None
    after_seconds: int | None = Field(default=None, ge=0)

    def modes(self) -> list[str]:
        """The stream modes asked for, refusing those Keel does not serve."""
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else self.stream_mode
        return checked_modes(list(modes))


def checked_modes(modes: list[str]) -> list[str]:
    """``modes``, or 422 naming the ones Keel does not serve."""
    if unknown := [m for m in modes if m not in _SUPPORTED]:
        raise Invalid(f"stream modes {unknown} are not served (served: {sorted(_SUPPORTED)})")
    return modes


def message_id(payload: dict[str, Any] | None) -> str | None:
    """The id the client gave the question (its last message), or None when it gave none.

    The question enters the state under it, as LangGraph's ``add_messages`` keeps a given id,
    so a UI that drew the question under that id finds one message, not two.
    """
    messages = (payload or {}).get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    given = last.get("id") if isinstance(last, dict) else None
    if given is None:
        return None
    if not isinstance(given, str) or not 0 < len(given) <= MAX_ID:
        raise Invalid(f"a message id is a string of 1 to {MAX_ID} characters")
    return given


def user_message(payload: dict[str, Any] | None) -> str:
    """The question of a run input: the last message, which must be the user's."""
    payload = payload or {}
    text: Any = payload.get("message")
    if text is None and (messages := payload.get("messages")):
        last = messages[-1] if isinstance(messages, list) else None
        if isinstance(last, str):
            text = last
        elif isinstance(last, dict) and (last.get("role") or last.get("type")) in ("user", "human"):
            content = last.get("content")
            text = content
            if isinstance(content, list):  # content blocks: their text parts
                text = "".join(b.get("text", "") for b in content if isinstance(b, dict))
    if not isinstance(text, str):
        raise Invalid('input needs {"messages": [..., {"role": "user", "content": "..."}]}')
    try:
        return _MESSAGE.validate_python(text)
    except ValidationError as exc:
        raise Invalid(f"the message is not acceptable: {exc.errors()[0]['msg']}") from None


def decision(resume: Any) -> ConfirmRequest:
    """A ``Command(resume=...)`` value as a decision on the held tool call.

    Accepted: ``True``/``False``; ``"approve"``/``"accept"``/``"yes"`` or ``"reject"``/``"no"``;
    ``{"approve": bool, "comment"?}``; LangChain's human-in-the-loop answer ``{"decisions":
    [{"type": "approve" | "reject", "message"?}]}``; an Agent Inbox response ``{"type":
    "accept" | "ignore" | "reject" | "response", "args"?}``, or a list holding one.
    """
    if isinstance(resume, dict) and isinstance(resume.get("decisions"), list):
        resume = resume["decisions"]
    if isinstance(resume, list) and len(resume) == 1:
        resume = resume[0]
    words = {"approve": True, "accept": True, "yes": True, "reject": False, "no": False}
    if isinstance(resume, bool):
        return ConfirmRequest(approve=resume)
    if isinstance(resume, str) and resume.lower() in words:
        return ConfirmRequest(approve=words[resume.lower()])
    if isinstance(resume, dict) and isinstance(resume.get("approve"), bool):
        return ConfirmRequest(approve=resume["approve"], comment=resume.get("comment"))
    if isinstance(resume, dict) and resume.get("type") in _ANSWERS:
        note = resume.get("message", resume.get("args"))
        return ConfirmRequest(
            approve=resume["type"] in ("approve", "accept"),
            comment=note if isinstance(note, str) else None,
        )
    raise Invalid("resume with true/false, 'approve'/'reject' or {'approve': bool}")


async def _own_thread(svc: Services, identity: Identity, thread_id: str, body: RunCreate) -> None:
    """The thread must be the caller's; with ``if_not_exists=create`` a missing one is made.

    Its metadata is given the run's ``graph_id`` and ``assistant_id`` (once), as LangGraph
    Server does: clients list an assistant's threads by them (Agent Chat UI's history).
    """
    try:
        row = await svc.store.thread(identity, thread_id)
    except NotFound:
        if body.if_not_exists != "create":
            raise
        cap = svc.quotas.limits_for(identity).max_threads
        row = await svc.store.create_thread(identity, thread_id, cap, body.metadata)
    agent = resolve(svc, body.assistant_id)
    if row["metadata"].get("graph_id") != agent:
        tags = {"graph_id": agent, "assistant_id": assistant_id(agent)}
        await svc.store.update_thread(identity, thread_id, tags)


async def _rollback_point(svc: Services, identity: Identity, thread_id: str) -> str | None:
    """The checkpoint the thread's live run started from (None: the latest will do)."""
    live = svc.executor.local_run(thread_id) or await svc.store.active_run(thread_id)
    if live is None:
        return None
    steps = svc.graph.aget_state_history(config_of(thread_id), filter={"keel_run_id": live})
    first = None
    async for snap in steps:
        first = snap
    if first is None or not first.parent_config:
        return None
    parent: str = first.parent_config["configurable"]["checkpoint_id"]
    return parent


async def start_run(
    svc: Services,
    identity: Identity,
    thread_id: str,
    body: RunCreate,
    trace_id: str,
    ticket: Ticket,
) -> str:
    """Start the run ``body`` asks for on the caller's thread; returns its id."""
    agent = resolve(svc, body.assistant_id)
    for name in ("interrupt_before", "interrupt_after", "webhook", "after_seconds"):
        if getattr(body, name) is not None:
            raise Invalid(f"{name} is not supported by this server")
    if body.command is not None and "resume" in body.command:
        latest = await svc.store.thread_runs(identity, thread_id, 1, 0)
        if not latest or latest[0]["status"] != "interrupted":
            raise Conflict(f"thread {thread_id} has no interrupt to resume")
        pending = await pending_decision(svc, identity, latest[0]["run_id"])
        return await apply_decision(
            svc, identity, pending, decision(body.command["resume"]), trace_id, ticket
        )
    message, given_id = user_message(body.input), message_id(body.input)
    checkpoint_id = body.checkpoint_id or (
        body.checkpoint.checkpoint_id if body.checkpoint else None
    )
    if (
        checkpoint_id
        and await svc.graph.checkpointer.aget_tuple(  # type: ignore[union-attr]
            config_of(thread_id, checkpoint_id)
        )
        is None
    ):
        raise NotFound(f"checkpoint {checkpoint_id} not found in this thread")
    policy = body.multitask_strategy
    if policy == "rollback":
        checkpoint_id = checkpoint_id or await _rollback_point(svc, identity, thread_id)
        policy = "interrupt"
    run_id = str(uuid.uuid4())
    await svc.executor.start(
        identity=identity,
        thread_id=thread_id,
        run_id=run_id,
        trace_id=trace_id,
        message=message,
        message_id=given_id,
        agent=agent,
        checkpoint_id=checkpoint_id,
        ticket=ticket,
        max_duration_s=svc.quotas.limits_for(identity).max_run_duration_s,
        double_texting=policy,
    )
    return run_id


def _links(thread_id: str, run_id: str, tail_path: str) -> dict[str, str]:
    base = f"/threads/{thread_id}/runs/{run_id}"
    return {"Location": f"{base}/{tail_path}", "Content-Location": base}


async def _run_steps(svc: Services, thread_id: str, run_id: str) -> list[Any]:
    """The run's checkpoints, oldest first, after the state it started from."""
    steps = [
        s
        async for s in svc.graph.aget_state_history(
            config_of(thread_id), filter={"keel_run_id": run_id}
        )
    ]
    steps.reverse()
    if steps and steps[0].parent_config:
        steps.insert(0, await svc.graph.aget_state(steps[0].parent_config))
    return steps


async def _final_parts(
    svc: Services, thread_id: str, run_id: str, modes: list[str]
) -> list[dict[str, str]]:
    """The ``updates`` and ``values`` parts of a finished run, from its checkpoints."""
    if not {"updates", "values"} & set(modes):
        return []
    steps = await _run_steps(svc, thread_id, run_id)
    last = steps[-1] if steps else await snapshot(svc, thread_id)
    parts: list[dict[str, str]] = []
    if "updates" in modes:
        parts += [sse("updates", update) for update in updates_out(steps)]
        if interrupts := values_out(last).get("__interrupt__"):
            parts.append(sse("updates", {"__interrupt__": interrupts}))
    if "values" in modes:
        parts.append(sse("values", values_out(last)))
    return parts


async def run_frames(
    svc: Services,
    thread_id: str,
    run_id: str,
    after: int,
    modes: list[str],
    cancel_on_disconnect: bool = False,
) -> AsyncIterator[dict[str, str]]:
    """The protocol stream of a run: its events after ``after``, until it finishes."""
    yield sse("metadata", {"run_id": run_id, "attempt": 1})
    finished = False
    try:
        async for body in _events(svc, thread_id, run_id, after):
            if body["type"] == "run_finished":
                for part in await _final_parts(svc, thread_id, run_id, modes):
                    yield part
                finished = True
            for part in event_parts(body, modes):
                yield part
    finally:
        if cancel_on_disconnect and not finished:
            await svc.executor.cancel(run_id)


async def _events(
    svc: Services, thread_id: str, run_id: str, after: int
) -> AsyncIterator[dict[str, Any]]:
    """The run's events after ``after`` (log, then live) as wire dicts, until it finishes."""
    stream = LiveStream(
        svc.event_log, svc.broker, thread_id, after, until_run=run_id, run_id=run_id
    )
    async for frames in stream:
        for frame in frames:
            yield frame.wire()


async def outcome(svc: Services, thread_id: str, run_id: str, after: int = 0) -> dict[str, Any]:
    """Wait for the run to finish: its final values, or ``__error__`` if it failed."""
    error: dict[str, Any] | None = None
    async for body in _events(svc, thread_id, run_id, after):
        if body["type"] == "error":
            error = body["data"]
    if error is not None:
        return {"__error__": {"error": error.get("code"), "message": error.get("message")}}
    steps = await _run_steps(svc, thread_id, run_id)
    return values_out(steps[-1] if steps else await snapshot(svc, thread_id))


async def _own_run(
    svc: Services, identity: Identity, thread_id: str, run_id: str
) -> dict[str, Any]:
    run = await svc.store.run(identity, run_id)
    if run["thread_id"] != thread_id:
        raise NotFound(f"run {run_id} not found")
    return run


async def _start_unstreamed(
    svc: Services, identity: Identity, thread_id: str, body: RunCreate, trace_id: str
) -> str:
    """Start a run no stream of this request follows (background, wait): a quota ticket only."""
    await _own_thread(svc, identity, thread_id, body)
    body.modes()
    ticket = await svc.scheduler.submit(identity)  # 429 when over quota
    try:
        return await start_run(svc, identity, thread_id, body, trace_id, ticket)
    except BaseException:
        await ticket.finish()
        raise


@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, body: RunCreate, svc: Svc, identity: CurrentIdentity, trace_id: TraceId
) -> JSONResponse:
    """Start a background run; the answer is the run, its events go to the log."""
    run_id = await _start_unstreamed(svc, identity, thread_id, body, trace_id)
    run = run_out(await svc.store.run(identity, run_id), body.multitask_strategy or "reject")
    return JSONResponse(run, headers=_links(thread_id, run_id, "join"))


@router.post("/threads/{thread_id}/runs/stream")
async def stream_run(
    thread_id: str, body: RunCreate, svc: Svc, identity: CurrentIdentity, trace_id: TraceId
) -> EventSourceResponse:
    """Start a run and stream it in the protocol's stream modes."""
    await _own_thread(svc, identity, thread_id, body)
    modes = body.modes()
    after = await svc.event_log.last_seq(thread_id)
    release, run_id = await admitted(
        svc, identity, lambda ticket: start_run(svc, identity, thread_id, body, trace_id, ticket)
    )
    frames = run_frames(svc, thread_id, run_id, after, modes, body.on_disconnect == "cancel")
    return sse_response(frames, trace_id, release, _links(thread_id, run_id, "stream"))


@router.post("/threads/{thread_id}/runs/wait")
async def wait_run(
    thread_id: str, body: RunCreate, svc: Svc, identity: CurrentIdentity, trace_id: TraceId
) -> JSONResponse:
    """Start a run and answer its final values once it ends."""
    after = await svc.event_log.last_seq(thread_id)
    run_id = await _start_unstreamed(svc, identity, thread_id, body, trace_id)
    result = await outcome(svc, thread_id, run_id, after)
    return JSONResponse(result, headers=_links(thread_id, run_id, "join"))


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str,
    svc: Svc,
    identity: CurrentIdentity,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The thread's runs, newest first."""
    await svc.store.thread(identity, thread_id)
    rows = await svc.store.thread_runs(identity, thread_id, limit, offset)
    return [r for r in map(run_out, rows) if status in (None, r["status"])]


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(
    thread_id: str, run_id: str, svc: Svc, identity: CurrentIdentity
) -> dict[str, Any]:
    """One run of the caller's thread."""
    return run_out(await _own_run(svc, identity, thread_id, run_id))


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(
    thread_id: str, run_id: str, svc: Svc, identity: CurrentIdentity
) -> JSONResponse:
    """Wait for the run to finish; its final values."""
    await _own_run(svc, identity, thread_id, run_id)
    result = await outcome(svc, thread_id, run_id)
    return JSONResponse(result, headers=_links(thread_id, run_id, "join"))


@router.get("/threads/{thread_id}/runs/{run_id}/stream")
async def join_run_stream(
    thread_id: str,
    run_id: str,
    svc: Svc,
    identity: CurrentIdentity,
    trace_id: TraceId,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_SEQ)] = None,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    cancel_on_disconnect: bool = False,
) -> EventSourceResponse:
    """The run's stream after ``Last-Event-ID`` (from its start without it), live to its end."""
    await _own_run(svc, identity, thread_id, run_id)
    modes = checked_modes(stream_mode or _ALL_MODES)
    release = await stream_slot(svc, identity)
    frames = run_frames(svc, thread_id, run_id, last_event_id or 0, modes, cancel_on_disconnect)
    return sse_response(frames, trace_id, release, _links(thread_id, run_id, "stream"))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(
    thread_id: str,
    run_id: str,
    svc: Svc,
    identity: CurrentIdentity,
    wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Response:
    """Cancel a pending or running run; with ``wait``, answer once it has ended.

    Both actions stop the run; its events and record stay (the log loses nothing).
    """
    run = await _own_run(svc, identity, thread_id, run_id)
    if run["status"] not in ("queued", "running"):
        raise Conflict(f"run {run_id} is not pending or running (status {run['status']})")
    await svc.executor.cancel(run_id)
    if not wait:
        return Response(status_code=202)
    await outcome(svc, thread_id, run_id)
    return JSONResponse(
        run_out(await svc.store.run(identity, run_id)), headers=_links(thread_id, run_id, "join")
    )


async def _new_thread(svc: Services, identity: Identity, body: RunCreate) -> str:
    """A fresh thread of the caller's for a run that names none (kept, like every thread)."""
    cap = svc.quotas.limits_for(identity).max_threads
    row = await svc.store.create_thread(identity, str(uuid.uuid4()), cap, body.metadata)
    thread_id: str = row["thread_id"]
    return thread_id


def _stateless(threaded: _Threaded, doc: str) -> Callable[..., Awaitable[Response]]:
    """The protocol's stateless form of ``threaded``: the run goes on a new thread."""

    async def route(
        body: RunCreate, svc: Svc, identity: CurrentIdentity, trace_id: TraceId
    ) -> Response:
        body.modes()
        return await threaded(await _new_thread(svc, identity, body), body, svc, identity, trace_id)

    route.__doc__ = doc
    return route


for _verb, _threaded, _doc in (
    ("create", create_run, "A background run on a new thread of the caller's."),
    ("stream", stream_run, "A streamed run on a new thread of the caller's."),
    ("wait", wait_run, "A run on a new thread of the caller's; its final values."),
):
    router.add_api_route(
        "/runs" if _verb == "create" else f"/runs/{_verb}",
        _stateless(_threaded, _doc),
        methods=["POST"],
        name=f"{_verb}_stateless_run",
    )
