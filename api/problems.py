"""Errors as RFC 9457 problem+json, always with the trace_id, never with a stack trace."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import psycopg
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.errors import KeelError, LimitReached, QuotaExceeded
from core.tracing import trace_id_var
from runs.metrics import QUOTA_REJECTIONS

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def problem(
    status: int,
    title: str,
    detail: str,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response carrying the current trace_id."""
    trace_id = trace_id_var.get()
    body = {
        "type": f"https://keel.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "trace_id": trace_id,
        **extra,
    }
    hdrs = dict(headers or {})
    if trace_id:
        hdrs["X-Trace-Id"] = trace_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=hdrs)


def _keel_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KeelError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 503:
        headers = {"Retry-After": "5"}
    if isinstance(exc, QuotaExceeded):
        QUOTA_REJECTIONS.labels(exc.limit).inc()
        retry_after = max(1, math.ceil(exc.retry_after))
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            exc.code,
            headers={"Retry-After": str(retry_after)},
            limit=exc.limit,
            retry_after=retry_after,
        )
    if isinstance(exc, LimitReached):
        QUOTA_REJECTIONS.labels(exc.limit).inc()
        return problem(exc.status, exc.title, exc.detail, exc.code, limit=exc.limit)
    return problem(exc.status, exc.title, exc.detail, exc.code, headers=headers)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return problem(
        422,
        "Invalid request",
        "The request did not match the schema.",
        "validation_error",
        errors=errors,
    )


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers["Allow"] = ", ".join(sorted(allowed))
    return problem(exc.status_code, str(exc.detail), str(exc.detail), code, headers=headers)


def _allowed_methods(request: Request) -> set[str]:
    """Methods some route serves on the request's path.

    Starlette's 405 names only the first route that matched the path, so ``OPTIONS
    /v1/threads`` said ``Allow: POST`` though GET is served there too (found by schemathesis).
    """
    # A fresh scope: the failed dispatch left FastAPI's matched route in the request's own.
    bare = {k: v for k, v in request.scope.items() if k in ("type", "path", "root_path")}
    return {
        method
        for method in _METHODS
        if any(
            route.matches({**bare, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    }


def _unstorable(_: Request, exc: Exception) -> JSONResponse:
    # A value Postgres refuses (NUL in text, a number out of range) or text that is not valid
    # Unicode (a lone surrogate from a JSON escape) came from the request: a 422, not a 500.
    log.warning("request value not storable: %s", type(exc).__name__)
    return problem(
        422,
        "Invalid request",
        "A value in the request cannot be stored (NUL byte, invalid Unicode or out of range).",
        "invalid_input",
    )


def _dependency_down(what: str, code: str) -> Callable[[Request, Exception], JSONResponse]:
    """A handler answering 503 + Retry-After when ``what`` cannot be reached."""

    def handler(_: Request, exc: Exception) -> JSONResponse:
        log.warning("%s unavailable: %s", what, type(exc).__name__)
        return problem(
            503,
            "Service unavailable",
            f"The {what} is not reachable; retry shortly.",
            code,
            headers={"Retry-After": "5"},
        )

    return handler


def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return problem(
        500, "Internal error", "An unexpected error occurred; quote the trace_id.", "internal_error"
    )


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(KeelError, _keel_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    database_down = _dependency_down("database", "database_unavailable")
    quota_storage_down = _dependency_down("quota storage", "quota_storage_unavailable")
    app.add_exception_handler(psycopg.DataError, _unstorable)
    app.add_exception_handler(UnicodeEncodeError, _unstorable)
    app.add_exception_handler(psycopg.OperationalError, database_down)
    app.add_exception_handler(PoolTimeout, database_down)
    app.add_exception_handler(redis.exceptions.ConnectionError, quota_storage_down)
    app.add_exception_handler(redis.exceptions.TimeoutError, quota_storage_down)
    app.add_exception_handler(Exception, _unhandled)
