"""Health, readiness and the event schema."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api.deps import MetricsAccess, Svc
from api.doctor import check_quota_store, tools_check
from core.events import events_json_schema
from runs.metrics import render

router = APIRouter(tags=["meta"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: Svc) -> JSONResponse:
    """Postgres, the quota store, the tool servers and the local model are fine; else 503."""
    checks: dict[str, str] = {}
    try:
        async with svc.pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}"
    quota = await check_quota_store(svc.settings)
    if quota is not None:
        checks[quota.name] = "ok" if quota.ok else f"error: {quota.detail}"
    if svc.tools.pinned():
        tools = tools_check(svc.tools.refused, list(svc.tools.lock_entries()))
        checks[tools.name] = "ok" if tools.ok else f"error: {tools.detail}"
    base = svc.settings.llm.base_url
    if base and svc.settings.llm.provider == "local":
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                r = await client.get(base.removesuffix("/v1") + "/health")
            checks["llm"] = "ok" if r.status_code == 200 else f"status {r.status_code}"
        except httpx.HTTPError as exc:
            checks["llm"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    headers = {} if ok else {"Retry-After": "5"}
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
        headers=headers,
    )


@router.get("/metrics", response_class=Response, dependencies=[MetricsAccess])
async def metrics() -> Response:
    """Prometheus metrics: runs, tools, tokens, errors, degradations, quota refusals, streams.

    Open in dev; with ``server.metrics_scope`` set (prod), a bearer token with that scope.
    """
    body, content_type = render()
    return Response(body, media_type=content_type)


@router.get("/v1/schema/events")
async def event_schema() -> dict[str, Any]:
    """JSON Schema of the event envelope union (v1)."""
    return events_json_schema()
