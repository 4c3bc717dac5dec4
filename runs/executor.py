"""The run executor: runs the graph as a task that outlives its HTTP client (practices 3, 5).

For each run it streams the graph's custom events, wraps them in envelopes (gap-free ``seq``
per thread), writes them to the event log in batches (one transaction per batch) and then
publishes them to live subscribers. It always ends a run with ``run_finished``.

One run at a time writes to a thread. A second run on a busy thread follows the configured
double-texting policy: ``reject`` (409), ``enqueue`` (it waits for the current run, in this
process), or ``interrupt`` (the current run is cancelled, then the new one starts).

Runs are owned by lease. Recording a run leases it to this process (``runs.owner``,
``lease_expires_at``); a heartbeat renews the leases of the process's runs every
``runs.heartbeat_s``. A lease not renewed for ``runs.stale_after_s`` lapses: its owner died (or
stalled), and every replica's heartbeat sweeps for such runs and takes them over, one replica
per run. The taker resumes the run from its last checkpoint with LangGraph's own resume (the
graph is streamed with ``None`` as input on the thread; a run whose first checkpoint never
landed starts again from its recorded request), continuing the thread's event sequence after
its last logged event with a ``warning{run_resumed}``, so a client resuming its stream with
``Last-Event-ID`` reads on without a gap or a duplicate. The node that was running when the
owner died runs again from its start (its events are told again after the warning). A run
is taken at most ``runs.max_attempts`` times in all; the claim past that closes it with
``error{run_attempts_exhausted}`` and ``run_finished{error}``. An owner whose lease was taken
from it stops its run without writing another event.

A run whose graph interrupted (a tool call held for the caller's confirmation) ends
``run_finished{interrupted}``; a confirm request starts a new run with ``resume``, which feeds
the decision to the graph as ``Command(resume=...)`` instead of a new message.

Its statements on the ``runs`` table (record, claim, lease renewal, take-over) are
``RunStore``'s (runs/store.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import openai
import psycopg
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from opentelemetry import context as otel_context
from psycopg_pool import AsyncConnectionPool

from core.errors import Conflict, KeelError
from core.events import Event, NodeEvent, RunStatus, envelope, now
from core.identity import Identity
from core.otel import context_for, tracer
from core.settings import DoubleTexting, LLMSettings, Settings
from core.tracing import run_id_var, thread_id_var, trace_id_var
from graphs.context import RunContext
from graphs.spans import SpanCallbacks
from memory.layers import MemoryLayers
from runs import langsmith_runs
from runs.coalesce import coalesce, take
from runs.event_log import Broker, EventLog, notify_cancel
from runs.feedback import FeedbackStore, VariantRouter
from runs.metrics import observe_event
from runs.scheduler import Ticket
from runs.store import RunStore
from tools.gateway import ToolGateway

log = logging.getLogger(__name__)
_tracer = tracer("keel.run")

_BATCH = 256
# A batch that cannot be written is retried through a database outage (backoff capped at 1 s)
# for this long: the events wait in memory, in order, so the log stays gap-free and the run's
# stream ends once Postgres is back. Giving up sooner lost every later event of the run.
_WRITE_GIVE_UP_S = 120.0
_INTERRUPTED = "The server running this request stopped before it finished; ask again."
_EXHAUSTED = (
    "The servers running this request stopped before it finished, too many times; ask again."
)


@dataclass
class RunHandle:
    """A run in progress (or queued) in this process."""

    run_id: str
    thread_id: str
    trace_id: str
    identity: Identity
    agent: str = "research"
    message: str = ""
    message_id: str | None = None  # the id the client gave the question, if any
    checkpoint_id: str | None = None
    resumes_run_id: str | None = None
    seq: int = 0
    task: asyncio.Task[None] | None = None
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.monotonic)
    usage: dict[str, int] = field(default_factory=dict)
    ticket: Ticket | None = None
    max_duration_s: float | None = None
    variant: str | None = None
    variant_reason: str | None = None
    resume: dict[str, Any] | None = None  # the decision this run feeds to an interrupted graph
    interrupted: bool = False  # the graph paused in ``interrupt`` (a held tool call)
    attempt: int = 1  # 2 and up: taken over from a replica that died
    logged_start: bool = False  # run_started is in the log already (a taken-over run)
    lost: bool = False  # another replica took the run over: write nothing more
    # Until when (monotonic) the lease surely holds: half a lease after its last renewal was
    # sent. Past it, the writer renews before it writes, so it never writes without the lease.
    lease_until: float = 0.0

    def request(self) -> dict[str, Any]:
        """What a replica that takes the run over needs to start it again."""
        ident = self.identity
        return {
            "identity": {
                "user_id": ident.user_id,
                "tenant": ident.tenant,
                "scopes": sorted(ident.scopes),
                "tier": ident.tier,
                "api_key_id": ident.api_key_id,
                "tz": ident.tz,
            },
            "message": self.message,
            "message_id": self.message_id,
            "checkpoint_id": self.checkpoint_id,
            "resume": self.resume,
            "resumes_run_id": self.resumes_run_id,
            "max_duration_s": self.max_duration_s,
        }

    @classmethod
    def taken_over(cls, row: dict[str, Any]) -> RunHandle:
        """The handle of a run this process took over (a ``RunStore.take_over`` row)."""
        req = row["request"]
        ident = req["identity"]
        return cls(
            row["run_id"],
            row["thread_id"],
            row["trace_id"],
            Identity(**{**ident, "scopes": frozenset(ident["scopes"])}),
            agent=row["agent"],
            message=req["message"],
            message_id=req.get("message_id"),
            checkpoint_id=req["checkpoint_id"],
            resumes_run_id=req["resumes_run_id"],
            seq=int(row["seq"]),
            max_duration_s=req["max_duration_s"],
            variant=row["agent_variant"],
            resume=req["resume"],
            attempt=int(row["attempts"]),
            logged_start=bool(row["started"]),
        )


def _transient(exc: BaseException) -> bool:
    """Whether a failed write may succeed later (anything but a refusal of the data itself)."""
    return not isinstance(
        exc, (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, ValueError)
    )


def _public_error(exc: BaseException) -> tuple[str, str]:
    """A stable code and a message safe to show, never a stack trace."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__
    for err in chain:
        if isinstance(err, KeelError):
            return err.code, err.detail
    api_errors = [e for e in chain if isinstance(e, openai.APIError)]
    if api_errors:
        status = getattr(api_errors[-1], "status_code", None)
        what = f"HTTP {status}" if status else type(api_errors[-1]).__name__
        return "model_error", (
            f"The language model is not answering right now ({what}). Please try again in a"
            " moment, or rephrase your question."
        )
    return "run_failed", "The run failed; quote the trace_id to find out why."


