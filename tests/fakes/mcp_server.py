"""A small real MCP server for gateway tests: echo, crash mid-call, a slow call.

``FAKE_MCP_VARIANT=b`` adds an argument to ``echo`` so tests can change a served schema
without touching the project's servers.
"""

from __future__ import annotations

import asyncio
import os

from tools.servers.common import invoked, make_server, serve

server = make_server("fake", "1.0.0", "Test server.")

if os.environ.get("FAKE_MCP_VARIANT", "a") == "b":

    @server.tool()
    def echo(text: str, shout: bool = False) -> str:
        """Echo ``text``."""
        invoked(None, "echo", {"text": text})
        return text.upper() if shout else text

else:

    @server.tool()
    def echo(text: str) -> str:
        """Echo ``text``."""
        invoked(None, "echo", {"text": text})
        return text


@server.tool()
def crash() -> str:
    """Exit the process in the middle of the call."""
    invoked(None, "crash", {})
    os._exit(3)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "late"


if __name__ == "__main__":
    serve(server)
