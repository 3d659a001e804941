"""Review sessions (engine): item selection, the stored A/B order, answers under concurrency in both
journal modes, export/import, the statistics against known values, escaping and length limits."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core.analysis import review_items as items_lib
from hicd_core.analysis import review_sessions as rs
from hicd_core.analysis import review_stats as stats
from hicd_core.analysis import reviews
from hicd_core.analysis.reviews import ReviewError


def _predictions(seed: int = 0, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    patient = np.repeat(np.arange(n // 2), 2)  # two samples per patient
    flat = pd.DataFrame({"sample_id": np.arange(n), "patient_id": patient, "label": label,
                         "prob": rng.random(n)})
    setting = flat.assign(prob=np.clip(0.5 * flat["prob"] + 0.5 * label * rng.random(n), 0, 1))
    return flat, setting


def _config(**over) -> rs.SessionConfig:
    base = {"title": "Ward round", "model": "bert", "task": "readmission_30d", "seed": 0, "setting": "111",
            "selection": "stratified", "n_items": 12, "rng_seed": 7, "blinded": True, "hide_risk": False,
            "flat_run": "flat-run", "setting_run": "hier-run", "cohort_fingerprint": "fp", "store_root": "/x"}
    return rs.SessionConfig(**{**base, **over})


def _select(method: str, n: int = 12, seed: int = 7) -> pd.DataFrame:
    flat, setting = _predictions()
    return items_lib.select_items(flat, setting, method=method, n=n, seed=seed, flat_threshold=0.5,
                                  setting_threshold=0.4)


@pytest.fixture(params=["wal", "delete"])
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The review database under either journal mode (WAL; the rollback journal of a network FS)."""
    monkeypatch.setenv(reviews.JOURNAL_ENV, request.param)
    return tmp_path / "reviews.sqlite"


# ---------------------------------------------------------------------------------- selection
def test_stratified_selection_balances_strata_and_is_seeded() -> None:
    items = _select("stratified", n=12)
    assert list(items.columns) == list(items_lib.ITEM_COLUMNS)
    assert items["stratum"].value_counts().to_dict() == dict.fromkeys(items_lib.STRATA, 3)
    assert items["patient_index"].is_unique and list(items["position"]) == list(range(12))
    pd.testing.assert_frame_equal(items, _select("stratified", n=12))  # the same seed, the same list
    assert not items.equals(_select("stratified", n=12, seed=8))
    _, setting = _predictions()
    merged = items.merge(setting, on="sample_id")
    predicted = merged["prob"] >= 0.4
    expect = np.where(merged["label_x"] == 1, np.where(predicted, "TP", "FN"),
                      np.where(predicted, "FP", "TN"))
    assert (merged["stratum"] == expect).all()
    assert items["a_is_flat"].any() and not items["a_is_flat"].all()  # both orders occur


def test_disagreement_and_random_selection() -> None:
    top = _select("disagreement", n=5)
    flat, setting = _predictions()
    merged = flat.merge(setting[["sample_id", "prob"]], on="sample_id")
    gap = (merged["prob_y"].rank(pct=True) - merged["prob_x"].rank(pct=True)).abs()
    best = merged.assign(gap=gap).sort_values("gap", ascending=False).drop_duplicates("patient_id").head(5)
    assert set(top["sample_id"]) == set(best["sample_id"])
    assert len(_select("random", n=400)) == 200  # one sample per patient at most
    with pytest.raises(items_lib.SelectionError, match="selection must be one of"):
        _select("nearest")


