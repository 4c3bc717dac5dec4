"""Running tasks one at a time against a ``Stack`` and grading each into a ``TaskResult``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.eval.client import Event, Keel, RunRecord, TurnFailed, TurnRecord
from bench.eval.grade import grade_turn, tool_matches, tools_attempted
from bench.eval.stack import Stack
from bench.eval.tasks import Task, Turn


@dataclass
class RunResult:
    """One run of a turn, for results.json."""

    run_id: str
    status: str
    seconds: float
    tokens: int


@dataclass
class TurnResult:
    """One graded turn."""

    message: str
    thread_id: str
    status: str
    seconds: float
    tokens: int
    tools: list[str]
    answer: str
    reasons: list[str]
    runs: list[RunResult]
    trace_ids: list[str]
    errors: list[str]
    phases: dict[str, float] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list, repr=False)


@dataclass
class TaskResult:
    """One graded task."""

    id: str
    category: str
    passed: bool
    seconds: float
    tokens: int
    reasons: list[str]
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def run_seconds(self) -> list[float]:
        """Each turn's run time (a turn's resumed runs included)."""
        return [t.seconds for t in self.turns]

    @property
    def errored(self) -> bool:
        """Whether any run of the task ended in ``error``."""
        return any(r.status == "error" for t in self.turns for r in t.runs)

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON data (without the events: see ``--events``)."""
        data = asdict(self)
        for turn in data["turns"]:
            turn.pop("events")
        return data


def decider(turn: Turn) -> Callable[[dict[str, Any]], bool]:
    """Approve every held call, except the turn's expected one when the task says reject."""

    def decide(asked: dict[str, Any]) -> bool:
        if turn.confirm is not None and tool_matches(asked["tool_name"], turn.confirm.tool):
            return turn.confirm.approve
        return True

    return decide


def run_task(stack: Stack, task: Task, timeout_s: float = 300.0) -> TaskResult:
    """Prepare the task's data, run its turns in order and grade each."""
    result = TaskResult(task.id, task.category, False, 0.0, 0, [])
    try:
        stack.prepare(task)
    except Exception as exc:  # noqa: BLE001 (a setup failure fails this task, not the set)
        result.reasons.append(f"setup failed: {exc}")
        return result
    earlier: list[list[Event]] = []
    with Keel(stack.url, stack.token(task), timeout_s) as keel:
        thread_id: str | None = None
        for n, turn in enumerate(task.turns, 1):
            prefix = f"turn {n}: " if len(task.turns) > 1 else ""
            now = datetime.now(UTC)
            try:
                if thread_id is None or turn.new_thread:
                    thread_id = keel.new_thread()
                record = keel.turn(thread_id, turn.message, decider(turn))
            except (TurnFailed, OSError) as exc:
                result.reasons.append(f"{prefix}{exc}")
                break
            try:
                reasons = grade_turn(turn, record, earlier, now)
            except Exception as exc:  # noqa: BLE001 (a grading bug fails this task, not the set)
                reasons = [f"harness error while grading: {exc!r}"]
            result.turns.append(_turn_result(turn, record, reasons))
            result.reasons.extend(prefix + r for r in reasons)
            earlier.append(record.events)
    result.seconds = sum(t.seconds for t in result.turns)
    result.tokens = sum(t.tokens for t in result.turns)
    result.passed = not result.reasons and len(result.turns) == len(task.turns)
    if not result.turns and not result.reasons:
        result.reasons.append("no turn ran")
    return result


def _turn_result(turn: Turn, record: TurnRecord, reasons: list[str]) -> TurnResult:
    events = record.events
    return TurnResult(
        message=turn.message,
        thread_id=record.thread_id,
        status=record.status,
        seconds=round(record.seconds, 2),
        tokens=record.tokens,
        tools=sorted(tools_attempted(events)),
        answer=record.answer,
        reasons=reasons,
        runs=[RunResult(r.run_id, r.status, round(r.seconds, 2), r.tokens) for r in record.runs],
        trace_ids=sorted({e["trace_id"] for e in events}),
        errors=[_problem(e) for e in events if e["type"] in ("error", "tool_error", "warning")],
        phases=phases(events),
        events=events,
    )


def _problem(event: Event) -> str:
    data = event["data"]
    return f"{event['type']} {data.get('code')}: {data.get('message') or data.get('error')}"


# Where a turn's time goes: from the event that opens a phase to the next event after it.
_PHASE_OPENERS = {
    ("agent_status", "planning"): "plan",
    ("agent_status", "calling_tool"): "args",  # choosing the tool, writing its arguments
    ("tool_call", None): "tool",
    ("agent_status", "thinking"): "step",
    ("agent_status", "summarizing"): "answer",
}


def phases(events: list[Event]) -> dict[str, float]:
    """Seconds per phase (plan, args, tool, step, answer), summed over the turn's runs."""
    out: dict[str, float] = {}
    for this, after in zip(events, events[1:], strict=False):
        key = (this["type"], this["data"].get("status") if this["type"] == "agent_status" else None)
        name = _PHASE_OPENERS.get(key)
        if name is None:
            continue
        if name == "answer":
            after = next(
                (e for e in events if e["type"] == "run_finished" and e["seq"] > this["seq"]), after
            )
        seconds = (
            datetime.fromisoformat(after["ts"]) - datetime.fromisoformat(this["ts"])
        ).total_seconds()
        out[name] = round(out.get(name, 0.0) + seconds, 2)
    return out


def regrade(task: Task, old: TaskResult, events: list[Event]) -> TaskResult:
    """Grade a recorded task again (events as written by ``--events``) with the current checks."""
    result = TaskResult(task.id, task.category, False, old.seconds, old.tokens, [])
    earlier: list[list[Event]] = []
    for n, (turn, was) in enumerate(zip(task.turns, old.turns, strict=False), 1):
        prefix = f"turn {n}: " if len(task.turns) > 1 else ""
        mine = [e for e in events if e.get("turn") == n]
        record = TurnRecord(was.thread_id)
        for run in was.runs:
            of_run = [e for e in mine if e["run_id"] == run.run_id]
            record.runs.append(RunRecord(run.run_id, run.status, run.seconds, run.tokens, of_run))
        started = next((e["ts"] for e in mine if e["type"] == "run_started"), None)
        now = datetime.fromisoformat(started) if started else datetime.now(UTC)
        try:
            reasons = grade_turn(turn, record, earlier, now)
        except Exception as exc:  # noqa: BLE001 (a grading bug fails this task, not the set)
            reasons = [f"harness error while grading: {exc!r}"]
        turn_result = _turn_result(turn, record, reasons)
        turn_result.seconds, turn_result.tokens = was.seconds, was.tokens
        result.turns.append(turn_result)
        result.reasons.extend(prefix + r for r in reasons)
        earlier.append(mine)
    dropped = [r for r in old.reasons if "answered" in r or "run_finished" in r or "setup" in r]
    result.reasons.extend(dropped)
    result.passed = not result.reasons and len(result.turns) == len(task.turns)
    return result
