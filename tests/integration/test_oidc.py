"""Tokens from an OpenID Connect provider (issue 20, item 11): discovery and JWKS served by a
local HTTP server, RSA keys made here, audience and issuer checks, claim mapping, rotation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI

AUDIENCE = "keel-api"


@dataclass
class Provider:
    """A minimal identity provider: a discovery document and a JWKS that can be rotated."""

    url: str = ""
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    jwks_fetches: int = 0

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def token(
        self, kid: str, key: rsa.RSAPrivateKey | None = None, ttl_s: int = 300, **claims: Any
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "carol",
            "tenant": "acme",
            "scope": "openid memory:long_term",
            "groups": ["staff", "keel-pro"],
            "iat": now,
            "exp": now + ttl_s,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                doc: dict[str, Any] = {"issuer": state.url, "jwks_uri": f"{state.url}/jwks"}
            elif self.path == "/jwks":
                state.jwks_fetches += 1
                doc = state.jwks()
            else:
                self.send_error(404)
                return
            raw = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.add_key("k1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def api(
    provider: Provider,
    db_url: str,
    fake_llm: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    auth = {
        "provider": "oidc",
        "max_token_lifetime_s": 3600,
        "oidc": {
            "issuer": provider.url,
            "audience": AUDIENCE,
            "jwks_min_refresh_s": 0,
            "claims": {"tier": "groups", "tier_map": {"keel-pro": "pro"}},
        },
    }
    settings = make_settings(db_url, fake_llm.base_url, tmp_path_factory.mktemp("oidc"), auth=auth)
    with LiveServer(settings) as server:
        yield server


def _get(api: LiveServer, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{api.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "unauthenticated"
    assert body["trace_id"] == r.headers["x-trace-id"] and len(body["trace_id"]) == 32
    assert "Traceback" not in r.text


def test_provider_token_maps_user_tenant_scopes_and_tier(
    api: LiveServer, provider: Provider
) -> None:
    r = _get(api, "/v1/usage", provider.token("k1"))
    assert r.status_code == 200, r.text
    assert r.json()["tier"] == "pro"
    created = httpx.post(
        f"{api.url}/v1/threads", headers={"Authorization": f"Bearer {provider.token('k1')}"}
    )
    assert created.status_code == 201, created.text
    owner = api.sql(
        "SELECT tenant, user_id FROM threads WHERE thread_id = %s", created.json()["thread_id"]
    )
    assert owner == [{"tenant": "acme", "user_id": "carol"}]
    assert _get(api, "/v1/memory/long-term", provider.token("k1")).status_code == 200
    no_scope = provider.token("k1", scope="openid")
    assert _get(api, "/v1/memory/long-term", no_scope).status_code == 403


def test_tier_comes_from_the_mapping_not_the_token(api: LiveServer, provider: Provider) -> None:
    token = provider.token("k1", groups=["staff"], tier="enterprise")
    r = _get(api, "/v1/usage", token)
    assert r.status_code == 200, r.text
    assert r.json()["tier"] == "free"


@pytest.mark.parametrize(
    "case",
    [
        "other audience",
        "other issuer",
        "expired",
        "no exp",
        "no iat",
        "lifetime over the maximum",
        "unknown key",
        "hs256 with the dev secret",
        "no tenant",
    ],
)
def test_bad_provider_tokens_get_401_problem(
    api: LiveServer, provider: Provider, case: str
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    tokens = {
        "other audience": lambda: provider.token("k1", aud="someone-else"),
        "other issuer": lambda: provider.token("k1", iss="https://evil.example"),
        "expired": lambda: provider.token("k1", iat=now - 600, exp=now - 300),
        "no exp": lambda: provider.token("k1", exp=None),
        "no iat": lambda: provider.token("k1", iat=None),
        "lifetime over the maximum": lambda: provider.token("k1", ttl_s=30 * 86400),
        "unknown key": lambda: provider.token("k1", key=stranger),
        "hs256 with the dev secret": lambda: jwt.encode(
            {"iss": provider.url, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60},
            api.settings.auth.jwt_secret,
            algorithm="HS256",
        ),
        "no tenant": lambda: provider.token("k1", tenant=None),
    }
    _assert_401(_get(api, "/v1/threads", tokens[case]()))


def test_key_rotation_is_followed(api: LiveServer, provider: Provider) -> None:
    """The provider swaps k1 for k2: k2 tokens are accepted (refetch), k1 tokens refused."""
    assert _get(api, "/v1/threads", provider.token("k1")).status_code == 200
    old = provider.keys.pop("k1")
    provider.add_key("k2")
    fetches = provider.jwks_fetches
    assert _get(api, "/v1/threads", provider.token("k2")).status_code == 200
    assert provider.jwks_fetches == fetches + 1
    _assert_401(_get(api, "/v1/threads", provider.token("k1", key=old)))
