"""Captum attributions (HICD-BERT components, HICD-Graph nodes), tree roll-ups, the patient report and
its cache, and clinician reviews under concurrency (the page itself: tests/app/test_patient_page.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core.analysis import attributions as A
from hicd_core.analysis import patient_view as view
from hicd_core.analysis import reviews

REPO = Path(__file__).resolve().parents[1]
TASK = "readmission_30d"
SETTINGS = ("000", "001", "011", "111")  # conftest.TINY_SETTINGS


@pytest.fixture(scope="module")
def runs(tiny_store) -> pd.DataFrame:
    return view.task_runs(tiny_store)


@pytest.fixture(scope="module")
def bert_runs(runs) -> dict[str, str]:
    found = view.runs_by_setting(runs, "bert", TASK, 0)
    assert tuple(found) == SETTINGS
    return found


@pytest.fixture(scope="module")
def graph_runs(runs) -> dict[str, str]:
    found = view.runs_by_setting(runs, "graph", TASK, 0)
    assert tuple(found) == SETTINGS
    return found


@pytest.fixture(scope="module")
def samples(tiny_store, bert_runs, small_source_cohort) -> pd.DataFrame:
    """Test samples with history (anchor visit >= 1), so sequences span several visits."""
    cands = view.test_candidates(tiny_store, bert_runs["000"], small_source_cohort, TASK)
    rich = cands[cands["visit_index"] >= 1].drop_duplicates("patient_id")
    assert len(rich) >= 3
    return rich


def _completeness_gap(a: A.Attribution) -> float:
    """|sum(attr) - delta - (F(x) - F(baseline))|: zero by Captum's definition of delta."""
    return abs(a.attr_sum - a.delta - (a.logit - a.baseline_logit))


def _delta_ok(a: A.Attribution) -> bool:
    """Finite and small: within 10% of the logit change, or tiny in absolute logit units."""
    return bool(np.isfinite(a.delta)) and abs(a.delta) <= max(0.1 * abs(a.logit - a.baseline_logit), 0.02)


# ============================================================================ HICD-BERT
def _input_length(cohort, sample_id: int) -> tuple[int, pd.DataFrame]:
    """[CLS] + every code + one [SEP] per visit of the sample's history (before truncation)."""
    row = cohort.tasks[TASK].set_index("sample_id").loc[sample_id]
    timeline = A.patient_timeline(cohort, int(row["patient_id"]), int(row["visit_index"]))
    return 1 + int(timeline["seq"].notna().sum()) + timeline["visit_index"].nunique(), timeline


def test_bert_attributions_components_positions_completeness(tiny_store, bert_runs, samples,
                                                             small_source_cohort) -> None:
    max_len = A.load_model(tiny_store, bert_runs["000"]).config.max_len
    sid = next(int(s) for s in samples["sample_id"]
               if _input_length(small_source_cohort, int(s))[0] <= max_len)
    length, timeline = _input_length(small_source_cohort, sid)
    n_visits = timeline["visit_index"].nunique()
    for setting, run_id in bert_runs.items():
        model = A.load_model(tiny_store, run_id)
        a = A.attribute(model, small_source_cohort, TASK, [sid], n_steps=32, run_id=run_id)[0]
        table = a.table
        # One row per position: [CLS] + every code + one [SEP] per visit.
        assert len(table) == length
        assert table["token_index"].tolist() == list(range(len(table)))
        assert table["token"].iloc[0] == "[CLS]" and (table["token"] == "[SEP]").sum() == n_visits
        assert set(table.loc[table["code"] != "", "code"]) <= set(timeline["code"])
        enabled = {lvl for lvl, on in zip(("G0", "G1", "G2"), setting, strict=True) if on == "1"}
        present = {c for c in ("G0", "G1", "G2") if f"attr_{c}" in table}
        assert present == enabled, (setting, present)
        assert set(a.components) == {"code", "age", "position", "segment"} | enabled
        values = table[[f"attr_{c}" for c in a.components]].to_numpy()
        assert np.isfinite(values).all()
        # [CLS] is kept whole in the baseline, so it gets nothing; [SEP] keeps its code token.
        assert np.allclose(values[0], 0.0)
        assert np.allclose(table.loc[table["token"] == "[SEP]", "attr_code"], 0.0)
        assert np.allclose(table["attr_total"], values.sum(1))
        assert _completeness_gap(a) < 1e-4 * max(1.0, abs(a.logit))
        assert _delta_ok(a), (setting, a.delta, a.logit, a.baseline_logit)
        assert 0.0 <= a.prob <= 1.0 and a.model == "bert" and a.setting == setting
        totals = a.component_totals()
        assert list(totals.index) == list(a.components)


