"""Two reviewers in two browser contexts answer the same 5-item blinded session at the same time; the
Reviews page then shows both, the agreement statistic and the preference share with its interval.

The blinded item's rendered text and HTML must name no setting and never say which side is flat.
Debian's Chromium through Playwright, as in ``test_browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hicd_core.analysis import review_items as items_lib
from hicd_core.analysis import review_sessions as rs
from hicd_core.analysis import review_stats as stats
from hicd_core.analysis.patient_view import runs_by_setting, task_runs
from tests.app.served import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, serve_app, wait_until_idle

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts" / "screenshots"
ARGS = CHROMIUM_ARGS
REVEALING = re.compile(r"\bG[012](\+G[012])*\b(?!\d)|\bflat\b|hierarch", re.IGNORECASE)
ANSWERS = {"Dr Ada": ["A", "B", "A", "both", "neither"], "Dr Bo": ["A", "A", "B", "both", "A"]}

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def served(tiny_store):
    """The app on a free port (the test session's data directory, so the session created here is seen)."""
    with serve_app(tiny_store.root, "streamlit-reviews.log") as url:
        yield url


_idle = wait_until_idle


def _session(tiny_store) -> str:
    runs = task_runs(tiny_store)
    by_setting = runs_by_setting(runs, "bert", "readmission_30d", 0)
    items = items_lib.plan_items(tiny_store, by_setting["000"], by_setting["111"], method="stratified", n=5,
                                 seed=3)
    config = rs.SessionConfig(title="Browser round", model="bert", task="readmission_30d", seed=0,
                              setting="111", selection="stratified", n_items=5, rng_seed=3, blinded=True,
                              hide_risk=True, flat_run=by_setting["000"], setting_run=by_setting["111"],
                              cohort_fingerprint=tiny_store.store_info().get("source_fingerprint", ""),
                              store_root=str(tiny_store.root))
    return rs.create_session(config, items)


def test_two_reviewers_concurrently_then_reviews_page(served: str, tiny_store) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    sid = _session(tiny_store)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        pages = {}
        for name in ANSWERS:  # two contexts: two separate browser sessions (cookies, storage)
            page = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
            page.goto(f"{served}/review_session?session={sid}&reviewer={name.replace(' ', '%20')}")
            pages[name] = page
        for page in pages.values():
            expect(page.get_by_text(f"Session {sid} · item 1 of 5")).to_be_visible(timeout=180_000)
            _idle(page)
        main = pages["Dr Ada"].locator('[data-testid="stMain"]')
        expect(main.get_by_text("Explanation A").first).to_be_visible(timeout=60_000)
        shown, html = main.inner_text(), main.inner_html()
        pages["Dr Ada"].screenshot(path=str(SHOTS / "review_session_blinded.png"), full_page=True)
        assert not REVEALING.search(shown), REVEALING.search(shown).group(0)
        assert not REVEALING.search(html), REVEALING.search(html).group(0)
        assert "Risk A" not in shown  # hide_risk: no risk numbers either

        for position in range(5):
            for name, page in pages.items():  # both click before either waits: concurrent saves
                choice = rs.PREFERENCE_WORDS[ANSWERS[name][position]]
                page.locator(f".st-key-rs_pref_{position}").get_by_text(choice, exact=True).click()
                page.wait_for_timeout(150)
                label = "Save and next" if position < 4 else "Save"
                page.get_by_role("button", name=label, exact=True).click()
            for page in pages.values():
                after = f"item {position + 2} of 5" if position < 4 else "Answer to item 5 saved"
                expect(page.get_by_text(after).first).to_be_visible(timeout=120_000)
                _idle(page)

        frame = rs.answers(sid)
        assert len(frame) == 10 and frame.groupby("reviewer").size().eq(5).all()
        for name, prefs in ANSWERS.items():
            assert frame[frame["reviewer"] == name].sort_values("position")["preference"].tolist() == prefs

        page = pages["Dr Ada"]
        page.goto(f"{served}/reviews")
        expect(page.get_by_text("Reviews", exact=True).first).to_be_visible(timeout=120_000)
        _idle(page)
        box = page.locator(".st-key-rv_session input").first
        box.click()
        box.fill(sid)
        box.press("Enter")
        _idle(page)
        expect(page.get_by_text("10 answers so far").first).to_be_visible(timeout=60_000)
        code = page.locator(".st-key-rv_code input").first
        code.fill(rs.get_session(sid)[0]["results_code"])
        code.press("Enter")
        _idle(page)
        top = stats.preference_summary(frame).iloc[0]
        expect(page.get_by_text(f"Session {sid}: flat vs").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Cohen's kappa").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text(f"{top['ci_low']:.0%} to {top['ci_high']:.0%}").first).to_be_visible()
        expect(page.get_by_text(f"{top['share_hierarchy']:.0%}", exact=True).first).to_be_visible()
        for name in ANSWERS:
            expect(page.get_by_text(name).first).to_be_visible()
        page.screenshot(path=str(SHOTS / "reviews.png"), full_page=True)
        browser.close()
