"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, kept on the machine.

No browser is downloaded: Playwright only drives the system Chromium over the DevTools protocol.
Every host name but 127.0.0.1 resolves to nothing (``--host-resolver-rules``), Chromium's own
background traffic is off, and every request a page makes is recorded, so a test can assert that
a page rendered from loopback and local files alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Request, Response, sync_playwright

CHROMIUM_ARGS = (
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
LOCAL_SCHEMES = frozenset({"data", "blob", "about", "file"})


def find_chromium() -> str | None:
    """The system Chromium (or Google Chrome, as on CI runners), or None when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def is_local(url: str) -> bool:
    """Loopback, a local file or inline data: nothing that leaves the machine."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname == "127.0.0.1"


@dataclass
class PageLoad:
    """What loading one page asked for and what went wrong on the way."""

    page: Page
    requests: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def off_machine(self) -> list[str]:
        return [url for url in self.requests if not is_local(url)]


class OfflineBrowser:
    """A browser context; ``load`` opens a page in it and records its requests."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context

    def load(self, url: str, ready: str, screenshot: Path, timeout_s: float = 60) -> PageLoad:
        """Open ``url``, wait until ``ready`` (a CSS selector) is visible and the network is
        idle, then save a full-page screenshot."""
        page = self.context.new_page()
        record = PageLoad(page)

        def on_request(request: Request) -> None:
            record.requests.append(request.url)

        def on_failed(request: Request) -> None:
            record.failures.append(f"{request.url}: {request.failure}")

        def on_response(response: Response) -> None:
            if response.status >= 400:
                record.failures.append(f"{response.url}: HTTP {response.status}")

        page.on("request", on_request)
        page.on("requestfailed", on_failed)
        page.on("response", on_response)
        page.on("pageerror", lambda exc: record.errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: record.errors.append(msg.text) if msg.type == "error" else None,
        )
        page.goto(url, timeout=timeout_s * 1000)
        page.wait_for_selector(ready, state="visible", timeout=timeout_s * 1000)
        page.wait_for_load_state("networkidle", timeout=timeout_s * 1000)
        page.screenshot(path=str(screenshot), full_page=True)
        return record


@contextmanager
def offline_browser(executable: str, profile_dir: Path) -> Iterator[OfflineBrowser]:
    """Headless Chromium at ``executable`` with a fresh profile in ``profile_dir``."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            service_workers="block",
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield OfflineBrowser(context)
        finally:
            context.close()
