"""What every Keel MCP server shares (practice 16): versioned FastMCP, invocation log, caller meta.

Servers speak MCP over stdio (the gateway keeps one session per process) or streamable HTTP
(``--transport streamable-http``). Each appends one JSON line per start and per invocation to
``$KEEL_TOOL_LOG`` so that tests and operators can count what really ran, and reads the
caller's tenant and trace_id from the request's ``_meta`` (set by the gateway, never the model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from mcp.server.fastmcp import Context, FastMCP

PERMISSIONS_META = "keel/permissions"
TENANT_META = "keel/tenant"
USER_META = "keel/user"
TRACE_META = "keel/trace_id"


def make_server(name: str, version: str, instructions: str) -> FastMCP:
    """A FastMCP server that reports ``version`` in its initialize result."""
    server = FastMCP(name, instructions=instructions, log_level="WARNING")
    server._mcp_server.version = version
    return server


def log_line(event: str, **fields: Any) -> None:
    """Append one JSON line to the server's own log (``$KEEL_TOOL_LOG``, else stderr)."""
    record = {"ts": time.time(), "pid": os.getpid(), "event": event, **fields}
    line = json.dumps(record, default=str)
    path = os.environ.get("KEEL_TOOL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    else:
        print(line, file=sys.stderr, flush=True)


def caller(ctx: Context[Any, Any, Any] | None) -> dict[str, str]:
    """The tenant, user and trace_id the gateway attached to this request."""
    meta = None
    if ctx is not None:
        try:
            meta = ctx.request_context.meta
        except ValueError:
            meta = None
    extra = meta.model_extra if meta is not None and meta.model_extra else {}
    return {
        "tenant": str(extra.get(TENANT_META, "default")),
        "user": str(extra.get(USER_META, "anonymous")),
        "trace_id": str(extra.get(TRACE_META, "")),
    }


def invoked(ctx: Context[Any, Any, Any] | None, tool: str, args: dict[str, Any]) -> dict[str, str]:
    """Log an invocation and return the caller."""
    who = caller(ctx)
    log_line("invoke", tool=tool, args=args, **who)
    return who


def serve(server: FastMCP, argv: list[str] | None = None) -> None:
    """Run ``server`` over stdio (default) or streamable HTTP."""
    p = argparse.ArgumentParser(description=f"MCP server {server.name}")
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    log_line("start", server=server.name, version=server._mcp_server.version)
    if a.transport == "streamable-http":
        server.settings.port = a.port or 8765
        server.run("streamable-http")
    else:
        server.run("stdio")
