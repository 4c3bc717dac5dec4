"""python_exec 1.0.0 (practice 9): runs Python in a fresh bubblewrap jail per call.

Sensitive: declares the ``exec:code`` permission, which the gateway checks against the run's
JWT scopes before the call can reach this process.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from mcp.server.fastmcp import Context

from core.settings import SandboxSettings
from tools.sandbox import run_python as run_in_jail
from tools.servers.common import invoked, log_line, make_server

server = make_server(
    "python_exec",
    "1.0.0",
    "Runs Python 3 in a sandbox without network. Print results; matplotlib figures are "
    "returned as PNG; CSV files written to the working directory are returned as tables.",
)
LIMITS = SandboxSettings.model_validate_json(os.environ.get("KEEL_SANDBOX", "{}"))


@server.tool(meta={"keel/permissions": ["exec:code"]})
async def run_python(code: str, ctx: Context[Any, Any, Any]) -> dict[str, Any]:
    """Run ``code`` and return stdout, error, PNG images (base64) and CSV tables."""
    invoked(ctx, "run_python", {"code": code[:2000]})
    try:
        result = await run_in_jail(code, LIMITS)
    except asyncio.CancelledError:  # the caller cancelled the call: the jail is killed already
        log_line("cancelled", tool="run_python")
        raise
    log_line("done", tool="run_python", killed=result.killed, duration_ms=result.duration_ms)
    return {"code": code, **result.as_dict()}