def test_plain_explanation_words_and_shares() -> None:
    class Attr:
        run_id, components = "r", ("code", "G0", "G1", "age")
        table = pd.DataFrame({
            "visit_index": [-1, 0, 0, 1], "code": ["", "I214", "E119", "I214"],
            "title": ["", "NSTEMI", "Type 2 diabetes", "NSTEMI"],
            "chapter": ["", "9", "4", "9"], "block": ["", "I20-I25", "E08-E13", "I20-I25"],
            "category": ["", "I21", "E11", "I21"],
            "attr_code": [0.0, 0.1, -0.05, 0.1], "attr_G0": [0.0, 0.0, -0.3, 0.0],
            "attr_G1": [0.0, 0.4, 0.0, 0.2], "attr_age": [0.0, 0.05, 0.05, 0.0]})

    rows = items_lib.plain_explanation(Attr())
    assert list(rows.columns) == list(items_lib.PLAIN_COLUMNS)
    assert rows["code"].tolist() == ["I214", "E119", ""]
    assert rows.loc[0, "acts_through"].startswith("its block (") and rows.loc[0, "visits"] == 2
    assert rows.loc[1, "effect"] == "lowers the risk"
    assert rows.loc[1, "acts_through"].startswith("its chapter")
    assert rows["share"].sum() == pytest.approx(1.0)
    assert rows.loc[0, "share"] == pytest.approx(0.8 / 1.25)
    text = " ".join(items_lib.plain_sentences(rows)) + " ".join(rows["acts_through"])
    assert "G0" not in text and "G1" not in text and "flat" not in text.lower()


# ---------------------------------------------------------------------------------- the store
def test_session_roundtrip_progress_and_answers(db: Path) -> None:
    items = _select("stratified")
    sid = rs.create_session(_config(), items, path=db)
    assert len(sid) == rs.ID_LENGTH
    config, stored = rs.get_session(sid.lower(), path=db)  # ids are case-insensitive
    assert config["setting"] == "111" and config["blinded"] is True
    assert stored["a_is_flat"].tolist() == items["a_is_flat"].tolist()
    assert stored["sample_id"].tolist() == items["sample_id"].tolist()
    rs.save_answer(sid, "Dr A", 0, preference="A", comment="ok", path=db)
    rs.save_answer(sid, "Dr A", 0, preference="B", path=db)  # a changed answer replaces the first
    rs.save_answer(sid, "Dr A", 3, preference="neither", path=db)
    assert rs.progress(sid, "Dr A", path=db) == {0, 3}
    frame = rs.answers(sid, path=db)
    assert len(frame) == 2
    first = frame[frame["position"] == 0].iloc[0]
    assert first["prefers"] == ("hierarchy" if items.loc[0, "a_is_flat"] else "flat")
    listed = rs.list_sessions(path=db)
    assert listed.loc[0, "session_id"] == sid and listed.loc[0, "answers"] == 2
    with pytest.raises(ReviewError, match="No review session"):
        rs.get_session("ZZZZZZ", path=db)
    with pytest.raises(ReviewError, match="has no item"):
        rs.save_answer(sid, "Dr A", 99, preference="A", path=db)


def test_length_limits_and_messages(db: Path) -> None:
    sid = rs.create_session(_config(), _select("random"), path=db)
    with pytest.raises(ReviewError, match="at most 100"):
        rs.save_answer(sid, "x" * 101, 0, preference="A", path=db)
    with pytest.raises(ReviewError, match="name is required"):
        rs.save_answer(sid, "   ", 0, preference="A", path=db)
    with pytest.raises(ReviewError, match="Shorten it"):
        rs.save_answer(sid, "Dr B", 0, preference="A", comment="y" * (reviews.MAX_COMMENT + 1), path=db)
    with pytest.raises(ReviewError, match="Choose which"):
        rs.save_answer(sid, "Dr B", 0, path=db)


def _answer_many(db: str, sid: str, reviewer: str, count: int, barrier: threading.Barrier | None = None
                 ) -> None:
    if barrier is not None:  # every thread saves its first answer at the same instant
        barrier.wait()
    for position in range(count):
        rs.save_answer(sid, reviewer, position, preference="AB"[position % 2],
                       comment=f"{reviewer} {position}", path=db)


