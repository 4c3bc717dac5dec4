"""Profile Keel's API under one figure's load with py-spy, and summarise where the time goes.

    .venv/bin/python -m bench.spy stream [--seconds 10] [-o bench/profiles/stream_rate.txt]
    .venv/bin/python -m bench.spy runs   [--seconds 10] [--concurrency 50]

Samples are taken only of the thread holding the GIL (``--gil``): a thread waiting for the GIL
is not doing work, and without the flag it shows up at whatever line it waits on.

``stream``: back-to-back runs each streaming 1,000 model words with no pause (the single-stream
figure). ``runs``: runs of the scripted 3-step plan, ``--concurrency`` in flight (the
concurrent-runs figure). The stack is ``keel bench``'s (embedded Postgres, scripted model,
Keel's API in its own process); py-spy samples that process at 250 Hz while the load runs,
and ``bench.spy_summary`` keeps the event loop's busy samples.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.servers import directive
from bench.spy_summary import summarise
from bench.suite import MESSAGE, Stack, keel_run


async def _load(s: Stack, kind: str, seconds: float, concurrency: int) -> str:
    msg = f"{MESSAGE} {directive(1000, 0)}" if kind == "stream" else MESSAGE
    async with s.keel_client() as c:
        await keel_run(c, msg)  # warm: pools, model client, first checkpoint tables
        raw = Path(tempfile.mkdtemp()) / "raw.txt"
        pid = s.pid("keel")
        spy = subprocess.Popen(
            [Path(sys.executable).parent / "py-spy", "record", "--gil", "-p", str(pid), "-f", "raw"]
            + ["-r", "250", "-d", str(int(seconds) + 1), "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + seconds
        done: list[float] = []

        async def worker() -> None:
            while time.monotonic() < end:
                t = await keel_run(c, msg)
                done.append(t.events / t.finished)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        spy.wait()
    what = "events/s per run" if kind == "stream" else "runs finished"
    figure = f"{sorted(done)[len(done) // 2]:.0f}" if kind == "stream" else f"{len(done)}"
    return f"# {kind}, {seconds:g} s, {concurrency} in flight: {what} {figure}\n" + summarise(
        raw.read_text().splitlines(), 40
    )


def main(argv: list[str] | None = None) -> int:
    """Run the load, print (and optionally write) the summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["stream", "runs"])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("-o", "--output", type=Path, default=None)
    a = p.parse_args(argv)
    concurrency = a.concurrency or (1 if a.kind == "stream" else 50)
    s = Stack(Path(tempfile.mkdtemp(prefix="keel-spy-")))
    try:
        text = asyncio.run(_load(s, a.kind, a.seconds, concurrency))
    finally:
        s.stop()
    print(text, end="")
    if a.output:
        a.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
