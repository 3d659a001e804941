"""A real browser against the served app: every page renders content and a chart, one control per
page works, no page shows an exception, and the browser never contacts a host other than the app.

Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``) is driven by Playwright through its
executable path; Playwright's own browser download is never used. Screenshots of every page are
saved under ``test-artifacts/screenshots``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.app.served import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, serve_app, wait_until_idle

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts" / "screenshots"
ARGS = CHROMIUM_ARGS

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def served_app(tiny_store):
    with serve_app(tiny_store.root, "streamlit.log") as url:
        yield url


_wait_until_idle = wait_until_idle


#: Per page: url path, the heading that must be visible, and the interaction: a list of steps, each
#: ``(verb, target, value)``; the last step names text that must appear because of the interaction.
#: Verbs: ``type`` (fill the text/select input in ``.st-key-TARGET`` and press Enter), ``click``
#: (a button by name), ``choose`` (an option label inside ``.st-key-TARGET``), ``expand`` (an
#: expander by the start of its label), ``expect`` (text that must then be visible), ``expect_key``
#: (the element with that widget key must then be visible).
PAGES = [  # a deep link first: on a fresh server it must get the app's own navigation at once
    ("icd_tree", "ICD-10-CM tree",
     [("type", "tree_search", "I21.4"), ("expect", None, "Acute myocardial infarction")]),
    ("", "Headline: best setting against the flat model",
     [("expect", None, "ONE training seed only"), ("expand", "All ", None),
      ("expect_key", "overview_runs_csv", None)]),
    ("embeddings", "UMAP of code embeddings, coloured by chapter",
     [("type", "emb_code", "I10"), ("expect", None, "Nearest neighbours of I10 under")]),
    ("level_ablation", "Difference to the flat model",
     [("choose", "abl_metric", "AUPRC"), ("expect", None, "AUPRC by hierarchy setting"),
      ("expect", None, "Across seeds: AUPRC difference to flat")]),
    ("patient", "Patient explanations",
     [("type", "review_name", "Browser Reviewer"), ("click", "Save review", None),
      ("expect", None, "Review saved.")]),
    ("transfer", "Code coverage behind the transfer",
     [("choose", "tr_metric", "macro-F1"), ("expect", None, "Probe macro-F1 on the target site"),
      ("expect", None, "Difference to the flat encoder (macro-F1), across training seeds")]),
]


def _interact(page, steps: list[tuple]) -> None:
    from playwright.sync_api import expect

    for verb, target, value in steps:
        if verb == "type":
            box = page.locator(f".st-key-{target} input").first
            box.click()
            box.fill(value)
            box.press("Enter")
        elif verb == "click":
            page.get_by_role("button", name=target).first.click()
        elif verb == "choose":
            page.locator(f".st-key-{target}").get_by_text(value, exact=True).first.click()
        elif verb == "expand":
            page.locator('[data-testid="stExpander"] summary').filter(has_text=target).first.click()
        elif verb == "expect":
            _wait_until_idle(page)
            expect(page.get_by_text(value).first).to_be_visible(timeout=60_000)
            continue
        elif verb == "expect_key":
            _wait_until_idle(page)
            expect(page.locator(f".st-key-{target}").first).to_be_visible(timeout=60_000)
            continue
        page.wait_for_timeout(300)


@pytest.mark.parametrize(("path", "heading", "steps"), PAGES, ids=[p[0] or "overview" for p in PAGES])
def test_page_in_real_browser(served_app: str, path: str, heading: str, steps: list[tuple]) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    app_host = urlparse(served_app).netloc
    foreign: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.on("request", lambda request: foreign.append(request.url)
                if urlparse(request.url).netloc not in (app_host, "") and not request.url.startswith(
                    ("data:", "blob:", "about:")) else None)
        page.goto(f"{served_app}/{path}")
        expect(page.get_by_text(heading).first).to_be_visible(timeout=120_000)
        _wait_until_idle(page)
        # The app's own navigation (sections, titles), even on a deep link to a fresh server.
        nav = page.locator('[data-testid="stSidebarNav"]')
        for title in ("Overview", "ICD-10-CM tree", "Level ablation", "Embeddings", "Transfer", "Patient"):
            expect(nav.get_by_text(title, exact=True)).to_be_visible(timeout=30_000)
        page.locator(".js-plotly-plot .main-svg").first.wait_for(state="visible", timeout=60_000)
        assert page.get_by_text("SYNTHETIC", exact=False).count() > 0, f"{path}: no synthetic label"
        _interact(page, steps)
        _wait_until_idle(page)
        page.locator(".js-plotly-plot .main-svg").first.wait_for(state="visible", timeout=60_000)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{path}: exception on page"
        page.screenshot(path=str(SHOTS / f"{path or 'overview'}.png"), full_page=True)
        browser.close()
    assert not foreign, f"{path}: requests to other hosts: {sorted(set(foreign))[:5]}"
