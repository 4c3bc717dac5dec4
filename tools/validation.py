"""Tool argument validation and repair (practice 11).

Every call's arguments are validated before the call by a Pydantic model derived from the
tool's MCP input schema (``args_model``), in strict JSON mode with unknown keys forbidden, so
``"5"`` for an integer or ``"tomorrow"`` for a date-time is caught here rather than guessed at
by the server. (Results are validated against the tool's output schema by the MCP client
session itself, which the gateway maps to ``invalid_output``.)

Repair runs in a fixed order and reports each step as a ``Repair`` (the graph turns each into
a ``repair`` event with ``before``, ``after`` and ``method``):

1. ``deterministic`` (``repair_deterministic``): per invalid field, in this order of rules —
   a key the schema lacks is renamed to the one missing required key of a compatible type
   (``{"date": "tomorrow"}`` → ``starts_at``) or dropped; strings become numbers or booleans
   (``"5"``, ``"yes"``), with units for fields named ``*_min``/``*_s``/``*_ms`` (``"1h"`` → 60);
   enum values match case- and space-insensitively (``"Python"`` → ``"python"``); relative or
   loose dates and times become ISO 8601 in the user's time zone (``dateparser``,
   ``"tomorrow 3pm"`` → ``2026-11-24T15:00:00+08:00``), naive date-times get that zone; an
   integer out of range is clamped and an over-long string cut.
2. ``llm``: the caller's model rewrites the arguments given the schema and the exact
   validation error (``RepairModel``, at most ``max_llm_attempts`` tries, structured output);
   it lives in ``graphs/`` because tools never import the model.
3. Otherwise ``ArgumentsInvalid`` (code ``invalid_arguments``) carries the structured error —
   ``error``, ``expected`` (from the schema: "ISO 8601 date-time, e.g. …") and ``hint`` — for
   the ``tool_error`` event the user and the model both see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateparser
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)
from pydantic_core import ErrorDetails

from tools.errors import ToolError

# The model's rewrite: (schema, args, error text) → new args, or None when it gave none.
RepairModel = Callable[[dict[str, Any], dict[str, Any], str], Awaitable[dict[str, Any] | None]]

_UNIT_MINUTES = {"m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1, "h": 60, "hr": 60}
_UNIT_MINUTES |= {"hrs": 60, "hour": 60, "hours": 60, "d": 1440, "day": 1440, "days": 1440}
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1}
_UNIT_SECONDS |= {k: v * 60 for k, v in _UNIT_MINUTES.items()}
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


class ArgumentsInvalid(ToolError):
    """The arguments fail the tool's schema and no repair fixed them; the tool is not called."""

    code = "invalid_arguments"
    title = "Invalid tool arguments"

    def __init__(self, detail: str, expected: str | None, hint: str, repairs: list[Repair]):
        """Keep what the ``tool_error`` event tells: the error, what was expected, a hint."""
        super().__init__(detail)
        self.expected = expected
        self.hint = hint
        self.repairs = repairs


@dataclass(frozen=True)
class Repair:
    """One repair step: the arguments before and after, how, and which rules fired."""

    method: Literal["deterministic", "llm"]
    before: dict[str, Any]
    after: dict[str, Any]
    changes: tuple[str, ...] = ()
    valid: bool = True


@dataclass
class Repaired:
    """The outcome of ``validate_and_repair``: valid arguments and the steps that made them."""

    args: dict[str, Any]
    repairs: list[Repair] = field(default_factory=list)


# -- the model from the schema ------------------------------------------------------------


_NUMBER = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}
# Strings and numbers: their Python type, and their JSON Schema bounds as ``Field`` constraints.
_BOUNDED: dict[str, tuple[type, dict[str, str]]] = {
    "string": (str, {"minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"}),
    "integer": (int, _NUMBER),
    "number": (float, _NUMBER),
}


