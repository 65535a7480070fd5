"""Headless Chromium (the Debian package) driven by Playwright against pytest-django's live server.

Playwright never downloads a browser here: it launches CHROMIUM_BIN (default
/usr/bin/chromium), and the tests skip, saying so, when that binary is absent.
Set BROWSER_SCREENSHOTS_DIR to keep a copy of every screenshot the tests take.
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

# Playwright's sync API keeps an asyncio loop in this thread, which makes Django's
# async-safety guard refuse ORM calls from test code; the calls are synchronous all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_BIN = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 15_000


def _chromium_missing() -> str | None:
    if not (os.path.isfile(CHROMIUM_BIN) and os.access(CHROMIUM_BIN, os.X_OK)):
        return f"Chromium not found at {CHROMIUM_BIN} (apt-get install chromium, or set CHROMIUM_BIN)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


# Per module, not per session: Playwright's sync API keeps an event loop running on the main
# thread while it is open, and later tests that call async_to_sync there would fail.
@pytest.fixture(scope="module")
def browser():
    missing = _chromium_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM_BIN, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def new_tab(browser, base_url: str):
    """A fresh browser context (no cookies) with one page, pointed at `base_url`."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot_taker(page, directory: Path):
    """take(name): a full-page screenshot in `directory` (and BROWSER_SCREENSHOTS_DIR if set)."""
    keep = os.environ.get("BROWSER_SCREENSHOTS_DIR")

    def take(name: str) -> Path:
        path = directory / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    return take


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) with one page, pointed at the live server."""
    with new_tab(browser, live_server.url) as tab:
        yield tab


@pytest.fixture
def screenshot(page, tmp_path):
    """Save a full-page screenshot under tmp_path (and BROWSER_SCREENSHOTS_DIR if set)."""
    return screenshot_taker(page, tmp_path)
