"""Grading a turn from its own events: tools, status, required events, held calls, answer.

Every check returns reasons; a turn passes when there are none. Expected values are resolved
from the turn's events first and then from the earlier turns of the task (a follow-up or a
later listing refers to data an earlier turn fetched), or computed here.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.eval.client import Event, TurnRecord
from bench.eval.tasks import Answer, ArgCheck, Turn, Value

Scalar = str | int | float

# A missing scope must be explained as one: "unable to" alone is not a refusal.
_REFUSAL = re.compile(
    r"permission|not (allowed|permitted|authori[sz]ed)|unauthori[sz]ed|denied|forbidden"
    r"|scope|\b(no|without|lack\w*|(don't|do not|doesn't|does not) have) (the )?(access|right)",
    re.I,
)
_UNKNOWN = re.compile(
    r"(don't|do not|doesn't|does not) (know|have|contain|mention|say|include|specify)"
    r"|not sure|no (information|data|record|results?|details|mention|relevant|access)"
    r"|(couldn't|could not|cannot|can't|can not|unable to|not able to) (find|determine|answer"
    r"|provide|know|access|say|tell|locate|retrieve)"
    r"|not (available|found|mentioned|specified|provided|aware|known)|unknown|no way to",
    re.I,
)
_NUMBER = re.compile(r"(?<![\w.])(-?\d[\d,]*(?:\.\d+)?)(\s*(?:k|m|thousand|million)\b)?", re.I)
_SAFE = {
    "abs": abs,
    "all": all,
    "any": any,
    "float": float,
    "int": int,
    "len": len,
    "max": max,
    "min": min,
    "range": range,
    "round": round,
    "sum": sum,
    "sorted": sorted,
    "math": math,
    "statistics": statistics,
}


def tool_matches(name: str, wanted: str) -> bool:
    """``calendar.schedule_meeting`` matches ``calendar`` and ``calendar.schedule_meeting``."""
    return name == wanted or name.split(".", 1)[0] == wanted


def tools_attempted(events: Sequence[Event]) -> set[str]:
    """Servers the turn tried to use: called, held for confirmation, or refused."""
    kinds = {"tool_call", "confirmation_required", "tool_error"}
    return {e["data"]["tool_name"].split(".", 1)[0] for e in events if e["type"] in kinds}


def walk(data: Any, path: str) -> list[Any]:
    """The values at ``path`` in ``data`` (see ``tasks.Value``); ``[]`` when absent."""
    values: list[Any] = [data]
    many = False
    for part in [p for p in path.split(".") if p]:
        out: list[Any] = []
        for v in values:
            if part == "*" and isinstance(v, list):
                out.extend(v)
                many = True
            elif part.startswith("first:") and isinstance(v, list):
                out.extend(v[: int(part[6:])])
                many = True
            elif part[:4] in ("max:", "min:") and isinstance(v, list):
                key = part[4:]
                items = [
                    x for x in v if isinstance(x, dict) and isinstance(x.get(key), int | float)
                ]
                if items:
                    pick = max if part.startswith("max:") else min
                    out.append(pick(items, key=lambda x: x[key]))
            elif part.lstrip("-").isdigit() and isinstance(v, list):
                if -len(v) <= int(part) < len(v):
                    out.append(v[int(part)])
            elif isinstance(v, dict) and part in v:
                out.append(v[part])
        values = out
    if not many and len(values) > 1:
        values = values[:1]
    return [v for v in values if v is not None and v != []]


def _from_events(value: Value, events: Sequence[Event]) -> list[Any] | None:
    """The value's data in ``events``: the first matching event that has it."""
    for e in events:
        if value.tool_result is not None and e["type"] == "tool_result":
            if tool_matches(e["data"]["tool_name"], value.tool_result):
                found = walk(e["data"]["result"], value.path)
                if found:
                    return found
        if value.confirmation is not None and e["type"] == "confirmation_required":
            if tool_matches(e["data"]["tool_name"], value.confirmation):
                found = walk(e["data"]["args"], value.path)
                if found:
                    return found
    return None


