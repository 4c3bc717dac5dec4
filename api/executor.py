"""The run executor: runs the graph as a task that outlives its HTTP client.

For each run it streams the graph's custom events, wraps them in envelopes (gap-free ``seq``
per thread), writes them to the event log in batches (one transaction per batch) and then
publishes them to live subscribers. It always ends a run with ``run_finished``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from api.streaming import Broker, EventLog
from core.errors import Conflict, KeelError
from core.events import Event, NodeEvent, envelope, now
from core.identity import Identity
from core.settings import Settings
from core.tracing import run_id_var, thread_id_var, trace_id_var
from graphs.context import RunContext
from tools.gateway import ToolGateway

log = logging.getLogger(__name__)

_BATCH = 256
_WRITE_RETRIES = 3


@dataclass
class RunHandle:
    """A run in progress in this process."""

    run_id: str
    thread_id: str
    trace_id: str
    identity: Identity
    seq: int
    task: asyncio.Task[None] | None = None
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.monotonic)
    usage: dict[str, int] = field(default_factory=dict)
    status: str = "running"
    finished: bool = False


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
        return "model_error", f"The language model failed ({what})."
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
    ) -> None:
        """Wire the executor to the compiled graph, the stores and the tool gateway."""
        self.settings = settings
        self.graph = graph
        self.pool = pool
        self.log = event_log
        self.broker = broker
        self.chat_model = chat_model
        self.tools = tools
        self.active: dict[str, RunHandle] = {}
        self._by_thread: dict[str, str] = {}

    def active_run(self, thread_id: str) -> str | None:
        """The run_id running on ``thread_id`` in this process, if any."""
        return self._by_thread.get(thread_id)

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
    ) -> RunHandle:
        """Record the run and start it as a task; refuses a second run on a busy thread."""
        if thread_id in self._by_thread:
            raise Conflict(f"thread {thread_id} already has an active run")
        handle = RunHandle(run_id, thread_id, trace_id, identity, seq=0)
        self._by_thread[thread_id] = run_id
        self.active[run_id] = handle
        try:
            handle.seq = await self.log.last_seq(thread_id)
            async with self.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO runs (run_id, thread_id, trace_id, agent, status)"
                    " VALUES (%s, %s, %s, %s, 'running')",
                    (run_id, thread_id, trace_id, agent),
                )
        except BaseException:
            self._forget(handle)
            raise
        handle.task = asyncio.create_task(
            self._run(handle, message, agent, checkpoint_id), name=f"run-{run_id}"
        )
        return handle

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run of this process; returns whether it was running."""
        handle = self.active.get(run_id)
        if handle is None or handle.task is None:
            return False
        handle.task.cancel()
        return True

    async def shutdown(self) -> None:
        """Cancel every active run and wait for their final events to be written."""
        tasks = [h.task for h in self.active.values() if h.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, handle: RunHandle) -> None:
        self.active.pop(handle.run_id, None)
        if self._by_thread.get(handle.thread_id) == handle.run_id:
            del self._by_thread[handle.thread_id]

    def _emit(self, handle: RunHandle, ev: NodeEvent) -> None:
        handle.seq += 1
        handle.queue.put_nowait(
            envelope(
                ev,
                seq=handle.seq,
                thread_id=handle.thread_id,
                run_id=handle.run_id,
                trace_id=handle.trace_id,
                ts=now(),
            )
        )

    async def _writer(self, handle: RunHandle) -> None:
        """Drain the run's queue: persist each batch in one transaction, then publish it."""
        done = False
        while not done:
            batch: list[Event] = []
            item = await handle.queue.get()
            while True:
                if item is None:
                    done = True
                    break
                batch.append(item)
                if len(batch) >= _BATCH or handle.queue.empty():
                    break
                item = handle.queue.get_nowait()
            for attempt in range(_WRITE_RETRIES):
                try:
                    await self.log.append(batch)
                    break
                except Exception:
                    if attempt == _WRITE_RETRIES - 1:
                        raise
                    log.warning("event batch write failed; retrying", exc_info=True)
                    await asyncio.sleep(0.2 * 2**attempt)
            if done:
                # Record the outcome and free the thread before clients see run_finished,
                # so a client that reacts to it (reads the run, starts the next) never races.
                await self._finish(handle, handle.status)
            self.broker.publish(handle.thread_id, batch)

    async def _run(
        self, handle: RunHandle, message: str, agent: str, checkpoint_id: str | None
    ) -> None:
        trace_id_var.set(handle.trace_id)
        run_id_var.set(handle.run_id)
        thread_id_var.set(handle.thread_id)
        writer = asyncio.create_task(self._writer(handle), name=f"writer-{handle.run_id}")
        status = "success"
        ident = handle.identity
        self._emit(
            handle,
            NodeEvent(
                type="run_started",
                data={
                    "agent": agent,
                    "message": message,
                    "parent_checkpoint_id": checkpoint_id,
                },
            ),
        )
        log.info("run started")
        try:
            configurable: dict[str, Any] = {"thread_id": handle.thread_id}
            if checkpoint_id:
                configurable["checkpoint_id"] = checkpoint_id
            context = RunContext(
                user_id=ident.user_id,
                tenant=ident.tenant,
                scopes=ident.scopes,
                tier=ident.tier,
                trace_id=handle.trace_id,
                run_id=handle.run_id,
                thread_id=handle.thread_id,
                llm=self.settings.llm,
                chat_model=self.chat_model,
                agent=agent,
                tools=self.tools,
            )
            config: Any = {
                "configurable": configurable,
                "recursion_limit": self.settings.runs.recursion_limit,
                "metadata": {
                    "trace_id": handle.trace_id,
                    "keel_run_id": handle.run_id,
                    "user_id": ident.user_id,
                    "tenant": ident.tenant,
                    "agent": agent,
                },
            }
            async for mode, chunk in self.graph.astream(
                {"messages": [HumanMessage(message)]},
                config,
                context=context,
                stream_mode=["custom", "updates"],
            ):
                if mode == "custom":
                    self._emit(handle, NodeEvent.model_validate(chunk))
                elif mode == "updates" and isinstance(chunk, dict):
                    for update in chunk.values():
                        if isinstance(update, dict) and "usage" in update:
                            for k, v in update["usage"].items():
                                handle.usage[k] = handle.usage.get(k, 0) + int(v)
            self._emit(handle, NodeEvent(type="agent_status", data={"status": "done"}))
        except asyncio.CancelledError:
            status = "cancelled"
            self._emit(handle, NodeEvent(type="agent_status", data={"status": "cancelled"}))
        except Exception as exc:
            status = "error"
            code, message_ = _public_error(exc)
            log.exception("run failed")
            self._emit(handle, NodeEvent(type="agent_status", data={"status": "error"}))
            self._emit(handle, NodeEvent(type="error", data={"code": code, "message": message_}))
        duration_ms = round((time.monotonic() - handle.started) * 1000, 1)
        self._emit(
            handle,
            NodeEvent(
                type="run_finished",
                data={
                    "status": status,
                    "usage": handle.usage,
                    "duration_ms": duration_ms,
                },
            ),
        )
        handle.status = status
        handle.queue.put_nowait(None)
        try:
            await asyncio.shield(writer)
        finally:
            if not handle.finished:
                await self._finish(handle, status)
        log.info("run finished", extra={"keel": {"status": status, "duration_ms": duration_ms}})

    async def _finish(self, handle: RunHandle, status: str) -> None:
        handle.finished = True
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE runs SET status = %s, finished_at = now(), usage = %s"
                    " WHERE run_id = %s",
                    (status, Jsonb(handle.usage), handle.run_id),
                )
        finally:
            self._forget(handle)
