"""Tool use in the graph (practices 11, 15, 16): one plan step → one gateway call, as events.

The planner chooses the tool (an enum in ``graphs/state.py``); this module picks the server's
tool, derives its arguments and calls it through the gateway. Arguments are deterministic where
the step's text suffices (language and period for github_trending, the query for documents,
the window for the calendar); code and meetings come from a second json_schema structured call,
which small models fill reliably because the schema is enforced as a grammar.

Before the call the arguments are validated against the tool's own schema and repaired
(``tools/validation.py``): rules first, then the model given the exact error (``repair``
events), else a ``tool_error`` with ``expected`` and ``hint`` and the step goes on without the
tool. When the call fails with a kind the pin's ``fallbacks`` rule lists, the step degrades as
the rule says — cached result, another pin, or skip — and says so in a ``warning``; the
finding records the degraded source so the summary can name it.

A tool named in ``tools.confirm`` is held instead of called once its arguments are valid and
its permissions pass (``confirmation_required``, ``awaiting_confirmation``): the step returns
the held call, the graph interrupts (``graphs/nodes/confirm.py``), and the resumed run calls it
with exactly the held arguments (``finish_held``) or, when rejected, tells a ``not_confirmed``
``tool_error`` and goes on without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.types import StreamWriter
from pydantic import BaseModel, Field, ValidationError

from core.errors import KeelError
from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, status, usage_of
from graphs.nodes import structured
from tools.errors import NotConfirmed, ToolError, failure_kind
from tools.fallback import CachedResult
from tools.gateway import ToolOutcome, ToolSpec
from tools.validation import ArgumentsInvalid, Repair, RepairModel, validate_and_repair

log = logging.getLogger(__name__)

LANGUAGES = (
    "python",
    "rust",
    "go",
    "typescript",
    "javascript",
    "java",
    "kotlin",
    "swift",
    "ruby",
    "php",
    "c++",
    "c#",
    "haskell",
    "scala",
    "elixir",
    "zig",
)
_MAX_NOTE = 1500


class CodeArgs(BaseModel):
    """Python to run for a step."""

    code: str = Field(max_length=4000)


class MeetingArgs(BaseModel):
    """A meeting to book."""

    title: str = Field(max_length=200)
    starts_at: str = Field(description="ISO 8601 date-time with offset")
    duration_min: int = Field(ge=5, le=480, default=30)


@dataclass
class StepTool:
    """What a tool step produced for the researcher's prompt."""

    note: str
    usage: dict[str, int] = field(default_factory=dict)
    degraded: str | None = None  # which source answered in a degraded way, for the summary
    held: dict[str, Any] | None = None  # a call waiting for the caller's confirmation


def tool_of(server: str, text: str) -> str | None:
    """Which tool of ``server`` a step needs (``None``: the server's first tool)."""
    if server == "calendar":
        booking = re.search(r"\b(schedule|book|set up|arrange)\b", text, re.I)
        return "schedule_meeting" if booking else "list_events"
    return None


def language_of(text: str) -> str:
    """The programming language a step names (``python`` if none)."""
    lowered = text.lower()
    for lang in LANGUAGES:
        if re.search(rf"(?<![\w+#]){re.escape(lang)}(?![\w+#])", lowered):
            return lang
    return "python"


def period_of(text: str) -> str:
    """``daily``, ``weekly`` or ``monthly`` from the step's wording."""
    lowered = text.lower()
    if re.search(r"\b(today|daily|day)\b", lowered):
        return "daily"
    if re.search(r"\b(month|monthly)\b", lowered):
        return "monthly"
    return "weekly"


async def _structured(
    ctx: RunContext, schema: type[BaseModel], instruction: str, text: str
) -> tuple[BaseModel | None, dict[str, int]]:
    runnable = structured(ctx, ctx.llm.step_max_tokens * 2, schema)
    try:
        out: Any = await runnable.ainvoke([SystemMessage(instruction), HumanMessage(text)])
    except (ValidationError, OutputParserException):
        return None, {}
    parsed: BaseModel | None = out.get("parsed")
    return parsed, usage_of(out.get("raw"))


