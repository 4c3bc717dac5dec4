"""The tool audit trail: who called which tool, allowed or denied, redacted, append-only."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI
from tools.audit import redact


def _plan(tool: str, description: str) -> str:
    return json.dumps({"steps": [{"description": description, "tool": tool}]})


def test_allowed_and_denied_calls_are_audited_under_their_trace(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(
        [
            _plan("python_exec", "Print a greeting"),
            "No code ran.",  # the summarizer answers a refusal without the model
            _plan("github_trending", "Trending Rust repositories"),
            "Rust repos.",
            "Rust.",
        ]
    )
    traces = []
    for message in ("Run print('hi')", "Trending Rust repos?"):
        with live.client("mallory", "acme") as c:
            tid = c.post("/v1/threads").json()["thread_id"]
            resp, _ = stream_run(c, tid, message)
        traces.append(resp.headers["x-trace-id"])
    rows = live.sql(
        "SELECT trace_id, tenant, user_id, tool, version, args, decision, outcome"
        " FROM tool_audit WHERE trace_id = ANY(%s) ORDER BY id",
        traces,
    )
    assert [(r["trace_id"], r["tool"], r["decision"], r["outcome"]) for r in rows] == [
        (traces[0], "python_exec.run_python", "denied", "permission_denied"),
        (traces[1], "github_trending.trending_repos", "allowed", "ok"),
    ]
    assert {(r["tenant"], r["user_id"]) for r in rows} == {("acme", "mallory")}
    assert rows[0]["args"] == {}  # refused before any arguments were written
    assert rows[1]["args"] == {"language": "rust", "since": "weekly", "limit": 5}
    with (
        psycopg.connect(live.settings.database.url or "") as conn,
        pytest.raises(psycopg.errors.RaiseException, match="append-only"),
    ):
        conn.execute("DELETE FROM tool_audit WHERE trace_id = %s", (traces[0],))


def test_redaction_hides_secrets_and_cuts_long_values() -> None:
    args = {"api_key": "sk-123", "code": "x" * 500, "nested": {"password": "p", "n": 1}}
    out = redact(args)
    assert out["api_key"] == "[redacted]"
    assert out["nested"] == {"password": "[redacted]", "n": 1}
    assert out["code"].startswith("x" * 200) and out["code"].endswith("[500 chars]")
