"""A tool call as one pipeline (practices 9, 11, 15, 16): a plan step in, a typed outcome out.

``ToolPipeline.run(step)`` goes, in order:

1. **Resolve** the agent's pinned server for the step, and its tool (the server's adapter
   chooses, e.g. booking words pick ``calendar.schedule_meeting``).
2. **Arguments** from the adapter: deterministic where the step's words suffice (language and
   period, the query, the window), else the run's model with a schema as structured output.
3. **Repair** against the tool's own schema (``tools/validation.py``): rules first, then the
   model given the exact error; each repair is a ``repair`` event. Still invalid: a
   ``tool_error`` with ``expected`` and ``hint``, and the step goes on without the tool.
4. **Confirmation**: a tool in ``tools.confirm`` is held once the gateway admits it (schema and
   permissions): ``confirmation_required``, and the outcome is ``Held``. The resumed run calls
   ``finish(held, decision)``, which calls it with exactly the held arguments, or tells a
   ``not_confirmed`` ``tool_error`` when the caller rejected it.
5. **The checked call** through the gateway: admission (pin, schema, permissions), quota by the
   caller's identity (tier, API key), circuit breaker, retries, the MCP call, the result cache,
   audit (``ToolGateway.call``). The call carries a key stable across a resumed run (run,
   step, attempt; a confirmed call's confirmation id), under which a side-effecting call is
   recorded as an intent before it is made (``tools/intents.py``); a tool that takes an
   ``idempotency_key`` gets one per run and step. A repeat whose outcome is unknown is not
   made: it is held for confirmation again, or told as ``outcome_unknown``.
6. **Output**: the adapter tells rich events (code, charts, tables) and the ``tool_result``;
   a sandbox limit is a ``sandbox_limit`` ``tool_error`` beside it.
7. **Degradation** when the call fails with a kind its pin's ``fallbacks`` rule lists: the
   cached result, another pin, or skip, each told as a ``warning``; the outcome is
   ``Degraded`` and names the source, so the summary can say so.

Events go out through ``Caller.tell`` as they happen; the graph binds it to its stream writer,
so this module knows nothing of LangGraph or HTTP. Adapters are registered in ``ADAPTERS``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypedDict

from core.errors import KeelError
from core.events import (
    AgentStatus,
    AgentStatusData,
    ConfirmationDecidedData,
    ConfirmationRequiredData,
    RepairData,
    ToolCallData,
    ToolErrorData,
    ToolResultData,
    WarningData,
)
from tools.adapter import Adapter, Ask, Step, Tell, Usage
from tools.errors import NotConfirmed, PermissionDenied, ToolError, failure_kind
from tools.fallback import CachedResult
from tools.gateway import Requester, ToolGateway, ToolSpec
from tools.intents import OutcomeUnknown
from tools.servers.calendar.v1.adapter import CalendarV1
from tools.servers.documents.v1.adapter import DocumentsV1
from tools.servers.documents.v2.adapter import DocumentsV2
from tools.servers.github_trending.v1.adapter import GithubTrendingV1
from tools.servers.github_trending.v2.adapter import GithubTrendingV2
from tools.servers.python_exec.v1.adapter import PythonExecV1
from tools.validation import ArgumentsInvalid, Repair, RepairModel, validate_and_repair

log = logging.getLogger(__name__)

ADAPTERS: dict[tuple[str, str], Adapter] = {
    ("github_trending", "1"): GithubTrendingV1(),
    ("github_trending", "2"): GithubTrendingV2(),
    ("documents", "1"): DocumentsV1(),
    ("documents", "2"): DocumentsV2(),
    ("calendar", "1"): CalendarV1(),
    ("python_exec", "1"): PythonExecV1(),
}
_DEFAULT = Adapter()
MAX_NOTE = 1500


def adapter_for(spec: ToolSpec) -> Adapter:
    """The adapter of ``spec``'s server at its major version (defaults if none)."""
    return ADAPTERS.get((spec.server, spec.version.split(".", 1)[0]), _DEFAULT)


