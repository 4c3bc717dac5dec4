"""JWT handling: what is accepted, and each way a token is refused."""

from __future__ import annotations

import pytest

from core.errors import AuthenticationFailed
from core.identity import Identity, issue_token, verify_token
from core.settings import AuthSettings

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
