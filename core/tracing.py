"""Request tracing (practice 1): one trace_id per request, carried in a context variable.

The id is a W3C trace id (32 lowercase hex digits), taken from an incoming ``traceparent``
header when valid, so Keel's trace_id and an OpenTelemetry trace id can be the same value.
Every log line carries the current trace_id, run_id and thread_id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from datetime import UTC, datetime
from typing import Any

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
thread_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "thread_id", default=None
)


def new_trace_id() -> str:
    """A fresh, non-zero W3C trace id."""
    return secrets.token_hex(16)


def trace_id_from_traceparent(header: str | None) -> str | None:
    """The trace id of a valid ``traceparent`` header, else ``None``."""
    if not header:
        return None
    m = _TRACEPARENT.match(header.strip().lower())
    if not m or m.group(1) == "0" * 32:
        return None
    return m.group(1)


_factory_installed = False


def install_log_context() -> None:
    """Stamp every log record with the trace_id, run_id and thread_id of the task creating it.

    Stamping at creation (not at formatting) keeps the ids right when a handler formats the
    record later or in another thread.
    """
    global _factory_installed
    if _factory_installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record.trace_id = trace_id_var.get()
        record.run_id = run_id_var.get()
        record.thread_id = thread_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace context of the task that logged it."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        out: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "trace_id": getattr(record, "trace_id", None) or trace_id_var.get(),
            "run_id": getattr(record, "run_id", None) or run_id_var.get(),
            "thread_id": getattr(record, "thread_id", None) or thread_id_var.get(),
        }
        extra = getattr(record, "keel", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    """Send logs to stderr, as JSON lines unless told otherwise."""
    install_log_context()
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "openai", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
