"""The evaluation's report: a line per task, totals per category, RESULTS.md and results.json."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.eval.runner import TaskResult
from core.settings import ROOT


@dataclass
class Meta:
    """What the run was: when, on what code, model and machine, under which load."""

    started: str
    finished: str
    wall_s: float
    commit: str
    model: str
    url: str
    machine: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    argv: list[str]
    note: str = ""


def commit() -> str:
    """The checkout's short commit, ``+dirty`` when it has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{sha}+dirty" if dirty else sha or "unknown"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


CAUSES = (
    ("run timed out", re.compile(r"status timeout")),
    ("run ended in error", re.compile(r"status error")),
    ("other final status", re.compile(r"status (?!timeout|error)\w+, expected")),
    ("HTTP or stream failure", re.compile(r"answered \d{3}|without run_finished|setup failed")),
    ("wrong or missing tool", re.compile(r"^(turn \d+: )?tools ")),
    ("no tool data to check", re.compile(r"in the run's events to check against")),
    ("no chart/table/decision event", re.compile(r"^(turn \d+: )?no \w+ event")),
    ("held call missing or wrong", re.compile(r"confirmation_required|held ")),
    ("answer wrong or incomplete", re.compile(r"answer (lacks|has none|still names|also names)")),
    ("no refusal", re.compile(r"not a refusal")),
    ("did not say it does not know", re.compile(r"does not say it does not know")),
)


def causes(result: TaskResult) -> list[str]:
    """The kinds of failure among the task's reasons, in ``CAUSES`` order."""
    return [name for name, pattern in CAUSES if any(pattern.search(r) for r in result.reasons)]


def line(result: TaskResult) -> str:
    """One printed line per task."""
    verdict = "PASS" if result.passed else "FAIL"
    why = f"  {'; '.join(result.reasons)}" if result.reasons else ""
    return (
        f"{verdict} {result.category:<14} {result.id:<28} {result.seconds:6.1f} s"
        f" {result.tokens:6d} tok{why}"
    )


def summary(results: Sequence[TaskResult]) -> dict[str, Any]:
    """Totals overall and per category, run-time quantiles, run statuses."""
    runs = [s for r in results for s in r.run_seconds]
    statuses = Counter(run.status for r in results for t in r.turns for run in t.runs)

    def part(rs: Sequence[TaskResult]) -> dict[str, Any]:
        secs = [s for r in rs for s in r.run_seconds]
        passed = sum(r.passed for r in rs)
        return {
            "tasks": len(rs),
            "passed": passed,
            "pass_rate": round(passed / len(rs), 3) if rs else 0.0,
            "p50_s": round(percentile(secs, 0.5), 1),
            "p95_s": round(percentile(secs, 0.95), 1),
            "tokens": sum(r.tokens for r in rs),
            "errored": sum(r.errored for r in rs),
        }

    categories = sorted({r.category for r in results})
    spent: dict[str, list[float]] = {}
    for r in results:
        for t in r.turns:
            for name, seconds in t.phases.items():
                spent.setdefault(name, []).append(seconds)
    return {
        "overall": part(results),
        "categories": {c: part([r for r in results if r.category == c]) for c in categories},
        "turns": len(runs),
        "run_p50_s": round(percentile(runs, 0.5), 1),
        "run_p95_s": round(percentile(runs, 0.95), 1),
        "task_p50_s": round(percentile([r.seconds for r in results], 0.5), 1),
        "task_p95_s": round(percentile([r.seconds for r in results], 0.95), 1),
        "run_statuses": dict(sorted(statuses.items())),
        "phase_p50_s": {k: round(percentile(v, 0.5), 1) for k, v in sorted(spent.items())},
    }


def totals(results: Sequence[TaskResult]) -> str:
    """The printed totals."""
    s = summary(results)
    out = []
    for name, c in s["categories"].items():
        out.append(
            f"{name:<14} {c['passed']:3d}/{c['tasks']:<3d} {100 * c['pass_rate']:5.1f} %"
            f"  p50 {c['p50_s']:5.1f} s  p95 {c['p95_s']:5.1f} s  errored {c['errored']}"
        )
    o = s["overall"]
    out.append(
        f"{'total':<14} {o['passed']:3d}/{o['tasks']:<3d} {100 * o['pass_rate']:5.1f} %"
        f"  run time p50 {s['run_p50_s']} s p95 {s['run_p95_s']} s over {s['turns']} turns;"
        f" tokens {o['tokens']}; run statuses {s['run_statuses']}"
    )
    return "\n".join(out)


def write(results: Sequence[TaskResult], meta: Meta, out_dir: Path) -> None:
    """Write ``results.json`` and ``RESULTS.md`` into ``out_dir``."""
    s = summary(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta.__dict__, "summary": s, "tasks": [r.to_json() for r in results]}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    (out_dir / "RESULTS.md").write_text(markdown(results, meta, s))


