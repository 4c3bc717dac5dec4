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
    assert set(results) == {
        "date",
        "machine",
        "load_average",
        "command",
        "seconds",
        "seconds_by_table",
        "rows",
    }
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
    assert results["command"] == (
        f"keel bench --quick --n 2 --only quota,write_per_step --out {tmp_path}"
    )


def test_window_counts_only_what_answering_streams_received_within_the_window() -> None:
    from bench.load import window_counts

    arrivals = [
        [0.5, 1.0, 1.5, 2.5, 3.5],  # answering before the window opens at 1.0: 1.0, 1.5, 2.5
        [1.2, 1.4],  # began answering after the window opened: not counted
        [],  # never answered
        [0.9, 3.0, 3.1],  # 3.0 is the window's last instant; 3.1 is after it
    ]
    delivered, offered, answering = window_counts(arrivals, 1.0, 2.0, 20.0)
    assert (delivered, answering) == (4, 2)
    assert offered == 2 * 20.0 * 2.0


def test_many_streams_and_local_model_figures_stay_bounded(tmp_path: Path) -> None:
    """many_streams counts a bounded window, then cancels its runs and leaves Keel idle.

    Each run would stream its answer for ~5 s; the figure must cut every one of them at the
    window instead of waiting. local_model's code path (relay, recorded summarizer request
    replayed directly, interleaved runs) runs with the scripted model standing in.
    """
    import os

    keel = Path(sys.executable).parent / "keel"
    env = {
        **os.environ,
        "BENCH_STREAMS": "8",
        "BENCH_STREAMS_RAMP": "5",
        "BENCH_STREAMS_WINDOW": "2",
        "BENCH_LOCAL_MODEL": "scripted",
    }
    out = subprocess.run(
        [str(keel), "bench", "--quick", "--n", "2", "--only", "many_streams,local_model"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {r["key"]: r for r in results["rows"]}
    assert list(rows) == [
        "many_streams",
        "many_streams_answering",
        "many_streams_delay",
        "many_streams_idle",
        "local_model",
    ]
    streams = rows["many_streams"]["extra"]
    assert streams["idle"] is True
    assert streams["refused"] == streams["dropped"] == 0
    # Every run was cut at the window: none streamed its whole answer.
    assert streams["words_per_run"] / 20 > streams["from_start_s"]
    assert streams["runs_by_status"] == {"cancelled": 8.0}
    assert streams["window_opened_s"] <= 5.5
    assert 0 < streams["answering"] <= 8
    # The model offers 20 words a second: a stream cannot deliver more (+ one early word).
    assert 0 < streams["delivered_events"] <= streams["offered_events"] + streams["answering"]
    answering = rows["many_streams_answering"]
    assert math.isclose(answering["ratio"], answering["a"] / answering["b"])
    # Every delivered token's delay was measured; at 8 streams it is well under a window.
    assert streams["delay_samples"] == streams["delivered_events"]
    assert 0 < streams["delay_p50_s"] <= streams["delay_p95_s"] < 2
    assert rows["many_streams_idle"]["a"] == streams["drain_s"]
    local = rows["local_model"]
    assert local["table"] == "local" and local["n"] == 2
    assert local["extra"]["model"] == "scripted"
    assert local["extra"]["same_answer"] == "2 of 2"
    assert local["a"] > 0 and local["b"] > 0
    table = (tmp_path / "RESULTS.md").read_text()
    assert table.index("Scripted model") < table.index("Packaged local model")
    assert f"| {local['figure']} |" in table


def test_first_event_and_concurrent_skip_aegra_without_its_venv(tmp_path: Path) -> None:
    """Without .venv-aegra the peer figures run Keel and langgraph dev and say how to add Aegra.

    langgraph dev is driven through the official langgraph-sdk client: its first token is the
    first custom event of type text_delta, after its first event and before the run ends.
    """
    import os

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "BENCH_AEGRA_PYTHON": str(tmp_path / "no-aegra" / "python")}
    out = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--quick", "--n", "2"]
        + ["--only", "first_event,concurrent", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("Aegra rows skipped") == 2
    assert "make aegra" in out.stdout
    rows = {r["key"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert list(rows) == ["first_event", "first_token", "run_vs_langgraph", "concurrent"]
    for row in rows.values():
        assert row["a"] > 0 and row["b"] > 0
        assert row["b_label"] == "langgraph dev (in-memory runtime)"
    assert rows["first_event"]["b"] < rows["first_token"]["b"] <= rows["run_vs_langgraph"]["b"]
    assert rows["first_event"]["a"] < rows["first_token"]["a"] <= rows["run_vs_langgraph"]["a"]
    assert rows["concurrent"]["n"] == 2


def test_each_party_goes_first_in_turn() -> None:
    from bench.suite import Peer, RunTimes, rotated

    async def thread() -> str:
        return ""

    async def run(tid: str) -> RunTimes:
        return RunTimes(0.0, 0.0, 0)

    ps = [Peer(k, thread, run) for k in ("keel", "langgraph", "aegra")]
    firsts = [rotated(ps, i)[0].key for i in range(6)]
    assert firsts == ["keel", "langgraph", "aegra", "keel", "langgraph", "aegra"]
    assert all(sorted(p.key for p in rotated(ps, i)) == sorted(firsts[:3]) for i in range(3))
