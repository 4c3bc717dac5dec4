"""The FastAPI application: its assembly, and the lifespan wiring of the services it serves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from psycopg_pool import AsyncConnectionPool

from api import problems
from api.deps import Services
from api.middleware import BodyLimitMiddleware, HostCheckMiddleware, TraceMiddleware
from api.protocol import ROUTERS as PROTOCOL_ROUTERS
from api.routes import documents, feedback, memory, meta, threads, tools, traces, ui, usage
from core.db import migrate, open_pool
from core.errors import Unavailable
from core.identity import TokenVerifier
from core.otel import configure as configure_tracing
from core.otel import provider
from core.quotas import Quotas, forget, quotas_for
from core.serde import FailClosedSerializer
from core.settings import Settings
from core.tracing import install_log_context
from graphs.graph import build_graph
from graphs.llm import close_models
from memory.layers import open_memory
from runs.event_log import Broker, EventLog, Listener
from runs.executor import RunExecutor
from runs.scheduler import FairScheduler
from runs.store import RunStore
from tools.gateway import ToolGateway


async def checkpoint_pool(
    settings: Settings, pool: AsyncConnectionPool[Any]
) -> AsyncConnectionPool[Any]:
    """The checkpointer's pool: ``pool``, or its own with commits that skip the WAL flush wait.

    The latter with ``database.checkpoint_commit: async`` (the default).

    Checkpoints are the graph's resume points and are written in the background of the next
    step anyway (LangGraph's ``async`` durability); a Postgres crash may lose the last ones,
    so a later run resumes a step earlier. The event log, what clients saw, keeps full
    durability on ``pool``.
    """
    if settings.database.checkpoint_commit == "sync":
        return pool
    return await open_pool(
        settings.database.url or "",
        settings.database.pool_min,
        settings.database.pool_max,
        settings.database.pool_timeout_s,
        synchronous_commit=False,
    )


@asynccontextmanager
async def _database(settings: Settings, url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """The app's pool on ``url``, migrated, closed at the end."""
    pool = await open_pool(
        url,
        settings.database.pool_min,
        settings.database.pool_max,
        settings.database.pool_timeout_s,
    )
    try:
        async with pool.connection() as conn:
            await migrate(conn)
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def _checkpointer(
    settings: Settings, pool: AsyncConnectionPool[Any]
) -> AsyncIterator[AsyncPostgresSaver]:
    """The graph's checkpointer, on its own pool unless ``checkpoint_commit`` is ``sync``."""
    ckpt_pool = await checkpoint_pool(settings, pool)
    try:
        checkpointer = AsyncPostgresSaver(ckpt_pool, serde=FailClosedSerializer())
        await checkpointer.setup()
        yield checkpointer
    finally:
        if ckpt_pool is not pool:
            await ckpt_pool.close()


@asynccontextmanager
async def _quotas(settings: Settings) -> AsyncIterator[tuple[Quotas, FairScheduler]]:
    """The quota storage and the run scheduler, closed at the end."""
    quotas = quotas_for(settings.quotas)
    scheduler = FairScheduler(quotas, settings.quotas.max_active_runs)
    try:
        yield quotas, scheduler
    finally:
        await scheduler.close()
        forget(quotas)
        await quotas.close()


@asynccontextmanager
async def serving(
    settings: Settings, chat_model: BaseChatModel | None = None
) -> AsyncIterator[Services]:
    """The app's services while it serves: stores, graph, tools, memory and the run engine.

    On the way out, runs are cancelled (their last events written) before anything closes.
    """
    if not settings.database.url:
        raise Unavailable("database.url is not set (keel serve starts an embedded Postgres)")
    url = settings.database.url
    async with (
        _database(settings, url) as pool,
        _checkpointer(settings, pool) as checkpointer,
        _quotas(settings) as (quotas, scheduler),
    ):
        graph = build_graph(checkpointer)
        instance = uuid.uuid4().hex
        cache = int(settings.streams.replay_cache_mb * 2**20)
        event_log = EventLog(pool, instance, page_cache_bytes=cache)
        store = RunStore(pool, settings)
        broker = Broker(settings.streams.subscriber_buffer)
        async with (
            ToolGateway(settings, pool=pool) as gateway,
            open_memory(settings, pool) as layers,
        ):
            executor = RunExecutor(
                settings,
                graph,
                pool,
                event_log,
                broker,
                chat_model,
                tools=gateway,
                memory=layers,
                store=store,
            )
            listener = Listener(url, broker, instance, executor.cancel_local)
            await listener.start()
            await executor.start_heartbeat()
            yield Services(
                settings=settings,
                pool=pool,
                graph=graph,
                event_log=event_log,
                broker=broker,
                executor=executor,
                store=store,
                quotas=quotas,
                scheduler=scheduler,
                tools=gateway,
                memory=layers,
            )
            await executor.shutdown()
            await listener.stop()
            await close_models()


def create_app(settings: Settings, *, chat_model: BaseChatModel | None = None) -> FastAPI:
    """Build the app for ``settings``; ``chat_model`` overrides the configured LLM (tests)."""
    install_log_context()
    configure_tracing(settings.tracing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serving(settings, chat_model) as svc:
            app.state.services = svc
            yield

    app = FastAPI(
        title="Keel",
        version="0.1.0",
        summary="A LangGraph research agent streaming typed events.",
        lifespan=lifespan,
    )
    app.state.token_verifier = TokenVerifier(settings.auth)
    problems.install(app)
    for router in (
        meta.router,
        threads.router,
        usage.router,
        feedback.router,
        tools.router,
        traces.router,
        traces.page,
        memory.router,
        documents.router,
        ui.router,
        *PROTOCOL_ROUTERS,
    ):
        app.include_router(router)
    # A multipart upload carries the file plus its part headers.
    upload = {"/v1/documents": settings.documents.max_file_bytes + 65_536}
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.runs.max_body_bytes, uploads=upload)
    if settings.server.cors_origins:
        # Inside the host check and the trace middleware: a preflight is answered with the
        # trace_id, and only for a served Host.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Content-Location", "Location", "X-Trace-Id", "Retry-After"],
        )
    app.add_middleware(HostCheckMiddleware, allowed=settings.server.allowed_hosts)
    app.add_middleware(TraceMiddleware)
    if settings.tracing.enabled:
        # The server span wraps the whole stack; TraceMiddleware adopts its trace id. No span
        # per ASGI send/receive: a stream would get one per event, which costs more than the
        # event and buries the run's own spans.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=provider(),
            excluded_urls="/healthz,/readyz,/metrics",
            exclude_spans=["receive", "send"],
        )
    return app
