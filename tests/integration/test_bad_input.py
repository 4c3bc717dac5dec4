"""Bad input gets a clear problem+json 4xx with the trace_id, and nothing is written."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import jwt
import pytest

from tests.conftest import LiveServer


@pytest.fixture(scope="module")
def thread_id(live: LiveServer) -> str:
    with live.client() as c:
        tid: str = c.post("/v1/threads").json()["thread_id"]
    return tid


def _counts(live: LiveServer) -> tuple[int, int, int]:
    row = live.sql(
        "SELECT (SELECT count(*) FROM threads) t, (SELECT count(*) FROM runs) r,"
        " (SELECT count(*) FROM events) e"
    )[0]
    return row["t"], row["r"], row["e"]


def _assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["trace_id"] == r.headers["x-trace-id"]
    assert len(body["trace_id"]) == 32
    assert "Traceback" not in r.text


def _token(live: LiveServer, **claims: object) -> str:
    base: dict[str, object] = {
        "sub": "alice",
        "tenant": "acme",
        "scopes": [],
        "tier": "free",
        "iss": "keel",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    base.update(claims)
    return jwt.encode(
        {k: v for k, v in base.items() if v is not None},
        live.settings.auth.jwt_secret,
        algorithm="HS256",
    )


def _unsigned(live: LiveServer) -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(
        b'{"sub":"alice","tenant":"acme","iss":"keel","exp":9999999999}'
    ).decode()
    return f"{header}.{payload}."


RUNS = "/v1/threads/{tid}/runs"
BAD_BODIES: dict[str, tuple[Callable[[str], dict[str, object]], int, str]] = {
    "malformed json": (
        lambda t: {
            "content": b'{"input": {"message": "hi"',
            "headers": {"content-type": "application/json"},
        },
        422,
        "validation_error",
    ),
    "missing message": (lambda t: {"json": {"input": {}}}, 422, "validation_error"),
    "empty message": (lambda t: {"json": {"input": {"message": ""}}}, 422, "validation_error"),
    "message not a string": (
        lambda t: {"json": {"input": {"message": {"a": 1}}}},
        422,
        "validation_error",
    ),
    "unknown field": (
        lambda t: {"json": {"input": {"message": "hi"}, "x": 1}},
        422,
        "validation_error",
    ),
    "unknown agent": (
        lambda t: {"json": {"input": {"message": "hi"}, "agent": "rm -rf"}},
        422,
        "validation_error",
    ),
    "1 MB message": (
        lambda t: {"json": {"input": {"message": "a" * 1_000_000}}},
        413,
        "payload_too_large",
    ),
    "message over the limit": (
        lambda t: {"json": {"input": {"message": "a" * 16_001}}},
        422,
        "validation_error",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_run_body(live: LiveServer, thread_id: str, case: str) -> None:
    make, status, code = BAD_BODIES[case]
    before = _counts(live)
    with live.client() as c:
        r = c.post(RUNS.format(tid=thread_id), **make(thread_id))  # type: ignore[arg-type]
    _assert_problem(r, status, code)
    assert _counts(live) == before


def test_unknown_thread(live: LiveServer) -> None:
    before = _counts(live)
    with live.client() as c:
        r = c.post(RUNS.format(tid="no-such-thread"), json={"input": {"message": "hi"}})
    _assert_problem(r, 404, "not_found")
    assert _counts(live) == before


def test_unknown_checkpoint(live: LiveServer, thread_id: str) -> None:
    before = _counts(live)
    with live.client() as c:
        r = c.post(
            RUNS.format(tid=thread_id), json={"input": {"message": "hi"}, "checkpoint_id": "nope"}
        )
    _assert_problem(r, 404, "not_found")
    assert _counts(live) == before


TOKENS: dict[str, Callable[[LiveServer], str | None]] = {
    "no token": lambda live: None,
    "garbage": lambda live: "not-a-jwt",
    "expired": lambda live: _token(live, exp=int(time.time()) - 10),
    "alg none": _unsigned,
    "wrong secret": lambda live: jwt.encode(
        {"sub": "alice", "tenant": "acme", "iss": "keel", "exp": int(time.time()) + 60},
        "another-secret-that-is-long-enough!!",
        "HS256",
    ),
    "no tenant": lambda live: _token(live, tenant=None),
    "wrong issuer": lambda live: _token(live, iss="someone-else"),
    "unknown tier": lambda live: _token(live, tier="platinum"),
    "scopes not a list": lambda live: _token(live, scopes="admin"),
    "no exp": lambda live: _token(live, exp=None),
    "no iat": lambda live: _token(live, iat=None),
    "lifetime of a year": lambda live: _token(live, exp=int(time.time()) + 365 * 86400),
}


@pytest.mark.parametrize("case", sorted(TOKENS))
def test_bad_token(live: LiveServer, thread_id: str, case: str) -> None:
    token = TOKENS[case](live)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    before = _counts(live)
    for method, path in [
        ("POST", "/v1/threads"),
        ("GET", "/v1/threads"),
        ("POST", RUNS.format(tid=thread_id)),
    ]:
        r = httpx.request(
            method, live.url + path, headers=headers, json={"input": {"message": "hi"}}
        )
        _assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"] == "Bearer"
    assert _counts(live) == before


def test_unknown_route_is_problem_json(live: LiveServer) -> None:
    r = httpx.get(live.url + "/v1/nothing-here")
    _assert_problem(r, 404, "not_found")


@pytest.mark.parametrize(
    ("path", "allow"),
    [("/v1/threads", "GET, POST"), ("/v1/memory/long-term", "DELETE, GET, PUT")],
)
def test_405_allow_header_lists_every_route_on_the_path(
    live: LiveServer, path: str, allow: str
) -> None:
    with live.client() as c:
        r = c.request("PATCH", path)
    _assert_problem(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allow


def test_bad_last_event_id(live: LiveServer, thread_id: str) -> None:
    with live.client() as c:
        r = c.get(f"/v1/threads/{thread_id}/stream", headers={"Last-Event-ID": "abc"})
    _assert_problem(r, 422, "validation_error")


@pytest.mark.parametrize(
    ("where", "value"),
    [("header", str(2**63)), ("query", str(2**63)), ("header", "9" * 400), ("replay", str(2**63))],
)
def test_last_event_id_beyond_bigint_is_422_not_500(
    live: LiveServer, thread_id: str, where: str, value: str
) -> None:
    with live.client() as c:
        if where == "header":
            r = c.get(f"/v1/threads/{thread_id}/stream", headers={"Last-Event-ID": value})
        elif where == "query":
            r = c.get(f"/v1/threads/{thread_id}/stream", params={"after": value})
        else:
            r = c.get(f"/v1/replay/{thread_id}", params={"after": value})
    _assert_problem(r, 422, "validation_error")


@pytest.mark.parametrize(
    "path", ["/v1/threads/a%00b/runs", "/v1/runs/a%00b/cancel", "/v1/threads?limit=%00"]
)
def test_nul_in_the_url_is_400_not_500(live: LiveServer, path: str) -> None:
    with live.client() as c:
        r = c.post(path, json={"input": {"message": "hi"}})
    _assert_problem(r, 400, "invalid_request")


@pytest.mark.parametrize("text", ["a\\u0000b", "\\ud800"])
@pytest.mark.parametrize("where", ["feedback comment", "run message"])
def test_nul_or_lone_surrogate_in_a_body_is_422_not_500(
    live: LiveServer, thread_id: str, text: str, where: str
) -> None:
    before = _counts(live)
    if where == "feedback comment":
        path = "/v1/feedback"
        body = f'{{"run_id": "r", "rating": "thumbs_up", "comment": "{text}"}}'
    else:
        path = RUNS.format(tid=thread_id)
        body = f'{{"input": {{"message": "{text}"}}}}'
    with live.client() as c:
        r = c.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert _counts(live) == before