def resolve(value: Value, turn: Sequence[Event], earlier: Sequence[Sequence[Event]]) -> list[Any]:
    """The expected scalar(s) of ``value``; raises ``LookupError`` when the data is missing."""
    if value.text is not None:
        return [value.text]
    if value.computed is not None:
        result = compute(value.computed)
        return list(result) if isinstance(result, list | tuple) else [result]
    searched = [turn, *reversed(earlier)]
    if value.turn is not None:
        searched = [[*earlier, turn][value.turn - 1]] if value.turn <= len(earlier) + 1 else []
    for events in searched:
        found = _from_events(value, events)
        if found is not None:
            return found
    raise LookupError(f"no {value.describe()} in the run's events to check against")


def compute(expression: str) -> Any:
    """Evaluate a task's ``computed`` expression over ``_SAFE`` (task files are in the repo)."""
    return eval(expression, {"__builtins__": {}, **_SAFE})  # noqa: S307


def numbers_in(text: str) -> list[tuple[float, int, bool]]:
    """Numbers in ``text``: (value, decimals shown, scaled by k/m)."""
    out: list[tuple[float, int, bool]] = []
    for m in _NUMBER.finditer(text):
        digits, suffix = m.group(1).replace(",", ""), (m.group(2) or "").strip().lower()
        try:
            number = float(digits)
        except ValueError:
            continue
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        scale = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}.get(suffix, 1.0)
        out.append((number * scale, decimals, scale != 1.0))
    return out


def number_in(text: str, expected: float) -> bool:
    """Whether ``text`` states ``expected``, as written or rounded to the digits shown."""
    for number, decimals, scaled in numbers_in(text):
        if scaled:
            if abs(number - expected) <= 0.005 * abs(expected) + 1e-9:
                return True
        elif abs(number - expected) < 1e-9 or (
            decimals > 0 and round(expected, decimals) == number
        ):
            return True
        elif decimals == 0 and not float(expected).is_integer() and number == round(expected):
            return True
    return False


def _normal(text: str) -> str:
    return re.sub(r"[\s*_`]+", " ", text.lower())


def appears(answer: str, expected: Any, as_: str) -> bool:
    """Whether ``expected`` appears in ``answer`` the way ``as_`` says."""
    if as_ == "number":
        try:
            return number_in(answer, float(expected))
        except (TypeError, ValueError):
            return False
    text = _normal(answer)
    wanted = _normal(str(expected)).strip()
    if as_ == "name":
        short = wanted.rsplit("/", 1)[-1]
        return bool(re.search(rf"(?<![\w-]){re.escape(short)}(?![\w-])", text))
    return wanted in text


def _check_answer(
    answer: str, check: Answer, turn: Sequence[Event], earlier: Sequence[Sequence[Event]]
) -> list[str]:
    reasons: list[str] = []
    shown = answer.strip().replace("\n", " ")
    shown = shown[:120] + ("…" if len(shown) > 120 else "")
    for value in check.contains:
        try:
            expected = resolve(value, turn, earlier)
        except LookupError as exc:
            reasons.append(str(exc))
            continue
        missing = [x for x in expected if not appears(answer, x, value.as_)]
        if missing:
            reasons.append(f"answer lacks {_listed(missing)} ({value.describe()}): {shown!r}")
    if check.contains_any:
        options: list[tuple[Any, str]] = []
        for value in check.contains_any:
            try:
                options.extend((x, value.as_) for x in resolve(value, turn, earlier))
            except LookupError as exc:
                reasons.append(str(exc))
        if options and not any(appears(answer, x, as_) for x, as_ in options):
            reasons.append(f"answer has none of {_listed([x for x, _ in options])}: {shown!r}")
    for value in check.not_contains:
        try:
            present = [x for x in resolve(value, turn, earlier) if appears(answer, x, value.as_)]
        except LookupError:
            continue
        if present:
            reasons.append(f"answer still names {_listed(present)}: {shown!r}")
    if check.alone_among is not None and check.contains:
        try:
            members = resolve(check.alone_among, turn, earlier)
            expected = [x for v in check.contains for x in resolve(v, turn, earlier)]
        except LookupError as exc:
            reasons.append(str(exc))
        else:
            as_ = check.alone_among.as_
            others = [m for m in members if m not in expected and appears(answer, m, as_)]
            if len(others) > check.max_others:
                reasons.append(f"answer also names {_listed(others)}, not one pick: {shown!r}")
    if check.says == "refusal" and not _REFUSAL.search(answer):
        reasons.append(f"answer is not a refusal or explanation: {shown!r}")
    if check.says == "unknown" and not _UNKNOWN.search(answer):
        reasons.append(f"answer does not say it does not know: {shown!r}")
    return reasons


