"""Hostile HTTP input (OWASP LLM01/LLM10): every payload of the corpus is a problem+json 4xx.

Per endpoint a corpus of payloads — deep JSON, bodies of 10 MB, lone surrogates, invalid
UTF-8, SQL and HTML where ids go, path tricks, bad and huge Last-Event-IDs, huge headers and
tokens — sent to the real API over a socket; nothing may answer 5xx, leak a stack trace or
write a row.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from tests.chaos.conftest import scaled
from tests.conftest import LiveServer

PER_ENDPOINT = scaled(25, 200)
SQL = ["' OR 1=1 --", "'; DROP TABLE events; --", "1; SELECT pg_sleep(0)", '" OR ""="']
HTML = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "{{7*7}}", "${jndi:x}"]
PATHS = ["../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%00", "a/../../b", "\\..\\..\\win"]
WEIRD = ["\ud800", "\udfff", "a\x00b", "\u202e", "𝕏" * 50, "", " ", "-1", "1e400", "NaN"]
LAST_IDS = ["-1", "abc", "1.5", "1e3", "0x10", str(2**63), "9" * 5000, " ", "１２"]


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _bodies(valid: dict[str, Any], rng: random.Random) -> Iterator[dict[str, Any]]:
    """Request kwargs for a JSON body endpoint, each hostile in some way."""
    fixed: list[dict[str, Any]] = [
        {"content": _deep(100_000), "headers": {"content-type": "application/json"}},
        {"content": b'{"a":' * 50_000 + b"1" + b"}" * 50_000},
        {"content": b"x" * 10_000_000, "headers": {"content-type": "application/json"}},
        {"content": b'{"input": {"message": "\xff\xfe"}}'},
        {"content": b'{"input": {"message": "\\ud800"}}'},
        {"content": b"", "headers": {"content-type": "application/json"}},
        {"content": b"null", "headers": {"content-type": "application/json"}},
        {"content": b"[]", "headers": {"content-type": "application/json"}},
        {"content": b"{" * 3, "headers": {"content-type": "application/json"}},
        {"content": b"<xml/>", "headers": {"content-type": "application/xml"}},
        {"json": {**valid, "__proto__": {"admin": True}}},
    ]
    yield from fixed
    strings = SQL + HTML + PATHS + WEIRD
    while True:
        body = dict(valid)
        key = rng.choice(sorted(body))
        value = rng.choice(
            [rng.choice(strings), rng.choice(strings) * rng.randint(1, 3000), 10**30, [], {}]
        )
        body[key] = value
        if rng.random() < 0.3:
            body[rng.choice(strings)[:20] or "k"] = rng.choice(strings)
        yield {"json": body}


Endpoint = tuple[str, str, Callable[[random.Random], Iterator[dict[str, Any]]]]


def _q(**params: str) -> str:
    """A query string that keeps lone surrogates and NULs (as invalid UTF-8 escapes)."""
    return "?" + "&".join(
        f"{k}={quote(v, safe='', errors='surrogatepass')}" for k, v in params.items()
    )


def _id_tricks(rng: random.Random) -> Iterator[str]:
    for s in itertools.chain(SQL, HTML, PATHS, WEIRD):
        yield quote(s, safe="", errors="surrogatepass")
    while True:
        yield quote(
            rng.choice(SQL + HTML + PATHS) * rng.randint(1, 200), safe="", errors="surrogatepass"
        )


def _endpoints(thread_id: str) -> list[tuple[str, Callable[[random.Random], Iterator[Any]]]]:
    """(name, generator of (method, path, kwargs)) per endpoint."""

    def runs(rng: random.Random) -> Iterator[Any]:
        for kw in _bodies({"input": {"message": "hi"}, "agent": "research"}, rng):
            if "json" in kw and kw["json"].get("input") == {"message": "hi"}:
                kw["json"]["agent"] = rng.choice(SQL + HTML + PATHS)  # never a valid run
            yield "POST", f"/v1/threads/{thread_id}/runs", kw

    def runs_path(rng: random.Random) -> Iterator[Any]:
        for t in _id_tricks(rng):
            yield "POST", f"/v1/threads/{t}/runs", {"json": {"input": {"message": "hi"}}}

    def stream(rng: random.Random) -> Iterator[Any]:
        for i in itertools.count():
            bad = LAST_IDS[i % len(LAST_IDS)] if i < 40 else rng.choice(LAST_IDS) * 2
            if i % 2:
                yield "GET", f"/v1/threads/{thread_id}/stream{_q(after=bad)}", {}
            else:
                yield (
                    "GET",
                    f"/v1/threads/{thread_id}/stream",
                    {
                        "headers": {
                            "last-event-id": (bad.strip() or "-").encode("latin-1", "replace")
                        }
                    },
                )

    def replay(rng: random.Random) -> Iterator[Any]:
        for i, t in enumerate(_id_tricks(rng)):
            q = _q(after=rng.choice(LAST_IDS), pace=rng.choice(["slow", "", "x"]))
            yield "GET", f"/v1/replay/{t if i % 2 else thread_id}{q}", {}

    def history(rng: random.Random) -> Iterator[Any]:
        for t in _id_tricks(rng):
            yield "GET", f"/v1/threads/{t}/history{_q(limit=rng.choice(WEIRD))}", {}

    def cancel(rng: random.Random) -> Iterator[Any]:
        for t in _id_tricks(rng):
            yield "POST", f"/v1/runs/{t}/cancel", {}

    def feedback(rng: random.Random) -> Iterator[Any]:
        valid = {"run_id": "r", "rating": "thumbs_up", "comment": "ok"}
        for kw in _bodies(valid, rng):
            yield "POST", "/v1/feedback", kw

    def signals(rng: random.Random) -> Iterator[Any]:
        for kw in _bodies({"run_id": "r", "kind": "copy", "value": 1}, rng):
            yield "POST", "/v1/signals", kw

    def memory(rng: random.Random) -> Iterator[Any]:
        for kw in _bodies({"fields": {"diet": "x"}}, rng):
            if "json" in kw and isinstance(kw["json"].get("fields"), dict):
                kw["json"]["fields"] = {rng.choice(SQL + HTML + PATHS): "x"}
            yield "PUT", "/v1/memory/long-term", kw

    def artifacts(rng: random.Random) -> Iterator[Any]:
        for t in _id_tricks(rng):
            yield "GET", f"/v1/artifacts/{t}", {}

    def traces(rng: random.Random) -> Iterator[Any]:
        for t in _id_tricks(rng):
            yield "GET", f"/v1/traces/{t}", {}

    def threads(rng: random.Random) -> Iterator[Any]:
        while True:
            yield "GET", f"/v1/threads{_q(limit=rng.choice(WEIRD + LAST_IDS))}", {}

    def headers(rng: random.Random) -> Iterator[Any]:
        while True:
            size = rng.choice([1_000, 8_000, 30_000, 60_000])
            yield "GET", "/v1/threads", {"headers": {"x-junk": "a" * size}, "auth": rng.random()}

    return [
        ("POST runs (body)", runs),
        ("POST runs (path)", runs_path),
        ("GET stream", stream),
        ("GET replay", replay),
        ("GET history", history),
        ("POST cancel", cancel),
        ("POST feedback", feedback),
        ("POST signals", signals),
        ("PUT memory", memory),
        ("GET artifacts", artifacts),
        ("GET traces", traces),
        ("GET threads", threads),
        ("huge headers/tokens", headers),
    ]


def _counts(live: LiveServer) -> dict[str, Any]:
    return live.sql(
        "SELECT (SELECT count(*) FROM threads) t, (SELECT count(*) FROM runs) r,"
        " (SELECT count(*) FROM events) e, (SELECT count(*) FROM feedback) f,"
        " (SELECT count(*) FROM memory_long_term) m"
    )[0]


def test_hostile_corpus_gets_problem_json_4xx_only(
    live: LiveServer, figure: Callable[[str, str], None]
) -> None:
    with live.client() as c:
        thread_id = c.post("/v1/threads").json()["thread_id"]
    token = live.token("alice", "acme", scopes=["memory:long_term", "admin:feedback"])
    before = _counts(live)
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    rng = random.Random(13)
    with httpx.Client(base_url=live.url, timeout=60) as c:
        for name, gen in _endpoints(thread_id):
            for method, path, kw in itertools.islice(gen(rng), PER_ENDPOINT):
                auth = kw.pop("auth", None)
                if "json" in kw:  # ASCII escapes carry lone surrogates as JSON allows
                    kw["content"] = json.dumps(kw.pop("json")).encode()
                    kw.setdefault("headers", {})["content-type"] = "application/json"
                bearer = token if auth is None else "x" * int(1 + 40_000 * auth)
                kw.setdefault("headers", {})["authorization"] = f"Bearer {bearer}"
                try:
                    r = c.request(method, path, **kw)
                except httpx.TransportError as exc:
                    bad.append(f"{name}: {method} {path[:80]} -> {type(exc).__name__}")
                    continue
                statuses[r.status_code] += 1
                ok = (
                    400 <= r.status_code < 500
                    and r.headers.get("content-type") == "application/problem+json"
                    and "Traceback" not in r.text
                    and r.json().get("trace_id") == r.headers.get("x-trace-id")
                )
                if not ok:
                    bad.append(f"{name}: {method} {path[:80]} -> {r.status_code} {r.text[:200]}")
    after = _counts(live)
    total = sum(statuses.values())
    figure(
        "hostile input",
        f"{total} payloads over 13 endpoint groups ({PER_ENDPOINT} each): "
        f"{total - len(bad)} problem+json 4xx, {len(bad)} other; statuses {dict(statuses)}",
    )
    assert not bad, "\n".join(bad[:20])
    assert after == before
