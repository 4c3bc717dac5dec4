"""JWT handling: what is accepted, and each way a token is refused."""

from __future__ import annotations

import time

import jwt
import pytest

from core.errors import AuthenticationFailed
from core.identity import Identity, identity_from_claims, issue_token, verify_token
from core.settings import AuthSettings, OidcClaims

AUTH = AuthSettings(jwt_secret="s" * 40)


def test_round_trip() -> None:
    token = issue_token(AUTH, user="alice", tenant="acme", scopes=["a", "b"], tier="pro")
    assert verify_token(AUTH, token) == Identity("alice", "acme", frozenset({"a", "b"}), "pro")


def test_expired() -> None:
    token = issue_token(AUTH, user="alice", tenant="acme", scopes=[], ttl_s=-5)
    with pytest.raises(AuthenticationFailed, match="expired"):
        verify_token(AUTH, token)


def test_other_secret() -> None:
    token = issue_token(AuthSettings(jwt_secret="x" * 40), user="a", tenant="t", scopes=[])
    with pytest.raises(AuthenticationFailed, match="invalid token"):
        verify_token(AUTH, token)


def test_other_algorithm_is_refused() -> None:
    token = issue_token(
        AuthSettings(jwt_secret="s" * 64, jwt_algorithm="HS512"), user="a", tenant="t", scopes=[]
    )
    with pytest.raises(AuthenticationFailed):
        verify_token(AUTH, token)


def test_token_living_past_the_maximum_is_refused() -> None:
    token = issue_token(AUTH, user="a", tenant="t", scopes=[], ttl_s=AUTH.max_token_lifetime_s + 1)
    with pytest.raises(AuthenticationFailed, match="lifetime"):
        verify_token(AUTH, token)


def test_token_without_iat_is_refused() -> None:
    token = jwt.encode(
        {"sub": "a", "tenant": "t", "iss": "keel", "exp": int(time.time()) + 60},
        AUTH.jwt_secret,
        algorithm="HS256",
    )
    with pytest.raises(AuthenticationFailed, match="iat"):
        verify_token(AUTH, token)


def test_provider_tier_comes_from_the_mapping_only() -> None:
    names = OidcClaims(tier="roles", tier_map={"gold": "enterprise", "silver": "pro"})
    claims = {"sub": "a", "tenant": "t", "scope": "x y", "roles": ["silver", "gold"]}
    assert identity_from_claims(names, claims) == Identity(
        "a", "t", frozenset({"x", "y"}), "enterprise"
    )
    assert identity_from_claims(names, {**claims, "roles": "admin", "tier": "pro"}).tier == "free"
