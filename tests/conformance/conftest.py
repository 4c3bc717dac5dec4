"""The server the Agent Protocol conformance suites drive: Keel with bookings held.

With ``KEEL_CONFORMANCE_AEGRA`` set to the Python of a venv holding ``aegra-api`` (and Keel,
for its graph), the same suites drive Aegra instead, an open Agent Protocol server, serving
Keel's graph on the same scripted model and Postgres: the comparison in docs/agent-protocol.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.db import free_port
from core.settings import ROOT, Settings
from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI

# The scopes the suites' users hold: bookings (held for confirmation) and long-term memory.
WRITE = ["read:calendar", "write:calendar", "memory:long_term"]


class AegraServer(LiveServer):
    """Aegra (``uvicorn aegra_api.main:app``) serving Keel's graph, in a process of its own."""

    def __init__(self, python: str, settings: Settings, fake_url: str, tmp: Path) -> None:
        """Configure Aegra on ``settings``' database, the model at ``fake_url``, no auth."""
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        graph = f"{ROOT}/graphs/graph.py:graph"
        config = tmp / "aegra.json"
        config.write_text(json.dumps({"graphs": {a: graph for a in settings.agents}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "DATABASE"))}
        env |= {
            "KEEL_ENV": "test",
            "KEEL_LLM__PROVIDER": "openai",
            "KEEL_LLM__BASE_URL": fake_url,
            "KEEL_LLM__MODEL": "fake",
            "KEEL_LLM__API_KEY": "test",
            "AUTH_TYPE": "noop",
            "AEGRA_CONFIG": str(config),
            "DATABASE_URL": settings.database.url or "",
            "PYTHONPATH": str(ROOT),
        }
        self._cmd = [python, "-m", "uvicorn", "aegra_api.main:app", "--port", str(self.port)]
        self._env, self._log = env, tmp / "aegra.log"

    def __enter__(self) -> AegraServer:
        with self._log.open("w") as log:
            self._proc = subprocess.Popen(
                self._cmd, env=self._env, cwd=self._log.parent, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"Aegra did not start: {self._log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.wait(30)


@pytest.fixture(scope="module")
def keel(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Keel on a real socket and a fresh database, with bookings held for confirmation."""
    tmp = tmp_path_factory.mktemp("protocol")
    settings = make_settings(
        db_url, fake_llm.base_url, tmp, tools={"confirm": ["calendar.schedule_meeting"]}
    )
    server: LiveServer
    if aegra := os.environ.get("KEEL_CONFORMANCE_AEGRA"):
        server = AegraServer(aegra, settings, fake_llm.base_url, tmp)
    else:
        server = LiveServer(settings)
    with server:
        yield server
