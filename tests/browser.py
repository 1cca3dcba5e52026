"""What the browser tests share: the real API under uvicorn on a free 127.0.0.1 port, and
Debian's Chromium driven by Playwright (never `playwright install`; a missing browser fails
the test, it does not skip)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from enrichment.api import app, deps
from enrichment.core.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The real app under uvicorn with `settings`; yields its base URL."""
    app.dependency_overrides[deps.app_settings] = lambda: settings
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app.dependency_overrides.clear()


@contextmanager
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install -y chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=WAIT_MS)
        yield browser
        browser.close()


def local_page(
    browser: Browser,
    *,
    width: int = 1280,
    headers: dict[str, str] | None = None,
    script: bool = True,
) -> tuple[Page, list[str]]:
    """A fresh page whose requests may not leave 127.0.0.1; returns every URL asked for.
    `script=False`: a browser with JavaScript off."""
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        extra_http_headers=headers or {},
        java_script_enabled=script,
    )
    requested: list[str] = []
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if urlsplit(route.request.url).hostname == "127.0.0.1"
            else route.abort()
        ),
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("request", lambda req: requested.append(req.url))
    return page, requested
