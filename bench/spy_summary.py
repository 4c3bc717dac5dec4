"""Summarise a py-spy raw profile of Keel's API: where its event loop's busy time goes.

    .venv/bin/py-spy record -p <keel pid> -f raw -r 250 -d 20 -o prof.txt
    .venv/bin/python -m bench.spy_summary prof.txt [--top 40]

Only samples of the event loop's thread count (the thread running ``Runner.run``), and not
those where it waits in ``select`` for work: what is left is the CPU a request, a run or an
event costs. Two tables: the share of busy samples by the package of the innermost frame, and
the share that includes each frame of Keel or of the libraries on its run path.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_ON_PATH = (
    "(api/",
    "(runs/",
    "(graphs/",
    "(core/",
    "(memory/",
    "(tools/",
    "langchain_core",
    "langchain_openai",
    "langgraph/",
    "openai/_",
    "sse_starlette",
    "psycopg",
    "opentelemetry",
    "uvicorn",
)


def summarise(lines: list[str], top: int) -> str:
    """The two tables for the raw py-spy ``lines``."""
    busy = 0
    by_package: Counter[str] = Counter()
    including: Counter[str] = Counter()
    for line in lines:
        stack, _, n_text = line.rpartition(" ")
        if not stack:
            continue
        frames, n = stack.split(";"), int(n_text)
        if not any(f.startswith("Runner.run") for f in frames):
            continue  # another thread (executors, the checkpointer's serialisers)
        leaf = frames[-1]
        if leaf.startswith(("Runner.run", "select ")) or "selectors.py" in leaf:
            continue  # the loop waiting for work
        busy += n
        m = re.search(r"\(([^/ ]+)/", leaf)
        by_package[m.group(1) if m else leaf] += n
        for f in set(frames):
            if any(p in f for p in _ON_PATH):
                including[f] += n
    if not busy:
        return "no busy samples of the event loop\n"
    out = [f"event loop busy samples: {busy}", "", "share | innermost frame's package"]
    out += [f"{100 * v / busy:5.1f}% | {k}" for k, v in by_package.most_common(top // 2)]
    out += ["", "share | frames including it (Keel and its run-path libraries)"]
    shown = [(k, v) for k, v in including.most_common() if v < busy][:top]  # not the loop itself
    out += [f"{100 * v / busy:5.1f}% | {k[:150]}" for k, v in shown]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the summary of a raw py-spy profile."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=40)
    a = p.parse_args(argv)
    print(summarise(a.profile.read_text().splitlines(), a.top), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
