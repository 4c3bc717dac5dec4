"""Documents in the browser UI, in Chromium over a live API and the scripted model: a real PDF
uploaded with the button and a Markdown file dropped on the panel, both indexed (the list polls
their status), an answer citing the PDF's page whose citation link shows the search's excerpt
and opens the document at that page, and delete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import axe
from tests.fakes.openai_server import FakeOpenAI
from tests.pdfs import pdf

DOCS = ["read:documents", "write:documents"]
BENEFITS = ["Staff handbook", "Leave\nStaff get 28 days of paid vacation a year."]
ANSWER = (
    "You get **28 days** of paid vacation a year [benefits.pdf p.2].\n\n"
    "| kind | days |\n|---|---|\n| vacation | 28 |\n"
)


def _sign_in(page: Page, live: LiveServer) -> None:
    page.goto("/")
    page.fill("#token", live.token("alice", "acme", scopes=DOCS, tier="pro"))
    page.click("#signin button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-signed-in", "true")


def _drop(page: Page, name: str, text: str) -> None:
    """Drop a file on the documents panel, as a person dragging it from their desktop does."""
    page.evaluate(
        """([name, text]) => {
          const dt = new DataTransfer();
          dt.items.add(new File([text], name, {type: "text/markdown"}));
          const zone = document.querySelector("#documents");
          const init = {dataTransfer: dt, bubbles: true, cancelable: true};
          zone.dispatchEvent(new DragEvent("dragover", init));
          zone.dispatchEvent(new DragEvent("drop", init));
        }""",
        [name, text],
    )


def test_upload_a_pdf_ask_and_open_the_cited_page_then_delete(
    page: Page, live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path, tmp_path: Path
) -> None:
    _sign_in(page, live)
    file = tmp_path / "benefits.pdf"
    file.write_bytes(pdf(BENEFITS))
    page.set_input_files("#doc-file", str(file))
    row = page.locator("#doc-list .doc", has_text="benefits.pdf")
    expect(row).to_have_attribute("data-status", "ready")  # polled from indexing
    expect(row.locator(".doc-status")).to_contain_text("2 p.")
    _drop(page, "travel.md", "# Travel\n\nTrains are preferred for trips under five hours.\n")
    expect(page.locator("#doc-list .doc", has_text="travel.md")).to_have_attribute(
        "data-status", "ready"
    )
    expect(page.locator("#doc-usage")).to_contain_text("2 of")

    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Paid vacation days", "tool": "documents"}]}),
            "The handbook says 28 days [benefits.pdf p.2].",
            ANSWER,
        ]
    )
    page.fill("#question", "How many vacation days do I get?")
    page.keyboard.press("Enter")  # Enter sends
    expect(page.locator("#status")).to_have_attribute("data-state", "done")
    expect(page.locator(".card.tool .label")).to_contain_text("search_documents v2.0.0")
    expect(page.locator(".card.tool details.result summary")).to_contain_text("hits")
    expect(page.locator(".answer-text table td").first).to_have_text("vacation")
    cite = page.locator(".answer-text a.citation")
    expect(cite).to_have_text("[benefits.pdf p.2]")
    page.screenshot(path=artifacts / "documents-answer.png", full_page=True)
    assert axe(page) == []

    cite.click()
    dialog = page.locator("#citation")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#citation-title")).to_have_text("benefits.pdf, page 2")
    expect(dialog.locator("#citation-excerpt")).to_contain_text("28 days of paid vacation")
    opener = dialog.locator("#citation-open")
    expect(opener).to_have_attribute("href", re.compile(r"^blob:.*#page=2$"))
    expect(opener).to_have_text("Open benefits.pdf at page 2")
    head = page.evaluate(
        "async (url) => (await (await fetch(url.split('#')[0])).text()).slice(0, 5)",
        opener.get_attribute("href"),
    )
    assert head == "%PDF-"
    page.screenshot(path=artifacts / "citation.png")
    page.click("#citation-close")

    page.on("dialog", lambda d: d.accept())
    page.click('button[aria-label="Delete benefits.pdf"]')
    expect(page.locator("#doc-list .doc", has_text="benefits.pdf")).to_have_count(0)
    assert live.sql("SELECT name FROM documents WHERE tenant = 'acme'") == [{"name": "travel.md"}]


def test_an_upload_the_server_refuses_says_why(
    page: Page, live: LiveServer, tmp_path: Path
) -> None:
    _sign_in(page, live)
    file = tmp_path / "notes.exe"
    file.write_bytes(b"MZ not a document")
    page.set_input_files("#doc-file", str(file))
    error = page.locator("#messages .card.error")
    expect(error).to_be_visible()
    expect(error.locator(".what")).not_to_be_empty()
    expect(page.locator("#doc-list .doc", has_text="notes.exe")).to_have_count(0)
