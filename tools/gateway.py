"""The tool gateway (practices 9 and 16): pinned MCP servers on kept sessions, checked calls.

Every pinned server (``mcp_servers`` named by some agent in ``agents``) runs as one child
process with one kept MCP session, owned by its own task so a crashing server cannot take the
caller down. At start-up each server's version must match its pin and its tool schemas must
match ``tools.lock``; a server that drifted is refused with a message naming the drift.
A call goes: pin check (the agent pins this server) → argument check against the tool's
schema (``tools/validation.py``; the pipeline repairs before calling) → permission check (the
tool's declared permissions against the run's JWT scopes, outside the LLM) → quota →
circuit breaker → retries → call on the kept session with a timeout → result, kept in the
result cache when the pin degrades to it (``tools/fallback.py``). A call the gateway stops
waiting for (the run was cancelled, or the call timed out) is cancelled on the server too
(MCP ``notifications/cancelled``), which ends its work there: python_exec kills its jail.
A denied or invalid call never reaches the server. A tool named in ``tools.confirm`` is called
only with ``confirmed=True``: the pipeline (``tools/pipeline.py``) first ``hold``s it (same checks,
audited), the graph interrupts for the caller's decision, and it is recorded
(``record_decision``). Argument repair and degradation live in the pipeline, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from mcp import ClientSession, McpError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import (
    CONNECTION_CLOSED,
    CallToolResult,
    CancelledNotification,
    CancelledNotificationParams,
    ClientNotification,
    TextContent,
    Tool,
)
from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from core.errors import KeelError
from core.identity import Identity
from core.otel import tracer
from core.quotas import check_tool_call
from core.settings import ROOT, FallbackRule, FaultMode, McpServerPin, Settings
from tools import lock as lockfile
from tools.artifacts import ArtifactStore
from tools.audit import ToolAudit
from tools.errors import (
    CircuitOpen,
    ConfirmationRequired,
    PermissionDenied,
    ToolDrift,
    ToolError,
    ToolFailed,
    ToolRateLimited,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
    UnpinnedVersion,
    failure_kind,
)
from tools.fallback import CachedResult, ResultCache
from tools.intents import OutcomeUnknown, ToolIntents
from tools.sandbox import sandbox_available
from tools.servers.common import PERMISSIONS_META, TENANT_META, TRACE_META, USER_META
from tools.validation import ArgumentsInvalid, describe_errors, expected_of, validate

log = logging.getLogger(__name__)
_tracer = tracer("keel.tools")

_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Requester:
    """Whom a tool call is for and the trace it belongs to: checked, audited, sent with it."""

    identity: Identity
    trace_id: str = ""


@dataclass(frozen=True)
class ToolSpec:
    """One tool of one pinned server, as the graph and ``GET /v1/tools`` see it."""

    pin: str
    server: str
    version: str
    name: str
    description: str
    input_schema: dict[str, Any]
    permissions: tuple[str, ...]
    sandbox: bool

    @property
    def qualified(self) -> str:
        """``server.tool``: the name used in events."""
        return f"{self.server}.{self.name}"

    @property
    def side_effects(self) -> bool:
        """Whether a call changes something: the tool declares a ``write:`` or ``exec:`` scope."""
        return any(p.split(":", 1)[0] in ("write", "exec") for p in self.permissions)

    @property
    def idempotent(self) -> bool:
        """Whether the tool takes an ``idempotency_key`` (a repeat under it does nothing new)."""
        return "idempotency_key" in self.input_schema.get("properties", {})


@dataclass(frozen=True)
class ToolOutcome:
    """What a call returned: structured result (or text), its text, and its duration."""

    spec: ToolSpec
    result: Any
    text: str
    duration_ms: float


def server_command(pin: McpServerPin) -> list[str]:
    """The command that starts ``pin``: ``python -m tools.servers.<server>.v<major>``."""
    if pin.command:
        return list(pin.command)
    major = pin.version.split(".", 1)[0]
    return [sys.executable, "-m", f"tools.servers.{pin.server}.v{major}"]


def _describe(tool: Tool) -> dict[str, Any]:
    perms = (tool.meta or {}).get(PERMISSIONS_META, [])
    return {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.inputSchema,
        "permissions": sorted(str(p) for p in perms),
    }


@dataclass
class _Server:
    """One server process and its kept session, owned by a dedicated task."""

    pin_name: str
    pin: McpServerPin
    params: StdioServerParameters
    errlog: Path
    session: ClientSession | None = None
    version: str = ""
    tools: list[Tool] = field(default_factory=list)
    error: BaseException | None = None
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=f"mcp-{self.pin_name}")
        try:
            await asyncio.wait_for(self._ready.wait(), _START_TIMEOUT_S)
        except TimeoutError:
            await self.close()
            raise ToolUnavailable(f"{self.pin_name}: server did not start in time") from None
        if self.session is None:
            raise ToolUnavailable(f"{self.pin_name}: server failed to start: {self.error!r}")

    async def _main(self) -> None:
        err: TextIO = self.errlog.open("a", encoding="utf-8")
        try:
            async with (
                stdio_client(self.params, errlog=err) as (read, write),
                ClientSession(read, write) as session,
            ):
                init = await session.initialize()
                listed = await session.list_tools()
                self.version = init.serverInfo.version
                self.tools = list(listed.tools)
                self.session = session
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # kept in the task: a dead server never kills a run
            self.error = exc
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("tool server %s stopped: %r", self.pin_name, exc)
        finally:
            self.session = None
            self._ready.set()
            err.close()

    @property
    def alive(self) -> bool:
        return self.session is not None and self._task is not None and not self._task.done()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task


class ToolGateway:
    """Pinned tool servers behind one checked call path."""

    def __init__(
        self,
        settings: Settings,
        *,
        database_url: str | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
    ) -> None:
        """Prepare the gateway for ``settings`` (nothing starts until ``start``).

        ``pool`` (the app's) holds the result cache and the audit trail; without it no pin
        degrades to cache and no call is audited.
        """
        self.settings = settings
        self.database_url = database_url or settings.database.url
        self.log_dir = settings.data_dir / "tools"
        self.artifacts = ArtifactStore(settings.data_dir / "artifacts")
        self.cache = ResultCache(pool) if pool is not None else None
        self.audit = ToolAudit(pool) if pool is not None else None
        self.intents = ToolIntents(pool) if pool is not None else None
        self._servers: dict[str, _Server] = {}
        self._specs: dict[str, list[ToolSpec]] = {}
        self.refused: dict[str, str] = {}
        self._restart_lock = asyncio.Lock()
        breaker = settings.tools.breaker
        # Only failures of the server count towards opening its circuit; a tool that ran and
        # reported an error (a bad query) is an answer, not an outage, and a cancelled run's
        # call says nothing about the server.
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker.threshold,
            default_ttl=breaker.cooldown_s,
            exclude=[ToolFailed, asyncio.CancelledError],
        )

    def pinned(self) -> dict[str, McpServerPin]:
        """The servers some agent pins, and their fallbacks (an old version runs while used)."""
        names = {t for a in self.settings.agents.values() for t in a.tools}
        names |= {r.tool for p, r in self.settings.fallbacks.items() if p in names and r.tool}
        return {n: p for n, p in self.settings.mcp_servers.items() if n in names}

    def fallback_rule(self, pin: str) -> FallbackRule | None:
        """How ``pin`` degrades, if it does."""
        return self.settings.fallbacks.get(pin)

    def fault_file(self, pin_name: str) -> Path:
        """Where the server reads an injected fault (``faults.tools``) on every call."""
        return self.log_dir / f"{pin_name}.fault.json"

    def inject_fault(self, pin_name: str, mode: FaultMode | None) -> None:
        """Make ``pin_name``'s tools fail as ``mode`` says from the next call (``None``: stop).

        For tests and demos; ``Settings`` refuses configured faults in prod.
        """
        path = self.fault_file(pin_name)
        if mode is None:
            path.unlink(missing_ok=True)
            return
        sleep_s = self.settings.tools.call_timeout_s + 5
        path.write_text(json.dumps({"mode": mode, "sleep_s": sleep_s}))

    def log_file(self, pin_name: str) -> Path:
        """The server's own invocation log."""
        return self.log_dir / f"{pin_name}.log"

    def _env(self, pin_name: str, pin: McpServerPin) -> dict[str, str]:
        # A scrubbed environment: no JWT secret, no model keys, only what the server needs.
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.log_dir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "KEEL_TOOL_LOG": str(self.log_file(pin_name)),
            "KEEL_TOOL_FAULT_FILE": str(self.fault_file(pin_name)),
            "KEEL_GITHUB_API": self.settings.tools.github_api,
            "KEEL_SANDBOX": self.settings.tools.sandbox.model_dump_json(),
        }
        if self.settings.tools.github_token:
            env["KEEL_GITHUB_TOKEN"] = self.settings.tools.github_token
        if self.database_url:
            env["KEEL_TOOLS_DATABASE_URL"] = self.database_url
        if pin.server == "documents":
            # The documents servers embed queries with the model session memory uses.
            env["KEEL_TOOLS_EMBEDDINGS"] = self.settings.memory.session.model_dump_json()
        return env

    def _server(self, pin_name: str, pin: McpServerPin) -> _Server:
        cmd = server_command(pin)
        params = StdioServerParameters(
            command=cmd[0], args=cmd[1:], env=self._env(pin_name, pin), cwd=str(ROOT)
        )
        return _Server(pin_name, pin, params, self.log_dir / f"{pin_name}.stderr.log")

    async def _open(self, pin_name: str, pin: McpServerPin) -> _Server:
        if pin.sandbox:
            ok, why = await asyncio.to_thread(sandbox_available)
            if not ok:
                raise ToolUnavailable(f"{pin_name}: marked sandbox but no sandbox here: {why}")
        srv = self._server(pin_name, pin)
        try:
            await srv.start()
        except ToolError:
            await srv.close()
            raise
        if srv.version != pin.version:
            await srv.close()
            raise ToolDrift(
                f"{pin_name}: pinned version {pin.version} but the server reports {srv.version}"
            )
        return srv

    def _check_lock(self, pin_name: str, srv: _Server, locked: dict[str, Any]) -> None:
        served = lockfile.server_entry(
            srv.pin.server, srv.version, {t.name: _describe(t) for t in srv.tools}
        )
        problem = lockfile.drift(pin_name, locked.get(pin_name), served)
        if problem:
            raise ToolDrift(problem)

    def _register(self, pin_name: str, srv: _Server) -> None:
        self._servers[pin_name] = srv
        self._specs[pin_name] = [
            ToolSpec(
                pin=pin_name,
                server=srv.pin.server,
                version=srv.version,
                name=t.name,
                description=t.description or "",
                input_schema=t.inputSchema,
                permissions=tuple(_describe(t)["permissions"]),
                sandbox=srv.pin.sandbox,
            )
            for t in srv.tools
        ]

    async def start(self, *, check_lock: bool = True) -> None:
        """Start every pinned server; refuse (and log) any that fails, drifts or mismatches."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for pin_name in self.settings.mcp_servers:
            self.inject_fault(pin_name, self.settings.faults.tools.get(pin_name))
        locked = lockfile.read_lock(self.settings.tools.lock_file) if check_lock else {}

        async def one(pin_name: str, pin: McpServerPin) -> None:
            try:
                srv = await self._open(pin_name, pin)
            except ToolError as exc:
                self.refused[pin_name] = exc.detail
                log.error("tool server refused: %s", exc.detail)
                return
            try:
                if check_lock:
                    self._check_lock(pin_name, srv, locked)
            except ToolDrift as exc:
                await srv.close()
                self.refused[pin_name] = exc.detail
                log.error("tool server refused: %s", exc.detail)
                return
            self._register(pin_name, srv)

        await asyncio.gather(*(one(n, p) for n, p in self.pinned().items()))

    async def aclose(self) -> None:
        """Stop every server process (no process outlives the gateway)."""
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(s.close() for s in servers), return_exceptions=True)

    async def __aenter__(self) -> ToolGateway:
        """Start the servers."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the servers."""
        await self.aclose()

    def lock_entries(self) -> dict[str, dict[str, Any]]:
        """The lock entries of what the running servers serve."""
        return {
            name: lockfile.server_entry(
                srv.pin.server, srv.version, {t.name: _describe(t) for t in srv.tools}
            )
            for name, srv in self._servers.items()
        }

    def tools(self, agent: str | None = None) -> list[ToolSpec]:
        """Tools of the running servers, for one agent's pins or for all."""
        pins = self.settings.agents[agent].tools if agent else list(self._specs)
        return [s for p in pins for s in self._specs.get(p, [])]

    def resolve(self, agent: str, server: str, tool: str | None = None) -> ToolSpec:
        """The tool ``server[@version]`` (its first tool unless ``tool``) as pinned for ``agent``.

        Raises:
            UnknownTool: no configured server has that name or tool.
            UnpinnedVersion: the agent pins no (or another) version of that server.
            ToolDrift: the pinned server was refused at start-up.
        """
        name, _, version = server.partition("@")
        if agent not in self.settings.agents:
            raise UnknownTool(f"unknown agent {agent!r}")
        known = {p.server for p in self.settings.mcp_servers.values()}
        if name not in known:
            raise UnknownTool(f"no tool server named {name!r}")
        pins = [
            p
            for p in self.settings.agents[agent].tools
            if self.settings.mcp_servers[p].server == name
            and (not version or self.settings.mcp_servers[p].version == version)
        ]
        if not pins:
            want = f"{name}@{version}" if version else name
            raise UnpinnedVersion(f"agent {agent!r} pins no version of {want}")
        pin = pins[0]
        if pin in self.refused:
            raise ToolDrift(self.refused[pin])
        specs = self._specs.get(pin, [])
        chosen = [s for s in specs if tool is None or s.name == tool]
        if not chosen:
            raise UnknownTool(f"{pin} has no tool {tool!r}")
        return chosen[0]

    def resolve_pin(self, pin: str, tool: str | None = None) -> ToolSpec:
        """The tool of pin ``pin`` (its first unless ``tool``), as a fallback names it."""
        if pin in self.refused:
            raise ToolDrift(self.refused[pin])
        specs = [s for s in self._specs.get(pin, []) if tool is None or s.name == tool]
        if not specs:
            raise UnknownTool(f"{pin} has no tool {tool!r} running")
        return specs[0]

    async def cached(
        self, spec: ToolSpec, args: dict[str, Any], tenant: str
    ) -> CachedResult | None:
        """The cached result of this call, if the pin degrades to cache and one is fresh."""
        rule = self.fallback_rule(spec.pin)
        if self.cache is None or rule is None or rule.use != "cache":
            return None
        return await self.cache.get(tenant, spec.qualified, spec.version, args, rule.max_age)

    async def _live_server(self, spec: ToolSpec) -> _Server:
        srv = self._servers.get(spec.pin)
        if srv is not None and srv.alive:
            return srv
        async with self._restart_lock:
            srv = self._servers.get(spec.pin)
            if srv is not None and srv.alive:
                return srv
            if srv is not None:
                await srv.close()
            pin = self.settings.mcp_servers[spec.pin]
            log.warning("restarting tool server %s", spec.pin)
            new = await self._open(spec.pin, pin)
            old = {s.name: s for s in self._specs.get(spec.pin, [])}
            self._register(spec.pin, new)
            fresh = {s.name: s for s in self._specs[spec.pin]}
            if fresh != old:
                await new.close()
                del self._servers[spec.pin]
                self.refused[spec.pin] = f"{spec.pin}: tool schemas changed across a restart"
                raise ToolDrift(self.refused[spec.pin])
            return new

    @staticmethod
    def check_permissions(spec: ToolSpec, scopes: frozenset[str]) -> None:
        """Refuse unless every permission the tool declares is among ``scopes``."""
        missing = [p for p in spec.permissions if p not in scopes]
        if missing:
            err = PermissionDenied(
                f"{spec.qualified}@{spec.version} needs scope {', '.join(missing)}"
            )
            err.hint = f"ask for a token with scope {', '.join(missing)}"
            raise err

    def needs_confirmation(self, spec: ToolSpec) -> bool:
        """Whether ``tools.confirm`` names ``spec`` (its server, its name, or ``server.tool``)."""
        names = set(self.settings.tools.confirm)
        return bool(names & {spec.server, spec.name, spec.qualified})

    async def hold(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        *,
        caller: Requester,
        confirmation_id: str,
    ) -> None:
        """Check a call that needs confirmation as ``call`` would, and audit it as ``held``.

        The server is not called. A call outside the caller's scopes (or with invalid
        arguments) is denied here, so it is never offered for confirmation.

        Raises:
            ArgumentsInvalid: the arguments fail the tool's schema.
            PermissionDenied: a declared permission is missing.
        """
        try:
            self._admit(spec, args, caller.identity)
        except KeelError as exc:
            await self._audit(spec, args, caller, "denied", exc.code)
            raise
        await self._audit(
            spec,
            args,
            caller,
            "held",
            "confirmation_required",
            confirmation_id=confirmation_id,
        )

    async def record_decision(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        *,
        caller: Requester,
        confirmation_id: str,
        approve: bool,
        comment: str | None,
    ) -> None:
        """Audit the caller's decision on a held call: who (``caller``), when, which way."""
        await self._audit(
            spec,
            args,
            caller,
            "approved" if approve else "rejected",
            "confirmed" if approve else "not_confirmed",
            confirmation_id=confirmation_id,
            comment=comment,
        )

    async def admit_scopes(self, spec: ToolSpec, *, caller: Requester) -> None:
        """Refuse (and audit as ``denied``) a tool outside the caller's scopes, before any work.

        The checked call admits again; this spares writing arguments for a call that cannot
        be made.

        Raises:
            PermissionDenied: a declared permission is missing.
        """
        try:
            self.check_permissions(spec, caller.identity.scopes)
        except KeelError as exc:
            await self._audit(spec, {}, caller, "denied", exc.code)
            raise

    async def _audit(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        caller: Requester,
        decision: str,
        outcome: str,
        **extra: str | None,
    ) -> None:
        if self.audit is not None:
            await self.audit.record(
                trace_id=caller.trace_id,
                tenant=caller.identity.tenant,
                user_id=caller.identity.user_id,
                tool=spec.qualified,
                version=spec.version,
                args=args,
                decision=decision,
                outcome=outcome,
                **extra,
            )

    async def call(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        *,
        caller: Requester,
        timeout_s: float | None = None,
        confirmed: bool = False,
        key: str | None = None,
    ) -> ToolOutcome:
        """Check arguments and permissions, then call ``spec`` through its breaker and retries.

        ``confirmed`` says the caller approved this call; a tool named in ``tools.confirm``
        is refused without it. ``key`` names the call across a resumed run: a side-effecting
        call is recorded under it as an intent first (``tools/intents.py``).

        Raises:
            ConfirmationRequired: the tool needs confirmation and ``confirmed`` is false.
            ArgumentsInvalid: the arguments fail the tool's schema (the server is not called).
            PermissionDenied: a declared permission is missing (the server is not called).
            QuotaExceeded: the caller's tool calls per minute are used up (code
                ``quota_exceeded``; the server is not called).
            CircuitOpen: the server failed ``tools.breaker.threshold`` times in a row and
                its cool-down has not passed (the server is not called).
            ToolTimeout, ToolUnavailable, ToolRateLimited, ToolFailed: the call failed
                (after the retries ``tools.retry`` allows).
            OutcomeUnknown: a call under ``key`` was started before and its outcome is not
                known, and the tool cannot be asked by key (the server is not called).
        """
        decision, outcome = "denied", "internal_error"
        try:
            self._admit(spec, args, caller.identity)
            if not confirmed and self.needs_confirmation(spec):
                raise ConfirmationRequired(
                    f"{spec.qualified}@{spec.version} needs the caller's confirmation"
                )
            await check_tool_call(caller.identity, self.settings)
            decision = "allowed"
            result = await self._recorded(
                spec,
                caller,
                key,
                lambda: self._resilient_call(spec, args, caller, timeout_s),
            )
            outcome = "ok"
            return result
        except KeelError as exc:
            outcome = exc.code
            if exc.code == "circuit_open":
                decision = "denied"
            raise
        finally:
            await self._audit(spec, args, caller, decision, outcome)

    async def _recorded(
        self,
        spec: ToolSpec,
        caller: Requester,
        key: str | None,
        make_call: Callable[[], Awaitable[ToolOutcome]],
    ) -> ToolOutcome:
        """``make_call()``, recorded as an intent first when it changes something.

        A repeat under ``key`` of a tool without an idempotency key is not made: it answers
        the recorded result, or raises ``OutcomeUnknown``.
        """
        if key is None or self.intents is None or not spec.side_effects:
            return await make_call()
        where = {"tenant": caller.identity.tenant, "key": key}
        prior = await self.intents.begin(
            **where, trace_id=caller.trace_id, tool=spec.qualified, version=spec.version
        )
        if prior is not None and not spec.idempotent:
            if prior["outcome"] == "ok":
                return ToolOutcome(spec, prior["result"], prior["text"] or "", 0.0)
            err = OutcomeUnknown(
                f"{spec.qualified} was started before the run was interrupted and may have"
                " run; its outcome is unknown, so it was not run again"
            )
            err.hint = "tell the user; ask them whether to run it again"
            raise err
        try:
            outcome = await make_call()
        except KeelError as exc:
            await self.intents.finish(**where, outcome=exc.code)
            raise
        await self.intents.finish(**where, outcome="ok", result=outcome.result, text=outcome.text)
        return outcome

    def _admit(self, spec: ToolSpec, args: dict[str, Any], identity: Identity) -> None:
        errors = validate(spec.input_schema, args)
        if errors:
            key = str(errors[0]["loc"][0]) if errors[0]["loc"] else ""
            expected = expected_of(spec.input_schema.get("properties", {}).get(key, {}))
            raise ArgumentsInvalid(describe_errors(errors), expected, "repair the arguments", [])
        self.check_permissions(spec, identity.scopes)

    async def _resilient_call(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        caller: Requester,
        timeout_s: float | None,
    ) -> ToolOutcome:
        retry = self.settings.tools.retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retry.attempts),
            wait=wait_random_exponential(multiplier=retry.backoff_s, max=retry.max_backoff_s),
            retry=retry_if_exception(
                lambda e: isinstance(e, ToolError) and failure_kind(e.code) in retry.on
            ),
            reraise=True,
        )
        breaker = await self._breakers.get_breaker(spec.pin)
        outcome: ToolOutcome | None = None
        async for attempt in retrying:
            with attempt:
                try:
                    async with breaker:
                        outcome = await self._call_once(spec, args, caller, timeout_s)
                except OpenedState as exc:
                    cooldown = self.settings.tools.breaker.cooldown_s
                    raise CircuitOpen(
                        f"{spec.qualified}: paused after repeated failures; retried after"
                        f" a {cooldown:g} s cool-down"
                    ) from exc
        assert outcome is not None
        rule = self.fallback_rule(spec.pin)
        if self.cache is not None and rule is not None and rule.use == "cache":
            tenant = caller.identity.tenant
            await self.cache.put(
                tenant, spec.qualified, spec.version, args, outcome.result, outcome.text
            )
        return outcome

    async def _call_once(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        caller: Requester,
        timeout_s: float | None,
    ) -> ToolOutcome:
        srv = await self._live_server(spec)
        session = srv.session
        if session is None:
            raise ToolUnavailable(f"{spec.pin}: server is not running")
        timeout = timeout_s or self.settings.tools.call_timeout_s
        who = caller.identity
        meta = {TENANT_META: who.tenant, USER_META: who.user_id, TRACE_META: caller.trace_id}
        started = time.perf_counter()
        span = _tracer.start_span(
            f"tool {spec.qualified}",
            attributes={
                "keel.tool": spec.qualified,
                "keel.server": spec.server,
                "keel.version": spec.version,
                "keel.trace_id": caller.trace_id,
            },
        )
        # The id call_tool's request takes: nothing awaits between this read and its send.
        request_id = session._request_id
        try:
            with trace.use_span(span, end_on_exit=True):
                result = await session.call_tool(
                    spec.name, args, read_timeout_seconds=timedelta(seconds=timeout), meta=meta
                )
        except asyncio.CancelledError:
            await _cancel_on_server(session, request_id, "the run was cancelled")
            raise
        except McpError as exc:
            if exc.error.code == CONNECTION_CLOSED:
                await srv.close()
                raise ToolUnavailable(f"{spec.pin}: server crashed during the call") from exc
            if "timed out" in exc.error.message.lower():
                await _cancel_on_server(session, request_id, f"no answer within {timeout:g} s")
                raise ToolTimeout(f"{spec.qualified}: no answer within {timeout:g} s") from exc
            raise ToolFailed(f"{spec.qualified}: {exc.error.message}") from exc
        except RuntimeError as exc:  # the MCP client checks results against the output schema
            err = ToolFailed(f"{spec.qualified}: {exc}")
            err.code = "invalid_output"
            raise err from exc
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        return _outcome(spec, result, duration_ms)