def test_bert_truncated_history(tiny_store, bert_runs, small_source_cohort) -> None:
    """A history longer than max_len keeps its most recent tokens: one row per kept position."""
    model = A.load_model(tiny_store, bert_runs["111"])
    max_len = model.config.max_len
    cohort = small_source_cohort
    diag = cohort.diagnoses.groupby("patient_id").size()
    visits = cohort.visits.groupby("patient_id").size()
    frame = cohort.tasks[TASK]
    frame = frame[frame["patient_id"].map(diag + visits + 1) > max_len]
    long = [int(s) for s in frame.sort_values("visit_index", ascending=False)["sample_id"][:20]
            if _input_length(cohort, int(s))[0] > max_len]
    if not long:
        pytest.skip("no history in the fixture cohort is longer than max_len")
    a = A.attribute(model, cohort, TASK, long[:1], n_steps=16)[0]
    table = a.table
    assert len(table) <= max_len and table["token"].iloc[0] == "[CLS]" and table["token"].iloc[-1] == "[SEP]"
    _, timeline = _input_length(cohort, long[0])
    kept = sorted(set(table["visit_index"]) - {-1})
    anchor = int(timeline["visit_index"].max())
    assert kept[-1] == anchor and kept[0] > 0 and kept == list(range(kept[0], anchor + 1))
    # Whole visits are kept (the cut falls on a visit boundary whenever the anchor visit fits).
    codes = table[table["code"] != ""].groupby("visit_index").size()
    expected = timeline[timeline["seq"].notna()].groupby("visit_index").size()
    assert (codes.loc[kept[1:]] == expected.loc[kept[1:]]).all()
    assert _completeness_gap(a) < 1e-4 * max(1.0, abs(a.logit)) and np.isfinite(a.delta)


def test_bert_batch_matches_single(tiny_store, bert_runs, samples, small_source_cohort) -> None:
    """Several samples of one patient in one LIG call give the same numbers as one at a time."""
    cohort = small_source_cohort
    frame = cohort.tasks[TASK]
    multi = frame.groupby("patient_id").filter(lambda g: len(g) >= 2)
    pid = int(multi["patient_id"].iloc[0])
    ids = multi.loc[multi["patient_id"] == pid, "sample_id"].astype(int).tolist()[:3]
    model = A.load_model(tiny_store, bert_runs["111"])
    together = A.attribute(model, cohort, TASK, ids, n_steps=16)
    alone = [A.attribute(model, cohort, TASK, [s], n_steps=16)[0] for s in ids]
    for x, y in zip(together, alone, strict=True):
        assert x.sample_id == y.sample_id and len(x.table) == len(y.table)
        assert abs(x.logit - y.logit) < 1e-4
        assert np.allclose(x.table["attr_total"], y.table["attr_total"], atol=1e-4)


# ============================================================================ HICD-Graph
def test_graph_attributions_finite_with_delta(tiny_store, graph_runs, samples, small_source_cohort) -> None:
    sid = int(samples["sample_id"].iloc[1])
    for setting, run_id in graph_runs.items():
        model = A.load_model(tiny_store, run_id)
        a = A.attribute(model, small_source_cohort, TASK, [sid], n_steps=32, run_id=run_id)[0]
        table = a.table
        assert len(table) > 0 and np.isfinite(table["attribution"]).all()
        assert {"visit_index", "recency", "node", "kind", "level", "title", "attribution"} <= set(table)
        kinds = set(table["kind"])
        assert "code" in kinds
        if setting == "000":
            assert kinds == {"code"}
        if setting == "111":
            assert {"chapter", "block", "prefix"} <= kinds
        assert table["recency"].min() == 0  # the anchor visit is in
        assert _completeness_gap(a) < 1e-4 * max(1.0, abs(a.logit))
        assert _delta_ok(a), (setting, a.delta, a.logit, a.baseline_logit)


# ============================================================================ roll-ups
def _check_tree(tree: pd.DataFrame) -> None:
    by_id = tree.set_index("id")
    assert tree["id"].is_unique and by_id.loc[A.ROLLUP_ROOT, "parent"] == ""
    child_size = tree[tree["parent"] != ""].groupby("parent")["size"].sum()
    child_value = tree[tree["parent"] != ""].groupby("parent")["value"].sum()
    # A parent's |value| mass is at least its children's (equal unless entries stop at the parent).
    assert (by_id.loc[child_size.index, "size"] >= child_size - 1e-9).all()
    chapters = tree[tree["level"] == "chapter"]
    assert np.isclose(chapters["value"].sum(), by_id.loc[A.ROLLUP_ROOT, "value"])
    assert np.isclose(child_value.loc[A.ROLLUP_ROOT], by_id.loc[A.ROLLUP_ROOT, "value"])


