"""What the browser tests share: Debian's chromium, how playwright launches it, where
screenshots go, and the rule that CI fails (rather than skips) when either is missing."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# CI sets SPY_MAGIC_REQUIRE_BROWSER=1 once it installed both, so that a broken install
# fails instead of silently skipping.
REQUIRED = os.environ.get("SPY_MAGIC_REQUIRE_BROWSER") == "1"


def missing(reason: str) -> None:
    """Skip the calling test module, or fail it in CI."""
    if REQUIRED:
        pytest.fail(f"{reason}, but SPY_MAGIC_REQUIRE_BROWSER=1", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_chromium_and_playwright() -> None:
    if not CHROMIUM.exists():
        missing("no /usr/bin/chromium (apt-get install chromium) for the browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright is not installed (pip install playwright; no `playwright install`)")


@contextlib.contextmanager
def launched_chromium():
    """Debian's chromium under playwright, closed afterwards whatever happened."""
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
