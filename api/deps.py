"""FastAPI dependencies: the app's services, the caller's identity, the trace_id."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from langgraph.graph.state import CompiledStateGraph
from psycopg_pool import AsyncConnectionPool

from core.apikeys import looks_like_key, verify_key
from core.errors import AuthenticationFailed, Forbidden
from core.identity import Identity, TokenVerifier
from core.quotas import Quotas
from core.settings import Settings
from memory.layers import MemoryLayers
from runs.event_log import Broker, EventLog
from runs.executor import RunExecutor
from runs.scheduler import FairScheduler
from runs.store import RunStore
from tools.gateway import ToolGateway


@dataclass
class Services:
    """Everything the routes use, built once in the app's lifespan."""

    settings: Settings
    pool: AsyncConnectionPool[Any]
    graph: CompiledStateGraph[Any, Any, Any, Any]
    event_log: EventLog
    broker: Broker
    executor: RunExecutor
    store: RunStore
    quotas: Quotas
    scheduler: FairScheduler
    tools: ToolGateway
    memory: MemoryLayers | None = None


def services(request: Request) -> Services:
    """The app's services."""
    svc: Services = request.app.state.services
    return svc


_bearer = HTTPBearer(auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


async def authenticate(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Identity:
    """The caller's identity from a bearer JWT, or an API key (``Bearer keel_…``/``X-API-Key``)."""
    svc = services(request)
    if creds is not None and creds.scheme.lower() == "bearer":
        token = creds.credentials
    elif api_key:
        token = api_key
    else:
        raise AuthenticationFailed("missing bearer token or API key")
    if looks_like_key(token):
        async with svc.pool.connection() as conn:
            identity = await verify_key(conn, token)
    else:
        verifier: TokenVerifier = request.app.state.token_verifier
        if verifier.blocking:
            identity = await asyncio.to_thread(verifier.verify, token)
        else:
            identity = verifier.verify(token)
    request.state.identity = identity
    return identity


async def metrics_access(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> None:
    """Open ``/metrics`` unless ``server.metrics_scope`` is set; then a token with that scope."""
    scope = services(request).settings.server.metrics_scope
    if scope is None:
        return
    identity = await authenticate(request, creds, api_key)
    if not identity.has_scope(scope):
        raise Forbidden(f"/metrics needs the scope {scope!r}")


def trace_id(request: Request) -> str:
    """The trace_id bound by ``TraceMiddleware``."""
    value: str = request.state.trace_id
    return value


Svc = Annotated[Services, Depends(services)]
CurrentIdentity = Annotated[Identity, Depends(authenticate)]
TraceId = Annotated[str, Depends(trace_id)]
MetricsAccess = Depends(metrics_access)