def test_rollup_totals_equal_position_sums(tiny_store, bert_runs, graph_runs, samples,
                                           small_source_cohort) -> None:
    sid = int(samples["sample_id"].iloc[0])
    bert = A.attribute(A.load_model(tiny_store, bert_runs["111"]), small_source_cohort, TASK, [sid])[0]
    for value, column in (("diagnosis", "attr_diagnosis"), ("total", "attr_total"), ("G1", "attr_G1")):
        tree = A.rollup_tree(bert, value)
        _check_tree(tree)
        coded = bert.table[bert.table["code"] != ""]
        root = tree.set_index("id").loc[A.ROLLUP_ROOT]
        assert np.isclose(root["value"], coded[column].sum())
        assert root["n"] == len(coded)
        # Each code's node holds the sum of its positions.
        for code, total in coded.groupby("code")[column].sum().items():
            cat = coded.loc[coded["code"] == code, "category"].iloc[0]
            node = f"CO:{code}" if code != cat else f"CA:{code}"
            assert np.isclose(tree.set_index("id").loc[node, "value"], total)
    with pytest.raises(KeyError):
        A.rollup_tree(A.attribute(A.load_model(tiny_store, bert_runs["000"]), small_source_cohort, TASK,
                                  [sid])[0], "G1")
    graph = A.attribute(A.load_model(tiny_store, graph_runs["111"]), small_source_cohort, TASK, [sid])[0]
    tree = A.rollup_tree(graph)
    _check_tree(tree)
    assert np.isclose(tree.set_index("id").loc[A.ROLLUP_ROOT, "value"], graph.table["attribution"].sum())
    levels = A.level_totals(graph)
    assert np.isclose(levels["chapter"], levels["root"])


def test_mean_attribution_by_code(tiny_store, bert_runs, samples, small_source_cohort) -> None:
    ids = samples["sample_id"].astype(int).tolist()[:4]
    frame = A.mean_attribution_by_code(tiny_store, bert_runs["011"], small_source_cohort, TASK, ids,
                                       n_steps=16)
    assert {"id", "level", "code", "mean_attribution", "n", "n_samples"} <= set(frame)
    assert np.isfinite(frame["mean_attribution"]).all()
    root = frame.set_index("id").loc[A.ROLLUP_ROOT]
    assert root["n_samples"] == len(ids)
    assert frame["id"].str.startswith(("CH:", "BL:", "CA:", "CO:", "ALL")).all()


# ============================================================================ patient report
def test_explain_patient_all_settings_and_cache(tiny_store, bert_runs, graph_runs, samples,
                                                small_source_cohort) -> None:
    A.clear_caches()
    sid = int(samples["sample_id"].iloc[2])
    report = A.explain_patient(tiny_store, bert_runs, small_source_cohort, TASK, sid, n_steps=32)
    assert not report.cached and report.model == "bert" and report.synthetic
    assert report.risks["setting"].tolist() == list(SETTINGS)
    assert report.risks["prob"].between(0, 1).all() and np.isfinite(report.risks["delta"]).all()
    # The fp32 forward agrees with the stored test prediction (bf16 training allowed for).
    assert (report.risks["prob"] - report.risks["stored_prob"]).abs().max() < 0.05
    again = A.explain_patient(tiny_store, bert_runs, small_source_cohort, TASK, sid, n_steps=32)
    assert again.cached  # no timing assert: the same objects come back (below), so nothing was recomputed
    assert again.risks["prob_calibrated"].equals(report.risks["prob_calibrated"])
    assert report.risks["prob_calibrated"].between(0, 1).all()
    for s in SETTINGS:
        assert again.attributions[s] is report.attributions[s]
    totals = report.component_totals()
    assert list(totals.index) == list(SETTINGS)
    assert np.isnan(totals.loc["000", "G0"]) and np.isfinite(totals.loc["111", "G0"])
    assert set(report.timeline["visit_index"]) == set(range(report.anchor_visit_index + 1))
    graph = A.explain_patient(tiny_store, graph_runs, small_source_cohort, TASK, sid, n_steps=32)
    assert graph.model == "graph" and graph.risks["setting"].tolist() == list(SETTINGS)
    with pytest.raises(ValueError, match="one model family"):
        mixed = {"000": bert_runs["000"], "001": graph_runs["001"]}
        A.explain_patient(tiny_store, mixed, small_source_cohort, TASK, sid)
    with pytest.raises(KeyError):
        A.explain_patient(tiny_store, bert_runs, small_source_cohort, TASK, 10**9)