def test_concurrent_answers_threads_and_processes(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Spawned children re-run the parent's __main__ file: after an AppTest in the same pytest process
    # that is a Streamlit page, so they are spawned with an empty __main__ (as the sweep's workers are).
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    sid = rs.create_session(_config(n_items=12), _select("random", n=12), path=db)
    barrier = threading.Barrier(10)
    threads = [threading.Thread(target=_answer_many, args=(str(db), sid, f"T{i}", 12, barrier))
               for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_answer_many, args=(str(db), sid, f"P{i}", 12)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    frame = rs.answers(sid, path=db)
    assert len(frame) == 13 * 12
    assert frame.groupby("reviewer").size().eq(12).all()
    with sqlite3.connect(db) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == reviews.journal_choice(db)


def test_network_filesystem_falls_back_to_rollback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(reviews.JOURNAL_ENV, raising=False)
    monkeypatch.setattr(reviews, "network_filesystem", lambda path: True)
    assert reviews.journal_choice(tmp_path / "r.sqlite") == "delete"
    rs.instance_id(tmp_path / "r.sqlite")
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    monkeypatch.setenv(reviews.JOURNAL_ENV, "sideways")
    with pytest.raises(ReviewError, match="must be one of"):
        reviews.journal_choice(tmp_path / "r.sqlite")


def test_export_import_idempotent_and_pooled(tmp_path: Path) -> None:
    site_a, site_b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    sid = rs.create_session(_config(), _select("stratified"), path=site_a)
    rs.save_answer(sid, "Dr A", 0, preference="A", path=site_a)
    exported = rs.export_session(sid, path=site_a)
    payload = json.loads(exported)
    assert "store_root" not in payload["config"] and "/x" not in exported.decode()
    first = rs.import_session(exported, path=site_b)
    code_a = rs.get_session(sid, path=site_a)[0]["results_code"]
    assert code_a not in exported.decode()  # each site's results code stays its own
    assert {k: first[k] for k in ("session_id", "new_session", "added", "updated")} == {
        "session_id": sid, "new_session": 1, "added": 1, "updated": 0}
    second = rs.import_session(exported, path=site_b)
    assert (second["new_session"], second["added"], second["updated"]) == (0, 0, 0)
    config_b = rs.get_session(sid, path=site_b)[0]
    assert second["results_code"] == first["results_code"] == config_b["results_code"] != code_a
    assert rs.results_unlocked(config_b, first["results_code"].lower())
    assert not rs.results_unlocked(config_b, code_a) and not rs.results_unlocked(config_b, "")
    assert rs.results_unlocked({**config_b, "blinded": False}, "")
    rs.save_answer(sid, "Dr A", 0, preference="B", path=site_b)  # same name, another site: another rater
    back = rs.import_session(rs.export_session(sid, path=site_b), path=site_a)
    assert back["added"] == 1 and back["new_session"] == 0
    pooled = rs.answers(sid, path=site_a)
    assert len(pooled) == 2 and pooled["rater"].nunique() == 2
    again = rs.import_session(rs.export_session(sid, path=site_b), path=site_a)
    assert again["added"] == 0 and again["updated"] == 0
    with pytest.raises(ReviewError, match="not a review-session export"):
        rs.import_session(b"{}", path=site_a)


# ---------------------------------------------------------------------------------- statistics
def test_wilson_and_binomial_against_hand_computed_values() -> None:
    # Wilson, 7 of 10, z = 1.959964: centre (7 + z^2/2) / (10 + z^2), half-width z/(10 + z^2)
    # * sqrt(10 * 0.7 * 0.3 + z^2/4) -> 0.3968 to 0.8922 (Newcombe 1998, table I).
    low, high = stats.wilson_interval(7, 10)
    assert (low, high) == pytest.approx((0.396780, 0.892208), abs=1e-5)
    assert stats.wilson_interval(0, 0)[0] != stats.wilson_interval(0, 0)[0]  # NaN
    # Sign test, 8 of 10: P(X >= 8) = (45 + 10 + 1) / 1024, doubled for two sides = 0.109375.
    assert stats.sign_test(8, 10) == pytest.approx(112 / 1024)
    assert stats.sign_test(5, 10) == pytest.approx(1.0)
    assert stats.sign_test(10, 10) == pytest.approx(2 / 1024)


def _answers_frame(table: dict[str, list[str]]) -> pd.DataFrame:
    rows = [{"rater": rater, "position": i, "prefers": p, "comment": "", "preference": "A"}
            for rater, prefs in table.items() for i, p in enumerate(prefs)]
    return pd.DataFrame(rows)


def test_kappa_against_the_libraries() -> None:
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    two = {"r1": ["hierarchy", "flat", "hierarchy", "both", "hierarchy", "neither"],
           "r2": ["hierarchy", "flat", "flat", "both", "hierarchy", "hierarchy"]}
    result = stats.agreement(_answers_frame(two))
    assert result["method"] == "Cohen's kappa" and result["shared_items"] == 6
    assert result["kappa"] == pytest.approx(cohen_kappa_score(two["r1"], two["r2"]))
    # Hand-computed: p_o = 4/6; p_e = (3*3 + 1*2 + 1*1 + 1*0)/36 = 12/36 -> kappa = (2/3 - 1/3)/(2/3) = 0.5
    assert result["kappa"] == pytest.approx(0.5)
    three = {**two, "r3": ["hierarchy", "flat", "hierarchy", "neither", "flat", "neither"]}
    result = stats.agreement(_answers_frame(three))
    codes = {c: i for i, c in enumerate(stats.CATEGORIES)}
    matrix = np.array([[codes[three[r][i]] for r in three] for i in range(6)])
    table, _ = aggregate_raters(matrix, n_cat=4)
    assert result["method"] == "Fleiss' kappa"
    assert result["kappa"] == pytest.approx(fleiss_kappa(table, method="fleiss"))
    single = stats.agreement(_answers_frame({"r1": two["r1"]}))
    assert np.isnan(single["kappa"]) and "two reviewers" in single["note"]


def test_preference_summary_and_report_escapes() -> None:
    frame = _answers_frame({"<script>alert(1)</script>": ["hierarchy"] * 7 + ["flat"] * 3 + ["both"],
                            "Dr B": ["hierarchy", "flat"]})
    frame.loc[0, "comment"] = "<img src=x onerror=alert(2)> =HYPERLINK(\"http://x\")"
    summary = stats.preference_summary(frame)
    top = summary.iloc[0]
    assert (top["decided"], top["prefer_hierarchy"], top["both"]) == (12, 8, 1)
    assert top["p_value"] == pytest.approx(stats.sign_test(8, 12))
    assert "8 of 12 decided answers (67%" in stats.share_sentence(top)
    config = {"session_id": "ABC234", "title": "<b>t</b>", "model": "bert", "task": "t", "seed": 0,
              "setting": "111", "selection": "random", "n_items": 11, "blinded": True}
    html = stats.report_html(config, frame)
    assert "<script>" not in html and "<img" not in html and "&lt;img src=x" in html
    assert "http" not in html.replace("http://x", "") and "<link" not in html and "src=" not in html.replace(
        "&lt;img src=x", "")


def test_answers_csv_neutralises_formulas_and_ids_are_checked(tmp_path: Path) -> None:
    db = tmp_path / "reviews.sqlite"
    sid = rs.create_session(_config(), _select("random", n=3), path=db)
    rs.save_answer(sid, "=cmd|' /C calc'!A0", 0, preference="A", comment="@SUM(1)", path=db)
    table = pd.read_csv(io.BytesIO(stats.answers_csv(rs.answers(sid, path=db))))
    assert table.loc[0, "rater"].startswith("'=") and table.loc[0, "comment"].startswith("'@")
    with pytest.raises(ReviewError, match="not a session id"):
        rs.get_session("![x](//evil.example/a.png)", path=db)
    bad = json.loads(rs.export_session(sid, path=db))
    bad["config"]["task"] = "<script>"
    with pytest.raises(ReviewError, match="task is missing or not a plain name"):
        rs.import_session(json.dumps(bad), path=tmp_path / "other.sqlite")
