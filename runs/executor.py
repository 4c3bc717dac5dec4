"""The run executor: runs the graph as a task that outlives its HTTP client (practices 3, 5).

For each run it streams the graph's custom events, wraps them in envelopes (gap-free ``seq``
per thread), writes them to the event log in batches (one transaction per batch) and then
publishes them to live subscribers. It always ends a run with ``run_finished``.

One run at a time writes to a thread. A second run on a busy thread follows the configured
double-texting policy: ``reject`` (409), ``enqueue`` (it waits for the current run, in this
process), or ``interrupt`` (the current run is cancelled, then the new one starts). Runs send a
heartbeat, so a run left ``running`` by a crashed replica stops blocking its thread, and every
replica closes such orphans (policy: fail, not resume): it appends ``agent_status: error``,
``error{code: run_interrupted}`` and ``run_finished{error}`` after the run's last logged event,
so a client resuming its stream ends cleanly and the thread takes new runs.

A run whose graph interrupted (a tool call held for the caller's confirmation) ends
``run_finished{interrupted}``; a confirm request starts a new run with ``resume``, which feeds
the decision to the graph as ``Command(resume=...)`` instead of a new message.

Its statements on the ``runs`` table (record, claim, heartbeat, the orphan sweep) are
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
from core.settings import LLMSettings, Settings
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


@dataclass
class RunHandle:
    """A run in progress (or queued) in this process."""

    run_id: str
    thread_id: str
    trace_id: str
    identity: Identity
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

    async def start_heartbeat(self) -> None:
        """Keep the ``heartbeat_at`` of this process's runs fresh, and close orphaned runs."""
        self._heartbeat = asyncio.create_task(self._beat(), name="run-heartbeat")

    async def _beat(self) -> None:
        while True:
            try:
                if self.active:
                    await self.store.heartbeat(list(self.active))
                await self.close_orphans()
            except Exception as exc:
                log.warning("run heartbeat failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.runs.heartbeat_s)

    async def close_orphans(self) -> int:
        """End the runs whose process died (no heartbeat for ``runs.stale_after_s``).

        Each gets ``agent_status: error``, ``error{run_interrupted}`` and ``run_finished{error}``
        after its thread's last event. Two replicas racing for one orphan cannot both write:
        the second insert hits the ``(thread_id, seq)`` key and is dropped. Returns how many
        this call closed.
        """
        orphans = await self.store.stale_runs(list(self.active))
        closed = 0
        for row in orphans:
            last = await self.log.last_seq(row["thread_id"])
            message = "The server running this request stopped before it finished; ask again."
            tail = [
                NodeEvent(type="agent_status", data={"status": "error"}),
                NodeEvent(type="error", data={"code": "run_interrupted", "message": message}),
                NodeEvent(
                    type="run_finished",
                    data={"status": "error", "duration_ms": round(float(row["age_ms"]), 1)},
                ),
            ]
            events = [
                envelope(
                    ev,
                    seq=last + i,
                    thread_id=row["thread_id"],
                    run_id=row["run_id"],
                    trace_id=row["trace_id"],
                    ts=now(),
                )
                for i, ev in enumerate(tail, 1)
            ]
            try:
                await self.log.append(events)
            except psycopg.errors.UniqueViolation:
                continue  # another replica closed it, or the run wrote after all
            log.warning(
                "closed an orphaned run",
                extra={"keel": {"run_id": row["run_id"], "thread_id": row["thread_id"]}},
            )
            self.broker.publish(row["thread_id"], events)
            closed += 1
        return closed

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
        checkpoint_id: str | None = None,
        ticket: Ticket | None = None,
        max_duration_s: float | None = None,
        resume: dict[str, Any] | None = None,
        resumes_run_id: str | None = None,
    ) -> RunHandle:
        """Record the run and start it as a task, applying the double-texting policy.

        With a quota ``ticket`` the run waits for its turn first (streaming ``queued``
        positions) and gives the ticket back when it ends; ``max_duration_s`` bounds the graph.
        With ``resume`` the run resumes the thread's interrupted graph (the run
        ``resumes_run_id``) with that value; ``message`` only describes it.
        """
        handle = RunHandle(
            run_id,
            thread_id,
            trace_id,
            identity,
            ticket=ticket,
            max_duration_s=max_duration_s,
            resume=resume,
        )
        await self._route(handle, agent)
        await self._admit(handle, agent, resumes_run_id)
        self.active[run_id] = handle
        handle.task = asyncio.create_task(
            self._run(handle, message, agent, checkpoint_id, resumes_run_id), name=f"run-{run_id}"
        )
        return handle

    async def _route(self, handle: RunHandle, agent: str) -> None:
        """Choose the run's agent variant (by Thompson sampling on feedback when configured)."""
        spec = self.settings.agents[agent]
        learn = spec.routing.policy == "thompson" and len(spec.variants) > 1
        outcomes = await self.feedback.outcomes(agent, handle.identity.tier) if learn else {}
        handle.variant, handle.variant_reason = self._routers[agent].choose(spec, outcomes)

    async def _admit(self, handle: RunHandle, agent: str, resumes_run_id: str | None) -> None:
        """Record the run under the double-texting policy; note a quick follow-up.

        Raises:
            Conflict: the thread has a live run and the policy is ``reject``.
        """
        policy = self.settings.runs.double_texting
        busy, answered = await self.store.record(
            identity=handle.identity,
            run_id=handle.run_id,
            thread_id=handle.thread_id,
            trace_id=handle.trace_id,
            agent=agent,
            variant=handle.variant,
            resumes=resumes_run_id,
            reject=policy == "reject",
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
            await self._persist(batch)
            for ev in batch:
                observe_event(ev)
            self.broker.publish(handle.thread_id, batch)

    async def _persist(self, batch: list[Event]) -> None:
        """Append ``batch`` to the log, retrying through a database outage."""
        give_up = time.monotonic() + _WRITE_GIVE_UP_S
        for attempt in itertools.count():
            try:
                await self.log.append(batch)
                return
            except psycopg.errors.UniqueViolation:
                # After a lost connection: the earlier attempt may have committed.
                if attempt > 0 and await self.log.holds(batch):
                    return
                raise
            except Exception as exc:
                if time.monotonic() > give_up or not _transient(exc):
                    raise
                if attempt == 0:
                    log.warning("event batch write failed; retrying", exc_info=True)
                await asyncio.sleep(min(1.0, 0.1 * 2**attempt))

    async def _run(
        self,
        handle: RunHandle,
        message: str,
        agent: str,
        checkpoint_id: str | None,
        resumes_run_id: str | None = None,
    ) -> None:
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
            await self._run_locked(
                handle, message, agent, checkpoint_id, cancelled_while_queued, resumes_run_id
            )
        finally:
            lock.release()
            if not lock.locked() and self._locks.get(handle.thread_id) is lock:
                del self._locks[handle.thread_id]
            self.active.pop(handle.run_id, None)

    async def _claim(self, handle: RunHandle, *, wait: bool) -> None:
        """Mark the run running and read the thread's last seq, in one statement.

        With ``wait``, first wait (bounded by ``runs.stale_after_s``) while a live run of
        another replica still writes to the thread; each try is that same one statement, which
        claims the run only when no such run is found, or once the wait is over.
        """
        deadline = time.monotonic() + self.settings.runs.stale_after_s
        while True:
            force = not wait or time.monotonic() >= deadline
            seq = await self.store.claim(handle.thread_id, handle.run_id, force=force)
            if seq is not None:
                handle.seq = seq
                return
            await asyncio.sleep(0.2)

    async def _run_locked(
        self,
        handle: RunHandle,
        message: str,
        agent: str,
        checkpoint_id: str | None,
        cancelled: bool,
        resumes_run_id: str | None = None,
    ) -> None:
        if not cancelled:
            try:
                await self._claim(handle, wait=True)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            await self._claim(handle, wait=False)
        handle.started = time.monotonic()
        writer = asyncio.create_task(self._writer(handle), name=f"writer-{handle.run_id}")
        self._emit(
            handle,
            NodeEvent(
                type="run_started",
                data={
                    "agent": agent,
                    "message": message,
                    "parent_checkpoint_id": checkpoint_id,
                    "agent_variant": handle.variant,
                    "variant_reason": handle.variant_reason,
                    "resumes_run_id": resumes_run_id,
                },
            ),
        )
        log.info("run started", extra={"keel": {"agent_variant": handle.variant}})
        status = await self._execute(handle, message, agent, checkpoint_id, cancelled)
        await self._end(handle, writer, status)

    async def _execute(
        self,
        handle: RunHandle,
        message: str,
        agent: str,
        checkpoint_id: str | None,
        cancelled: bool,
    ) -> RunStatus:
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
                with self._span(handle, agent):
                    await self._stream_graph(handle, message, agent, checkpoint_id)
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

    def _span(self, handle: RunHandle, agent: str) -> AbstractContextManager[Any]:
        """The run's OpenTelemetry span, under the trace of the request that started it."""
        return _tracer.start_as_current_span(
            "run",
            context=context_for(handle.trace_id),
            attributes={
                "keel.run_id": handle.run_id,
                "keel.thread_id": handle.thread_id,
                "keel.agent": agent,
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
            await self._finish(handle, status)
        log.info("run finished", extra={"keel": {"status": status, "duration_ms": duration_ms}})

    async def _stream_graph(
        self, handle: RunHandle, message: str, agent: str, checkpoint_id: str | None
    ) -> None:
        ident = handle.identity
        configurable: dict[str, Any] = {"thread_id": handle.thread_id}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
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
                "keel_run_id": handle.run_id,
                "user_id": ident.user_id,
                "tenant": ident.tenant,
                "agent": agent,
                "agent_variant": handle.variant,
                "tool_versions": {p: self.settings.mcp_servers[p].version for p in pins},
            },
        }
        graph_input: Any = (
            Command(resume=handle.resume)
            if handle.resume is not None
            else {"messages": [HumanMessage(message)]}
        )
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
