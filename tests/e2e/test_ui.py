"""The browser UI end to end: the built app (web/dist) served by a live API, driven in Debian's
Chromium (/usr/bin/chromium) by Python Playwright, over the scripted model.

Screenshots of the main states go to ``$KEEL_ARTIFACTS`` (default: a ``keel-e2e`` folder in
the system temp dir), never into the checkout; so does ``paint.json``, the arrival-to-paint
times of text deltas measured in the page with the Performance API.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import LiveServer, make_settings
from tests.e2e.conftest import TIMEOUT_MS, TRAIL_SCRIPT
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_tool_runs import CHART_CODE


def _sign_in(page: Page, live: LiveServer, scopes: list[str]) -> None:
    page.goto("/")
    page.fill("#token", live.token("alice", "acme", scopes=scopes))
    page.click("#signin button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-signed-in", "true")


def _ask(page: Page, text: str) -> None:
    page.fill("#question", text)
    page.click("#send")


def _plan(tool: str, description: str) -> str:
    return json.dumps({"steps": [{"description": description, "tool": tool}]})


def _chart_script(fake: FakeOpenAI) -> None:
    fake.script.extend(
        [
            _plan("python_exec", "Plot squares of 1..5"),
            json.dumps({"code": CHART_CODE}),
            "The chart shows squares.",
            "Here is the chart of the **squares**.",
        ]
    )


def _trail(page: Page) -> list[str]:
    states: list[str] = page.evaluate("window.__trail")
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def _in_order(trail: list[str], wanted: list[str]) -> bool:
    it = iter(trail)
    return all(state in it for state in wanted)


def test_a_chart_request_passes_through_the_phases_and_renders_an_image_and_a_table(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    _chart_script(fake_llm)
    _sign_in(page, live, ["exec:code"])
    _ask(page, "Plot the squares of 1 to 5")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    trail = _trail(page)
    assert _in_order(trail, ["planning", "calling_tool", "summarizing", "done"]), trail
    assert "error" not in trail
    image = page.locator(".card.image img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) > 0
    table = page.locator(".card.table table")
    assert table.locator("th").all_inner_texts() == ["n", "square"]
    assert table.locator("tbody tr").count() == 5
    table.locator("th", has_text="square").click()
    table.locator("th", has_text="square").click()  # twice: descending
    assert table.locator("tbody tr td:first-child").all_inner_texts() == ["5", "4", "3", "2", "1"]
    expect(page.locator(".card.tool .label")).to_contain_text("python_exec")
    expect(page.locator(".card.tool .tool-state.done")).to_contain_text(" ms")
    expect(page.locator(".answer strong")).to_have_text("squares")
    page.screenshot(path=artifacts / "chart-done.png", full_page=True)


def test_reload_mid_run_shows_the_cache_at_once_then_the_rest_without_duplicates(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    words = [f"word{i}" for i in range(60)]
    answer = " ".join(words)
    fake_llm.script.extend([_plan("none", "Think"), "A finding.", answer])
    fake_llm.delay_s = 0.05  # per streamed word: a 3 s answer
    _sign_in(page, live, [])
    _ask(page, "Count to sixty")
    expect(page.locator(".answer")).to_contain_text("word10")
    page.screenshot(path=artifacts / "mid-run.png", full_page=True)
    page.reload(wait_until="domcontentloaded")
    # At once, from the browser's cache, before the stream has resumed.
    expect(page.locator(".question")).to_have_text("Count to sixty", timeout=2_000)
    cached_up_to = int(page.locator("#messages").get_attribute("data-cached-up-to") or 0)
    assert cached_up_to > 0
    page.screenshot(path=artifacts / "after-reload.png", full_page=True)
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    text = page.locator(".answer").get_attribute("data-raw") or ""
    assert text.split() == words  # every word once, in order
    assert page.locator(".question").count() == 1
    assert page.locator(".card.finished").count() == 1
    assert page.locator(".card.plan").count() == 1
    paint = page.evaluate("performance.getEntriesByName('keel:text-paint').map((m) => m.duration)")
    assert paint, "no arrival-to-paint measure was taken"
    record: dict[str, Any] = {
        "n": len(paint),
        "p50_ms": round(statistics.median(paint), 2),
        "p95_ms": round(sorted(paint)[int(0.95 * (len(paint) - 1))], 2),
    }
    (artifacts / "paint.json").write_text(json.dumps(record))
    print(f"text_delta arrival to paint: {record}")


def test_cancel_stops_the_run(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    fake_llm.script.extend([_plan("none", "Think"), "A finding.", " ".join(["slow"] * 200)])
    fake_llm.delay_s = 0.05
    _sign_in(page, live, [])
    _ask(page, "Talk for a long time")
    expect(page.locator(".answer")).to_contain_text("slow")
    expect(page.locator("#cancel")).to_be_enabled()
    page.click("#cancel")
    expect(page.locator("#status")).to_have_attribute("data-state", "cancelled")
    expect(page.locator(".card.finished")).to_contain_text("cancelled")
    expect(page.locator("#send")).to_be_enabled()
    page.screenshot(path=artifacts / "cancelled.png", full_page=True)
    words = len((page.locator(".answer").get_attribute("data-raw") or "").split())
    assert 0 < words < 200


def test_thumbs_down_with_a_reason_and_a_copy_are_stored(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    fake_llm.script.extend([_plan("none", "Think"), "A finding.", "Paris is in Spain."])
    _sign_in(page, live, [])
    _ask(page, "Where is Paris?")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    run_id = page.locator(".run").get_attribute("data-run")
    page.click(".answer .copy")
    page.click(".thumbs-down")
    page.select_option(".reasons select", "factually incorrect")
    page.fill(".reasons input", "Paris is in France")
    page.screenshot(path=artifacts / "feedback.png", full_page=True)
    page.click(".reasons button[type=submit]")
    expect(page.locator(".thanks")).to_be_visible()
    rows = live.sql(
        "SELECT rating, reason, comment, user_id FROM feedback WHERE run_id = %s", run_id
    )
    assert rows == [
        {
            "rating": "thumbs_down",
            "reason": "factually incorrect",
            "comment": "Paris is in France",
            "user_id": "alice",
        }
    ]
    signals = live.sql("SELECT kind FROM signals WHERE run_id = %s", run_id)
    assert [s["kind"] for s in signals] == ["copy"]


def test_replay_scrubber_plays_the_thread_back(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    fake_llm.script.extend([_plan("none", "Think"), "A finding.", "one two three"])
    _sign_in(page, live, [])
    _ask(page, "Say three words")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    page.click("#replay")
    scrubber = page.locator("#scrubber")
    expect(scrubber).to_be_visible()
    total = int(scrubber.get_attribute("max") or 0)
    assert total > 5
    scrubber.fill("1")  # only run_started
    expect(page.locator("#scrub-pos")).to_have_text(f"1 / {total}")
    assert page.locator(".question").count() == 1
    assert page.locator(".answer").count() == 0
    scrubber.fill(str(total))
    expect(page.locator(".answer")).to_contain_text("one two three")
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    page.screenshot(path=artifacts / "replay.png", full_page=True)


def test_an_unknown_event_type_falls_back_to_the_generic_renderer(
    page: Page, live: LiveServer
) -> None:
    _sign_in(page, live, [])
    # A future event type, fed through the same path as every event (the thread's cache).
    page.evaluate(
        """() => {
          localStorage.setItem("keel.current", "t-unknown");
          localStorage.setItem("keel.thread.t-unknown", JSON.stringify([
            {v: 1, seq: 1, thread_id: "t-unknown", run_id: "r1", trace_id: "0", ts: "",
             node: null, type: "hologram", data: {depth: 3}}
          ]));
        }"""
    )
    page.reload(wait_until="domcontentloaded")
    generic = page.locator(".card.generic")
    expect(generic).to_contain_text("hologram")
    expect(page.locator("#status")).to_have_attribute("data-state", "idle")


# Strings holding comment marks and quotes, comments holding quotes: what regexes garbled.
TRICKY_CODE = (
    'url = "https://x.test/#frag"  # a "quoted" word\n'
    "s = 'it''s' if x < 3 and y > 2 else \"#\"\n"
    "def f(a):\n    return a  # done\n"
)


def test_code_blocks_keep_their_text_and_tokenize_strings_and_comments(
    page: Page, live: LiveServer
) -> None:
    _sign_in(page, live, [])
    event = {
        "v": 1,
        "seq": 1,
        "thread_id": "t-code",
        "run_id": "r1",
        "trace_id": "0",
        "ts": "",
        "node": "researcher",
        "type": "code_block",
        "data": {"language": "python", "code": TRICKY_CODE},
    }
    page.evaluate(
        """(event) => {
          localStorage.setItem("keel.current", "t-code");
          localStorage.setItem("keel.thread.t-code", JSON.stringify([event]));
        }""",
        event,
    )
    page.reload(wait_until="domcontentloaded")
    code = page.locator(".card.code pre code")
    expect(code).to_have_count(1)
    assert code.text_content() == TRICKY_CODE
    strings = code.locator(".hljs-string").all_text_contents()
    comments = code.locator(".hljs-comment").all_text_contents()
    assert '"https://x.test/#frag"' in strings and '"#"' in strings
    assert comments == ['# a "quoted" word', "# done"]
    assert "def" in code.locator(".hljs-keyword").all_text_contents()


def test_dev_sign_in_only_in_dev(live: LiveServer, dev_live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/v1/dev/users").status_code == 404
    r = httpx.post(f"{live.url}/v1/dev/token", json={"user": "alice"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    users = httpx.get(f"{dev_live.url}/v1/dev/users").json()
    assert {u["user"] for u in users} == {"alice", "bob"}
    token = httpx.post(f"{dev_live.url}/v1/dev/token", json={"user": "bob"}).json()["token"]
    me = httpx.get(f"{dev_live.url}/v1/usage", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["tier"] == "free"


@pytest.fixture(scope="module")
def confirm_live(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = make_settings(
        db_url,
        fake_llm.base_url,
        tmp_path_factory.mktemp("keel-confirm"),
        tools={"confirm": ["calendar.schedule_meeting"]},
    )
    with LiveServer(settings) as server:
        yield server


def test_approving_a_held_booking_resumes_the_run_and_books_once(
    browser: Browser, confirm_live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path
) -> None:
    title = "e2e approve"
    fake_llm.script.extend(
        [
            _plan("calendar", f"Schedule a meeting {title}"),
            json.dumps({"title": title, "starts_at": "2026-12-02T10:00:00+00:00"}),
            "Booked for Dec 2.",
            "Your meeting is booked.",
        ]
    )
    context = browser.new_context(base_url=confirm_live.url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.add_init_script(TRAIL_SCRIPT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        _sign_in(page, confirm_live, ["read:calendar", "write:calendar"])
        _ask(page, f"Book {title} on Dec 2 at 10")
        status = page.locator("#status")
        expect(status).to_have_attribute("data-state", "awaiting_confirmation")
        expect(status).to_contain_text("calendar.schedule_meeting")
        held = page.locator(".card.confirm")
        expect(held).to_contain_text("calendar.schedule_meeting v1.0.0 needs your confirmation")
        expect(held.locator(".args")).to_contain_text(title)
        expect(page.locator("#send")).to_be_enabled()  # the interrupted run is over
        page.screenshot(path=str(artifacts / "confirmation.png"))
        held.locator("button.confirm-approve").click()
        expect(status).to_have_attribute("data-state", "done")
        expect(held).to_have_attribute("data-decision", "approved")
        expect(held.locator(".confirm-verdict")).to_have_text("approved by alice")
        expect(held.locator("button")).to_have_count(0)
        expect(page.locator(".card.tool .tool-state.done")).to_have_count(1)
        expect(page.locator(".answer-text")).to_contain_text("Your meeting is booked.")
        trail = _trail(page)
        assert _in_order(
            trail, ["planning", "calling_tool", "awaiting_confirmation", "calling_tool", "done"]
        ), trail
        rows = confirm_live.sql(
            "SELECT count(*) AS n FROM tool_calendar_events WHERE title = %s", title
        )
        assert rows == [{"n": 1}]
    finally:
        context.close()
    assert not errors, f"the page raised: {errors}"