async def derive_args(
    spec: ToolSpec, step: dict[str, Any], question: str, ctx: RunContext, index: int
) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """Arguments for ``spec`` from the step (``None`` when the model gave no usable ones)."""
    text = f"{question}\n{step['description']}"
    if spec.server == "github_trending":
        if "lang" in spec.input_schema.get("properties", {}):
            return {"lang": language_of(text)}, {}
        return {"language": language_of(text), "since": period_of(text), "limit": 5}, {}
    if spec.server == "documents":
        return {"query": step["description"][:500] or question[:500], "limit": 5}, {}
    if spec.name == "list_events":
        return {"days": 7}, {}
    prompt = f"Question: {question}\nStep: {step['description']}"
    if spec.name == "schedule_meeting":
        parsed, usage = await _structured(ctx, MeetingArgs, prompts.MEETING_ARGS, prompt)
        if not isinstance(parsed, MeetingArgs):
            return None, usage
        # One key per run and step: a retried step books once.
        key = hashlib.sha256(f"{ctx.run_id}:{index}".encode()).hexdigest()[:32]
        return {**parsed.model_dump(), "idempotency_key": key}, usage
    if spec.server == "python_exec":
        parsed, usage = await _structured(ctx, CodeArgs, prompts.CODE_ARGS, prompt)
        if not isinstance(parsed, CodeArgs):
            return None, usage
        return {"code": parsed.code}, usage
    return {}, {}


def _note(outcome: ToolOutcome) -> str:
    result = outcome.result
    if outcome.spec.server == "github_trending" and isinstance(result, dict):
        lines = [
            f"- {r['full_name']} ({r['stars']} stars): {r.get('description', '')}"
            for r in result.get("repos", [])
        ]
        return f"source: {result.get('source')}\n" + "\n".join(lines)
    if outcome.spec.server == "python_exec" and isinstance(result, dict):
        parts = [f"stdout:\n{result.get('stdout', '')}"]
        if result.get("error") or result.get("killed"):
            parts.append(f"error: {result.get('killed') or result.get('error')}")
        parts.append(f"{len(result.get('images', []))} chart(s) shown to the user")
        return "\n".join(parts)
    return result if isinstance(result, str) else json.dumps(result, default=str)


def _emit_outputs(writer: StreamWriter, node: str, ctx: RunContext, outcome: ToolOutcome) -> Any:
    """Rich events for python_exec (code, charts, tables); returns the result for the event."""
    result = outcome.result
    if outcome.spec.server != "python_exec" or not isinstance(result, dict):
        return result
    assert ctx.tools is not None
    emit(writer, "code_block", node, language="python", code=str(result.get("code", "")))
    for png in result.get("images", []):
        artifact = ctx.tools.artifacts.save(ctx.identity.tenant, base64.b64decode(png), "png")
        emit(
            writer,
            "image_generated",
            node,
            url=f"/v1/artifacts/{artifact}",
            alt="chart generated by python_exec",
            mime="image/png",
        )
    for table in result.get("tables", []):
        emit(
            writer,
            "table",
            node,
            columns=[str(c) for c in table.get("columns", [])],
            rows=table.get("rows", []),
            title=table.get("name"),
        )
    return {**result, "images": len(result.get("images", []))}


async def run_tool_step(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    step: dict[str, Any],
    question: str,
    index: int,
) -> StepTool:
    """Call the step's tool through the gateway; failures become ``tool_error`` events."""
    assert ctx.tools is not None
    call_id = uuid.uuid4().hex[:16]
    text = f"{question}\n{step['description']}"
    try:
        spec = ctx.tools.resolve(ctx.agent, step["tool"], tool_of(step["tool"], text))
    except ToolError as exc:
        _tool_error(writer, node, call_id, step["tool"], exc, None, ctx.trace_id)
        return StepTool(note=f"(tool {step['tool']} unavailable: {exc.detail})")
    status(writer, node, "calling_tool", tool_name=spec.qualified)
    args, usage = await derive_args(spec, step, question, ctx, index)
    if args is None:
        err = ToolError(f"no valid arguments for {spec.qualified} from the model")
        _tool_error(writer, node, call_id, spec.qualified, err, spec, ctx.trace_id)
        return StepTool(note=f"(tool {spec.qualified} not called: no valid arguments)", usage=usage)
    try:
        args = await _repaired(writer, node, ctx, spec, args, call_id, usage)
    except KeelError as exc:
        _tool_error(writer, node, call_id, spec.qualified, exc, spec, ctx.trace_id)
        return StepTool(
            note=f"(tool {spec.qualified} not called: {exc.detail}; answer without it)",
            usage=usage,
        )
    if ctx.tools.needs_confirmation(spec):
        return await _hold(writer, node, ctx, spec, args, call_id, usage, index)
    return await _attempt(writer, node, ctx, spec, args, call_id, usage, step, question, index)


