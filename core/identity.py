"""Who is calling: the ``Identity`` carried by every request and run, and JWT handling."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt

from core.errors import AuthenticationFailed
from core.settings import AuthSettings

Tier = Literal["free", "pro", "enterprise"]
TIERS: tuple[Tier, ...] = ("free", "pro", "enterprise")


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: user, tenant, scopes and quota tier."""

    user_id: str
    tenant: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    tier: Tier = "free"
    api_key_id: str | None = None
    tz: str | None = None  # IANA time zone (claim ``tz``): relative dates in tool arguments

    def has_scope(self, scope: str) -> bool:
        """Whether the caller holds ``scope``."""
        return scope in self.scopes


def issue_token(
    auth: AuthSettings,
    *,
    user: str,
    tenant: str,
    scopes: list[str],
    tier: Tier = "free",
    ttl_s: int | None = None,
    tz: str | None = None,
) -> str:
    """Sign a token for ``user`` (used by ``keel token`` and by tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user,
        "tenant": tenant,
        "scopes": scopes,
        "tier": tier,
        "iss": auth.jwt_issuer,
        "iat": now,
        "exp": now + (ttl_s if ttl_s is not None else auth.token_ttl_s),
    }
    if tz:
        claims["tz"] = tz
    return jwt.encode(claims, auth.jwt_secret, algorithm=auth.jwt_algorithm)


def verify_token(auth: AuthSettings, token: str) -> Identity:
    """Verify signature, algorithm, expiry and issuer, then build the ``Identity``."""
    try:
        claims = jwt.decode(
            token,
            auth.jwt_secret,
            algorithms=[auth.jwt_algorithm],
            issuer=auth.jwt_issuer,
            options={"require": ["sub", "tenant", "exp"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationFailed("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationFailed(f"invalid token: {exc}") from exc
    scopes = claims.get("scopes", [])
    tier = claims.get("tier", "free")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise AuthenticationFailed("invalid token: scopes must be a list of strings")
    if tier not in TIERS:
        raise AuthenticationFailed(f"invalid token: unknown tier {tier!r}")
    sub, tenant = claims["sub"], claims["tenant"]
    if not isinstance(sub, str) or not isinstance(tenant, str) or not sub or not tenant:
        raise AuthenticationFailed("invalid token: sub and tenant must be non-empty strings")
    tz = claims.get("tz")
    if tz is not None and (not isinstance(tz, str) or not _known_zone(tz)):
        raise AuthenticationFailed("invalid token: tz must be an IANA time zone name")
    return Identity(user_id=sub, tenant=tenant, scopes=frozenset(scopes), tier=tier, tz=tz)


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