def test_report_download_is_deidentified(tiny_store, bert_runs, samples, small_source_cohort) -> None:
    sid = int(samples["sample_id"].iloc[0])
    report = A.explain_patient(tiny_store, bert_runs, small_source_cohort, TASK, sid, n_steps=32)
    archive = zipfile.ZipFile(io.BytesIO(A.report_zip(report)))
    names = set(archive.namelist())
    assert {"report.json", "report.html", "timeline.csv", "risks.csv", "component_totals.csv"} <= names
    assert {f"attributions_bert_{s}.csv" for s in SETTINGS} <= names
    assert {f"tree_rollup_bert_{s}.csv" for s in SETTINGS} <= names
    html = archive.read("report.html").decode()
    assert "SYNTHETIC" in html and "<script" not in html and "http" not in html
    patient = small_source_cohort.patients.set_index("patient_id").loc[report.patient_id]
    visits = small_source_cohort.visits[small_source_cohort.visits["patient_id"] == report.patient_id]
    secret = [str(patient["source_patient_id"]), *visits["source_visit_id"].astype(str)]
    for name in names:
        text = archive.read(name).decode()
        assert "source_" not in text
        assert not any(s in text for s in secret), name
    assert "start" not in pd.read_csv(io.BytesIO(archive.read("timeline.csv"))).columns


# ============================================================================ figures
def test_figures(tiny_store, bert_runs, graph_runs, samples, small_source_cohort) -> None:
    sid = int(samples["sample_id"].iloc[0])
    report = A.explain_patient(tiny_store, bert_runs, small_source_cohort, TASK, sid, n_steps=32)
    attr = report.attributions["111"]
    heat = view.component_heatmap(attr)
    assert list(heat.data[0].y) == ["code", "G0", "G1", "G2", "age", "position", "segment"]
    assert len(heat.data[0].x) == len(attr.table)
    bars = view.component_bars(report.attributions["000"])
    assert [t.name for t in bars.data] == ["code", "age", "position", "segment"]
    assert len(view.risk_figure(report.risks).data[0].x) == 4
    assert view.timeline_figure(report.timeline).data
    sun = view.rollup_sunburst(A.rollup_tree(attr))
    assert sun.data[0].type == "sunburst" and sun.data[0].ids[0] == A.ROLLUP_ROOT
    assert len(view.totals_figure(report).data) == 7
    graph = A.explain_patient(tiny_store, graph_runs, small_source_cohort, TASK, sid, n_steps=32)
    assert view.graph_node_figure(graph.attributions["111"]).data
    level, note = view.convergence_note(attr)
    assert level in ("ok", "warn", "bad") and "delta" in note


# ============================================================================ reviews
def test_review_validation_and_export(tmp_path: Path) -> None:
    db = tmp_path / "reviews.sqlite"
    with pytest.raises(reviews.ReviewError, match="reviewer"):
        reviews.add_review("   ", "run", "bert", "000", TASK, 1, "plausible", path=db)
    with pytest.raises(reviews.ReviewError, match="verdict"):
        reviews.add_review("Dr A", "run", "bert", "000", TASK, 1, "maybe", path=db)
    first = reviews.add_review("Dr A", "run-1", "bert", "011", TASK, 7, "Plausible", 'ok, "quoted"',
                               path=db)
    reviews.add_review("Dr B", "run-1", "bert", "011", TASK, 8, "unsure", path=db)
    assert first == 1
    mine = reviews.list_reviews(7, path=db)
    assert len(mine) == 1 and mine["verdict"].iloc[0] == "plausible" and mine["reviewer"].iloc[0] == "Dr A"
    assert len(reviews.list_reviews(path=db)) == 2
    assert len(reviews.list_reviews(reviewer="Dr B", path=db)) == 1
    csv = pd.read_csv(io.BytesIO(reviews.export_csv(path=db)))
    assert list(csv.columns) == list(reviews.COLUMNS) and len(csv) == 2
    assert csv["comment"].iloc[0] == 'ok, "quoted"'
    assert reviews.verdict_counts(path=db).to_dict() == {"plausible": 1, "implausible": 0, "unsure": 1}
    assert reviews.db_path() == Path(os.environ["HICD_DATA_DIR"]) / "reviews.sqlite"


def test_concurrent_reviews_threads_and_processes(tmp_path: Path) -> None:
    db = tmp_path / "reviews.sqlite"
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def write(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(15):
                reviews.add_review(f"thread-{worker}", "run", "bert", "111", TASK, i, "unsure", path=db)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    code = ("import sys; from hicd_core.analysis import reviews\n"
            "for i in range(15): reviews.add_review(f'proc-{sys.argv[1]}', 'run', 'graph', '000', "
            "'readmission_30d', i, 'implausible', path=sys.argv[2])")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k), str(db)], cwd=REPO, env=env,
                              stderr=subprocess.PIPE) for k in range(3)]
    threads = [threading.Thread(target=write, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-500:]
    assert not errors, errors
    frame = reviews.list_reviews(path=db)
    assert len(frame) == 6 * 15 + 3 * 15 and frame["id"].is_unique
    counts = frame["reviewer"].value_counts()
    assert (counts == 15).all() and len(counts) == 9
