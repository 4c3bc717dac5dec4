"""Per-call overhead of the tool gateway vs a direct call on the same kept MCP session.

Run: .venv/bin/python -m bench.tools.overhead [N]
Both paths hit the same server process (tests/fakes/mcp_server.py ``echo``, or github-v2 with
``--server github``); calls alternate so machine load affects both alike.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.identity import Identity
from core.settings import Settings
from tools.gateway import Requester, ToolGateway, write_lock_file


async def main(n: int, server: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    if server == "github":
        pins = {"github-v2": {"server": "github_trending", "version": "2.0.0"}}
        tool, args = "github_trending", {"language": "python", "limit": 3}
    else:
        cmd = [sys.executable, "-m", "tests.fakes.mcp_server"]
        pins = {"fake-v1": {"server": "fake", "version": "1.0.0", "command": cmd}}
        tool, args = "fake", {"text": "hello"}
    settings = Settings(
        env="test",
        data_dir=tmp,
        mcp_servers=pins,  # type: ignore[arg-type]
        agents={"research": {"tools": list(pins)}},  # type: ignore[dict-item]
        tools={"lock_file": str(tmp / "tools.lock"), "github_api": "http://127.0.0.1:9"},  # type: ignore[arg-type]
    )
    await write_lock_file(settings)
    ident = Identity("bench", "bench", frozenset())
    async with ToolGateway(settings) as gw:
        spec = gw.resolve("research", tool)
        session = gw._servers[spec.pin].session
        assert session is not None
        for _ in range(20):  # warm-up
            await gw.call(spec, args, caller=Requester(ident))
            await session.call_tool(spec.name, args)
        via_gw, direct = [], []
        for _ in range(n):
            t = time.perf_counter()
            await gw.call(spec, args, caller=Requester(ident))
            via_gw.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await session.call_tool(spec.name, args)
            direct.append((time.perf_counter() - t) * 1000)
    g, d = statistics.median(via_gw), statistics.median(direct)
    print(f"server={server} calls={n}")
    p90 = {k: statistics.quantiles(v, n=10)[-1] for k, v in (("d", direct), ("g", via_gw))}
    print(f"direct session call  median {d:.3f} ms  p90 {p90['d']:.3f} ms")
    print(f"through the gateway  median {g:.3f} ms  p90 {p90['g']:.3f} ms")
    print(f"gateway overhead     median {g - d:.3f} ms per call ({(g / d - 1) * 100:.1f} %)")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 200
    asyncio.run(
        main(count, "github" if "--server" in sys.argv and "github" in sys.argv else "fake")
    )
