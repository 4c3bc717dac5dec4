"""The project's errors: one base class, each with a stable ``code``.

Only ``api/`` turns them into HTTP (problem+json); the ``status`` here is a hint it uses.
"""

from __future__ import annotations


class KeelError(Exception):
    """Base class of every error Keel raises on purpose."""

    code = "internal_error"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str | None = None) -> None:
        """Keep a message that is safe to show to the caller."""
        self.detail = detail or self.title
        super().__init__(self.detail)


class AuthenticationFailed(KeelError):
    """The bearer token is missing, malformed, expired or signed wrongly."""

    code = "unauthenticated"
    status = 401
    title = "Authentication required"


class Forbidden(KeelError):
    """The caller is known but lacks the scope for this action."""

    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFound(KeelError):
    """The resource does not exist or belongs to someone else."""

    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(KeelError):
    """The request conflicts with the resource's current state (e.g. a run is active)."""

    code = "conflict"
    status = 409
    title = "Conflict"


class Invalid(KeelError):
    """A request is well-formed but asks for something Keel cannot do (422)."""

    code = "invalid_request"
    status = 422
    title = "Invalid request"


class PayloadTooLarge(KeelError):
    """The request body exceeds the configured limit."""

    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class Unavailable(KeelError):
    """A dependency (database, model server) is not reachable right now."""

    code = "unavailable"
    status = 503
    title = "Service unavailable"


class ModelError(KeelError):
    """The language model failed or returned something unusable."""

    code = "model_error"
    status = 502
    title = "Model error"


class QuotaExceeded(KeelError):
    """A quota of the caller's tier is used up; ``limit`` names it, ``retry_after`` says when."""

    code = "quota_exceeded"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, limit: str, retry_after: float) -> None:
        """Name the exhausted ``limit`` and the seconds until it admits again."""
        super().__init__(detail)
        self.limit = limit
        self.retry_after = max(0.0, retry_after)


class LimitReached(KeelError):
    """A count the caller's tier caps (threads kept) is reached; waiting does not free it."""

    code = "limit_reached"
    status = 429
    title = "Limit reached"

    def __init__(self, detail: str | None = None, *, limit: str) -> None:
        """Name the ``limit`` that is reached."""
        super().__init__(detail)
        self.limit = limit