def _annotation(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return Literal[tuple(schema["enum"])]
    if "const" in schema:
        return Literal[schema["const"]]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            members = tuple(_annotation(s) for s in schema[key])
            return members[0] if len(members) == 1 else _union(members)
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union(tuple(_annotation({**schema, "type": k}) for k in kind))
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return AwareDatetime
        if fmt == "date":
            return date
    if isinstance(kind, str) and kind in _BOUNDED:
        base, bounds = _BOUNDED[kind]
        constraints: dict[str, Any] = {f: schema.get(k) for k, f in bounds.items()}
        return Annotated[base, Field(**constraints)]
    if kind == "boolean":
        return bool
    if kind == "null":
        return None
    if kind == "array":
        return list[_annotation(schema.get("items", {}))]  # type: ignore[misc]
    if kind == "object":
        return dict[str, Any]
    return Any


def _union(members: tuple[Any, ...]) -> Any:
    out = members[0]
    for m in members[1:]:
        out = out | m if m is not None else out | None
    return out


@lru_cache(maxsize=256)
def _model_for(schema_json: str, name: str) -> type[BaseModel]:
    schema = json.loads(schema_json)
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for i, (key, prop) in enumerate(schema.get("properties", {}).items()):
        default = ... if key in required else prop.get("default")
        fields[f"f{i}"] = (_annotation(prop), Field(default, alias=key))
    return create_model(
        name, __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields
    )


def args_model(schema: dict[str, Any], name: str = "ToolArgs") -> type[BaseModel]:
    """The Pydantic model of a tool's JSON input schema (cached per schema)."""
    return _model_for(json.dumps(schema, sort_keys=True), name)


def validate(schema: dict[str, Any], args: dict[str, Any]) -> list[ErrorDetails]:
    """The schema violations of ``args`` (empty when valid), in strict JSON mode."""
    try:
        args_model(schema).model_validate_json(json.dumps(args, default=str), strict=True)
    except ValidationError as exc:
        return exc.errors(include_url=False)
    return []


def describe_errors(errors: list[ErrorDetails]) -> str:
    """``field: message`` lines, the exact error the model is shown."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in errors
    )


def expected_of(prop: dict[str, Any]) -> str:
    """What a field expects, in words a user (and a small model) can act on."""
    fmt = prop.get("format")
    if fmt == "date-time":
        return "ISO 8601 date-time with offset, e.g. 2026-11-24T15:00:00+08:00"
    if fmt == "date":
        return "YYYY-MM-DD"
    if "enum" in prop:
        return "one of " + ", ".join(map(str, prop["enum"]))
    kind = prop.get("type") or next(
        (s.get("type") for s in prop.get("anyOf", []) if s.get("type") != "null"), "value"
    )
    bounds = [f"{op} {prop[k]}" for k, op in (("minimum", ">="), ("maximum", "<=")) if k in prop]
    return f"{kind}{' ' + ' and '.join(bounds) if bounds else ''}"


# -- deterministic repair -----------------------------------------------------------------


def _prop(schema: dict[str, Any], key: str) -> dict[str, Any]:
    prop: dict[str, Any] = schema.get("properties", {}).get(key, {})
    for alt in prop.get("anyOf", []):
        if alt.get("type") != "null":
            return {**alt, **{k: v for k, v in prop.items() if k != "anyOf"}}
    return prop


def _zone(tz: str) -> tzinfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse_when(value: Any, tz: str, now: datetime) -> datetime | None:
    if not isinstance(value, str):
        return None
    zone = _zone(tz)
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = dateparser.parse(
            value,
            settings={
                "TIMEZONE": tz,
                "RETURN_AS_TIMEZONE_AWARE": True,
                "PREFER_DATES_FROM": "future",
                "RELATIVE_BASE": now.astimezone(zone).replace(tzinfo=None),
            },
        )
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def _number(value: Any, key: str, integer: bool) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, (int, float)):
        num: float = float(value)
    else:
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value.replace(",", ""))
        if m is None:
            return None
        num, unit = float(m.group(1)), m.group(2).lower()
        if unit:
            table = _UNIT_MINUTES if key.endswith("_min") else _UNIT_SECONDS
            scale = {"_min": 1.0, "_s": 1.0, "_ms": 1000.0}
            suffix = next((s for s in scale if key.endswith(s)), None)
            if suffix is None or unit not in table:
                return None
            num = num * table[unit] * scale[suffix]
    if integer:
        return round(num) if abs(num - round(num)) < 1e-9 else None
    return num


def _fix_field(
    key: str, value: Any, prop: dict[str, Any], tz: str, now: datetime
) -> tuple[Any, str] | None:
    """A repaired value for one field and the rule that made it, or None."""
    if "enum" in prop:
        norm = str(value).strip().lower().replace(" ", "_").replace("-", "_")
        for option in prop["enum"]:
            if str(option).lower().replace("-", "_") == norm:
                return option, "enum"
        return None
    kind, fmt = prop.get("type"), prop.get("format")
    if kind == "string" and fmt in ("date-time", "date"):
        when = _parse_when(value, tz, now)
        if when is None:
            return None
        if fmt == "date":
            return when.date().isoformat(), "date"
        return when.isoformat(timespec="seconds"), "datetime"
    if kind in ("integer", "number"):
        num = _number(value, key, kind == "integer")
        if num is None:
            return None
        low, high = prop.get("minimum"), prop.get("maximum")
        clamped = min(max(num, low if low is not None else num), high if high is not None else num)
        unit = re.search("[a-z]", str(value))
        rule = "clamp" if clamped != num else ("unit" if unit else "coerce")
        return clamped, rule
    if kind == "boolean" and isinstance(value, (str, int)):
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE, "coerce"
        return None
    if kind == "string":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value), "coerce"
        if isinstance(value, str) and "maxLength" in prop and len(value) > prop["maxLength"]:
            return value[: prop["maxLength"]], "truncate"
        if isinstance(value, str) and value != value.strip():
            return value.strip(), "strip"
        return None
    if kind == "array" and not isinstance(value, list) and value is not None:
        items = [s.strip() for s in value.split(",")] if isinstance(value, str) else [value]
        return items, "wrap"
    return None


def _compatible(value: Any, prop: dict[str, Any], tz: str, now: datetime) -> bool:
    if prop.get("format") in ("date-time", "date"):
        return _parse_when(value, tz, now) is not None
    kind = prop.get("type")
    if kind == "string":
        return isinstance(value, str)
    if kind in ("integer", "number"):
        return _number(value, "", kind == "integer") is not None
    return kind is None or kind == "object"


def repair_deterministic(
    schema: dict[str, Any], args: dict[str, Any], *, tz: str, now: datetime
) -> tuple[dict[str, Any], list[str]]:
    """Fix what rules can fix; returns the new arguments and one line per rule applied."""
    out = dict(args)
    changes: list[str] = []
    props: dict[str, Any] = schema.get("properties", {})
    unknown = [k for k in out if k not in props]
    missing = [k for k in schema.get("required", []) if k not in out]
    for key in unknown:
        target = [m for m in missing if _compatible(out[key], _prop(schema, m), tz, now)]
        if len(target) == 1:
            out[target[0]] = out.pop(key)
            missing.remove(target[0])
            changes.append(f"rename {key} -> {target[0]}")
        else:
            del out[key]
            changes.append(f"drop unknown {key}")
    for error in validate(schema, out):
        key = str(error["loc"][0]) if error["loc"] else ""
        if key not in out:
            continue
        fixed = _fix_field(key, out[key], _prop(schema, key), tz, now)
        if fixed is not None and fixed[0] != out[key]:
            out[key] = fixed[0]
            changes.append(f"{fixed[1]} {key}")
    return out, changes


# -- the whole pipeline -------------------------------------------------------------------


async def validate_and_repair(
    schema: dict[str, Any],
    args: dict[str, Any],
    *,
    tz: str,
    now: datetime,
    llm: RepairModel | None = None,
    max_llm_attempts: int = 2,
    keep: frozenset[str] = frozenset(),
) -> Repaired:
    """Valid arguments for ``schema``, repaired in order: rules, then the model, else raise.

    ``keep`` names arguments set by Keel rather than the model (an idempotency key): they are
    never shown to or changed by the model.

    Raises:
        ArgumentsInvalid: nothing made the arguments valid.
    """
    if not validate(schema, args):
        return Repaired(args)
    pinned = {k: v for k, v in args.items() if k in keep}
    current = {k: v for k, v in args.items() if k not in keep}
    repairs: list[Repair] = []
    fixed, changes = repair_deterministic(schema, current, tz=tz, now=now)
    if changes:
        valid = not validate(schema, {**fixed, **pinned})
        repairs.append(Repair("deterministic", current, fixed, tuple(changes), valid))
        current = fixed
    errors = validate(schema, {**current, **pinned})
    for _ in range(max_llm_attempts if llm is not None and errors else 0):
        assert llm is not None
        proposal = await llm(schema, current, describe_errors(errors))
        if proposal is None:
            continue
        proposal = {k: v for k, v in proposal.items() if k not in keep}
        errors = validate(schema, {**proposal, **pinned})
        repairs.append(Repair("llm", current, proposal, (), not errors))
        current = proposal
        if not errors:
            break
    if errors:
        key = str(errors[0]["loc"][0]) if errors[0]["loc"] else ""
        expected = expected_of(_prop(schema, key)) if key else None
        hint = f"give {key} as {expected}" if key else "check the arguments against the schema"
        raise ArgumentsInvalid(describe_errors(errors), expected, hint, repairs)
    return Repaired({**current, **pinned}, repairs)
