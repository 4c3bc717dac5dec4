"""`keel bench` runs real figures end to end and writes results.json and RESULTS.md.

No timing is asserted (speed goals live in bench/); the test checks that the figures are
measured on real servers and come out well-formed and physically sane.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path


def test_keel_bench_quick_writes_results(tmp_path: Path) -> None:
    keel = Path(sys.executable).parent / "keel"
    out = subprocess.run(
        [str(keel), "bench", "--quick", "--n", "2", "--only", "quota,write_per_step"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"date", "machine", "load_average", "command", "seconds", "rows"}
    rows = {r["key"]: r for r in results["rows"]}
    assert list(rows) == ["quota", "write_per_step"]
    for row in rows.values():
        assert {"figure", "ratio", "a", "b", "n", "goal", "met", "wall_s"} <= set(row)
        assert row["wall_s"] > 0
        assert row["n"] == 2
        assert row["a"] > 0 and row["b"] > 0
        assert math.isclose(row["ratio"], row["a"] / row["b"])
        assert row["met"] is (row["ratio"] <= float(row["goal"].split()[1]))
    quota, write = rows["quota"], rows["write_per_step"]
    # A quota check is in-memory work: far below a run that calls a model five times.
    assert quota["a"] < quota["b"]
    # A run's steps each write a checkpoint and events: never cheaper than one commit.
    assert write["ratio"] > 1
    # __start__, memory_router, planner, researcher x 3 (the bench model's plan), summarizer,
    # remember: one checkpoint each after the input's.
    assert write["extra"]["steps_per_run"] == 8
    assert write["extra"]["events_per_run"] >= write["extra"]["event_batches_per_run"] >= 1
    table = (tmp_path / "RESULTS.md").read_text()
    for row in rows.values():
        assert f"| {row['figure']} |" in table
    assert "keel bench --out" in results["command"]
