"""What the browser tests share: the built book served on 127.0.0.1, Debian's Chromium driven
by playwright, and a log of everything that went wrong while a page loaded.

The test modules import the fixtures by name (``from browser_pages import browser, server``);
pytest then finds them there. Nothing may leave the machine: every request for another host is
blocked and recorded.
"""
from __future__ import annotations

import http.server
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / '_build' / 'html'
SCREENSHOTS = ROOT / '_build' / 'browser'
CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']

sys.path.insert(0, str(ROOT / 'scripts'))
from serve_book import handler  # noqa: E402  (the handler of `make serve`)


def missing_requirement() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (HTML / 'index.html').exists():
        return f'the book is not built: no {HTML / "index.html"} (run `jupyter-book build .`)'
    if not CHROMIUM.exists():
        return f'no chromium at {CHROMIUM} (apt-get install -y chromium)'
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'the playwright Python package is not installed (pip install playwright)'
    return None


def serve(isolated: bool):
    """Start ``make serve``'s server on a free port; returns (base URL, server)."""
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                            handler(HTML, isolated=isolated, quiet=True))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f'http://127.0.0.1:{httpd.server_address[1]}', httpd


@pytest.fixture(scope='module')
def server():
    """The built book over HTTP on 127.0.0.1, without cross-origin isolation (so the viewer
    runs on one thread); yields its base URL."""
    url, httpd = serve(isolated=False)
    yield url
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageLog:
    """Everything that went wrong while a page loaded."""

    def __init__(self):
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        self.offsite: list[str] = []


def watch(page) -> PageLog:
    """Block and record requests that leave 127.0.0.1, and record console errors, uncaught
    exceptions and failed requests of ``page`` from now on."""
    log = PageLog()

    def route(r):
        if urlsplit(r.request.url).hostname == '127.0.0.1':
            r.continue_()
        else:  # nothing may leave the machine: record and block
            log.offsite.append(r.request.url)
            r.abort()

    page.route('**/*', route)
    page.on('console', lambda m: m.type == 'error' and log.console_errors.append(m.text))
    page.on('pageerror', lambda e: log.console_errors.append(f'uncaught: {e}'))
    page.on('requestfailed', lambda r: log.failed.append(f'{r.url} ({r.failure})'))
    page.on('response', lambda r: r.status >= 400 and log.failed.append(f'{r.url} ({r.status})'))
    return log


@pytest.fixture
def open_page(browser, server):
    """open_page(doc) -> (page, log): load a document of the book at 1280 px, recording every
    problem."""
    context = browser.new_context(viewport={'width': 1280, 'height': 900})

    def open_(doc: str):
        page = context.new_page()
        log = watch(page)
        page.goto(f'{server}/{doc}.html', wait_until='load')
        return page, log

    yield open_
    context.close()
