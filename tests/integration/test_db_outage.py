"""With Postgres down the API answers 503 problem+json with Retry-After, then recovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.db import EmbeddedPostgres
from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI


def test_requests_during_an_outage_get_503_then_recover(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    pg.start()
    try:
        settings = make_settings(pg.url, fake_llm.base_url, tmp_path)
        settings = settings.model_copy(
            update={"database": settings.database.model_copy(update={"pool_min": 1})}
        )
        with LiveServer(settings) as live, live.client() as c:
            assert c.post("/v1/threads").status_code == 201
            pg.stop()
            r = c.post("/v1/threads")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["retry-after"] == "5"
            assert r.json()["code"] == "database_unavailable"
            assert r.json()["trace_id"] == r.headers["x-trace-id"]
            ready = c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["postgres"].startswith("error")
            pg.start()
            assert c.post("/v1/threads").status_code == 201
            assert c.get("/readyz").status_code == 200
    finally:
        pg.stop(quiet=True)


@pytest.fixture(autouse=True)
def _quiet_pool_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="psycopg.pool")
