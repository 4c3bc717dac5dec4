"""The server the Agent Protocol conformance suites drive: Keel with bookings held."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI

# The scopes the suites' users hold: bookings (held for confirmation) and long-term memory.
WRITE = ["read:calendar", "write:calendar", "memory:long_term"]


@pytest.fixture(scope="module")
def keel(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Keel on a real socket and a fresh database, with bookings held for confirmation."""
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path_factory.mktemp("protocol"),
        tools={"confirm": ["calendar.schedule_meeting"]},
    )
    with LiveServer(settings) as server:
        yield server