async def _cancel_on_server(session: ClientSession, request_id: int, reason: str) -> None:
    """Tell the server to stop the request ``request_id`` (the MCP client does not)."""
    note = ClientNotification(
        CancelledNotification(
            params=CancelledNotificationParams(requestId=request_id, reason=reason)
        )
    )
    with contextlib.suppress(Exception):  # a server gone already has nothing left to stop
        await asyncio.shield(session.send_notification(note))


def _outcome(spec: ToolSpec, result: CallToolResult, duration_ms: float) -> ToolOutcome:
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    if result.isError:
        if "[rate_limited]" in text:
            raise ToolRateLimited(f"{spec.qualified}: too many requests (429)")
        raise ToolFailed(f"{spec.qualified}: {text[:500] or 'error'}")
    structured: Any = result.structuredContent
    if isinstance(structured, dict) and set(structured) == {"result"}:
        structured = structured["result"]
    return ToolOutcome(
        spec=spec,
        result=structured if structured is not None else text,
        text=text,
        duration_ms=duration_ms,
    )


async def write_lock_file(settings: Settings, pins: Sequence[str] | None = None) -> Path:
    """``keel tools lock``: start the pinned servers unchecked and record their tool schemas."""
    gw = ToolGateway(settings)
    try:
        await gw.start(check_lock=False)
        if gw.refused:
            raise ToolUnavailable("; ".join(gw.refused.values()))
        entries = gw.lock_entries()
        if pins:
            entries = {
                **lockfile.read_lock(settings.tools.lock_file),
                **{p: entries[p] for p in pins},
            }
        lockfile.write_lock(settings.tools.lock_file, entries)
    finally:
        await gw.aclose()
    return settings.tools.lock_file
