"""Lighthouse (web/lighthouse, pinned) on the signed-in page after a finished run, in Debian's
Chromium with no network: accessibility ≥ 95, best practices ≥ 95, performance ≥ 90 (desktop
preset). Playwright signs in and runs a question in Chromium's default profile; Lighthouse
then audits the page in the same browser (over its debugging port) without clearing storage,
so the audited page is the signed-in one. ``make lighthouse`` runs this test alone; the report
goes to the artifacts folder as lighthouse.json.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import LiveServer
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, TIMEOUT_MS
from tests.fakes.openai_server import FakeOpenAI

LIGHTHOUSE = Path(__file__).parents[2] / "web/lighthouse/node_modules/lighthouse/cli/index.js"
GOALS = {"accessibility": 0.95, "best-practices": 0.95, "performance": 0.90}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_lighthouse_on_the_signed_in_page_after_a_run(
    live: LiveServer, fake_llm: FakeOpenAI, artifacts: Path, tmp_path: Path
) -> None:
    if not LIGHTHOUSE.is_file():
        pytest.fail("Lighthouse is missing: `make lighthouse` installs it (web/lighthouse)")
    port = _free_port()
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Think", "tool": "none"}]}),
            "A finding.",
            "The answer, with a [link](https://example.org) and a list:\n\n- one\n- two\n",
        ]
    )
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--remote-debugging-port={port}"],
            viewport=DESKTOP,
        )
        try:
            page = ctx.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(live.url)
            page.fill("#token", live.token("alice", "acme", scopes=[], tier="pro"))
            page.click("#signin button[type=submit]")
            page.fill("#question", "Tell me something")
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_have_attribute("data-state", "done")
            report = artifacts / "lighthouse.json"
            subprocess.run(
                ["node", str(LIGHTHOUSE), f"{live.url}/", f"--port={port}",
                 "--disable-storage-reset", "--preset=desktop", "--quiet",
                 "--only-categories=performance,accessibility,best-practices",
                 "--output=json", f"--output-path={report}"],
                check=True,
                timeout=300,
            )  # fmt: skip
        finally:
            ctx.close()
    result = json.loads(report.read_text())
    scores = {k: result["categories"][k]["score"] for k in GOALS}
    failed = {
        a["id"]: a.get("displayValue", a["score"])
        for a in result["audits"].values()
        if a.get("score") is not None and a["score"] < 0.9
    }
    print(f"lighthouse scores: {scores}; audits below 0.9: {failed}")
    assert all(scores[k] >= goal for k, goal in GOALS.items()), (scores, failed)
