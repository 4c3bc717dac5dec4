"""The tool gateway's errors (practice 9): each becomes a ``tool_error`` event with its ``code``."""

from __future__ import annotations

from core.errors import KeelError


class ToolError(KeelError):
    """A tool call failed; the run goes on without the tool's answer."""

    code = "tool_error"
    status = 502
    title = "Tool call failed"
    hint: str | None = None


class UnknownTool(ToolError):
    """The agent asked for a tool no pinned server offers."""

    code = "unknown_tool"
    status = 404
    title = "Unknown tool"


class UnpinnedVersion(ToolError):
    """The server exists but the agent does not pin the asked version (or none at all)."""

    code = "unpinned_version"
    status = 403
    title = "Tool version not pinned for this agent"


class PermissionDenied(ToolError):
    """The run's JWT scopes lack a permission the tool declares; the server was not called."""

    code = "permission_denied"
    status = 403
    title = "Permission denied"


class ToolDrift(ToolError):
    """A server's tool schemas differ from ``tools.lock``; the server is refused until relocked."""

    code = "tool_drift"
    status = 503
    title = "Tool schema drift"


class ToolUnavailable(ToolError):
    """The server could not be started, crashed, or did not answer in time."""

    code = "tool_unavailable"
    status = 503
    title = "Tool server unavailable"


class ToolTimeout(ToolError):
    """The call exceeded its time limit."""

    code = "tool_timeout"
    status = 504
    title = "Tool call timed out"


class ToolFailed(ToolError):
    """The server ran the tool and reported an error."""

    code = "tool_failed"
    status = 502
    title = "Tool reported an error"
