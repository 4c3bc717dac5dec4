"""A LangGraph chat UI pointed at Keel, in Chromium: the official React hook (``useStream`` from
``@langchain/langgraph-sdk``, what Agent Chat UI is built on) served from another origin.

``tests/conformance/js/chat/`` is bundled with esbuild into a temp dir and served by a static
server on its own port; Keel allows that origin (``server.cors_origins``). A question streams
its tokens into the page; a held booking shows as an interrupt, and Approve resumes it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core.db import free_port
from tests.conformance.conftest import WRITE
from tests.conftest import LiveServer, make_settings, tool_invocations
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.fakes.openai_server import FakeOpenAI

JS = Path(__file__).parents[1] / "conformance" / "js"
# Every text the AI message shows, as the page paints it.
PAINTED = """
window.__painted = [];
new MutationObserver(() => {
  const ai = [...document.querySelectorAll('.msg[data-type="ai"]')].at(-1);
  if (ai && window.__painted.at(-1) !== ai.textContent) window.__painted.push(ai.textContent);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on the test's output."""


@contextlib.contextmanager
def bundled_site(package: Path, entry: str, site: Path) -> Iterator[str]:
    """``package``'s page ``entry`` bundled by its pinned esbuild into ``site``, served there.

    The page is ``entry`` with ``index.html`` beside it; the URL of ``site`` is yielded.
    """
    esbuild = package / "node_modules" / ".bin" / "esbuild"
    assert esbuild.is_file(), f"run `make test` (or `npm ci` in {package})"
    (site / "index.html").write_text((package / entry).with_name("index.html").read_text())
    subprocess.run(
        [
            str(esbuild),
            entry,
            "--bundle",
            "--format=esm",
            "--jsx=automatic",
            "--define:process.env.NODE_ENV='production'",
            f"--outfile={site / 'chat.js'}",
            "--log-level=warning",
        ],
        cwd=package,
        check=True,
        timeout=120,
    )
    handler = functools.partial(_QuietFiles, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def chat_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chat bundled into a temp dir, served on its own origin."""
    with bundled_site(JS, "chat/chat.jsx", tmp_path_factory.mktemp("chat")) as url:
        yield url


def keel_allowing(origin: str, db_url: str, fake_llm: FakeOpenAI, tmp: Path) -> LiveServer:
    """Keel allowing a page's ``origin`` (CORS), with bookings held for confirmation."""
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp,
        server={"cors_origins": [origin]},
        tools={"confirm": ["calendar.schedule_meeting"]},
    )
    return LiveServer(settings)


@pytest.fixture(scope="module")
def keel_for_chat(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, chat_site: str
) -> Iterator[LiveServer]:
    """Keel allowing the chat's origin, with bookings held for confirmation."""
    with keel_allowing(chat_site, db_url, fake_llm, tmp_path_factory.mktemp("keel-chat")) as keel:
        yield keel


@contextlib.contextmanager
def opened_chat(site: str, keel: LiveServer, user: str, painted: str) -> Iterator[Page]:
    """A chat page of ``site`` in Chromium, signed in to ``keel`` as ``user``, watched by
    ``painted``; the page must raise no error."""
    assert Path(CHROMIUM).is_file(), "Chromium is missing: `make chromium` installs it"
    with sync_playwright() as pw:
        browser: Browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.add_init_script(painted)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        key = keel.token(user, "acme", scopes=WRITE)
        page.goto(f"{site}/index.html?{urlencode({'api': keel.url, 'key': key})}")
        yield page
        browser.close()
        assert not errors, f"the page raised: {errors}"


@pytest.fixture
def chat(keel_for_chat: LiveServer, chat_site: str) -> Iterator[Page]:
    with opened_chat(chat_site, keel_for_chat, "carol", PAINTED) as page:
        yield page


def ask(page: Page, question: str) -> None:
    """Type ``question`` into a chat page's form and send it."""
    page.fill("#question", question)
    page.click("#send")


def test_a_question_streams_its_tokens_into_the_chat(chat: Page, fake_llm: FakeOpenAI) -> None:
    answer = " ".join(f"token{i}" for i in range(20))
    fake_llm.delay_s = 0.05
    fake_llm.script.extend(
        [json.dumps({"steps": [{"description": "Think", "tool": "none"}]}), "A fact.", answer]
    )
    ask(chat, "What is the answer?")
    expect(chat.locator('.msg[data-type="human"]')).to_have_text(["What is the answer?"])
    expect(chat.locator('.msg[data-type="ai"]')).to_have_text([answer])
    expect(chat.locator("#state")).to_have_attribute("data-loading", "false")
    painted: list[str] = chat.evaluate("window.__painted")
    partial = [t for t in painted if t and t != answer]
    assert len(partial) >= 5, painted  # the answer grew token by token, not all at once
    assert all(answer.startswith(t) for t in partial), painted
    expect(chat.locator("#error")).to_have_count(0)


def test_a_held_booking_shows_as_an_interrupt_and_approve_resumes_it(
    chat: Page, keel_for_chat: LiveServer, fake_llm: FakeOpenAI
) -> None:
    calls = tool_invocations(keel_for_chat.settings.data_dir, "calendar-v1")
    before = sum(r["tool"] == "schedule_meeting" for r in calls)
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Schedule ui sync", "tool": "calendar"}]}),
            json.dumps({"title": "ui sync", "starts_at": "2026-12-01T09:00:00+00:00"}),
            "Booked.",
            "Your meeting is booked.",
        ]
    )
    ask(chat, "Book ui sync on Dec 1 at 9")
    expect(chat.locator("#held-tool")).to_have_text("calendar.schedule_meeting")
    calls = tool_invocations(keel_for_chat.settings.data_dir, "calendar-v1")
    assert sum(r["tool"] == "schedule_meeting" for r in calls) == before
    chat.click("#approve")
    expect(chat.locator('.msg[data-type="ai"]')).to_have_text(["Your meeting is booked."])
    expect(chat.locator("#interrupt")).to_have_count(0)
    calls = tool_invocations(keel_for_chat.settings.data_dir, "calendar-v1")
    assert sum(r["tool"] == "schedule_meeting" for r in calls) == before + 1
