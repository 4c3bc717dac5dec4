"""Authentication and tenancy (OWASP LLM02/LLM06, agentic privilege compromise).

Every endpoint × {own resource, another tenant's, another user's of the same tenant, no token,
expired, ``alg=none``, wrong audience, wrong issuer, bad signature}: the owner gets its data,
everyone else 401/403/404, and no response to them carries a byte of the owner's content
(canaries planted in the run's message, answer, memory and feedback).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI

CANARY_Q = "canary-question-5d1e"
CANARY_A = "canary-answer-8b2f"
CANARY_M = "canary-memory-91c0"
CANARY_F = "canary-feedback-3a77"
CANARIES = (CANARY_Q, CANARY_A, CANARY_M, CANARY_F)
CHART = "import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nprint('canary-chart')\n"


def _claims(live: LiveServer, **over: Any) -> dict[str, Any]:
    claims = {
        "sub": "alice",
        "tenant": "acme",
        "scopes": ["memory:long_term", "exec:code", "admin:feedback"],
        "tier": "free",
        "iss": live.settings.auth.jwt_issuer,
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    claims.update(over)
    return claims


def _alg_none(live: LiveServer) -> str:
    head = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    body = jwt.utils.base64url_encode(json.dumps(_claims(live)).encode()).decode()
    return f"{head}.{body}."


def _signed(live: LiveServer, key: str | None = None, **over: Any) -> str:
    return jwt.encode(_claims(live, **over), key or live.settings.auth.jwt_secret, "HS256")


CALLERS: dict[str, Callable[[LiveServer], str | None]] = {
    "other tenant": lambda live: _signed(live, sub="mallory", tenant="globex"),
    "same tenant, other user": lambda live: _signed(live, sub="bob"),
    "same user name, other tenant": lambda live: _signed(live, tenant="globex"),
    "no token": lambda live: None,
    "expired": lambda live: _signed(live, exp=int(time.time()) - 5),
    "alg=none": _alg_none,
    "wrong audience": lambda live: _signed(live, aud="someone-else"),
    "wrong issuer": lambda live: _signed(live, iss="evil"),
    "bad signature": lambda live: _signed(live, key="not-the-secret-" + "x" * 32),
    "tampered payload": lambda live: (lambda t: t[: t.rindex(".")] + ".AAAA")(_signed(live)),
}


@pytest.fixture(scope="module")
def owned(live: LiveServer, fake_llm: FakeOpenAI) -> dict[str, str]:
    """Alice's resources: a thread with two runs (one with a chart), memory and feedback."""
    fake_llm.reset()
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Plot it", "tool": "python_exec"}]}),
            json.dumps({"code": CHART}),
            f"Plotted {CANARY_A}.",
            f"Here {CANARY_A}.",
        ]
    )
    token = _signed(live)
    with httpx.Client(
        base_url=live.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(c, tid, f"Plot {CANARY_Q}")
        assert frames[-1].data["data"]["status"] == "success", [f.data for f in frames]
        run_id, trace_id = frames[0].data["run_id"], frames[0].data["trace_id"]
        image = [f.data["data"] for f in frames if f.data["type"] == "image_generated"]
        assert image, [f.data["type"] for f in frames]
        put = c.put("/v1/memory/long-term", json={"fields": {"diet": CANARY_M}})
        assert put.status_code == 200
        fb = {"run_id": run_id, "rating": "thumbs_up", "comment": CANARY_F}
        assert c.post("/v1/feedback", json=fb).status_code == 201
    return {
        "thread_id": tid,
        "run_id": run_id,
        "trace_id": trace_id,
        "artifact": image[0]["url"].rsplit("/", 1)[1],
    }


def _requests(o: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    t, r = o["thread_id"], o["run_id"]
    return [
        ("GET", "/v1/threads", {}),
        ("POST", "/v1/threads", {}),
        ("POST", f"/v1/threads/{t}/runs", {"json": {"input": {"message": "hi"}}}),
        ("GET", f"/v1/threads/{t}/stream?after=0", {}),
        ("GET", f"/v1/replay/{t}", {}),
        ("GET", f"/v1/replay/{t}?run_id={r}&pace=original", {}),
        ("GET", f"/v1/threads/{t}/history", {}),
        ("POST", f"/v1/runs/{r}/cancel", {}),
        ("POST", f"/v1/runs/{r}/confirm", {"json": {"approve": True}}),
        ("POST", "/v1/feedback", {"json": {"run_id": r, "rating": "thumbs_down"}}),
        ("POST", "/v1/signals", {"json": {"run_id": r, "kind": "copy"}}),
        ("GET", "/v1/feedback/summary", {}),
        ("GET", f"/v1/traces/{o['trace_id']}", {}),
        ("GET", f"/v1/artifacts/{o['artifact']}", {}),
        ("GET", "/v1/memory/long-term", {}),
        ("GET", "/v1/memory/long-term/export", {}),
        ("GET", "/v1/usage", {}),
        ("GET", "/v1/tools", {}),
        *_protocol_requests(t, r),
    ]


def _protocol_requests(t: str, r: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The same resources through the Agent Protocol's routes."""
    ask = {"assistant_id": "research", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    return [
        ("GET", f"/threads/{t}", {}),
        ("PATCH", f"/threads/{t}", {"json": {"metadata": {"x": 1}}}),
        ("GET", f"/threads/{t}/state", {}),
        ("POST", f"/threads/{t}/state", {"json": {"values": {"summary": "x"}}}),
        ("POST", f"/threads/{t}/history", {"json": {}}),
        ("GET", f"/threads/{t}/runs", {}),
        ("GET", f"/threads/{t}/runs/{r}", {}),
        ("GET", f"/threads/{t}/runs/{r}/join", {}),
        ("GET", f"/threads/{t}/runs/{r}/stream", {}),
        ("POST", f"/threads/{t}/runs/{r}/cancel", {}),
        ("POST", f"/threads/{t}/runs", {"json": ask}),
        ("POST", f"/threads/{t}/runs/wait", {"json": ask}),
        ("POST", f"/threads/{t}/runs/stream", {"json": ask}),
        ("POST", "/threads/search", {"json": {}}),
        ("GET", "/store/items?namespace=profile&key=diet", {}),
        ("POST", "/store/items/search", {"json": {"namespace_prefix": ["profile"]}}),
        ("DELETE", f"/threads/{t}", {}),
    ]


# Endpoints that serve the caller's own view: 200 for any authenticated caller, so for
# them "refused" means "none of the owner's data in the answer".
OWN_VIEW = {"/v1/threads", "/v1/feedback/summary", "/v1/memory/long-term", "/v1/usage"}
OWN_VIEW |= {"/v1/memory/long-term/export", "/v1/tools", "/threads/search"}
OWN_VIEW |= {"/store/items/search"}


def test_every_endpoint_refuses_other_callers_and_leaks_nothing(
    live: LiveServer, owned: dict[str, str], figure: Callable[[str, str], None]
) -> None:
    before = live.sql("SELECT count(*) AS n FROM feedback")[0]["n"]
    statuses: Counter[str] = Counter()
    leaks: list[str] = []
    wrong: list[str] = []
    with httpx.Client(base_url=live.url, timeout=30) as c:
        # The owner sees its data (so the canaries are there to leak).
        owner = {"Authorization": f"Bearer {_signed(live)}"}
        seen = c.get(f"/v1/replay/{owned['thread_id']}", headers=owner).text
        assert CANARY_Q in seen and CANARY_A in seen
        assert CANARY_M in c.get("/v1/memory/long-term", headers=owner).text
        for name, make in CALLERS.items():
            token = make(live)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for method, path, kw in _requests(owned):
                r = c.request(method, path, headers=headers, **kw)
                statuses[f"{r.status_code}"] += 1
                for canary in CANARIES:
                    if canary in r.text:
                        leaks.append(f"{name}: {method} {path} leaked {canary}")
                authenticated = name in {
                    "other tenant",
                    "same tenant, other user",
                    "same user name, other tenant",
                }
                base = path.split("?")[0]
                if not authenticated:
                    ok = r.status_code == 401
                elif base in OWN_VIEW or (method == "POST" and base == "/v1/threads"):
                    ok = r.status_code in (200, 201, 403)
                else:
                    ok = r.status_code in (403, 404)
                if not ok:
                    wrong.append(f"{name}: {method} {path} -> {r.status_code} {r.text[:120]}")
    total = sum(statuses.values())
    figure(
        "tenancy",
        f"{total} requests ({len(CALLERS)} callers x {len(_requests(owned))} endpoints): "
        f"{total - len(wrong)} refused or own-view only, {len(wrong)} wrong, "
        f"{len(leaks)} leaked canaries; statuses {dict(statuses)}",
    )
    assert not leaks, leaks
    assert not wrong, "\n".join(wrong)
    # Nobody else's feedback landed on alice's run.
    assert live.sql("SELECT count(*) AS n FROM feedback")[0]["n"] == before