@dataclass
class Outcome:
    """What a tool step produced: the note for the researcher's prompt and the tokens used."""

    note: str
    usage: Usage = field(default_factory=dict)
    result: Any = None
    """The result as ``tool_result`` told it, for later steps (``None``: no result)."""
    empty: str | None = None
    """The tool answered and found nothing: what was looked for, in words for the user."""
    refusal: str | None = None
    """The tool was outside the caller's scopes: what to tell them, in words for the user."""
    answer: str | None = None
    """The answer to the step's question, settled by the adapter's rules (``Adapter.answer``)."""


@dataclass
class Called(Outcome):
    """The tool answered."""


@dataclass
class Degraded(Outcome):
    """The tool failed and its fallback rule answered (cache, another pin) or skipped it."""

    source: str = ""


@dataclass
class Refused(Outcome):
    """The tool was not called: unknown, no valid arguments, denied, or rejected by the caller."""


@dataclass
class Failed(Outcome):
    """The call failed and no fallback rule applied."""


@dataclass
class Held(Outcome):
    """The call waits for the caller's confirmation; ``held`` is what the resumed run needs."""

    held: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Caller(Requester):
    """What only the graph has: who runs, how to tell events, how to ask the model."""

    agent: str
    timezone: str
    tell: Tell
    ask: Ask
    repair_model: Callable[[ToolSpec, Usage], RepairModel]