async def _attempt(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    spec: ToolSpec,
    args: dict[str, Any],
    call_id: str,
    usage: dict[str, int],
    step: dict[str, Any],
    question: str,
    index: int,
    *,
    confirmed: bool = False,
) -> StepTool:
    """Call the tool with valid ``args``; a failure degrades as its pin's fallback rule says."""
    try:
        return await _call(writer, node, ctx, spec, args, call_id, usage, confirmed=confirmed)
    except ToolError as exc:
        _tool_error(writer, node, call_id, spec.qualified, exc, spec, ctx.trace_id)
        degraded = await _degrade(writer, node, ctx, spec, args, exc, step, question, index)
        if degraded is not None:
            extra = degraded.usage
            degraded.usage = {k: usage.get(k, 0) + extra.get(k, 0) for k in {*usage, *extra}}
            return degraded
        return StepTool(note=f"(tool {spec.qualified} failed: {exc.detail})", usage=usage)
    except KeelError as exc:
        _tool_error(writer, node, call_id, spec.qualified, exc, spec, ctx.trace_id)
        return StepTool(note=f"(tool {spec.qualified} failed: {exc.detail})", usage=usage)


async def _hold(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    spec: ToolSpec,
    args: dict[str, Any],
    call_id: str,
    usage: dict[str, int],
    index: int,
) -> StepTool:
    """Offer the call for confirmation once the gateway's checks pass (never outside scopes)."""
    assert ctx.tools is not None
    identity = ctx.identity
    try:
        await ctx.tools.hold(
            spec, args, identity=identity, trace_id=ctx.trace_id, confirmation_id=call_id
        )
    except KeelError as exc:
        _tool_error(writer, node, call_id, spec.qualified, exc, spec, ctx.trace_id)
        return StepTool(note=f"(tool {spec.qualified} failed: {exc.detail})", usage=usage)
    emit(
        writer,
        "confirmation_required",
        node,
        confirmation_id=call_id,
        call_id=call_id,
        tool_name=spec.qualified,
        server=spec.server,
        version=spec.version,
        args=_shown(args),
        permissions=list(spec.permissions),
    )
    status(writer, node, "awaiting_confirmation", tool_name=spec.qualified)
    held = {
        "confirmation_id": call_id,
        "pin": spec.pin,
        "tool": spec.name,
        "tool_name": spec.qualified,
        "version": spec.version,
        "args": args,
        "index": index,
    }
    return StepTool(note="", usage=usage, held=held)


async def finish_held(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    held: dict[str, Any],
    decision: dict[str, Any],
    step: dict[str, Any],
    question: str,
) -> StepTool:
    """The held call after the caller's decision: called with its held arguments, or not."""
    assert ctx.tools is not None
    call_id = str(held["confirmation_id"])
    approve = bool(decision.get("approve"))
    comment = decision.get("comment")
    try:
        spec = ctx.tools.resolve_pin(str(held["pin"]), str(held["tool"]))
    except ToolError as exc:
        _tool_error(writer, node, call_id, str(held["tool"]), exc, None, ctx.trace_id)
        return StepTool(note=f"(tool {held['tool']} unavailable: {exc.detail})")
    emit(
        writer,
        "confirmation_decided",
        node,
        confirmation_id=call_id,
        tool_name=spec.qualified,
        approve=approve,
        user_id=ctx.identity.user_id,
        comment=comment,
    )
    args: dict[str, Any] = dict(held["args"])
    identity = ctx.identity
    await ctx.tools.record_decision(
        spec,
        args,
        identity=identity,
        trace_id=ctx.trace_id,
        confirmation_id=call_id,
        approve=approve,
        comment=comment,
    )
    if spec.version != held["version"]:
        err = ToolError(
            f"{spec.qualified} is now {spec.version}, not the confirmed {held['version']}"
        )
        _tool_error(writer, node, call_id, spec.qualified, err, spec, ctx.trace_id)
        return StepTool(note=f"(tool {spec.qualified} not called: {err.detail})")
    if not approve:
        why = f": {comment}" if comment else ""
        err = NotConfirmed(f"{spec.qualified} was not called: the user rejected the call{why}")
        err.hint = "answer without this tool, and say that the user declined it"
        _tool_error(writer, node, call_id, spec.qualified, err, spec, ctx.trace_id)
        return StepTool(
            note=f"(tool {spec.qualified} not called: the user declined it{why}; answer without it)"
        )
    status(writer, node, "calling_tool", tool_name=spec.qualified)
    index = int(held["index"])
    return await _attempt(
        writer, node, ctx, spec, args, call_id, {}, step, question, index, confirmed=True
    )