def _resumed(attempt: int, of: int) -> NodeEvent:
    """The warning a taken-over run tells before it goes on."""
    return NodeEvent(
        type="warning",
        data={
            "code": "run_resumed",
            "message": "The server running this request stopped; another one resumed it from"
            f" its last saved step, which starts again (attempt {attempt} of {of}).",
        },
    )


class RunExecutor:
    """Starts runs, owns their tasks, and turns their events into the durable stream."""

    def __init__(
        self,
        settings: Settings,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        pool: AsyncConnectionPool[Any],
        event_log: EventLog,
        broker: Broker,
        chat_model: BaseChatModel | None = None,
        *,
        tools: ToolGateway | None = None,
        memory: MemoryLayers | None = None,
        store: RunStore | None = None,
    ) -> None:
        """Wire the executor to the compiled graph, the stores and the tool gateway.

        ``store`` is the app's run store (one on ``pool`` when not given).
        """
        self.settings = settings
        self.graph = graph
        self.pool = pool
        self.log = event_log
        self.broker = broker
        self.chat_model = chat_model
        self.tools = tools
        self.memory = memory
        self.store = store or RunStore(pool, settings)
        self.feedback = FeedbackStore(pool, settings, self.store)
        self._routers = {
            name: VariantRouter(settings, spec.routing.seed)
            for name, spec in settings.agents.items()
        }
        self.active: dict[str, RunHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        # This process's name on the runs it leases (and on its event notifications).
        self.owner = event_log.instance or uuid.uuid4().hex

    async def start_heartbeat(self) -> None:
        """Renew the leases of this process's runs, and take over runs whose lease lapsed."""
        self._heartbeat = asyncio.create_task(self._beat(), name="run-heartbeat")

    async def _beat(self) -> None:
        while True:
            try:
                await self.renew_leases()
                await self.take_over()
            except Exception as exc:
                log.warning("run heartbeat failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.runs.heartbeat_s)

    async def renew_leases(self) -> None:
        """Renew this process's leases; stop, silently, the runs another replica took over."""
        if self.active:
            await self._renew(list(self.active.values()))

    async def _renew(self, handles: list[RunHandle]) -> bool:
        """Renew the leases of ``handles``; returns whether all are still this process's."""
        sent = time.monotonic()
        held = await self.store.heartbeat([h.run_id for h in handles], self.owner)
        for handle in handles:
            if handle.run_id in held:
                handle.lease_until = sent + self.settings.runs.stale_after_s / 2
            elif not handle.lost:
                log.warning("lost the lease of a run; another replica resumes it")
                handle.lost = True
                if handle.task is not None:
                    handle.task.cancel()
        return all(h.run_id in held for h in handles)

    async def take_over(self) -> int:
        """Take over the runs whose lease lapsed: resume each, or close it when it may not be.

        A run is resumed while it has attempts left (``runs.max_attempts``); past that, or
        without a recorded request, it is closed after its thread's last event with
        ``agent_status: error``, ``error`` and ``run_finished{error}``. Returns how many runs
        this call took.
        """
        sent = time.monotonic()
        rows = await self.store.take_over(self.owner)
        for row in rows:
            if row["request"] is None:
                await self._close(row, "run_interrupted", _INTERRUPTED)
            elif row["attempts"] > self.settings.runs.max_attempts:
                await self._close(row, "run_attempts_exhausted", _EXHAUSTED)
            else:
                handle = RunHandle.taken_over(row)
                handle.lease_until = sent + self.settings.runs.stale_after_s / 2
                self._resume(handle)
        return len(rows)

    def _resume(self, handle: RunHandle) -> None:
        log.warning(
            "resuming a run whose owner died",
            extra={"keel": {"run_id": handle.run_id, "attempt": handle.attempt}},
        )
        stale = self.active.get(handle.run_id)
        if stale is not None and stale.task is not None:  # this process stalled past its lease
            stale.lost = True
            stale.task.cancel()  # it ends before the resumed one takes the thread's lock
        self.active[handle.run_id] = handle
        handle.task = asyncio.create_task(self._run(handle), name=f"run-{handle.run_id}")

    async def _close(self, row: dict[str, Any], code: str, message: str) -> None:
        """End a taken-over run that may not be resumed, after its thread's last event."""
        tail = [
            NodeEvent(type="agent_status", data={"status": "error"}),
            NodeEvent(type="error", data={"code": code, "message": message}),
            NodeEvent(
                type="run_finished",
                data={"status": "error", "duration_ms": round(float(row["age_ms"]), 1)},
            ),
        ]
        events = [
            envelope(
                ev,
                seq=int(row["seq"]) + i,
                thread_id=row["thread_id"],
                run_id=row["run_id"],
                trace_id=row["trace_id"],
                ts=now(),
            )
            for i, ev in enumerate(tail, 1)
        ]
        await self.log.append(events)
        log.warning(
            "closed a run whose owner died",
            extra={"keel": {"run_id": row["run_id"], "code": code}},
        )
        self.broker.publish(row["thread_id"], events)

    def local_run(self, thread_id: str) -> str | None:
        """A run of ``thread_id`` in this process, alive whatever its heartbeat says.

        A database outage stops the heartbeat, not the run.
        """
        for handle in self.active.values():
            if handle.thread_id == thread_id:
                return handle.run_id
        return None

    async def start(
        self,
        *,
        identity: Identity,
        thread_id: str,
        run_id: str,
        trace_id: str,
        message: str,
        agent: str,
        message_id: str | None = None,
        checkpoint_id: str | None = None,
        ticket: Ticket | None = None,
        max_duration_s: float | None = None,
        resume: dict[str, Any] | None = None,
        resumes_run_id: str | None = None,
        double_texting: DoubleTexting | None = None,
    ) -> RunHandle:
        """Record the run and start it as a task, applying the double-texting policy.

        The policy is ``double_texting`` when given (a caller's choice for this run), else
        ``runs.double_texting``.

        With a quota ``ticket`` the run waits for its turn first (streaming ``queued``
        positions) and gives the ticket back when it ends; ``max_duration_s`` bounds the graph.
        With ``resume`` the run resumes the thread's interrupted graph (the run
        ``resumes_run_id``) with that value; ``message`` only describes it. Otherwise the
        question enters the state under ``message_id`` (the client's id for it) when given.
        """
        handle = RunHandle(
            run_id,
            thread_id,
            trace_id,
            identity,
            agent=agent,
            message=message,
            message_id=message_id,
            checkpoint_id=checkpoint_id,
            resumes_run_id=resumes_run_id,
            ticket=ticket,
            max_duration_s=max_duration_s,
            resume=resume,
        )
        await self._route(handle, agent)
        await self._admit(handle, double_texting)
        self.active[run_id] = handle
        handle.task = asyncio.create_task(self._run(handle), name=f"run-{run_id}")
        return handle

    async def _route(self, handle: RunHandle, agent: str) -> None:
        """Choose the run's agent variant (by Thompson sampling on feedback when configured)."""
        spec = self.settings.agents[agent]
        learn = spec.routing.policy == "thompson" and len(spec.variants) > 1
        outcomes = await self.feedback.outcomes(agent, handle.identity.tier) if learn else {}
        handle.variant, handle.variant_reason = self._routers[agent].choose(spec, outcomes)

    async def _admit(self, handle: RunHandle, double_texting: DoubleTexting | None = None) -> None:
        """Record the run under the double-texting policy; note a quick follow-up.

        Raises:
            Conflict: the thread has a live run and the policy is ``reject``.
        """
        policy = double_texting or self.settings.runs.double_texting
        busy, answered = await self.store.record(
            identity=handle.identity,
            run_id=handle.run_id,
            thread_id=handle.thread_id,
            trace_id=handle.trace_id,
            agent=handle.agent,
            variant=handle.variant,
            resumes=handle.resumes_run_id,
            reject=policy == "reject",
            owner=self.owner,
            request=handle.request(),
        )
        if busy is not None:
            if policy == "reject":
                raise Conflict(f"thread {handle.thread_id} already has an active run ({busy})")
            if policy == "interrupt":
                await self.cancel(busy)
        if answered is not None and handle.resume is None:  # a confirmation is no follow-up
            try:
                await self.feedback.note_follow_up(handle.identity, answered)
            except Exception:  # an implicit signal never stops a run
                log.exception("could not record the follow-up signal")

    async def cancel(self, run_id: str) -> bool:
        """Cancel ``run_id`` here if it runs here, else ask the other replicas to."""
        if await self.cancel_local(run_id):
            return True
        await notify_cancel(self.pool, run_id)
        return False

    async def cancel_local(self, run_id: str) -> bool:
        """Cancel a run of this process; returns whether it was here."""
        handle = self.active.get(run_id)
        if handle is None or handle.task is None:
            return False
        handle.task.cancel()
        return True

    async def shutdown(self) -> None:
        """Cancel every active run and wait for their final events to be written."""
        if self._heartbeat:
            self._heartbeat.cancel()
        tasks = [h.task for h in self.active.values() if h.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _emit(self, handle: RunHandle, ev: NodeEvent) -> None:
        """Validate ``ev`` into an envelope now; the writer numbers it (seqs have no gaps)."""
        if handle.lost:
            return  # the run is another replica's now
        handle.queue.put_nowait(
            envelope(
                ev,
                seq=handle.seq + 1,  # provisional: text deltas may still be joined
                thread_id=handle.thread_id,
                run_id=handle.run_id,
                trace_id=handle.trace_id,
                ts=now(),
            )
        )

    async def _writer(self, handle: RunHandle) -> None:
        """Drain the run's queue: join text deltas, number, persist and publish each batch.

        The log group-commits the batch with other runs' batches; it is published (to live
        readers) only once it is durable.
        """
        window = self.settings.streams.delta_window_ms / 1000
        done, texted = False, False
        while not done:
            # The run's first text goes out at once (time to first token); later text waits
            # for the window's other pieces.
            events, done = await take(handle.queue, window if texted else 0.0, _BATCH)
            batch = coalesce(events, self.settings.streams.delta_max_chars) if window else events
            texted = texted or any(ev.type == "text_delta" for ev in batch)
            for ev in batch:
                handle.seq += 1
                ev.seq = handle.seq
            if not await self._persist(handle, batch):
                return  # the run is another replica's now: these events are not ours
            for ev in batch:
                observe_event(ev)
            self.broker.publish(handle.thread_id, batch)

    async def _persist(self, handle: RunHandle, batch: list[Event]) -> bool:
        """Append ``batch`` to the log under the run's lease, retrying through a database outage.

        ``False`` when the lease is lost: the run is another replica's now.
        """
        give_up = time.monotonic() + _WRITE_GIVE_UP_S
        for attempt in itertools.count():
            try:
                if time.monotonic() > handle.lease_until and not await self._renew([handle]):
                    return False
                await self.log.append(batch)
                return True
            except psycopg.errors.UniqueViolation:
                # After a lost connection: the earlier attempt may have committed.
                if attempt > 0 and await self.log.holds(batch):
                    return True
                raise
            except Exception as exc:
                if time.monotonic() > give_up or not _transient(exc):
                    raise
                if attempt == 0:
                    log.warning("event batch write failed; retrying", exc_info=True)
                await asyncio.sleep(min(1.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable: every attempt returns or raises")

    async def _run(self, handle: RunHandle) -> None:
        trace_id_var.set(handle.trace_id)
        run_id_var.set(handle.run_id)
        thread_id_var.set(handle.thread_id)
        lock = self._locks.setdefault(handle.thread_id, asyncio.Lock())
        cancelled_while_queued = False
        try:
            await lock.acquire()
        except asyncio.CancelledError:
            cancelled_while_queued = True
            await lock.acquire()
        try:
            await self._run_locked(handle, cancelled_while_queued)
        finally:
            lock.release()
            if not lock.locked() and self._locks.get(handle.thread_id) is lock:
                del self._locks[handle.thread_id]
            if self.active.get(handle.run_id) is handle:
                del self.active[handle.run_id]

    async def _claim(self, handle: RunHandle, *, wait: bool) -> None:
        """Lease the run to this process and read the thread's last seq, in one statement.

        With ``wait``, first wait while another run still writes to the thread (it ends, or
        a sweep resumes or closes it); each try is that same one statement.
        """
        while True:
            sent = time.monotonic()
            seq = await self.store.claim(
                handle.thread_id, handle.run_id, self.owner, force=not wait
            )
            if seq is not None:
                handle.seq = seq
                handle.lease_until = sent + self.settings.runs.stale_after_s / 2
                return
            await asyncio.sleep(0.2)

    async def _run_locked(self, handle: RunHandle, cancelled: bool) -> None:
        if handle.attempt == 1:  # a taken-over run was claimed by the take-over
            if not cancelled:
                try:
                    await self._claim(handle, wait=True)
                except asyncio.CancelledError:
                    cancelled = True
            if cancelled:
                await self._claim(handle, wait=False)
        handle.started = time.monotonic()
        writer = asyncio.create_task(self._writer(handle), name=f"writer-{handle.run_id}")
        if not handle.logged_start:
            self._emit(
                handle,
                NodeEvent(
                    type="run_started",
                    data={
                        "agent": handle.agent,
                        "message": handle.message,
                        "parent_checkpoint_id": handle.checkpoint_id,
                        "agent_variant": handle.variant,
                        "variant_reason": handle.variant_reason,
                        "resumes_run_id": handle.resumes_run_id,
                    },
                ),
            )
        if handle.attempt > 1:
            self._emit(handle, _resumed(handle.attempt, self.settings.runs.max_attempts))
        log.info("run started", extra={"keel": {"agent_variant": handle.variant}})
        status = await self._execute(handle, cancelled)
        await self._end(handle, writer, status)

    async def _execute(self, handle: RunHandle, cancelled: bool) -> RunStatus:
        """Wait for the run's turn, then stream the graph within its time limit.

        Returns how the run ended; a failure is told in events, never raised.
        """
        deadline: asyncio.Timeout | None = None
        try:
            if cancelled:
                raise asyncio.CancelledError
            if handle.ticket is not None:
                while (position := await handle.ticket.updates.get()) is not None:
                    self._emit(
                        handle,
                        NodeEvent(
                            type="agent_status", data={"status": "queued", "position": position}
                        ),
                    )
            async with asyncio.timeout(handle.max_duration_s) as deadline:
                with self._span(handle):
                    await self._stream_graph(handle)
        except asyncio.CancelledError:
            self._emit(handle, NodeEvent(type="agent_status", data={"status": "cancelled"}))
            return "cancelled"
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                return self._timed_out(handle)
            return self._failed(handle, exc)
        if handle.interrupted:
            return "interrupted"  # awaiting_confirmation was the graph's last status
        self._emit(handle, NodeEvent(type="agent_status", data={"status": "done"}))
        return "success"

    def _span(self, handle: RunHandle) -> AbstractContextManager[Any]:
        """The run's OpenTelemetry span, under the trace of the request that started it."""
        return _tracer.start_as_current_span(
            "run",
            context=context_for(handle.trace_id),
            attributes={
                "keel.run_id": handle.run_id,
                "keel.thread_id": handle.thread_id,
                "keel.agent": handle.agent,
                "keel.agent_variant": handle.variant or "",
                "keel.user_id": handle.identity.user_id,
                "keel.tenant": handle.identity.tenant,
            },
        )

    def _timed_out(self, handle: RunHandle) -> RunStatus:
        log.warning("run timed out")
        self._emit(
            handle,
            NodeEvent(
                type="warning",
                data={
                    "code": "run_timeout",
                    "message": f"The run exceeded its {handle.max_duration_s:g} s limit"
                    " and was cancelled.",
                },
            ),
        )
        return "timeout"

    def _failed(self, handle: RunHandle, exc: Exception) -> RunStatus:
        code, message = _public_error(exc)
        log.exception("run failed")
        self._emit(handle, NodeEvent(type="agent_status", data={"status": "error"}))
        self._emit(handle, NodeEvent(type="error", data={"code": code, "message": message}))
        return "error"

    async def _end(self, handle: RunHandle, writer: asyncio.Task[None], status: RunStatus) -> None:
        """Give the quota back, emit ``run_finished`` and wait for the last events' write."""
        if handle.ticket is not None:
            # Before run_finished, so a client that saw it can start its next run at once.
            try:
                await asyncio.shield(handle.ticket.finish(handle.usage.get("total_tokens", 0)))
            except Exception:
                log.warning("could not release the run's quota", exc_info=True)
        duration_ms = round((time.monotonic() - handle.started) * 1000, 1)
        self._emit(
            handle,
            NodeEvent(
                type="run_finished",
                data={"status": status, "usage": handle.usage, "duration_ms": duration_ms},
            ),
        )
        handle.queue.put_nowait(None)
        try:
            await asyncio.shield(writer)
        except Exception:
            log.exception("could not write the run's last events")
            if not handle.lost:
                await self._finish(handle, status)
        log.info("run finished", extra={"keel": {"status": status, "duration_ms": duration_ms}})

    def _config(self, handle: RunHandle) -> tuple[Any, RunContext]:
        """The run's LangGraph config (thread, callbacks, metadata) and its context."""
        ident, agent = handle.identity, handle.agent
        configurable: dict[str, Any] = {"thread_id": handle.thread_id}
        if handle.checkpoint_id:
            configurable["checkpoint_id"] = handle.checkpoint_id
        context = RunContext(
            identity=ident,
            trace_id=handle.trace_id,
            run_id=handle.run_id,
            thread_id=handle.thread_id,
            llm=self._llm_for(agent, handle.variant),
            chat_model=self.chat_model,
            agent=agent,
            tools=self.tools,
            timezone=ident.tz or self.settings.tools.default_timezone,
            llm_fault=self.settings.faults.llm,
            memory=self.memory,
        )
        callbacks: list[Any] = [SpanCallbacks(otel_context.get_current())]
        if (smith := langsmith_runs.tracer()) is not None:
            callbacks.append(smith)
        pins = self.settings.agents[agent].tools
        config: Any = {
            "configurable": configurable,
            "recursion_limit": self.settings.runs.recursion_limit,
            "callbacks": callbacks,
            # The LangSmith root run is Keel's run.
            "run_id": uuid.UUID(handle.run_id),
            "metadata": {
                "trace_id": handle.trace_id,
                # In every checkpoint's metadata: a taken-over run finds its own.
                "keel_run_id": handle.run_id,
                "user_id": ident.user_id,
                "tenant": ident.tenant,
                "agent": agent,
                "agent_variant": handle.variant,
                "tool_versions": {p: self.settings.mcp_servers[p].version for p in pins},
            },
        }
        return config, context

    async def _graph_input(self, handle: RunHandle, config: Any) -> Any:
        """What the graph is streamed with: the message, the caller's decision, or ``None``.

        ``None`` (LangGraph's resume from the thread's latest checkpoint) for a taken-over run
        whose own checkpoint landed before its owner died; such a run then goes on from the
        thread's latest checkpoint, so a fork's ``checkpoint_id`` is dropped from ``config``.
        """
        if handle.attempt > 1:
            latest = await self.graph.checkpointer.aget_tuple(  # type: ignore[union-attr]
                {"configurable": {"thread_id": handle.thread_id}}
            )
            if latest is not None and latest.metadata.get("keel_run_id") == handle.run_id:
                config["configurable"].pop("checkpoint_id", None)
                return None
        if handle.resume is not None:
            return Command(resume=handle.resume)
        return {"messages": [HumanMessage(handle.message, id=handle.message_id)]}

    async def _stream_graph(self, handle: RunHandle) -> None:
        config, context = self._config(handle)
        graph_input = await self._graph_input(handle, config)
        async for mode, chunk in self.graph.astream(
            graph_input,
            config,
            context=context,
            stream_mode=["custom", "updates"],
        ):
            if mode == "custom":
                self._emit(handle, NodeEvent.model_validate(chunk))
            elif mode == "updates" and isinstance(chunk, dict):
                if "__interrupt__" in chunk:
                    handle.interrupted = True
                for update in chunk.values():
                    if isinstance(update, dict) and "usage" in update:
                        for k, v in update["usage"].items():
                            handle.usage[k] = handle.usage.get(k, 0) + int(v)

    def _llm_for(self, agent: str, variant: str | None) -> LLMSettings:
        """The model settings with ``variant``'s changes applied."""
        spec = self.settings.agents[agent].variants.get(variant or "")
        if spec is None:
            return self.settings.llm
        update: dict[str, Any] = {}
        if spec.model is not None:
            update["model"] = spec.model
        if spec.temperature is not None:
            update["temperature"] = spec.temperature
        return self.settings.llm.model_copy(update=update)

    async def _finish(self, handle: RunHandle, status: str) -> None:
        """Close the run's row when its events could not be written."""
        await self.store.finish(handle.run_id, status, handle.usage)
