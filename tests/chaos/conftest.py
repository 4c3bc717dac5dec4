"""Chaos and security suite (issue 13): one scale knob, real processes, figures in the summary.

``KEEL_CHAOS_SCALE=full`` (``make chaos``) runs every test at the issue's size; the default,
``quick``, runs a small version of each so ``make test`` guards them on every change. Each test
records its figure with ``figure(name, text)``; the terminal summary prints one line per figure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from core.db import free_port
from core.identity import issue_token
from core.settings import AuthSettings
from tests.fakes.openai_server import FakeOpenAI

FULL = os.environ.get("KEEL_CHAOS_SCALE", "quick") == "full"
T = TypeVar("T")
FIGURES: list[tuple[str, str]] = []
SECRET = "chaos-suite-jwt-secret-0123456789abcdef"


def scaled(quick: T, full: T) -> T:
    """``full`` under ``make chaos``, ``quick`` otherwise."""
    return full if FULL else quick


@pytest.fixture
def figure() -> Callable[[str, str], None]:
    """Record one measured figure for the terminal summary."""

    def record(name: str, text: str) -> None:
        FIGURES.append((name, text))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    scale = "full" if FULL else "quick"
    terminalreporter.write_sep("=", f"chaos figures ({scale})")
    for name, text in FIGURES:
        terminalreporter.write_line(f"{name}: {text}")


def assert_gap_free(seqs: list[int]) -> None:
    """Seqs read by a client, over all its reconnects: 1..N, each exactly once."""
    assert seqs == list(range(1, len(seqs) + 1)), seqs


class ApiProcess:
    """``keel serve`` as a child process (test config), so it can be killed with SIGKILL."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.auth = AuthSettings(jwt_secret=SECRET)

    def start(self) -> ApiProcess:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"keel serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                # Liveness, not /readyz: the jail uid's process limit is shared with every
                # other sandbox on the machine, so python-v1 may be refused for a moment.
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"keel serve not ready:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        """SIGKILL the API and its children (tool servers): nothing runs a shutdown path."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def sql(self, query: str, *args: object) -> list[dict[str, Any]]:
        """Run ``query`` on the API's database."""
        with psycopg.connect(self.env["KEEL_DATABASE__URL"], row_factory=dict_row) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    def client(self, user: str = "alice", tenant: str = "acme", **kw: Any) -> httpx.Client:
        token = issue_token(
            self.auth,
            user=user,
            tenant=tenant,
            scopes=kw.pop("scopes", []),
            tier=kw.pop("tier", "free"),
        )
        return httpx.Client(
            base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
        )


def api_env(db_url: str, fake_llm: FakeOpenAI, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a test-config ``keel serve`` on ``db_url`` and the scripted model."""
    return {
        "KEEL_ENV": "test",
        "KEEL_DATA_DIR": str(data_dir),
        "KEEL_DATABASE__URL": db_url,
        "KEEL_AUTH__JWT_SECRET": SECRET,
        "KEEL_LLM__PROVIDER": "openai",
        "KEEL_LLM__BASE_URL": fake_llm.base_url,
        "KEEL_LLM__MODEL": "fake",
        "KEEL_LLM__API_KEY": "test",
        "KEEL_LOG__LEVEL": "WARNING",
        "KEEL_TRACING__ENABLED": "false",
        **extra,
    }


@pytest.fixture
def api_factory(
    db_url: str, fake_llm: FakeOpenAI, tmp_path: Path
) -> Iterator[Callable[..., ApiProcess]]:
    """Start ``keel serve`` processes on the module's database; all are stopped afterwards.

    Each ``name`` is a replica with its data directory and log of its own.
    """
    started: list[ApiProcess] = []

    def make(name: str = "api", **extra: str) -> ApiProcess:
        api = ApiProcess(
            api_env(db_url, fake_llm, tmp_path / f"{name}-data", **extra), tmp_path / f"{name}.log"
        )
        started.append(api)
        return api.start()

    yield make
    for api in started:
        api.stop()
