"""Shared fixtures: a real Postgres (embedded unless KEEL_TEST_DATABASE_URL), a fresh database
per test module, the scripted OpenAI-compatible server, and the API on a real socket."""

from __future__ import annotations

import json
import os

os.environ["KEEL_ENV"] = "test"
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
for _var in ("DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
    os.environ.pop(_var, None)

import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import psycopg  # noqa: E402
import pytest  # noqa: E402
import uvicorn  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from core.db import EmbeddedPostgres, free_port  # noqa: E402
from core.identity import issue_token  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402
from tests.sse import Frame, parse  # noqa: E402


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a Postgres server's maintenance database."""
    if url := os.environ.get("KEEL_TEST_DATABASE_URL"):
        yield url
        return
    # Not under pytest's basetemp: concurrent pytest runs prune each other's old basetemps.
    root = Path(tempfile.mkdtemp(prefix="keel-test-pg-"))
    pg = EmbeddedPostgres(root / "data")
    pg.start()
    try:
        yield pg.url
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test module."""
    name = f"keel_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAI]:
    """The scripted OpenAI-compatible server."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_fake(request: pytest.FixtureRequest) -> None:
    if "fake_llm" in request.fixturenames:
        request.getfixturevalue("fake_llm").reset()


def make_settings(db_url: str, base_url: str, tmp: Path, **overrides: Any) -> Settings:
    """Test settings pointing at ``db_url`` and the model server at ``base_url``."""
    return Settings(
        env="test",
        data_dir=tmp,
        database={"url": db_url},
        llm={"provider": "openai", "base_url": base_url, "model": "fake", "api_key": "test"},
        **overrides,
    )


class LiveServer:
    """The Keel app served by uvicorn on a free port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        """Build the app for ``settings``."""
        from api.app import create_app
        from api.server import server_config

        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = server_config(
            create_app(settings),
            settings,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 180  # a contended 2-core machine takes over 30 s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("Keel API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def token(self, user: str = "alice", tenant: str = "acme", **kw: Any) -> str:
        """A signed token for ``user`` of ``tenant``."""
        return issue_token(
            self.settings.auth, user=user, tenant=tenant, scopes=kw.pop("scopes", []), **kw
        )

    def client(self, user: str = "alice", tenant: str = "acme") -> httpx.Client:
        """An HTTP client authenticated as ``user``."""
        return httpx.Client(
            base_url=self.url,
            timeout=60,
            headers={"Authorization": f"Bearer {self.token(user, tenant)}"},
        )

    def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """Run ``query`` on the test database."""
        with psycopg.connect(self.settings.database.url or "", row_factory=dict_row) as conn:
            cur = conn.execute(query, args)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def live(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The API on a real socket, over a fresh database and the scripted model server."""
    with LiveServer(
        make_settings(db_url, fake_llm.base_url, tmp_path_factory.mktemp("keel"))
    ) as server:
        yield server


def stream_run(
    client: httpx.Client, thread_id: str, message: str, **body: Any
) -> tuple[httpx.Response, list[Frame]]:
    """POST a run and read its whole SSE stream."""
    with client.stream(
        "POST", f"/v1/threads/{thread_id}/runs", json={"input": {"message": message}, **body}
    ) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp, []
        frames = parse(resp.iter_lines())
    return resp, frames


def tool_invocations(data_dir: Path, pin: str) -> list[dict[str, Any]]:
    """The calls a tool server of ``pin`` (e.g. ``calendar-v1``) logged itself as invoked."""
    path = data_dir / "tools" / f"{pin}.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["event"] == "invoke"]


def ingest(url: str, tenant: str, paths: list[Path]) -> dict[str, Any]:
    """``keel ingest`` from a test: add ``paths`` to ``tenant``'s documents, indexed."""
    import asyncio

    from core.db import migrate
    from core.embeddings import MiniLMEmbedder
    from core.settings import DocumentSettings
    from tools.servers.documents import corpus

    async def run() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)
            return await corpus.ingest(conn, _embedder(), tenant, paths, DocumentSettings())

    def _embedder() -> MiniLMEmbedder:
        global _MINILM
        _MINILM = _MINILM or MiniLMEmbedder()
        return _MINILM

    return asyncio.run(run())


_MINILM: Any = None
