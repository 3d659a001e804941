"""The engine's view models behind the app's pages (store status, background progress, tree and
embedding views, result intervals), tested directly without Streamlit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core.analysis import attributions, embedding_view, results_view, tree_view
from hicd_core.experiments import background, store_status


def test_status_view_and_eta() -> None:
    status = {"state": "running", "finished": ["a", "b"], "failed": ["c"],
              "event": {"run_id": "bert-000", "run_index": 2, "n_runs": 10, "stage": "finetune",
                        "run_fraction": 0.5, "overall_fraction": 0.25, "eta_seconds": 600}}
    view = background.training_view(status, running=True)
    assert view["overall"] == 0.25 and view["eta"] == "about 10 min" and view["finished"] == 2
    assert view["failed"] == 1 and view["stage"] == "finetune"
    assert view["active"] == [("bert-000", "finetune", 0.5)]  # an older status file: the last event
    parallel = {**status, "active": {"bert-000": {"stage": "pretrain", "fraction": 0.2},
                                     "graph-011": {"stage": "gcn", "fraction": 0.7}}}
    assert background.training_view(parallel, running=True)["active"] == [
        ("bert-000", "pretrain", 0.2), ("graph-011", "gcn", 0.7)]
    assert background.training_view(status, running=False)["state"] == "stopped"
    assert background.training_view({"state": "idle"}, running=False)["state"] == "idle"
    assert background.format_eta(None) == "estimating" and background.format_eta(30) == "about 30 s"
    assert background.format_eta(7200) == "about 2.0 h"


def test_store_problem_messages(tmp_path: Path) -> None:
    assert store_status.store_problem(tmp_path / "nope", launch_default=True) is None
    level, message = store_status.store_problem(tmp_path / "nope", launch_default=False)
    assert level == "error" and "No folder" in message
    (tmp_path / "file.txt").write_text("x")
    assert "is a file" in store_status.store_problem(tmp_path / "file.txt", launch_default=False)[1]
    assert "not a run store" in store_status.store_problem(tmp_path, launch_default=False)[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert store_status.store_problem(empty, launch_default=False) is None  # a new store to train into
    (tmp_path / "runs").mkdir()
    assert store_status.store_problem(tmp_path, launch_default=False) is None


def test_store_version_changes_when_runs_appear(tmp_path: Path) -> None:
    before = store_status.store_version(tmp_path)
    (tmp_path / "runs").mkdir()
    assert store_status.store_version(tmp_path) != before


def test_node_outcome_rates_match_a_direct_count(small_source_cohort) -> None:
    cohort = small_source_cohort
    task = "readmission_30d"
    rates = tree_view.node_outcome_rates(cohort, task, min_samples=1).set_index("id")
    # Direct count for one chapter: samples whose history (anchor visit and earlier) holds a chapter-IX code.
    diag = cohort.diagnoses.merge(cohort.visits[["visit_id", "visit_index"]], on="visit_id")
    first = diag[diag["chapter"].astype(str) == "IX"].groupby("patient_id")["visit_index"].min()
    samples = cohort.tasks[task]
    has = samples["patient_id"].map(first)
    hit = samples[has.notna() & (samples["visit_index"] >= has)]
    assert rates.loc["CH:IX", "samples"] == len(hit)
    assert rates.loc["CH:IX", "rate"] == pytest.approx(hit["label"].mean())
    assert rates["rate"].dropna().between(0, 1).all()
    small = tree_view.node_outcome_rates(cohort, task, min_samples=10**9)
    assert small["rate"].isna().all()  # below the minimum cell size nothing is shown


def test_node_statistics_and_counts(small_source_cohort) -> None:
    counts = tree_view.code_counts(small_source_cohort)
    code = counts.index[0]
    stats = tree_view.node_statistics(small_source_cohort, f"CO:{code}")
    if stats["occurrences"] == 0:  # a 3-character billable code is a category node, not a CO: node
        stats = tree_view.node_statistics(small_source_cohort, f"CA:{code}")
    assert stats["occurrences"] == counts.iloc[0] and 0 < stats["patients"] <= stats["occurrences"]
    assert tree_view.node_statistics(small_source_cohort, "XX:nothing")["occurrences"] == 0


def test_attribution_samples_are_test_split_and_stable(small_source_cohort) -> None:
    ids = attributions.attribution_samples(small_source_cohort, "readmission_30d", 25)
    samples = small_source_cohort.tasks["readmission_30d"].set_index("sample_id")
    assert len(ids) == 25 and (samples.loc[ids, "split"] == "test").all()
    assert ids == attributions.attribution_samples(small_source_cohort, "readmission_30d", 25)


@pytest.mark.parametrize("nested", [False, True])
def test_tightness_frames_from_stored_summaries(nested: bool) -> None:
    def entry(scale: float) -> dict:
        relationship = {"same_category": 0.4 * scale, "same_chapter": 0.3 * scale, "different_chapter": 0.1,
                        "std_same_category": 0.2}
        chapters = [{"chapter": "IX", "mean_cosine": 0.5 * scale}, {"chapter": "I", "mean_cosine": 0.2}]
        if nested:  # the layout of early sweeps
            return {"relationship": relationship, "silhouette_by_chapter": 0.05 * scale, "chapters": chapters}
        return {**relationship, "silhouette": 0.05 * scale, "chapters": chapters}

    tight, wide = embedding_view.tightness_frames({"011": entry(2.0), "000": entry(1.0)})
    assert list(tight.index) == ["000", "011"]
    assert tight.loc["011", "tightness"] == pytest.approx(0.7)
    assert tight.loc["011", "silhouette"] == pytest.approx(0.1)
    assert tight.loc["000", "std_same_category"] == pytest.approx(0.2)
    assert list(wide.index) == ["I", "IX"] and wide.loc["IX", "011"] == pytest.approx(1.0)


def test_run_interval_methods() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    pred = pd.DataFrame({"label": labels, "prob": np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)})
    value, low, high, how = results_view.run_interval(pred, "auroc", 0.5)
    assert low < value < high and "DeLong" in how
    value, low, high, how = results_view.run_interval(pred, "macro_f1", 0.5, n_resamples=100)
    assert low <= value <= high and "bootstrap" in how


def test_missing_summary_and_counts() -> None:
    listing = pd.DataFrame({"model": ["bert"] * 3, "task": ["readmission_30d"] * 3, "kind": ["task"] * 3,
                            "setting": ["000", "100", "010"], "status": ["finished", "missing", "failed"]})
    assert store_status.listing_counts(listing) == {"finished": 1, "damaged": 0, "failed": 1, "missing": 1}
    assert store_status.missing_summary(listing) == "bert readmission_30d: G0, G1"
    assert store_status.missing_summary(listing.assign(status="finished")) == ""
