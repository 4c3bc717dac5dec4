"""Agent Chat UI itself (langchain-ai/agent-chat-ui, Next.js) pointed at Keel, in Chromium.

Opt-in: Agent Chat UI is an app, not an npm package, so it is built outside the checkout and
named by ``KEEL_AGENT_CHAT_UI`` (its folder, after ``npm install`` and ``next build``; offline,
its Google font import must be dropped from ``src/app/layout.tsx``). The test starts
``next start`` there, lets Keel allow its origin (``server.cors_origins``), puts a Keel token
where the app keeps its API key, and asks through the app's own form.
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
from playwright.sync_api import Page, expect, sync_playwright

from core.db import free_port
from tests.conformance.conftest import WRITE
from tests.conftest import LiveServer, make_settings, tool_invocations
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.fakes.openai_server import FakeOpenAI

APP = os.environ.get("KEEL_AGENT_CHAT_UI")
pytestmark = pytest.mark.skipif(not APP, reason="KEEL_AGENT_CHAT_UI names no built Agent Chat UI")
# How many of the answer's words the page shows, each time it changes.
WORDS_SEEN = """
window.__words = [];
new MutationObserver(() => {
  if (!document.body) return;
  const n = (document.body.innerText.match(/\\bword\\d+\\b/g) || []).length;
  if (window.__words.at(-1) !== n) window.__words.push(n);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """Agent Chat UI served by ``next start`` on a port of its own."""
    assert APP is not None
    url = f"http://127.0.0.1:{free_port()}"
    cmd = ["node_modules/.bin/next", "start", "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]]
    proc = subprocess.Popen(cmd, cwd=Path(APP), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def keel_for_ui(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, app_url: str
) -> Iterator[LiveServer]:
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path_factory.mktemp("keel-acu"),
        server={"cors_origins": [app_url]},
        tools={"confirm": ["calendar.schedule_meeting"]},
    )
    with LiveServer(settings) as server:
        yield server


@pytest.fixture
def chat(keel_for_ui: LiveServer, app_url: str) -> Iterator[Page]:
    """A fresh thread in Agent Chat UI, signed in with a Keel token as its API key."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        token = keel_for_ui.token("dana", "acme", scopes=WRITE)
        page.add_init_script(f"localStorage.setItem('lg:chat:apiKey', {json.dumps(token)});")
        page.add_init_script(WORDS_SEEN)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{app_url}/?apiUrl={keel_for_ui.url}&assistantId=research")
        yield page
        browser.close()
        assert not errors, errors


def _ask(page: Page, question: str) -> None:
    page.fill('textarea[placeholder="Type your message..."]', question)
    page.get_by_role("button", name="Send").click()


def test_agent_chat_ui_streams_an_answer(chat: Page, fake_llm: FakeOpenAI) -> None:
    answer = " ".join(f"word{i}" for i in range(30))
    fake_llm.delay_s = 0.05
    fake_llm.script.extend(
        [json.dumps({"steps": [{"description": "Think", "tool": "none"}]}), "A fact.", answer]
    )
    _ask(chat, "What is the answer?")
    expect(chat.get_by_text(answer)).to_be_visible()
    seen: list[int] = chat.evaluate("window.__words")
    assert len([n for n in seen if 0 < n < 30]) >= 5, seen  # it grew as the tokens came


def test_agent_chat_ui_shows_a_held_booking_and_approve_books_it(
    chat: Page, keel_for_ui: LiveServer, fake_llm: FakeOpenAI
) -> None:
    def booked() -> int:
        calls = tool_invocations(keel_for_ui.settings.data_dir, "calendar-v1")
        return sum(r["tool"] == "schedule_meeting" for r in calls)

    before = booked()
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Schedule acu sync", "tool": "calendar"}]}),
            json.dumps({"title": "acu sync", "starts_at": "2026-12-01T09:00:00+00:00"}),
            "Booked.",
            "Your meeting is booked.",
        ]
    )
    _ask(chat, "Book acu sync on Dec 1 at 9")
    approve = chat.get_by_role("button", name="Approve")
    expect(approve).to_be_visible()
    expect(chat.get_by_text("calendar.schedule_meeting").first).to_be_visible()
    assert booked() == before
    approve.click()
    expect(chat.get_by_text("Your meeting is booked.")).to_be_visible()
    assert booked() == before + 1
