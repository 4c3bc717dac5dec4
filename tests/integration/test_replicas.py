"""Two ``keel serve`` replicas in production config share Postgres and Redis.

Real processes (``python -m api.cli serve``) with ``KEEL_ENV=prod``, a fresh database on the
machine's Postgres and a unique Redis key prefix; the model is the scripted fake server. A run
started on replica A is resumed and replayed from replica B with no gap or duplicate, and a
quota spent through A refuses on B. Skipped when Postgres or Redis is not reachable.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from core.db import free_port
from core.identity import issue_token
from core.settings import AuthSettings
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import iter_frames, parse

PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
LONG_ANSWER = " ".join(f"w{i}" for i in range(200))


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Replica:
    """One ``keel serve`` process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log = log

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"replica exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"replica not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def replicas(
    fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica, AuthSettings]]:
    if not _reachable(5432) or not _reachable(6379):
        pytest.skip("Postgres 127.0.0.1:5432 or Redis 127.0.0.1:6379 is not reachable")
    suffix = secrets.token_hex(6)
    dbname = f"keel_replicas_{suffix}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    secret = secrets.token_urlsafe(48)
    tmp = tmp_path_factory.mktemp("replicas")
    env = {
        "KEEL_ENV": "prod",
        "KEEL_DATA_DIR": str(tmp / "data"),
        "KEEL_DATABASE__URL": f"{PG}/{dbname}",
        "KEEL_QUOTAS__STORAGE_URL": REDIS,
        "KEEL_QUOTAS__KEY_PREFIX": f"keel_test_{suffix}",
        "KEEL_QUOTAS__FREE__RUNS_PER_MINUTE": "3",
        "KEEL_QUOTAS__FREE__CONCURRENT_RUNS": "4",
        "KEEL_AUTH__JWT_SECRET": secret,
        "KEEL_LLM__BASE_URL": fake_llm.base_url,
        "KEEL_LLM__MODEL": "fake",
        "KEEL_LOG__LEVEL": "WARNING",
        "KEEL_MEMORY__MASTER_KEY": secrets.token_urlsafe(48),
        # No Qdrant server here: session memory runs in local mode (one replica holds the
        # folder, the other runs without session memory); long-term memory is in Postgres.
        "KEEL_MEMORY__SESSION__URL": "",
    }
    started: list[Replica] = []
    try:
        a = Replica(env, tmp / "a.log")
        started.append(a)
        a.wait_ready()  # A migrates the fresh database before B starts
        b = Replica(env, tmp / "b.log")
        started.append(b)
        b.wait_ready()
        yield a, b, AuthSettings(jwt_secret=secret)
    finally:
        for r in started:
            r.stop()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        import redis

        client: Any = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"*keel_test_{suffix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _client(r: Replica, auth: AuthSettings, user: str) -> httpx.Client:
    token = issue_token(auth, user=user, tenant="acme", scopes=[])
    return httpx.Client(base_url=r.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_a_run_started_on_a_is_resumed_and_replayed_from_b(
    replicas: tuple[Replica, Replica, AuthSettings], fake_llm: FakeOpenAI
) -> None:
    a, b, auth = replicas
    fake_llm.script.extend(
        [json.dumps({"steps": [{"description": "s", "tool": "none"}]}), "finding", LONG_ANSWER]
    )
    fake_llm.delay_s = 0.01
    with _client(a, auth, "alice") as ca, _client(b, auth, "alice") as cb:
        tid = ca.post("/v1/threads").json()["thread_id"]
        seen: list[dict[str, Any]] = []
        with ca.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "go"}}) as r:
            assert r.status_code == 200, r.read()
            for frame in iter_frames(r.iter_lines()):
                seen.append(frame.data)
                if len(seen) >= 3:
                    break
        last = seen[-1]["seq"]
        with cb.stream(
            "GET", f"/v1/threads/{tid}/stream", headers={"Last-Event-ID": str(last)}
        ) as r:
            assert r.status_code == 200, r.read()
            rest = [f.data for f in parse(r.iter_lines())]
        assert rest and rest[-1]["type"] == "run_finished", rest[-3:]
        resumed = seen + rest
        seqs = [e["seq"] for e in resumed]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gap or duplicate"
        with cb.stream("GET", f"/v1/replay/{tid}") as r:
            assert r.status_code == 200, r.read()
            replayed = [f.data for f in parse(r.iter_lines())]
        with cb.stream("GET", f"/v1/threads/{tid}/stream", params={"after": 0}) as r:
            full = [f.data for f in parse(r.iter_lines())]
    assert resumed == full
    assert [e["seq"] for e in replayed] == [e["seq"] for e in full]
    assert [e["type"] for e in replayed] == [e["type"] for e in full]


def test_a_quota_spent_through_a_refuses_on_b(
    replicas: tuple[Replica, Replica, AuthSettings],
) -> None:
    a, b, auth = replicas
    with _client(a, auth, "bob") as ca, _client(b, auth, "bob") as cb:
        tid = ca.post("/v1/threads").json()["thread_id"]
        for _ in range(3):
            with ca.stream(
                "POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "hi"}}
            ) as r:
                assert r.status_code == 200, r.read()
                frames = parse(r.iter_lines())
            assert frames[-1].data["type"] == "run_finished"
        refused = cb.post(f"/v1/threads/{tid}/runs", json={"input": {"message": "hi"}})
    assert refused.status_code == 429, refused.text
    assert "runs_per_minute" in refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_feedback_and_long_term_memory_written_on_a_are_visible_from_b(
    replicas: tuple[Replica, Replica, AuthSettings],
) -> None:
    a, b, auth = replicas
    scopes = ["memory:long_term", "admin:feedback"]
    token = issue_token(auth, user="carol", tenant="acme", scopes=scopes)
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=a.url, headers=headers, timeout=60) as ca,
        httpx.Client(base_url=b.url, headers=headers, timeout=60) as cb,
    ):
        tid = ca.post("/v1/threads").json()["thread_id"]
        with ca.stream("POST", f"/v1/threads/{tid}/runs", json={"input": {"message": "hi"}}) as r:
            assert r.status_code == 200, r.read()
            run_id = parse(r.iter_lines())[0].data["run_id"]
        rated = ca.post("/v1/feedback", json={"run_id": run_id, "rating": "thumbs_up"})
        assert rated.status_code == 201, rated.text
        summary = cb.get("/v1/feedback/summary").json()
        assert [(row["ratings"], row["thumbs_up"]) for row in summary["by_model"]] == [(1, 1)]
        put = ca.put("/v1/memory/long-term", json={"fields": {"city": "Lisbon"}})
        assert put.status_code == 200, put.text
        assert cb.get("/v1/memory/long-term").json()["fields"] == {"city": "Lisbon"}