def _shown(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as events show them: without the idempotency key the gateway adds."""
    return {k: v for k, v in args.items() if k != "idempotency_key"}


async def _repaired(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    spec: ToolSpec,
    args: dict[str, Any],
    call_id: str,
    usage: dict[str, int],
) -> dict[str, Any]:
    """``args`` valid for ``spec``'s schema, each repair told as a ``repair`` event."""
    assert ctx.tools is not None

    def told(repairs: list[Repair]) -> None:
        for r in repairs:
            emit(
                writer,
                "repair",
                node,
                call_id=call_id,
                tool_name=spec.qualified,
                before=r.before,
                after=r.after,
                method=r.method,
                changes=list(r.changes),
                valid=r.valid,
            )

    try:
        repaired = await validate_and_repair(
            spec.input_schema,
            args,
            tz=ctx.timezone,
            now=datetime.now(UTC),
            llm=_model_repair(ctx, spec, usage),
            max_llm_attempts=ctx.tools.settings.tools.repair_llm_attempts,
            keep=frozenset({"idempotency_key"}),
        )
    except ArgumentsInvalid as exc:
        told(exc.repairs)
        raise
    told(repaired.repairs)
    return repaired.args


def _model_repair(ctx: RunContext, spec: ToolSpec, usage: dict[str, int]) -> RepairModel:
    """The model's rewrite of invalid arguments: the schema is enforced as structured output."""
    schema = {**spec.input_schema, "title": re.sub(r"[^A-Za-z0-9_-]", "_", spec.name) + "_args"}

    async def rewrite(_: dict[str, Any], args: dict[str, Any], error: str) -> dict[str, Any] | None:
        runnable = structured(ctx, ctx.llm.step_max_tokens * 2, schema)
        prompt = prompts.REPAIR_ARGS.format(
            tool=spec.qualified,
            schema=json.dumps(spec.input_schema),
            args=json.dumps(args, default=str),
            error=error,
        )
        try:
            out: Any = await runnable.ainvoke([SystemMessage(prompt), HumanMessage(error)])
        except (ValidationError, OutputParserException, ValueError):
            return None
        for k, v in usage_of(out.get("raw")).items():
            usage[k] = usage.get(k, 0) + v
        parsed = out.get("parsed")
        return parsed if isinstance(parsed, dict) else None

    return rewrite


async def _call(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    spec: ToolSpec,
    args: dict[str, Any],
    call_id: str,
    usage: dict[str, int],
    *,
    confirmed: bool = False,
) -> StepTool:
    """Call ``spec`` through the gateway, telling the call and its result."""
    assert ctx.tools is not None
    shown = _shown(args)
    emit(
        writer,
        "tool_call",
        node,
        call_id=call_id,
        tool_name=spec.qualified,
        server=spec.server,
        version=spec.version,
        args=shown,
    )
    identity = ctx.identity
    outcome = await ctx.tools.call(
        spec, args, identity=identity, trace_id=ctx.trace_id, confirmed=confirmed
    )
    result = _emit_outputs(writer, node, ctx, outcome)
    limit = _sandbox_limit(outcome)
    if limit:
        err = ToolError(f"{spec.qualified}: {limit}")
        err.code = "sandbox_limit"
        err.hint = "simplify the code or the data: the sandbox limits CPU, memory and time"
        _tool_error(writer, node, call_id, spec.qualified, err, spec, ctx.trace_id)
    emit(
        writer,
        "tool_result",
        node,
        call_id=call_id,
        tool_name=spec.qualified,
        server=spec.server,
        version=spec.version,
        result=result,
        duration_ms=outcome.duration_ms,
    )
    return StepTool(note=_note(outcome)[:_MAX_NOTE], usage=usage)


async def _degrade(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    spec: ToolSpec,
    args: dict[str, Any],
    exc: ToolError,
    step: dict[str, Any],
    question: str,
    index: int,
) -> StepTool | None:
    """Answer the step as ``fallbacks.<pin>`` says after ``exc``; ``None``: no rule applies."""
    assert ctx.tools is not None
    kind = failure_kind(exc.code)
    if kind == "circuit_open":
        warn(
            writer,
            node,
            "circuit_open",
            spec.qualified,
            f"{spec.qualified} is paused: {exc.detail}",
        )
    rule = ctx.tools.fallback_rule(spec.pin)
    if rule is None or kind is None or (kind not in rule.on and kind != "circuit_open"):
        return None
    label = f"{spec.server} {spec.version}"
    if rule.use == "cache":
        hit = await ctx.tools.cached(spec, args, ctx.identity.tenant)
        if hit is not None:
            return _from_cache(writer, node, spec, hit, kind, label)
        message = (
            f"{label} failed ({kind}) and has no fresh cached result: step answered without it"
        )
    elif rule.use == "tool" and rule.tool is not None:
        used = await _fallback_tool(writer, node, ctx, rule.tool, spec, kind, step, question, index)
        if used is not None:
            return used
        message = (
            f"{label} failed ({kind}) and so did its fallback {rule.tool}: step answered without it"
        )
    else:
        message = f"{label} failed ({kind}): answered without it"
    warn(writer, node, "tool_skipped", spec.qualified, message)
    return StepTool(note=f"(tool {spec.qualified} skipped: {kind})", degraded=message)


def _from_cache(
    writer: StreamWriter, node: str, spec: ToolSpec, hit: CachedResult, kind: str, label: str
) -> StepTool:
    age = _age(datetime.now(UTC) - hit.stored_at)
    message = f"{label} is failing ({kind}): using its cached result from {age} ago"
    warn(writer, node, "tool_cached", spec.qualified, message)
    emit(
        writer,
        "tool_result",
        node,
        call_id=uuid.uuid4().hex[:16],
        tool_name=spec.qualified,
        server=spec.server,
        version=spec.version,
        result=hit.result,
        cached_at=hit.stored_at.isoformat(),
    )
    outcome = ToolOutcome(spec=spec, result=hit.result, text=hit.text, duration_ms=0.0)
    return StepTool(note=_note(outcome)[:_MAX_NOTE], degraded=f"{label}: cached, {age} old")


async def _fallback_tool(
    writer: StreamWriter,
    node: str,
    ctx: RunContext,
    pin: str,
    failed: ToolSpec,
    kind: str,
    step: dict[str, Any],
    question: str,
    index: int,
) -> StepTool | None:
    assert ctx.tools is not None
    call_id = uuid.uuid4().hex[:16]
    try:
        spec = ctx.tools.resolve_pin(pin, failed.name)
        args, usage = await derive_args(spec, step, question, ctx, index)
        if args is None:
            return None
        message = (
            f"{failed.server} {failed.version} is failing ({kind}):"
            f" answered by {spec.server} {spec.version} instead"
        )
        warn(writer, node, "tool_fallback", failed.qualified, message)
        args = await _repaired(writer, node, ctx, spec, args, call_id, usage)
        used = await _call(writer, node, ctx, spec, args, call_id, usage)
    except KeelError as exc:
        _tool_error(writer, node, call_id, pin, exc, None, ctx.trace_id)
        return None
    used.degraded = message
    return used


def warn(writer: StreamWriter, node: str, code: str, tool_name: str | None, message: str) -> None:
    """A ``warning`` event: something degraded, the run goes on."""
    log.warning(message, extra={"keel": {"code": code, "tool": tool_name}})
    emit(writer, "warning", node, code=code, message=message, tool_name=tool_name)


def _age(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _sandbox_limit(outcome: ToolOutcome) -> str | None:
    """Why the sandbox stopped the code (killed at a limit, or refused memory), if it did."""
    result = outcome.result
    if outcome.spec.server != "python_exec" or not isinstance(result, dict):
        return None
    if result.get("killed"):
        return f"stopped by the sandbox: {result['killed']}"
    if "MemoryError" in str(result.get("error") or ""):
        return "stopped by the sandbox: memory limit"
    return None


def _tool_error(
    writer: StreamWriter,
    node: str,
    call_id: str,
    tool_name: str,
    exc: KeelError,
    spec: ToolSpec | None,
    trace_id: str,
) -> None:
    log.warning(
        "tool call refused or failed",
        extra={
            "keel": {
                "tool": tool_name,
                "code": exc.code,
                "detail": exc.detail,
                "trace_id": trace_id,
            }
        },
    )
    data: dict[str, Any] = {
        "call_id": call_id,
        "tool_name": tool_name,
        "code": exc.code,
        "error": exc.detail,
    }
    hint = getattr(exc, "hint", None)
    if hint:
        data["hint"] = hint
    expected = getattr(exc, "expected", None)
    if expected:
        data["expected"] = expected
    if spec is not None:
        data.update(server=spec.server, version=spec.version)
    emit(writer, "tool_error", node, **data)
