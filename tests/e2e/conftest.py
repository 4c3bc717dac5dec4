"""Chromium for the end-to-end UI tests: Debian's /usr/bin/chromium driven by Python Playwright.

Screenshots go to ``$KEEL_ARTIFACTS`` (default: a ``keel-e2e`` folder in the system temp dir),
never into the checkout. ``axe`` runs axe-core (web/node_modules, pinned in web/package.json) in
a page and returns its serious and critical violations.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.routes.ui import DIST
from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI

AXE = DIST.parent / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Records every state the status line shows, from the first script on, before the app runs.
TRAIL_SCRIPT = """
window.__trail = [];
new MutationObserver((changes) => {
  for (const c of changes) {
    if (c.target.id === "status") window.__trail.push(c.target.dataset.state);
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state"]});
"""
TIMEOUT_MS = 90_000  # waits, not goals: a contended 2-core machine is slow
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    path = Path(os.environ.get("KEEL_ARTIFACTS") or Path(tempfile.gettempdir()) / "keel-e2e")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert (DIST / "index.html").is_file(), "the UI is not built: run `make web`"
    assert Path(CHROMIUM).is_file(), "Chromium is missing: `make chromium` installs it"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def dev_live(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server in the dev environment, where the one-click dev sign-in is served."""
    settings = make_settings(db_url, fake_llm.base_url, tmp_path_factory.mktemp("keel-dev"))
    with LiveServer(settings.model_copy(update={"env": "dev"})) as server:
        yield server


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url, viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    p = context.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    p.add_init_script(TRAIL_SCRIPT)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    assert not errors, f"the page raised: {errors}"
    context.close()


def axe(page: Page) -> list[dict[str, Any]]:
    """The page's serious and critical accessibility violations (axe-core's default rules)."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