def _listed(values: Sequence[Any]) -> str:
    return ", ".join(repr(v) for v in values[:5]) + (" …" if len(values) > 5 else "")


def _check_arg(name: str, value: Any, check: ArgCheck, now: datetime) -> list[str]:
    reasons: list[str] = []
    if check.contains is not None and check.contains.lower() not in str(value).lower():
        reasons.append(f"held {name}={value!r} lacks {check.contains!r}")
    if check.equals is not None and value != check.equals:
        reasons.append(f"held {name}={value!r}, expected {check.equals!r}")
    if check.day_offset is not None or check.hour is not None or check.minute is not None:
        try:
            at = datetime.fromisoformat(str(value)).astimezone(UTC)
        except ValueError:
            return [*reasons, f"held {name}={value!r} is not an ISO date-time"]
        if check.day_offset is not None:
            day = (now + timedelta(days=check.day_offset)).date()
            if at.date() != day:
                reasons.append(f"held {name}={value!r}, expected the date {day.isoformat()}")
        if check.hour is not None and at.hour != check.hour:
            reasons.append(f"held {name}={value!r}, expected {check.hour}:xx UTC")
        if check.minute is not None and at.minute != check.minute:
            reasons.append(f"held {name}={value!r}, expected minute {check.minute}")
    return reasons


def grade_turn(
    turn: Turn, record: TurnRecord, earlier: Sequence[Sequence[Event]], now: datetime
) -> list[str]:
    """Why the turn fails (empty: it passes)."""
    events = record.events
    reasons: list[str] = []
    if record.status != turn.status:
        errors = [
            f"{e['data']['code']}: {e['data']['message']}" for e in events if e["type"] == "error"
        ]
        why = f" ({'; '.join(errors)[:200]})" if errors else ""
        reasons.append(f"status {record.status}, expected {turn.status}{why}")
    if turn.tools is not None:
        used = tools_attempted(events)
        if used != set(turn.tools):
            reasons.append(
                f"tools {sorted(used) or 'none'}, expected {sorted(turn.tools) or 'none'}"
            )
    types = {e["type"] for e in events}
    for wanted in turn.events:
        if wanted not in types:
            reasons.append(f"no {wanted} event")
    if turn.confirm is not None:
        held = [
            e["data"]
            for e in events
            if e["type"] == "confirmation_required"
            and tool_matches(e["data"]["tool_name"], turn.confirm.tool)
        ]
        if not held:
            reasons.append(f"no confirmation_required for {turn.confirm.tool}")
        else:
            for name, check in turn.confirm.args.items():
                if name not in held[0]["args"]:
                    reasons.append(f"held call has no argument {name}")
                else:
                    reasons.extend(_check_arg(name, held[0]["args"][name], check, now))
    reasons.extend(_check_answer(record.answer, turn.answer, events, earlier))
    return reasons
