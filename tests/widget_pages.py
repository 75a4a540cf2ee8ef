"""What the browser tests share: a real headless Chromium (Debian's `chromium`, driven by Playwright)
per language, the widget page opened for a user of the local stack, the simulator's pushes, and the
checks every page must pass (nothing wider than the screen). Imported by the browser test modules
(`from tests.widget_pages import browser, playwright` makes the fixtures theirs)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from local.browser import CHROMIUM, CHROMIUM_ARGS
from local.stack import LocalStack
from local.widget import issue_token

REPO = Path(__file__).resolve().parent.parent
# Saved on every run outside the tracked tree; `make screenshots` refreshes the README's in docs/screenshots.
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or REPO / ".artifacts" / "screenshots")
TIMEOUT_MS = 15_000

needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (make test installs it)"
)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(
    playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], BrowserContext]]:
    """A fresh Chromium profile (its own --user-data-dir) per language."""
    contexts: dict[str, BrowserContext] = {}

    def open_context(locale: str) -> BrowserContext:
        if locale not in contexts:
            contexts[locale] = playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp(f"chromium-{locale}")),
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                locale=locale,
                viewport={"width": 360, "height": 740},
            )
        return contexts[locale]

    yield open_context
    for context in contexts.values():
        context.close()


def commands(stack: LocalStack) -> Any:
    return stack.api.functions["CommandsFunction"]


def widget_page(stack: LocalStack, browser: Callable[[str], BrowserContext], user: str, locale: str) -> Page:
    token = issue_token(commands(stack), user)["token"]
    page = browser(locale).new_page()
    page.goto(stack.widget.url_for(token))  # type: ignore[union-attr]
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    # The token left the address bar (and so the history and any copied link) at once.
    assert "token" not in page.url
    return page


def event(stack: LocalStack, kind: str, user: str, phone: str, callid: str) -> None:
    stack.pbx.simulator.push(cmd="event", type=kind, user=user, phone=phone, callid=callid)


def history(
    stack: LocalStack,
    user: str,
    phone: str,
    callid: str,
    status: str,
    duration: int,
    *,
    direction: str = "in",
    at: float | None = None,
) -> None:
    stack.pbx.simulator.push(
        cmd="history",
        type=direction,
        status=status,
        user=user,
        phone=phone,
        callid=callid,
        start=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if at is None else at)),
        duration=str(duration),
    )


def no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth"))
