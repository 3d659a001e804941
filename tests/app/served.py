"""The app served on a free local port for the real-browser tests (one helper, used by each of them)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serve_app(store_root: Path, log_name: str) -> Iterator[str]:
    """``streamlit run app.py`` on the store, headless, localhost only; yields its URL once healthy.
    The server's output goes to ``test-artifacts/<log_name>`` (CI keeps it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HICD_STORE": str(store_root), "HICD_NO_AUTOTRAIN": "1"}
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    with open(REPO / "test-artifacts" / log_name, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
             "false"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 90
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail("streamlit did not become healthy within 90 s")
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


CHROMIUM = Path("/usr/bin/chromium")
#: Chromium flags for a headless run that makes no request of its own (no sync, updates, QUIC).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
#: Every real-browser test module's marks: skipped where Debian's chromium is missing.
BROWSER_MARKS = [pytest.mark.browser,
                 pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")]


def wait_until_idle(page, timeout: float = 120_000) -> None:
    """Wait for the script run to finish (the running indicator disappears)."""
    page.wait_for_timeout(500)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
