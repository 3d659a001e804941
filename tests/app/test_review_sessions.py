"""Review sessions through AppTest: create, join, answer, resume, report; a blinded page names no
setting and never says which side is flat."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hicd_core.analysis import review_sessions as rs
from hicd_core.analysis import review_stats as stats
from hicd_core.hierarchy import Setting

VIEWS = Path(__file__).resolve().parents[2] / "hicd_app" / "views"
SESSION_PAGE, REVIEWS_PAGE = str(VIEWS / "review_session.py"), str(VIEWS / "reviews.py")
#: What would reveal a side in a blinded session: a setting label (G0+G1+G2, none (flat), ...) or the words.
REVEALING = re.compile(r"\bG[012](\+G[012])*\b(?!\d)|\bflat\b|hierarch", re.IGNORECASE)


def _page(monkeypatch: pytest.MonkeyPatch, store_root: Path, script: str = SESSION_PAGE) -> AppTest:
    monkeypatch.setenv("HICD_STORE", str(store_root))
    monkeypatch.setenv("HICD_NO_AUTOTRAIN", "1")
    return AppTest.from_file(script, default_timeout=180)


def main_text(at: AppTest) -> str:
    """Every piece of text the main area shows: headings, text, captions, metrics, tables, widget labels
    and options (the sidebar is the app's shared store picker, not part of the item)."""
    parts: list[str] = []
    for node in at.main:  # every element and block below main
        for attr in ("value", "label", "body", "help", "placeholder"):
            value = getattr(node, attr, None)
            if isinstance(value, str):
                parts.append(value)
        parts.extend(str(o) for o in getattr(node, "options", None) or [])
        if getattr(node, "type", "") == "dataframe":
            frame = node.value
            parts.extend(map(str, frame.columns))
            parts.extend(frame.astype(str).to_numpy().ravel().tolist())
    return "\n".join(parts)


def test_review_session_page_without_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = _page(monkeypatch, tmp_path / "nowhere").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Review session"
    assert any("Open a run store" in i.value for i in at.info)
    at.text_input(key="rs_join_id").input("NOPE99")
    at.text_input(key="rs_join_name").input("Dr X")
    at.button(key="rs_join").click().run()
    assert any("No review session with id 'NOPE99'" in e.value for e in at.error)
    at.text_input(key="rs_join_name").input("   ")
    at.button(key="rs_join").click().run()
    assert any("Your name is required" in e.value for e in at.error)


def test_create_join_answer_resume_report(monkeypatch: pytest.MonkeyPatch, tiny_store) -> None:
    at = _page(monkeypatch, tiny_store.root).run()
    assert not at.exception, at.exception
    at.selectbox(key="rs_new_model").set_value("bert")
    at.number_input(key="rs_new_n").set_value(3)
    at.text_input(key="rs_new_title").input("Morning round <b>bold</b>")
    at.button(key="rs_create").click().run()
    assert not at.exception, at.exception
    created = [s.value for s in at.success if "created with 3 items" in s.value]
    assert created, [s.value for s in at.success] + [e.value for e in at.error]
    sid = re.search(r"Session ([A-Z0-9]+) created", created[0]).group(1)
    config, items = rs.get_session(sid)
    assert any(f"Results code: {config['results_code']}" in i.value for i in at.info)
    assert config["blinded"] and len(items) == 3 and config["setting"] == "111"

    at.run()  # the new id fills the join box
    assert at.text_input(key="rs_join_id").value == sid
    at.text_input(key="rs_join_name").input("Dr One")
    at.button(key="rs_join").click().run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == f"Session {sid} · item 1 of 3"
    text = main_text(at)
    assert "Explanation A" in text and "Explanation B" in text and "0 of 3 answered" in text
    assert "the code itself" in text  # the plain-words list
    hits = {m.group(0) for m in REVEALING.finditer(text)}
    assert not hits, f"blinded page reveals the sides: {hits}"
    assert Setting("111").label not in text and "none (flat)" not in text

    at.radio(key="rs_pref_0").set_value("A")
    at.text_area(key="rs_comment_0").input("<script>alert(1)</script> plausible")
    at.button(key="rs_save_next_0").click().run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == f"Session {sid} · item 2 of 3"
    assert "1 of 3 answered" in main_text(at)

    # A reopened browser: the link carries the session and the name, the worklist resumes at item 2.
    again = _page(monkeypatch, tiny_store.root)
    again.query_params["session"] = sid
    again.query_params["reviewer"] = "Dr One"
    again.run()
    assert not again.exception, again.exception
    assert again.subheader[0].value == f"Session {sid} · item 2 of 3"
    assert "1 ✓ answered" in again.selectbox(key="rs_goto_1").options
    again.radio(key="rs_pref_1").set_value("B")
    again.button(key="rs_save_next_1").click().run()
    again.radio(key="rs_pref_2").set_value("both")
    again.button(key="rs_save_2").click().run()
    assert any("Answer to item 3 saved" in s.value for s in again.success)
    for position, preference in enumerate(("A", "A", "both")):
        rs.save_answer(sid, "Dr Two", position, preference=preference, comment="second opinion")

    report = _page(monkeypatch, tiny_store.root, REVIEWS_PAGE).run()
    assert not report.exception, report.exception
    report.selectbox(key="rv_session").set_value(sid).run()
    assert not report.exception, report.exception
    assert not report.metric and "6 answers so far" in main_text(report)  # blinded: locked at first
    report.text_input(key="rv_code").input("WRONG").run()
    assert any("not this session's results code" in e.value for e in report.error)
    report.text_input(key="rv_code").input(config["results_code"]).run()
    assert not report.exception, report.exception
    metrics = {m.label: m.value for m in report.metric}
    answers = rs.answers(sid)
    top = stats.preference_summary(answers).iloc[0]
    assert metrics["Answers"] == "6"
    assert metrics["Prefer the hierarchical explanation"] == f"{top['share_hierarchy']:.0%}"
    assert metrics["95% interval (Wilson)"] == f"{top['ci_low']:.0%} to {top['ci_high']:.0%}"
    assert "Cohen's kappa" in metrics
    comments = next(d.value for d in report.dataframe if "comment" in d.value.columns)
    assert "<script>alert(1)</script> plausible" in comments["comment"].tolist()  # a table: shown as text
    html = stats.report_html(config | {"session_id": sid, "created_at": ""}, answers)
    assert "<script>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_unblinded_session_names_the_sides_and_takes_verdicts(monkeypatch: pytest.MonkeyPatch,
                                                              tiny_store) -> None:
    from hicd_core.analysis import review_items as items_lib
    from hicd_core.analysis.patient_view import runs_by_setting, task_runs

    by_setting = runs_by_setting(task_runs(tiny_store), "graph", "readmission_30d", 0)
    items = items_lib.plan_items(tiny_store, by_setting["000"], by_setting["001"], method="disagreement", n=2,
                                 seed=0)
    config = rs.SessionConfig(title="", model="graph", task="readmission_30d", seed=0, setting="001",
                              selection="disagreement", n_items=2, rng_seed=0, blinded=False, hide_risk=False,
                              flat_run=by_setting["000"], setting_run=by_setting["001"],
                              cohort_fingerprint=tiny_store.store_info()["source_fingerprint"])
    sid = rs.create_session(config, items)
    at = _page(monkeypatch, tiny_store.root)
    at.query_params["session"], at.query_params["reviewer"] = sid, "Dr Open"
    at.run()
    assert not at.exception, at.exception
    text = main_text(at)
    assert Setting("001").label in text and Setting("000").label in text and "Risk A" in text
    flat_letter = "A" if bool(items.loc[0, "a_is_flat"]) else "B"
    at.radio(key=f"rs_verdict_{flat_letter}_0").set_value("implausible")
    at.button(key="rs_save_0").click().run()
    assert not at.exception, at.exception
    saved = rs.answers(sid)
    assert saved.loc[0, "verdict_flat"] == "implausible" and saved.loc[0, "preference"] in (None, "")
