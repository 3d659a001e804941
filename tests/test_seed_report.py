"""The across-seed report, calibration and the degenerate-threshold flag on a three-seed store
(``tests/seed_store.py``: a stand-in model family trained by the real sweep in seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core import stats
from hicd_core.experiments import report
from hicd_core.experiments.runstore import RunStore
from tests.seed_store import DEGENERATE_SETTING, GAIN_SETTING, SEEDS, build_seed_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seed_store(small_source_cohort, small_target_cohort, tmp_path_factory) -> RunStore:
    return build_seed_store(tmp_path_factory.mktemp("seed_store"), small_source_cohort, small_target_cohort)


@pytest.fixture(scope="module")
def compared(seed_store) -> pd.DataFrame:
    return report.comparisons(seed_store, n_resamples=200)


def _strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_runs_store_raw_and_calibrated_probabilities(seed_store) -> None:
    table = seed_store.results_table()
    task = table[table["kind"] == "task"]
    assert len(table) == 2 * 3 * len(SEEDS) and (table["calibration"] == "platt").all()
    # The stand-in's logits are shifted by +2 (inflated odds): recalibration must not be worse.
    assert (table["brier_calibrated"] <= table["brier"] + 1e-12).all()
    assert (task["brier_calibrated"] < task["brier"]).all() and (task["ece_calibrated"] < task["ece"]).all()
    for run_id in table["run_id"]:
        pred = seed_store.predictions(run_id)
        assert {"prob", "prob_calibrated"} <= set(pred.columns)
        metrics = json.loads((seed_store.run_dir(run_id) / "metrics.json").read_text())
        assert metrics["calibration"]["slope"] > 0
        assert stats.auroc(pred["label"], pred["prob_calibrated"]) == pytest.approx(
            stats.auroc(pred["label"], pred["prob"]), abs=1e-12)  # monotone: the ranking is the paper's
        assert metrics["calibration"]["fitted_on"] == "validation"
        assert metrics["test"]["brier_calibrated"] == pytest.approx(
            np.mean((pred["prob_calibrated"] - pred["label"]) ** 2))


def test_degenerate_threshold_is_flagged_and_never_starred(seed_store, compared) -> None:
    table = seed_store.results_table()
    flagged = table[table["degenerate_threshold"]]
    assert flagged[["setting", "seed", "kind"]].values.tolist() == [[DEGENERATE_SETTING, 0, "task"]]
    assert (flagged["predicted_positive_rate"] == 0).all()
    rows = compared[(compared["evaluation"] == "readmission_30d")
                    & (compared["setting"] == DEGENERATE_SETTING)]
    assert rows.set_index("seed")["degenerate_threshold"].to_dict() == {0: True, 1: False, 2: False}
    assert "predicts no test sample positive" in rows.set_index("seed").loc[0, "note"]
    across = report.across_seeds(compared).set_index(["evaluation", "setting"])
    row = across.loc[("readmission_30d", DEGENERATE_SETTING)]
    assert not row["significant_macro_f1"] and row["note"].startswith("macro-F1 not starred: seed 0:")
    assert not across.loc[("readmission_30d", GAIN_SETTING), "degenerate_threshold"]


def test_across_seeds_is_the_headline(compared) -> None:
    assert (compared["bootstrap_unit"] == "patient").all()
    across = report.across_seeds(compared)
    assert (across["n_seeds"] == len(SEEDS)).all()
    assert (across["method_auroc"] == stats.ACROSS_SEED_METHOD).all()
    for (evaluation, setting), row in across.set_index(["evaluation", "setting"]).iterrows():
        seeds = compared[(compared["evaluation"] == evaluation) & (compared["setting"] == setting)]
        for metric in ("auroc", "macro_f1", "auprc"):
            expected = stats.across_seed_test(seeds[f"delta_{metric}"], seeds[f"cross_cov_{metric}"].iloc[0])
            assert row[f"delta_{metric}"] == pytest.approx(seeds[f"delta_{metric}"].mean())
            assert row[f"p_{metric}"] == pytest.approx(expected["p_value"])
    for _, group in across.groupby(["model", "evaluation"]):
        assert np.allclose(group["p_auroc_holm"], stats.holm(group["p_auroc"]), equal_nan=True)
    gain = across.set_index(["evaluation", "setting"]).loc[("readmission_30d", GAIN_SETTING)]
    assert gain["delta_auroc"] > 0.02 and gain["significant_auroc"] and gain["delta_auroc_ci_low"] > 0
    best = report.headline(compared).set_index("evaluation")
    assert best.loc["readmission_30d", "setting"] == GAIN_SETTING
    assert best.loc["readmission_30d", "n_seeds"] == 3
    assert "3 training seeds" in best.loc["readmission_30d", "seed_note"]


def test_one_seed_falls_back_to_the_per_seed_test_and_says_so(compared) -> None:
    one = compared[compared["seed"] == 1]
    across = report.across_seeds(one).set_index(["evaluation", "setting"])
    per_seed = one.set_index(["evaluation", "setting"])
    assert (across["n_seeds"] == 1).all() and (across["method_auroc"] == "one seed: per-seed DeLong").all()
    assert np.allclose(across["p_auroc"], per_seed.loc[across.index, "p_auroc"])
    assert np.allclose(across["p_macro_f1_holm"], per_seed.loc[across.index, "p_macro_f1_holm"])
    assert report.headline(one)["seed_note"].str.startswith("ONE training seed").all()


def test_plain_bootstrap_option_keeps_delong(seed_store, compared) -> None:
    plain = report.comparisons(seed_store, n_resamples=200, cluster=False)
    assert (plain["bootstrap_unit"] == "sample").all()
    assert np.allclose(plain["p_auroc"], compared["p_auroc"])  # DeLong does not resample
    assert not np.allclose(plain["p_macro_f1"], compared["p_macro_f1"])


def test_cli_report_across_seeds_and_strict_json(seed_store) -> None:
    run = [sys.executable, "-m", "hicd_core", "report", "--store", str(seed_store.root), "--resamples", "100"]
    text = subprocess.run(run, capture_output=True, text=True, cwd=REPO)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert out.index("ACROSS SEEDS (headline)") < out.index("PER RUN (detail)")
    assert "3 training seeds" in out and "macro-F1 not starred" in out and "DEGENERATE threshold" in out
    assert "uncalibrated" in out
    data = _strict(subprocess.run([*run, "--json", "--no-cluster-bootstrap"], capture_output=True, text=True,
                                  cwd=REPO).stdout)
    assert data["methods"]["bootstrap_unit"] == "sample"
    assert {row["n_seeds"] for row in data["across_seeds"]} == {3}
    assert data["headline"] and all("brier_calibrated" in row for row in data["runs"])


def test_verify_json_is_strict(seed_store) -> None:
    out = subprocess.run([sys.executable, "-m", "hicd_core", "verify", "--store", str(seed_store.root),
                          "--json"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert _strict(out.stdout)["verified_runs"] == 2 * 3 * len(SEEDS)
