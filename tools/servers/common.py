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


class InjectedFault(Exception):
    """A fault injected for tests and demos; the gateway reads its ``[kind]`` prefix."""


def invoked(ctx: Context[Any, Any, Any] | None, tool: str, args: dict[str, Any]) -> dict[str, str]:
    """Log an invocation, apply an injected fault if one is set, and return the caller."""
    who = caller(ctx)
    log_line("invoke", tool=tool, args=args, **who)
    _inject_fault()
    return who


def _inject_fault() -> None:
    """Fail as ``$KEEL_TOOL_FAULT_FILE`` says (written by the gateway from ``faults``).

    The file is read on every call so a fault can be switched on and off while the server
    runs: ``rate_limited`` answers like an HTTP 429, ``timeout`` hangs past the caller's
    deadline, ``crash`` kills the process mid-call.
    """
    path = os.environ.get("KEEL_TOOL_FAULT_FILE")
    if not path or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        fault = json.load(f)
    mode = fault.get("mode")
    log_line("fault", mode=mode)
    if mode == "rate_limited":
        raise InjectedFault("[rate_limited] 429 Too Many Requests (injected fault)")
    if mode == "timeout":
        time.sleep(float(fault.get("sleep_s", 60)))
    if mode == "crash":
        os._exit(70)


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