class ToolPipeline:
    """One plan step's tool call, from the step to a typed outcome (see the module docstring)."""

    def __init__(self, gateway: ToolGateway, caller: Caller) -> None:
        """Call tools of ``gateway`` for ``caller``."""
        self.gateway = gateway
        self.caller = caller
        self.usage: Usage = {}

    async def run(self, step: Step) -> Outcome:
        """Resolve, derive, repair, then hold or call the step's tool."""
        call_id = uuid.uuid4().hex[:16]
        try:
            spec = self.gateway.resolve(self.caller.agent, step.tool)
            choice = adapter_for(spec).tool_for(step.text)
            if choice is not None and choice != spec.name:
                spec = self.gateway.resolve(self.caller.agent, step.tool, choice)
        except ToolError as exc:
            self._tool_error(call_id, step.tool, exc, None)
            return Refused(f"(tool {step.tool} unavailable: {exc.detail})")
        self._status("calling_tool", spec)
        try:
            await self.gateway.admit_scopes(spec, caller=self.caller)
        except PermissionDenied as exc:
            self._tool_error(call_id, spec.qualified, exc, spec)
            return Refused(_refused(spec, exc), refusal=_refusal(spec, exc))
        args = await self._arguments(spec, step)
        if args is None:
            err = ToolError(f"no valid arguments for {spec.qualified} from the model")
            self._tool_error(call_id, spec.qualified, err, spec)
            return Refused(f"(tool {spec.qualified} not called: no valid arguments)", self.usage)
        try:
            args = _keyed(spec, await self._repaired(spec, args, call_id), step)
        except KeelError as exc:
            self._tool_error(call_id, spec.qualified, exc, spec)
            note = f"(tool {spec.qualified} not called: {exc.detail}; answer without it)"
            return Refused(note, self.usage)
        if self.gateway.needs_confirmation(spec):
            return await self._hold(spec, args, call_id, step.index)
        outcome = await self._attempt(spec, args, call_id, step)
        failure = adapter_for(spec).failed(outcome.result) if isinstance(outcome, Called) else None
        if failure is None:
            return outcome
        return await self._retry(spec, replace(step, failure=failure), outcome)

    async def _retry(
        self, spec: ToolSpec, step: Step, first: Outcome, *, confirm: bool = False
    ) -> Outcome:
        """One more attempt with arguments written knowing the failure (code that raised).

        A call the caller had to confirm is held again with the new arguments: the caller
        approved the code that failed, not the fix.
        """
        self.warn("tool_retry", spec.qualified, f"{spec.qualified} failed; retrying once")
        args = await self._arguments(spec, step)
        if args is None:
            return first
        call_id = uuid.uuid4().hex[:16]
        try:
            args = _keyed(spec, await self._repaired(spec, args, call_id), step)
        except KeelError:
            return first
        if confirm:
            again = await self._hold(spec, args, call_id, step.index)
            if isinstance(again, Held):
                again.held["retry"] = True
            return again
        return await self._attempt(spec, args, call_id, step)

    async def finish(self, held: dict[str, Any], decision: dict[str, Any], step: Step) -> Outcome:
        """The held call after the caller's decision: called with its held arguments, or not."""
        call_id = str(held["confirmation_id"])
        approve = bool(decision.get("approve"))
        comment = decision.get("comment")
        try:
            spec = self.gateway.resolve_pin(str(held["pin"]), str(held["tool"]))
        except ToolError as exc:
            self._tool_error(call_id, str(held["tool"]), exc, None)
            return Refused(f"(tool {held['tool']} unavailable: {exc.detail})")
        self.caller.tell(
            ConfirmationDecidedData(
                confirmation_id=call_id,
                tool_name=spec.qualified,
                approve=approve,
                user_id=self.caller.identity.user_id,
                comment=comment,
            )
        )
        args: dict[str, Any] = dict(held["args"])
        await self.gateway.record_decision(
            spec,
            args,
            caller=self.caller,
            confirmation_id=call_id,
            approve=approve,
            comment=comment,
        )
        if spec.version != held["version"]:
            err = ToolError(
                f"{spec.qualified} is now {spec.version}, not the confirmed {held['version']}"
            )
            self._tool_error(call_id, spec.qualified, err, spec)
            return Refused(f"(tool {spec.qualified} not called: {err.detail})")
        if not approve:
            why = f": {comment}" if comment else ""
            err = NotConfirmed(f"{spec.qualified} was not called: the user rejected the call{why}")
            err.hint = "answer without this tool, and say that the user declined it"
            self._tool_error(call_id, spec.qualified, err, spec)
            return Refused(
                f"(tool {spec.qualified} not called: the user declined it{why}; answer without it)"
            )
        self._status("calling_tool", spec)
        outcome = await self._attempt(spec, args, call_id, step, confirmed=True)
        failure = adapter_for(spec).failed(outcome.result) if isinstance(outcome, Called) else None
        if failure is None or held.get("retry"):
            return outcome
        return await self._retry(spec, replace(step, failure=failure), outcome, confirm=True)

    async def _arguments(self, spec: ToolSpec, step: Step) -> dict[str, Any] | None:
        args, used = await adapter_for(spec).arguments(spec, step, self.caller.ask)
        self._add(used)
        return args if isinstance(args, dict) else None

    async def _repaired(self, spec: ToolSpec, args: dict[str, Any], call_id: str) -> dict[str, Any]:
        """``args`` valid for ``spec``'s schema, each repair told as a ``repair`` event."""

        def told(repairs: list[Repair]) -> None:
            for r in repairs:
                self.caller.tell(RepairData(call_id=call_id, tool_name=spec.qualified, **asdict(r)))

        try:
            repaired = await validate_and_repair(
                spec.input_schema,
                args,
                tz=self.caller.timezone,
                now=datetime.now(UTC),
                llm=self.caller.repair_model(spec, self.usage),
                max_llm_attempts=self.gateway.settings.tools.repair_llm_attempts,
                keep=frozenset({"idempotency_key"}),
            )
        except ArgumentsInvalid as exc:
            told(exc.repairs)
            raise
        told(repaired.repairs)
        return repaired.args

    async def _hold(
        self, spec: ToolSpec, args: dict[str, Any], call_id: str, index: int
    ) -> Outcome:
        """Offer the call for confirmation once the gateway admits it (never outside scopes)."""
        try:
            await self.gateway.hold(spec, args, caller=self.caller, confirmation_id=call_id)
        except KeelError as exc:
            self._tool_error(call_id, spec.qualified, exc, spec)
            return Refused(f"(tool {spec.qualified} failed: {exc.detail})", self.usage)
        self.caller.tell(
            ConfirmationRequiredData(
                **_about(call_id, spec),
                confirmation_id=call_id,
                args=_shown(args),
                permissions=list(spec.permissions),
            )
        )
        self._status("awaiting_confirmation", spec)
        held = {
            "confirmation_id": call_id,
            "pin": spec.pin,
            "tool": spec.name,
            "tool_name": spec.qualified,
            "version": spec.version,
            "args": args,
            "index": index,
        }
        return Held("", self.usage, held=held)

    async def _attempt(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        call_id: str,
        step: Step,
        *,
        confirmed: bool = False,
    ) -> Outcome:
        """Call the tool with valid ``args``; a failure degrades as its pin's rule says.

        A call that a resumed run finds started before with an unknown outcome is not made
        again: it is held for the caller's confirmation again when the tool needs it, else told
        as an ``outcome_unknown`` ``tool_error``.
        """
        key = call_id if confirmed else _call_key(step)
        try:
            return await self._call(spec, args, call_id, step, confirmed=confirmed, key=key)
        except OutcomeUnknown as exc:
            if self.gateway.needs_confirmation(spec):
                self.warn("outcome_unknown", spec.qualified, exc.detail)
                return await self._hold(spec, args, uuid.uuid4().hex[:16], step.index)
            self._tool_error(call_id, spec.qualified, exc, spec)
            return Failed(f"(tool {spec.qualified} not run again: {exc.detail})", self.usage)
        except ToolError as exc:
            self._tool_error(call_id, spec.qualified, exc, spec)
            degraded = await self._degrade(spec, args, exc, step)
            if degraded is not None:
                return degraded
            return Failed(f"(tool {spec.qualified} failed: {exc.detail})", self.usage)
        except KeelError as exc:
            self._tool_error(call_id, spec.qualified, exc, spec)
            return Failed(f"(tool {spec.qualified} failed: {exc.detail})", self.usage)

    async def _call(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        call_id: str,
        step: Step,
        *,
        confirmed: bool = False,
        key: str | None = None,
    ) -> Outcome:
        """The checked call through the gateway, told as ``tool_call`` and ``tool_result``."""
        about = _about(call_id, spec)
        self.caller.tell(ToolCallData(**about, args=_shown(args)))
        outcome = await self.gateway.call(
            spec, args, caller=self.caller, confirmed=confirmed, key=key
        )
        adapter = adapter_for(spec)
        who = self.caller.identity
        result = adapter.shape(
            outcome.result,
            self.caller.tell,
            lambda png: self.gateway.artifacts.save(who.tenant, who.user_id, png, "png"),
        )
        limit = adapter.limit(outcome.result)
        if limit:
            err = ToolError(f"{spec.qualified}: {limit}")
            err.code = "sandbox_limit"
            err.hint = "simplify the code or the data: the sandbox limits CPU, memory and time"
            self._tool_error(call_id, spec.qualified, err, spec)
        self.caller.tell(ToolResultData(**about, result=result, duration_ms=outcome.duration_ms))
        return Called(
            adapter.note(outcome.result)[:MAX_NOTE],
            self.usage,
            result=result,
            empty=adapter.empty(outcome.result),
            answer=adapter.answer(outcome.result, step),
        )

    async def _degrade(
        self, spec: ToolSpec, args: dict[str, Any], exc: ToolError, step: Step
    ) -> Outcome | None:
        """Answer the step as ``fallbacks.<pin>`` says after ``exc``; ``None``: no rule applies."""
        kind = failure_kind(exc.code)
        if kind == "circuit_open":
            self.warn("circuit_open", spec.qualified, f"{spec.qualified} is paused: {exc.detail}")
        rule = self.gateway.fallback_rule(spec.pin)
        if rule is None or kind is None or (kind not in rule.on and kind != "circuit_open"):
            return None
        label = f"{spec.server} {spec.version}"
        if rule.use == "cache":
            hit = await self.gateway.cached(spec, args, self.caller.identity.tenant)
            if hit is not None:
                return self._from_cache(spec, hit, kind, label)
            message = (
                f"{label} failed ({kind}) and has no fresh cached result: step answered without it"
            )
        elif rule.use == "tool" and rule.tool is not None:
            used = await self._fallback_tool(rule.tool, spec, kind, step)
            if used is not None:
                return used
            message = (
                f"{label} failed ({kind}) and so did its fallback {rule.tool}:"
                " step answered without it"
            )
        else:
            message = f"{label} failed ({kind}): answered without it"
        self.warn("tool_skipped", spec.qualified, message)
        return Degraded(f"(tool {spec.qualified} skipped: {kind})", self.usage, source=message)

    def _from_cache(self, spec: ToolSpec, hit: CachedResult, kind: str, label: str) -> Outcome:
        age = _age(datetime.now(UTC) - hit.stored_at)
        message = f"{label} is failing ({kind}): using its cached result from {age} ago"
        self.warn("tool_cached", spec.qualified, message)
        about = _about(uuid.uuid4().hex[:16], spec)
        self.caller.tell(
            ToolResultData(**about, result=hit.result, cached_at=hit.stored_at.isoformat())
        )
        note = adapter_for(spec).note(hit.result)[:MAX_NOTE]
        source = f"{label}: cached, {age} old"
        return Degraded(note, self.usage, result=hit.result, source=source)

    async def _fallback_tool(
        self, pin: str, failed: ToolSpec, kind: str, step: Step
    ) -> Outcome | None:
        call_id = uuid.uuid4().hex[:16]
        try:
            spec = self.gateway.resolve_pin(pin, failed.name)
            args = await self._arguments(spec, step)
            if args is None:
                return None
            message = (
                f"{failed.server} {failed.version} is failing ({kind}):"
                f" answered by {spec.server} {spec.version} instead"
            )
            self.warn("tool_fallback", failed.qualified, message)
            args = await self._repaired(spec, args, call_id)
            used = await self._call(spec, args, call_id, step)
        except KeelError as exc:
            self._tool_error(call_id, pin, exc, None)
            return None
        return Degraded(used.note, self.usage, result=used.result, source=message)

    def warn(self, code: str, tool_name: str | None, message: str) -> None:
        """A ``warning`` event: something degraded, the run goes on."""
        log.warning(message, extra={"keel": {"code": code, "tool": tool_name}})
        self.caller.tell(WarningData(code=code, message=message, tool_name=tool_name))

    def _status(self, status: AgentStatus, spec: ToolSpec) -> None:
        self.caller.tell(AgentStatusData(status=status, tool_name=spec.qualified))

    def _add(self, used: Usage) -> None:
        for k, v in used.items():
            self.usage[k] = self.usage.get(k, 0) + v

    def _tool_error(
        self, call_id: str, tool_name: str, exc: KeelError, spec: ToolSpec | None
    ) -> None:
        log.warning(
            "tool call refused or failed",
            extra={
                "keel": {
                    "tool": tool_name,
                    "code": exc.code,
                    "detail": exc.detail,
                    "trace_id": self.caller.trace_id,
                }
            },
        )
        self.caller.tell(
            ToolErrorData(
                call_id=call_id,
                tool_name=tool_name,
                code=exc.code,
                error=exc.detail,
                hint=getattr(exc, "hint", None) or None,
                expected=getattr(exc, "expected", None) or None,
                server=spec.server if spec is not None else None,
                version=spec.version if spec is not None else None,
            )
        )


