"""Feedback and signals over HTTP: stored with their run's context, tenant-scoped, summarised,
derived (follow-ups), exported, and used to route between an agent's variants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, make_settings, stream_run
from tests.fakes.openai_server import FakeOpenAI


def _client(live: LiveServer, user: str, tenant: str, scopes: list[str] | None = None) -> Any:
    token = live.token(user, tenant, scopes=scopes or [])
    return httpx.Client(base_url=live.url, timeout=60, headers={"Authorization": f"Bearer {token}"})


def _run(c: httpx.Client, thread_id: str | None = None) -> tuple[str, str, dict[str, Any]]:
    tid = thread_id or c.post("/v1/threads").json()["thread_id"]
    resp, frames = stream_run(c, tid, "What is the answer?")
    assert resp.status_code == 200
    return tid, frames[0].data["run_id"], frames[0].data


def test_a_rating_carries_its_runs_context_and_a_second_replaces_the_first(
    live: LiveServer,
) -> None:
    with _client(live, "alice", "acme") as c:
        _, run_id, started = _run(c)
        first = c.post("/v1/feedback", json={"run_id": run_id, "rating": "thumbs_down"})
        assert first.status_code == 201, first.text
        assert first.json()["trace_id"] == started["trace_id"]
        again = c.post(
            "/v1/feedback",
            json={"run_id": run_id, "rating": "thumbs_up", "reason": "clear", "comment": "thanks"},
        )
        assert again.status_code == 201
        bad = c.post("/v1/feedback", json={"run_id": run_id, "rating": "meh"})
        assert bad.status_code == 422
    rows = live.sql("SELECT * FROM feedback WHERE run_id = %s", run_id)
    assert len(rows) == 1
    row = rows[0]
    assert (row["rating"], row["reason"], row["comment"]) == ("thumbs_up", "clear", "thanks")
    assert (row["user_id"], row["tenant"], row["agent"], row["model"]) == (
        "alice",
        "acme",
        "research",
        "fake",
    )
    assert row["trace_id"] == started["trace_id"] and row["thread_id"] == started["thread_id"]


@pytest.mark.parametrize(("user", "tenant"), [("eve", "globex"), ("bob", "acme")])
def test_feedback_for_another_tenants_or_users_run_is_refused_without_its_data(
    live: LiveServer, user: str, tenant: str
) -> None:
    with _client(live, "alice", "acme") as c:
        _, run_id, _ = _run(c)
    with _client(live, user, tenant) as eve:
        for path, body in (
            ("/v1/feedback", {"run_id": run_id, "rating": "thumbs_down"}),
            ("/v1/signals", {"run_id": run_id, "kind": "regenerate"}),
        ):
            r = eve.post(path, json=body)
            assert r.status_code == 404
            assert r.headers["content-type"].startswith("application/problem+json")
            assert run_id not in r.text.replace(f"no run {run_id}", "")
    assert live.sql("SELECT count(*) AS n FROM feedback WHERE run_id = %s", run_id)[0]["n"] == 0


def test_a_follow_up_within_the_window_marks_the_previous_answer_not_resolved(
    live: LiveServer,
) -> None:
    with _client(live, "bob", "acme") as c:
        tid, first, _ = _run(c)
        _, second, _ = _run(c, tid)
    rows = live.sql("SELECT run_id, kind, source FROM signals WHERE thread_id = %s", tid)
    assert rows == [{"run_id": first, "kind": "not_resolved", "source": "server"}]
    assert second != first


def test_summary_matches_a_hand_count(live: LiveServer) -> None:
    runs = []
    with _client(live, "carol", "fb-sum") as c:
        for rating in ("thumbs_up", "thumbs_up", "thumbs_up", "thumbs_down"):
            _, run_id, _ = _run(c)
            runs.append(run_id)
            assert c.post("/v1/feedback", json={"run_id": run_id, "rating": rating}).is_success
        for kind, run_id in (("copy", runs[0]), ("regenerate", runs[3]), ("copy", runs[1])):
            assert c.post("/v1/signals", json={"run_id": run_id, "kind": kind}).is_success
        assert c.get("/v1/feedback/summary").status_code == 403
    with _client(live, "admin", "fb-sum", ["admin:feedback"]) as admin:
        body = admin.get("/v1/feedback/summary").json()
    # By hand: 3 of 4 liked; Wilson 95 % for 3/4 is [0.3006, 0.9544]; 2 copies, 1 regenerate.
    expected = {
        "ratings": 4,
        "thumbs_up": 3,
        "satisfaction": 0.75,
        "ci95": [0.3006, 0.9544],
        "signals": {"copy": 2, "regenerate": 1},
    }
    assert body["by_variant"] == [{"key": "research", **expected}]
    assert body["by_model"] == [{"key": "fake", **expected}]
    today = datetime.now(UTC).date().isoformat()
    assert body["by_day"] == [{"key": today, **expected}]
    assert body["by_tool_version"] == []


def test_keel_feedback_export_writes_jsonl_with_question_and_answer(
    live: LiveServer, tmp_path: Path
) -> None:
    with _client(live, "dave", "fb-export") as c:
        _, run_id, _ = _run(c)
        c.post("/v1/feedback", json={"run_id": run_id, "rating": "thumbs_up"})
    out = tmp_path / "feedback.jsonl"
    env = {**os.environ, "KEEL_DATABASE__URL": live.settings.database.url or ""}
    subprocess.run(
        [sys.executable, "-m", "api.cli", "feedback", "export", "-o", str(out)]
        + ["--tenant", "fb-export"],
        check=True,
        env=env,
        capture_output=True,
    )
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["run_id"], row["rating"], row["question"]) == (
        run_id,
        "thumbs_up",
        "What is the answer?",
    )
    assert row["answer"] == "The answer is 42."
    assert row["tool_calls"] == []


@pytest.fixture(scope="module")
def variants(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """An API whose research agent has two variants routed by Thompson sampling."""
    agents = {
        "research": {
            "tools": [],
            "variants": {"concise": {"temperature": 0.0}, "thorough": {"temperature": 0.3}},
            "routing": {"policy": "thompson", "exploration_floor": 0.0, "seed": 3},
        }
    }
    settings = make_settings(
        db_url, fake_llm.base_url, tmp_path_factory.mktemp("variants"), agents=agents
    )
    with LiveServer(settings) as server:
        yield server


def test_run_started_carries_the_chosen_variant_and_why(variants: LiveServer) -> None:
    with _client(variants, "erin", "acme") as c:
        # Teach the router: "thorough" liked three times, "concise" disliked three times.
        taught = {"thorough": 0, "concise": 0}
        while min(taught.values()) < 3:
            _, run_id, started = _run(c)
            chosen = started["data"]["agent_variant"]
            assert chosen in taught
            assert started["data"]["variant_reason"].startswith("thompson (")
            if taught[chosen] < 3:
                rating = "thumbs_up" if chosen == "thorough" else "thumbs_down"
                c.post("/v1/feedback", json={"run_id": run_id, "rating": rating})
                taught[chosen] += 1
        picks = [_run(c)[2]["data"]["agent_variant"] for _ in range(8)]
    assert picks.count("thorough") >= 6
    # The variant labels the run metrics too, so two strategies can be compared.
    metrics = httpx.get(f"{variants.url}/metrics").text
    assert 'keel_runs_total{agent="research",status="success",variant="thorough"}' in metrics
    rows = variants.sql("SELECT DISTINCT agent_variant FROM runs WHERE agent_variant IS NOT NULL")
    assert {r["agent_variant"] for r in rows} == {"concise", "thorough"}
