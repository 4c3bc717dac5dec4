"""Who is calling: the ``Identity`` carried by every request and run, and JWT handling.

Two token sources: HS256 tokens Keel signs itself (``auth.provider: local``, dev and tests,
``keel token``), and an OpenID Connect provider's tokens (``auth.provider: oidc``), verified
with the keys its discovery document publishes (JWKS, asymmetric algorithms only), with
audience and issuer checks and key rotation. Either way a token must carry ``exp`` and
``iat`` and live at most ``auth.max_token_lifetime_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import jwt

from core.errors import AuthenticationFailed, Unavailable
from core.settings import AuthSettings, OidcClaims, OidcSettings

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
    claims = _decoded(
        token,
        auth.jwt_secret,
        algorithms=[auth.jwt_algorithm],
        issuer=auth.jwt_issuer,
        options={"require": ["sub", "tenant", "exp", "iat"]},
    )
    _check_lifetime(claims, auth.max_token_lifetime_s)
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


def _decoded(token: str, key: Any, **checks: Any) -> dict[str, Any]:
    """``jwt.decode`` with its failures as ``AuthenticationFailed`` (expired, or why invalid)."""
    try:
        claims: dict[str, Any] = jwt.decode(token, key, **checks)
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationFailed("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationFailed(f"invalid token: {exc}") from exc
    return claims


def _check_lifetime(claims: dict[str, Any], max_s: int) -> None:
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise AuthenticationFailed("invalid token: exp and iat must be numbers")
    if exp - iat > max_s:
        raise AuthenticationFailed(f"invalid token: lifetime over {max_s} s (exp - iat)")


class OidcVerifier:
    """Verifies an OpenID Connect provider's tokens with the keys its JWKS publishes.

    The discovery document is read once (its ``issuer`` must be the configured one); the key
    set is cached and refetched when it expires or when a token names an unknown key id
    (rotation), at most once per ``jwks_min_refresh_s``. Calls block on the network when the
    cache is cold: call ``verify`` from a worker thread.
    """

    def __init__(self, oidc: OidcSettings, max_lifetime_s: int) -> None:
        """Verify tokens for ``oidc`` living at most ``max_lifetime_s``."""
        self.oidc = oidc
        self.max_lifetime_s = max_lifetime_s
        self._jwks: jwt.PyJWKClient | None = None

    def _client(self) -> jwt.PyJWKClient:
        if self._jwks is not None:
            return self._jwks
        url = self.oidc.discovery_url or (
            self.oidc.issuer.rstrip("/") + "/.well-known/openid-configuration"
        )
        try:
            resp = httpx.get(url, timeout=self.oidc.http_timeout_s)
            resp.raise_for_status()
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"the identity provider's discovery document: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("issuer") != self.oidc.issuer:
            raise Unavailable("the discovery document's issuer is not auth.oidc.issuer")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise Unavailable("the discovery document has no jwks_uri")
        self._jwks = jwt.PyJWKClient(
            jwks_uri,
            lifespan=self.oidc.jwks_cache_s,
            timeout=self.oidc.http_timeout_s,
            cooldown_duration=self.oidc.jwks_min_refresh_s,
        )
        return self._jwks

    def verify(self, token: str) -> Identity:
        """Verify signature, algorithm, audience, issuer and lifetime; map claims to Identity."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"invalid token: {exc}") from exc
        if header.get("alg") not in self.oidc.algorithms:
            raise AuthenticationFailed(f"invalid token: algorithm {header.get('alg')!r} refused")
        try:
            key = self._client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable(f"the identity provider's keys: {exc}") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise AuthenticationFailed(f"invalid token: {exc}") from exc
        claims = _decoded(
            token,
            key,
            algorithms=list(self.oidc.algorithms),
            audience=self.oidc.audience,
            issuer=self.oidc.issuer,
            leeway=self.oidc.leeway_s,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
        _check_lifetime(claims, self.max_lifetime_s)
        return identity_from_claims(self.oidc.claims, claims)


def identity_from_claims(names: OidcClaims, claims: dict[str, Any]) -> Identity:
    """Map an identity provider's verified claims onto an ``Identity`` (see ``OidcClaims``)."""
    user = claims.get(names.user)
    if not isinstance(user, str) or not user:
        raise AuthenticationFailed(f"invalid token: claim {names.user!r} must be a string")
    tenant: Any = names.default_tenant
    if names.tenant is not None:
        tenant = claims.get(names.tenant)
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationFailed(f"invalid token: claim {names.tenant!r} must be a string")
    raw_scopes = claims.get(names.scopes, [])
    if isinstance(raw_scopes, str):
        raw_scopes = raw_scopes.split()
    if not isinstance(raw_scopes, list) or not all(isinstance(s, str) for s in raw_scopes):
        raise AuthenticationFailed(f"invalid token: claim {names.scopes!r} must list strings")
    tier: Tier = names.default_tier
    if names.tier is not None:
        raw = claims.get(names.tier, [])
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        mapped = [names.tier_map[v] for v in values if isinstance(v, str) and v in names.tier_map]
        if mapped:
            tier = max(mapped, key=TIERS.index)
    tz = claims.get("zoneinfo")
    return Identity(
        user_id=user,
        tenant=tenant,
        scopes=frozenset(raw_scopes),
        tier=tier,
        tz=tz if isinstance(tz, str) and _known_zone(tz) else None,
    )


class TokenVerifier:
    """The configured way to verify bearer tokens (``auth.provider``)."""

    def __init__(self, auth: AuthSettings) -> None:
        """Verify tokens as ``auth`` says."""
        self.auth = auth
        self.oidc = (
            OidcVerifier(auth.oidc, auth.max_token_lifetime_s)
            if auth.provider == "oidc" and auth.oidc is not None
            else None
        )

    @property
    def blocking(self) -> bool:
        """Whether ``verify`` may wait on the network (run it in a worker thread)."""
        return self.oidc is not None

    def verify(self, token: str) -> Identity:
        """The token's ``Identity``; ``AuthenticationFailed`` when it is not valid."""
        if self.oidc is not None:
            return self.oidc.verify(token)
        return verify_token(self.auth, token)


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
