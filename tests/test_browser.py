"""A real browser against the served app: every page renders content and a chart, one control per
page works, no page shows an exception, and the browser never contacts a host other than the app.

Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``) is driven by Playwright through its
executable path; Playwright's own browser download is never used. Screenshots of every page are
saved under ``test-artifacts/screenshots``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(tiny_store):
    port = _free_port()
    env = {**os.environ, "HICD_STORE": str(tiny_store.root), "HICD_NO_AUTOTRAIN": "1"}
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    log = open(REPO / "test-artifacts" / "streamlit.log", "w")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("streamlit did not become healthy within 90 s")
    yield url
    server.terminate()
    server.wait(timeout=20)
    log.close()


def _wait_until_idle(page, timeout: float = 120_000) -> None:
    """Wait for the script run to finish (the running indicator disappears)."""
    page.wait_for_timeout(500)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)


#: (url path, text that must be visible, what to click or type)
PAGES = [
    ("icd_tree", "ICD-10-CM tree", ("type", "tree_search", "I21.4", "Acute myocardial infarction")),
]


@pytest.mark.parametrize(("path", "heading", "action"), PAGES, ids=[p[0] for p in PAGES])
def test_page_in_real_browser(served_app: str, path: str, heading: str, action: tuple) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    app_host = urlparse(served_app).netloc
    foreign: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda request: foreign.append(request.url)
                if urlparse(request.url).netloc not in (app_host, "") and not request.url.startswith(
                    ("data:", "blob:", "about:")) else None)
        page.goto(f"{served_app}/{path}")
        expect(page.get_by_text(heading).first).to_be_visible(timeout=120_000)
        _wait_until_idle(page)
        page.locator('[data-testid="stPlotlyChart"], .js-plotly-plot, iframe').first.wait_for(timeout=60_000)
        kind, key, value, expected = action
        if kind == "type":
            box = page.locator(f".st-key-{key} input").first
            box.fill(value)
            box.press("Enter")
        elif kind == "click":
            page.get_by_role("button", name=key).first.click()
        _wait_until_idle(page)
        expect(page.get_by_text(expected).first).to_be_visible(timeout=60_000)
        chart = page.locator('.js-plotly-plot .main-svg, iframe').first
        chart.wait_for(state="visible", timeout=60_000)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{path}: exception on page"
        page.screenshot(path=str(SHOTS / f"{path}.png"), full_page=True)
        browser.close()
    assert not foreign, f"{path}: requests to other hosts: {sorted(set(foreign))[:5]}"
