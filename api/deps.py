"""FastAPI dependencies: the app's services, the caller's identity, the trace_id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from langgraph.graph.state import CompiledStateGraph
from psycopg_pool import AsyncConnectionPool

from api.executor import RunExecutor
from api.streaming import Broker, EventLog
from core.errors import AuthenticationFailed, NotFound
from core.identity import Identity, verify_token
from core.settings import Settings
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
    tools: ToolGateway


def services(request: Request) -> Services:
    """The app's services."""
    svc: Services = request.app.state.services
    return svc


_bearer = HTTPBearer(auto_error=False)


def authenticate(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """Verify the bearer JWT and return the caller's identity."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise AuthenticationFailed("missing bearer token")
    identity = verify_token(services(request).settings.auth, creds.credentials)
    request.state.identity = identity
    return identity


def trace_id(request: Request) -> str:
    """The trace_id bound by ``TraceMiddleware``."""
    value: str = request.state.trace_id
    return value


Svc = Annotated[Services, Depends(services)]
CurrentIdentity = Annotated[Identity, Depends(authenticate)]
TraceId = Annotated[str, Depends(trace_id)]


async def owned_thread(svc: Services, identity: Identity, thread_id: str) -> dict[str, Any]:
    """The thread row if it belongs to the caller; 404 otherwise (never another tenant's data)."""
    async with svc.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT thread_id, title, created_at FROM threads"
            " WHERE thread_id = %s AND tenant = %s AND user_id = %s",
            (thread_id, identity.tenant, identity.user_id),
        )
        row: dict[str, Any] | None = await cur.fetchone()
    if row is None:
        raise NotFound(f"thread {thread_id} not found")
    return row
