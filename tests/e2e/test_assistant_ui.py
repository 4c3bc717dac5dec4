"""assistant-ui's LangGraph runtime pointed at Keel, in Chromium.

``tests/conformance/assistant-ui/`` is a chat built from npm as assistant-ui documents it: a
Thread, a Composer and ``useLangGraphRuntime`` (``@assistant-ui/react-langgraph``) whose
stream/create/load callbacks go through the official JS client (``@langchain/langgraph-sdk``),
all pinned by its package-lock.json. It is bundled with esbuild and served from its own
origin, which Keel allows (``server.cors_origins``). A question streams its tokens into the
thread; a booking held for confirmation comes to the page as a LangGraph interrupt, and
Approve resumes the run (``Command(resume=True)``) to its final answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer, tool_invocations
from tests.e2e.test_agent_chat import ask, bundled_site, keel_allowing, opened_chat
from tests.fakes.openai_server import FakeOpenAI

PAGE = Path(__file__).parents[1] / "conformance" / "assistant-ui"
ANSWER = '.msg[data-role="assistant"]'
# Every text the last assistant message shows, as the page paints it.
PAINTED = f"""
window.__painted = [];
new MutationObserver(() => {{
  const ai = [...document.querySelectorAll('{ANSWER}')].at(-1);
  if (ai && window.__painted.at(-1) !== ai.textContent) window.__painted.push(ai.textContent);
}}).observe(document, {{subtree: true, childList: true, characterData: true}});
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with bundled_site(PAGE, "chat.jsx", tmp_path_factory.mktemp("assistant-ui")) as url:
        yield url


@pytest.fixture(scope="module")
def keel_for_page(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, site: str
) -> Iterator[LiveServer]:
    with keel_allowing(site, db_url, fake_llm, tmp_path_factory.mktemp("keel-aui")) as keel:
        yield keel


@pytest.fixture
def chat(keel_for_page: LiveServer, site: str) -> Iterator[Page]:
    with opened_chat(site, keel_for_page, "erin", PAINTED) as page:
        yield page


def _thread(page: Page) -> list[tuple[str, str]]:
    """The messages the thread shows once its run has ended: (role, text), in order."""
    shown: list[list[str]] = page.locator(".msg").evaluate_all(
        "ms => ms.map(m => [m.dataset.role, m.textContent])"
    )
    return [(role, text) for role, text in shown]


def test_a_question_streams_its_tokens_into_the_thread(chat: Page, fake_llm: FakeOpenAI) -> None:
    answer = " ".join(f"token{i}" for i in range(20))
    fake_llm.delay_s = 0.05
    fake_llm.script.extend(
        [json.dumps({"steps": [{"description": "Think", "tool": "none"}]}), "A fact.", answer]
    )
    ask(chat, "What is the answer?")
    expect(chat.locator(ANSWER)).to_have_text([answer])
    expect(chat.locator("#running")).to_have_count(0)
    assert _thread(chat) == [("user", "What is the answer?"), ("assistant", answer)]
    painted: list[str] = chat.evaluate("window.__painted")
    partial = [t for t in painted if t and t != answer]
    assert len(partial) >= 5, painted  # the answer grew token by token, not all at once
    assert all(answer.startswith(t) for t in partial), painted


def test_a_held_booking_shows_and_approve_resumes_it(
    chat: Page, keel_for_page: LiveServer, fake_llm: FakeOpenAI
) -> None:
    def booked() -> int:
        calls = tool_invocations(keel_for_page.settings.data_dir, "calendar-v1")
        return sum(r["tool"] == "schedule_meeting" for r in calls)

    before = booked()
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Schedule aui sync", "tool": "calendar"}]}),
            json.dumps({"title": "aui sync", "starts_at": "2026-12-01T09:00:00+00:00"}),
            "Booked.",
            "Your meeting is booked.",
        ]
    )
    ask(chat, "Book aui sync on Dec 1 at 9")
    expect(chat.locator("#held-tool")).to_have_text("calendar.schedule_meeting")
    expect(chat.locator("#running")).to_have_count(0)
    assert booked() == before
    chat.click("#approve")
    expect(chat.locator(ANSWER)).to_have_text(["Your meeting is booked."])
    expect(chat.locator("#running")).to_have_count(0)
    expect(chat.locator("#interrupt")).to_have_count(0)
    assert _thread(chat) == [
        ("user", "Book aui sync on Dec 1 at 9"),
        ("assistant", "Your meeting is booked."),
    ]
    assert booked() == before + 1
