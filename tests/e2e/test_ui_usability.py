"""The browser UI as people use it, in Chromium over a live API and the scripted model:
sign-in that cannot be misused (dev users one click, no empty or refused token), who is
signed in with their usage, threads named from their first question, searched, deleted and
made with one key press, Markdown answers sanitised, the run as a timeline of step states,
errors that say what to do, the trace page, keyboard use, the phone layout, and axe-core
finding no serious or critical violation on the main, replay and trace pages in both themes.

Screenshots (desktop 1280x900, phone 390 wide) go to the artifacts folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import PHONE, TIMEOUT_MS, axe
from tests.fakes.openai_server import FakeOpenAI

HOSTILE = (
    "Here is **bold**, a [link](https://example.org) and a list:\n\n- one\n- two\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>'
    "[click](javascript:window.__pwned=3)\n\n```python\ndef f():\n    return 'x'  # note\n```\n"
)


def _sign_in(page: Page, live: LiveServer, scopes: list[str] | None = None) -> None:
    page.goto("/")
    page.fill("#token", live.token("alice", "acme", scopes=scopes or [], tier="pro"))
    page.click("#signin button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-signed-in", "true")


def _script(fake: FakeOpenAI, answer: str, steps: int = 1) -> None:
    plan = {"steps": [{"description": f"Think {i + 1}", "tool": "none"} for i in range(steps)]}
    fake.script.extend([json.dumps(plan), *[f"Finding {i + 1}." for i in range(steps)], answer])


def _ask(page: Page, text: str) -> None:
    page.fill("#question", text)
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")


def _feed(page: Page, thread: str, events: list[dict[str, Any]]) -> None:
    """Events through the same path as any (the thread's cache), then a reload."""
    full = [
        {"v": 1, "seq": i + 1, "thread_id": thread, "run_id": "r1", "node": None, "ts": "",
         "trace_id": "ab" * 16, **e}
        for i, e in enumerate(events)
    ]  # fmt: skip
    page.evaluate(
        """([thread, events]) => {
          localStorage.setItem("keel.current", thread);
          localStorage.setItem("keel.thread." + thread, JSON.stringify(events));
        }""",
        [thread, full],
    )
    page.reload(wait_until="domcontentloaded")


def test_dev_user_is_one_click_and_shows_who_and_usage(
    page: Page, dev_live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    page.goto(dev_live.url)
    expect(page.locator("button.dev-user")).to_have_count(2)
    page.screenshot(path=artifacts / "sign-in.png")
    assert axe(page) == []
    page.click('button.dev-user[data-user="bob"]')
    expect(page.locator("body")).to_have_attribute("data-signed-in", "true")
    expect(page.locator("#who")).to_have_text("bob · default · free")
    expect(page.locator("#usage")).to_contain_text(re.compile(r"^0 / [\d,]+ tokens today"))
    _script(fake_llm, "Hello.")
    _ask(page, "Say hello")
    expect(page.locator("#usage")).not_to_contain_text(re.compile(r"^0 / "))
    page.click("#sign-out")
    expect(page.locator("body")).not_to_have_attribute("data-signed-in", "true")
    assert page.evaluate("localStorage.getItem('keel.token')") is None


def test_the_token_form_sends_no_empty_token_and_refuses_a_bad_one(
    page: Page, live: LiveServer
) -> None:
    page.goto("/")
    submit = page.locator("#signin button[type=submit]")
    expect(submit).to_be_disabled()
    page.fill("#token", "   ")
    expect(submit).to_be_disabled()
    page.press("#token", "Enter")
    expect(page.locator("body")).not_to_have_attribute("data-signed-in", "true")
    assert page.evaluate("localStorage.getItem('keel.token')") is None
    page.fill("#token", "not-a-token")
    submit.click()
    expect(page.locator("#signin-error")).to_contain_text("not accepted")
    expect(page.locator("body")).not_to_have_attribute("data-signed-in", "true")
    assert page.evaluate("localStorage.getItem('keel.token')") is None


def test_threads_are_named_searchable_deletable_and_new_with_one_key(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    _sign_in(page, live)
    _script(fake_llm, "Lisbon.")
    _ask(page, "What is the capital of Portugal?")
    threads = page.locator("#threads a")
    expect(threads).to_have_text(["What is the capital of Portugal?"])
    page.keyboard.press("Alt+n")  # a new thread, the question box focused
    expect(page.locator("#question")).to_be_focused()
    _script(fake_llm, "Madrid.")
    _ask(page, "And of Spain?")
    expect(threads).to_have_text(["And of Spain?", "What is the capital of Portugal?"])
    page.keyboard.press("Alt+ArrowDown")  # navigate to the older thread
    expect(page.locator("#threads a[aria-current]")).to_have_text(
        "What is the capital of Portugal?"
    )
    expect(page.locator(".question")).to_have_text("What is the capital of Portugal?")
    page.locator("#messages").click()
    page.keyboard.press("/")
    expect(page.locator("#thread-search")).to_be_focused()
    page.keyboard.type("spain")
    expect(threads).to_have_text(["And of Spain?"])
    page.fill("#thread-search", "")
    page.on("dialog", lambda d: d.accept())
    page.click('button[aria-label="Delete thread And of Spain?"]')
    expect(threads).to_have_text(["What is the capital of Portugal?"])
    assert [r["title"] for r in live.sql("SELECT title FROM threads WHERE user_id = 'alice'")] == [
        "What is the capital of Portugal?"
    ]


def test_markdown_is_rendered_and_sanitised_with_code_highlighted(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    _sign_in(page, live)
    _script(fake_llm, HOSTILE)
    _ask(page, "Show me markdown")
    answer = page.locator(".answer-text")
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("li")).to_have_text(["one", "two"])
    expect(answer.locator(".table-wrap table td")).to_have_text(["1", "2"])
    link = answer.locator('a[href="https://example.org"]')
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert answer.locator("script").count() == 0
    assert answer.locator("[onerror]").count() == 0
    assert answer.locator('a[href^="javascript"]').count() == 0
    expect(answer.locator("pre code .hljs-keyword").first).to_have_text("def")
    expect(answer.locator("pre code .hljs-comment")).to_have_text("# note")
    assert page.evaluate("window.__pwned") is None


def test_the_run_is_a_timeline_and_a_failure_says_what_to_do(
    page: Page, live: LiveServer, artifacts: Path
) -> None:
    _sign_in(page, live)
    tools = ["none", "github", "python_exec"]
    steps = [{"description": f"Step {n + 1}", "tool": t} for n, t in enumerate(tools)]
    long_result = {"repos": [{"name": f"r{i}", "stars": i} for i in range(40)]}
    _feed(
        page,
        "t-timeline",
        [
            {"type": "run_started", "data": {"agent": "research", "message": "Compare repos",
             "parent_checkpoint_id": None, "agent_variant": None, "variant_reason": None,
             "resumes_run_id": None}},
            {"type": "plan", "data": {"steps": steps}},
            {"type": "step_result", "data": {"index": 0, "description": "Step 1", "text": "ok"}},
            {"type": "tool_call", "data": {"call_id": "c1", "tool_name": "github.trending",
             "version": "2.0.0", "args": {"language": "python"}, "server": "github"}},
            {"type": "tool_result", "data": {"call_id": "c1", "tool_name": "github.trending",
             "result": long_result, "duration_ms": 42.4, "server": "github", "version": "2.0.0",
             "cached_at": None}},
            {"type": "warning", "data": {"code": "tool_degraded",
             "message": "Results are a day old", "tool_name": "github.trending"}},
            {"type": "step_result", "data": {"index": 1, "description": "Step 2", "text": "ok"}},
            {"type": "error",
             "data": {"code": "model_error", "message": "upstream 502 at 10.0.0.7"}},
            {"type": "run_finished", "data": {"status": "error", "duration_ms": 900,
             "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}},
        ],
    )  # fmt: skip
    states = page.locator(".card.plan li")
    expect(states).to_have_count(3)
    assert [li.get_attribute("data-state") for li in states.all()] == [
        "done",
        "degraded",
        "failed",
    ]
    tool = page.locator(".card.tool")
    expect(tool.locator(".label")).to_have_text("github.trending v2.0.0")
    expect(tool.locator(".tool-state")).to_have_text("done in 42 ms")
    result = tool.locator("details.result")
    expect(result.locator("summary")).to_have_text("result: 40 repos")
    assert result.get_attribute("open") is None  # collapsed
    expect(page.locator(".card.warning")).to_contain_text("Results are a day old")
    error = page.locator(".card.error[data-code=model_error]")
    expect(error.locator(".what")).to_have_text("The language model did not answer.")
    expect(error.locator("button[data-action=retry]")).to_be_visible()
    expect(error.locator(".trace-id")).to_have_text("ab" * 16)
    expect(error).not_to_contain_text("10.0.0.7")  # the server's message is not shown
    expect(page.locator(".card.finished a.trace")).to_have_attribute("href", f"/traces/{'ab' * 16}")
    page.screenshot(path=artifacts / "timeline.png", full_page=True)
    assert axe(page) == []


def test_trace_page_replay_keyboard_phone_and_axe(
    browser: Browser, page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    _sign_in(page, live)
    _script(fake_llm, "Two steps done: **fine**. [docs](https://example.org)", steps=2)
    _ask(page, "Do two things")
    assert [li.get_attribute("data-state") for li in page.locator(".card.plan li").all()] == [
        "done",
        "done",
    ]
    page.screenshot(path=artifacts / "desktop.png")
    assert axe(page) == []

    # Escape cancels a running run.
    fake_llm.delay_s = 0.05
    _script(fake_llm, " ".join(["slow"] * 200))
    page.fill("#question", "Talk for long")
    page.keyboard.press("Enter")
    expect(page.locator(".answer").last).to_contain_text("slow")
    page.keyboard.press("Escape")
    expect(page.locator("#status")).to_have_attribute("data-state", "cancelled")
    fake_llm.delay_s = 0.0

    page.click("#replay")
    expect(page.locator("#scrubber")).to_be_visible()
    assert axe(page) == []

    with page.expect_popup() as popup:
        page.locator(".card.finished a.trace").first.click()
    trace = popup.value
    expect(trace.locator(".trace-run")).to_have_count(1)
    expect(trace.locator(".span.run")).to_have_count(1)
    assert trace.locator(".span").count() >= 3
    trace.set_viewport_size({"width": 1280, "height": 900})
    trace.screenshot(path=artifacts / "trace.png", full_page=True)
    assert axe(trace) == []
    trace.emulate_media(color_scheme="dark")
    assert axe(trace) == []

    # The phone layout: nothing wider than the screen; dark theme where the system is dark.
    phone = browser.new_context(
        base_url=live.url, viewport=PHONE, color_scheme="dark", is_mobile=True, has_touch=True
    )
    p = phone.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    try:
        token = page.evaluate("localStorage.getItem('keel.token')")
        p.goto("/")
        p.evaluate("(t) => localStorage.setItem('keel.token', t)", token)
        p.goto("/")
        p.locator("#threads a", has_text="Do two things").click()
        expect(p.locator(".card.finished").first).to_be_visible()
        p.screenshot(path=artifacts / "phone.png")  # the screen as seen, composer at its foot
        assert p.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        bg = p.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert bg == "rgb(20, 23, 28)"  # the dark theme
        assert axe(p) == []
    finally:
        phone.close()
