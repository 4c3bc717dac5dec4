"""The server the Agent Protocol conformance suites drive: Keel with bookings held.

With ``KEEL_CONFORMANCE_AEGRA`` set to the Python of a venv holding ``aegra-api`` (and Keel,
for its graph; `make aegra` builds one, ``.venv-aegra/bin/python``), the same suites drive
Aegra instead, an open Agent Protocol server, serving Keel's graph on the same scripted model
and Postgres (``bench.servers.aegra_launch`` starts it, as for ``keel bench``): the comparison
in docs/agent-protocol.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import Proc, aegra_launch
from core.db import free_port
from core.settings import Settings
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
        self._args, self._env = aegra_launch(
            python, list(settings.agents), settings.database.url or "", fake_url, self.port, tmp
        )
        self._work = tmp

    def __enter__(self) -> AegraServer:
        self._proc = Proc("aegra", self._args, self.url, "/health", env=self._env, cwd=self._work)
        self._proc.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.stop()


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