def _refused(spec: ToolSpec, exc: PermissionDenied) -> str:
    """What the answer must tell the user when a tool was outside their scopes."""
    return (
        f"Not done: {spec.qualified} was not used because the user's token lacks the"
        f" permission it needs ({exc.detail}). Tell the user plainly; {exc.hint or ''}."
    )


def _refusal(spec: ToolSpec, exc: PermissionDenied) -> str:
    """The refusal said to the user: which permission their token lacks, and what would do."""
    return (
        f"I can't do that: your token lacks the permission to use {spec.server}"
        f" ({exc.detail}); {exc.hint or 'ask for a token with that scope'}."
    )


class _About(TypedDict):
    """Which call of which tool version an event is about."""

    call_id: str
    tool_name: str
    server: str
    version: str


def _about(call_id: str, spec: ToolSpec) -> _About:
    return {
        "call_id": call_id,
        "tool_name": spec.qualified,
        "server": spec.server,
        "version": spec.version,
    }


def _keyed(spec: ToolSpec, args: dict[str, Any], step: Step) -> dict[str, Any]:
    """``args`` with the step's idempotency key when the tool takes one.

    One key per run and step, whatever the attempt: a retried or resumed step books once.
    """
    if not spec.idempotent or "idempotency_key" in args:
        return args
    key = hashlib.sha256(f"{step.run_id}:{step.index}".encode()).hexdigest()[:32]
    return {**args, "idempotency_key": key}


def _call_key(step: Step) -> str:
    """The call's key across a resumed run: the run, the plan step and the attempt."""
    attempt = 1 if step.failure else 0
    return hashlib.sha256(f"{step.run_id}:{step.index}:{attempt}".encode()).hexdigest()[:32]


def _shown(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as events show them: without the idempotency key the gateway adds."""
    return {k: v for k, v in args.items() if k != "idempotency_key"}


def _age(delta: Any) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