def write_events(result: TaskResult, out_dir: Path) -> None:
    """The task's events, one envelope per line, each tagged with its turn number."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / f"{result.id}.jsonl").open("w") as f:
        for n, turn in enumerate(result.turns, 1):
            for event in turn.events:
                f.write(json.dumps({"turn": n, **event}, ensure_ascii=False) + "\n")


def read(path: Path) -> tuple[list[TaskResult], Meta]:
    """Results and meta back from a ``results.json`` (to render RESULTS.md again)."""
    from bench.eval.runner import RunResult, TurnResult

    doc = json.loads(path.read_text())
    results = []
    for t in doc["tasks"]:
        turns = [
            TurnResult(**{**u, "runs": [RunResult(**r) for r in u["runs"]]}) for u in t["turns"]
        ]
        results.append(TaskResult(**{**t, "turns": turns}))
    meta = doc["meta"]
    for key in ("load_start", "load_end"):
        meta[key] = tuple(meta[key])
    return results, Meta(**meta)


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def markdown(results: Sequence[TaskResult], meta: Meta, s: dict[str, Any]) -> str:
    """RESULTS.md: the run's facts, a table per category, the failures."""
    o = s["overall"]
    lines = [
        "# Keel end-to-end evaluation",
        "",
        "Written by `python -m bench.eval` (`keel eval`); every task graded from its runs' own",
        "SSE events (bench/eval/README.md says how). Run time is a turn's wall time at the",
        "client, from the request to `run_finished`, resumed runs included; concurrency 1.",
        "",
        f"- date: {meta.started} to {meta.finished} ({meta.wall_s / 60:.1f} min wall)",
        f"- commit: `{meta.commit}`",
        f"- model: {meta.model}",
        f"- Keel: {meta.url}",
        f"- machine: {meta.machine}; load average (1/5/15 min) {_load(meta.load_start)} at the"
        f" start, {_load(meta.load_end)} at the end (the cores are shared with other jobs)",
        f"- command: `{' '.join(meta.argv)}`",
        *([f"- note: {meta.note}"] if meta.note else []),
        "",
        f"**{o['passed']}/{o['tasks']} tasks pass ({100 * o['pass_rate']:.1f} %)**; run time"
        f" p50 {s['run_p50_s']} s, p95 {s['run_p95_s']} s over {s['turns']} turns (per task"
        f" p50 {s['task_p50_s']} s, p95 {s['task_p95_s']} s); {o['tokens']:,} tokens;"
        f" run statuses {s['run_statuses']}; tasks with a run ending `error`: {o['errored']}.",
        "",
        "Median seconds per phase of a turn (plan: `planning` to the plan; args: `calling_tool`"
        " to the call, held call or refusal; tool: `tool_call` to its result; step: `thinking`"
        " to the step's result; answer: `summarizing` to `run_finished`)"
        f": {s['phase_p50_s'] or 'none recorded'}.",
        "",
        "| category | tasks | pass | pass rate | run p50 | run p95 | tokens | runs in error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in s["categories"].items():
        lines.append(
            f"| {name} | {c['tasks']} | {c['passed']} | {100 * c['pass_rate']:.0f} % |"
            f" {c['p50_s']} s | {c['p95_s']} s | {c['tokens']:,} | {c['errored']} |"
        )
    lines.append(
        f"| **all** | {o['tasks']} | {o['passed']} | {100 * o['pass_rate']:.0f} % |"
        f" {o['p50_s']} s | {o['p95_s']} s | {o['tokens']:,} | {o['errored']} |"
    )
    lines += [
        "",
        "## Tasks",
        "",
        "| task | category | result | time | tokens | tools |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        tools = "; ".join(",".join(t.tools) or "none" for t in r.turns)
        verdict = "pass" if r.passed else "**fail**"
        lines.append(
            f"| {r.id} | {r.category} | {verdict} | {r.seconds:.1f} s | {r.tokens} | {tools} |"
        )
    failed = [r for r in results if not r.passed]
    counted = Counter(c for r in failed for c in causes(r))
    lines += [
        "",
        "## Failures by cause",
        "",
        "A task counts once under each cause among its reasons.",
        "",
    ]
    lines += [
        f"- {name}: {n} ({', '.join(r.id for r in failed if name in causes(r))})"
        for name, n in counted.most_common()
    ] or ["None."]
    lines += ["", "## Failures", ""]
    if not failed:
        lines.append("None.")
    for r in failed:
        lines.append(f"- **{r.id}** ({r.category}):")
        for reason in r.reasons:
            lines.append(f"  - {_md(reason)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
