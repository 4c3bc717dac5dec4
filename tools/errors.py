"""The tool gateway's errors (practice 9): each becomes a ``tool_error`` event with its ``code``.

They never reach HTTP as such, so they carry no status: ``api/`` maps only what it serves.
"""

from __future__ import annotations

from core.errors import KeelError


class ToolError(KeelError):
    """A tool call failed; the run goes on without the tool's answer."""

    code = "tool_error"
    title = "Tool call failed"
    hint: str | None = None


class UnknownTool(ToolError):
    """The agent asked for a tool no pinned server offers."""

    code = "unknown_tool"
    title = "Unknown tool"


class UnpinnedVersion(ToolError):
    """The server exists but the agent does not pin the asked version (or none at all)."""

    code = "unpinned_version"
    title = "Tool version not pinned for this agent"


class PermissionDenied(ToolError):
    """The run's JWT scopes lack a permission the tool declares; the server was not called."""

    code = "permission_denied"
    title = "Permission denied"


class ConfirmationRequired(ToolError):
    """The tool needs the caller's confirmation (``tools.confirm``) and the call had none."""

    code = "confirmation_required"
    title = "Confirmation required"


class NotConfirmed(ToolError):
    """The caller rejected a call that needed confirmation; the server was not called."""

    code = "not_confirmed"
    title = "Call not confirmed"


class ToolDrift(ToolError):
    """A server's tool schemas differ from ``tools.lock``; the server is refused until relocked."""

    code = "tool_drift"
    title = "Tool schema drift"


class ToolUnavailable(ToolError):
    """The server could not be started, crashed, or did not answer in time."""

    code = "tool_unavailable"
    title = "Tool server unavailable"


class ToolTimeout(ToolError):
    """The call exceeded its time limit."""

    code = "tool_timeout"
    title = "Tool call timed out"


class ToolFailed(ToolError):
    """The server ran the tool and reported an error."""

    code = "tool_failed"
    title = "Tool reported an error"


class ToolRateLimited(ToolError):
    """The tool (or the service behind it) answered 429: too many requests."""

    code = "rate_limited"
    title = "Tool rate limited"


class CircuitOpen(ToolError):
    """The server failed too often; calls are refused without reaching it until a cool-down."""

    code = "circuit_open"
    title = "Tool paused after repeated failures"


# Error code → failure kind, the names ``fallbacks.<pin>.on`` and ``tools.retry.on`` use.
_KINDS = {
    "rate_limited": "rate_limited",
    "tool_timeout": "timeout",
    "tool_unavailable": "unavailable",
    "tool_failed": "failed",
    "circuit_open": "circuit_open",
}


def failure_kind(code: str) -> str | None:
    """The failure kind of an error code (``None``: not a failure fallbacks apply to)."""
    return _KINDS.get(code)
