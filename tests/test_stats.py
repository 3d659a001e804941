"""Tests for hicd_core.stats and the transcribed paper numbers (assets/paper_results.csv).

DeLong and the bootstrap are checked against independent, slow implementations written here from
the definitions, not against the module's own helpers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from hicd_core import stats
from hicd_core.hierarchy import SETTINGS

# ------------------------------------------------------------------------------------- references


def _delong_reference(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong, DeLong & Clarke-Pearson (1988) structural components, O(n_pos * n_neg) from the definition."""
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    v10s, v01s, aucs = [], [], []
    for s in scores:
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z).astype(float) + 0.5 * (x == z)
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))  # one per positive
        v01s.append(psi.mean(axis=0))  # one per negative
    k = len(scores)
    cov = np.empty((k, k))
    for r in range(k):
        for c in range(k):
            s10 = np.sum((v10s[r] - aucs[r]) * (v10s[c] - aucs[c])) / (m - 1)
            s01 = np.sum((v01s[r] - aucs[r]) * (v01s[c] - aucs[c])) / (n - 1)
            cov[r, c] = s10 / m + s01 / n
    return np.array(aucs), cov


def _naive_bootstrap(y, a, b, metric, idx, t_a=0.5, t_b=0.5):
    """Loop over the given resamples with sklearn; the +1-corrected two-sided p and percentile CI."""
    diffs = []
    for row in idx:
        yy = y[row]
        if yy.min() == yy.max():
            continue
        if metric == "macro_f1":
            fa = f1_score(yy, a[row] >= t_a, labels=[0, 1], average="macro", zero_division=0)
            fb = f1_score(yy, b[row] >= t_b, labels=[0, 1], average="macro", zero_division=0)
        elif metric == "auroc":
            fa, fb = roc_auc_score(yy, a[row]), roc_auc_score(yy, b[row])
        else:
            fa, fb = average_precision_score(yy, a[row]), average_precision_score(yy, b[row])
        diffs.append(fa - fb)
    d = np.array(diffs)
    lo, hi = np.quantile(d, [0.025, 0.975])
    p = min(1.0, 2 * min((1 + np.sum(d <= 0)) / (d.size + 1), (1 + np.sum(d >= 0)) / (d.size + 1)))
    return d.size, lo, hi, p


def _synthetic(n: int, seed: int, noise_a: float = 1.0, noise_b: float = 1.5, digits: int = 2):
    """Labels and two correlated scores; rounding creates ties (midranks matter)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    shared = rng.normal(size=n)
    a = 1 / (1 + np.exp(-(1.2 * y + noise_a * shared + 0.5 * rng.normal(size=n))))
    b = 1 / (1 + np.exp(-(1.2 * y + noise_b * shared + 0.8 * rng.normal(size=n))))
    return y, np.round(a, digits), np.round(b, digits)


# ------------------------------------------------------------------------------------------ DeLong


def test_delong_matches_definition_and_sklearn():
    y, a, b = _synthetic(300, seed=1)
    out = stats.delong_test(y, a, b)
    aucs, cov = _delong_reference(y, [a, b])
    assert out["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert out["auc_b"] == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert out["auc_a"] == pytest.approx(aucs[0], abs=1e-12)
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert out["se"] == pytest.approx(se, rel=1e-9)
    assert out["diff"] == pytest.approx(aucs[0] - aucs[1], abs=1e-12)
    z = (aucs[0] - aucs[1]) / se
    assert out["z"] == pytest.approx(z, rel=1e-9)
    assert out["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
    assert 0 < out["p_value"] < 1


def test_delong_single_auc_variance_matches_definition():
    y, a, _ = _synthetic(200, seed=2, digits=1)  # heavy ties
    ci = stats.delong_ci(y, a)
    aucs, cov = _delong_reference(y, [a])
    assert ci["auc"] == pytest.approx(aucs[0], abs=1e-12)
    assert ci["se"] ** 2 == pytest.approx(cov[0, 0], rel=1e-9)
    half = 1.959963984540054 * np.sqrt(cov[0, 0])
    assert ci["ci_low"] == pytest.approx(aucs[0] - half, rel=1e-9)
    assert ci["ci_high"] == pytest.approx(aucs[0] + half, rel=1e-9)


def test_delong_edge_cases():
    y, a, _ = _synthetic(100, seed=3)
    same = stats.delong_test(y, a, a)
    assert same["diff"] == 0 and same["se"] == 0 and same["p_value"] == 1.0
    one_class = stats.delong_test(np.zeros(10, dtype=int), np.linspace(0, 1, 10), np.linspace(1, 0, 10))
    assert all(np.isnan(v) for v in one_class.values())
    assert np.isnan(stats.delong_ci(np.ones(5, dtype=int), np.linspace(0, 1, 5))["auc"])
    with pytest.raises(ValueError):
        stats.delong_test([0, 1, 2], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3])


# --------------------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("digits", [1, 2, 8])  # heavy ties ... all scores distinct
@pytest.mark.parametrize("metric", ["macro_f1", "auroc", "auprc"])
def test_paired_bootstrap_matches_naive_loop(metric, digits):
    y, a, b = _synthetic(250, seed=4, digits=digits)
    t_a, t_b = 0.55, 0.6
    out = stats.paired_bootstrap(y, a, b, metric, n_resamples=60, seed=11, threshold_a=t_a, threshold_b=t_b)
    idx = stats.bootstrap_indices(y.size, 60, seed=11)
    n_valid, lo, hi, p = _naive_bootstrap(y, a, b, metric, idx, t_a, t_b)
    full = {
        "macro_f1": lambda s, t: f1_score(y, s >= t, labels=[0, 1], average="macro", zero_division=0),
        "auroc": lambda s, t: roc_auc_score(y, s),
        "auprc": lambda s, t: average_precision_score(y, s),
    }[metric]
    assert out["diff"] == pytest.approx(full(a, t_a) - full(b, t_b), abs=1e-12)
    assert out["n_valid"] == n_valid == 60
    assert out["ci_low"] == pytest.approx(lo, abs=1e-10)
    assert out["ci_high"] == pytest.approx(hi, abs=1e-10)
    assert out["p_value"] == pytest.approx(p, abs=1e-12)


def test_paired_bootstrap_seeded_and_skips_one_class_resamples():
    y, a, b = _synthetic(400, seed=5)
    first = stats.paired_bootstrap(y, a, b, "auprc", n_resamples=200, seed=7)
    assert stats.paired_bootstrap(y, a, b, "auprc", n_resamples=200, seed=7) == first
    other = stats.paired_bootstrap(y, a, b, "auprc", n_resamples=200, seed=8)
    assert other["diff"] == first["diff"]  # full-data estimate does not depend on the seed
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])
    # 1 positive in 6: about a third of resamples have no positive and must be skipped, not crash.
    tiny = stats.paired_bootstrap([0, 0, 0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.9],
                                  [0.1, 0.2, 0.3, 0.4, 0.95, 0.9], "auroc", n_resamples=300, seed=0)
    assert 100 < tiny["n_valid"] < 300
    assert np.isfinite(tiny["p_value"]) and tiny["diff"] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        stats.paired_bootstrap(y, a, b, "accuracy")


def test_paired_bootstrap_identical_models_p_is_one():
    y, a, _ = _synthetic(300, seed=6)
    out = stats.paired_bootstrap(y, a, a.copy(), "macro_f1", n_resamples=100, threshold_a=0.5,
                                 threshold_b=0.5)
    assert out["diff"] == 0 and out["p_value"] == 1.0 and out["ci_low"] == out["ci_high"] == 0


# ------------------------------------------------------------------------------- Holm and seeds


def test_holm_known_sequence_and_nan():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.4, 0.3]), [0.9, 0.9, 0.9])
    np.testing.assert_allclose(stats.holm([0.6, 0.9]), [1.0, 1.0])  # capped
    out = stats.holm([0.01, np.nan, 0.04])
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])  # m = 2 finite p-values
    assert stats.holm([]).size == 0


def test_seed_summary():
    vals = [0.70, 0.72, 0.69, 0.73]
    s = stats.seed_summary(vals)
    lo, hi = sps.t.interval(0.95, 3, loc=np.mean(vals), scale=sps.sem(vals))
    assert s["n"] == 4 and s["sd"] == pytest.approx(np.std(vals, ddof=1))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    one = stats.seed_summary([0.7])
    assert one["mean"] == 0.7 and np.isnan(one["sd"]) and np.isnan(one["ci_low"]) and np.isnan(one["ci_high"])
    assert stats.seed_summary([0.7, np.nan, 0.8])["n"] == 2


# ------------------------------------------------------------------------ threshold and metrics


def test_choose_threshold_hand_made():
    # Positives at 0.45 and 0.6, negatives at 0.1, 0.2, 0.5: no cut separates them perfectly.
    # t in (0.2, 0.45] -> TP=2, FP=1, TN=2, FN=0 -> F1+ = 0.8, F1- = 0.8 -> macro 0.8 (the best);
    # t in (0.5, 0.6] -> TP=1, FP=0, FN=1, TN=3 -> F1+ = 0.667, F1- = 0.857 -> 0.762.
    y = [0, 0, 1, 0, 1]
    p = [0.1, 0.2, 0.45, 0.5, 0.6]
    t = stats.choose_threshold(y, p)
    assert 0.2 < t <= 0.45
    assert t == stats.THRESHOLD_GRID[stats.THRESHOLD_GRID > 0.2][0]  # ties go to the lowest threshold
    assert stats.macro_f1(y, p, t) == pytest.approx(0.8)


def test_threshold_convention_is_greater_or_equal():
    grid = stats.THRESHOLD_GRID
    y = [0, 0, 1, 1]
    p = grid[[20, 40, 60, 100]]  # scores sitting exactly on grid values
    # prob >= t is positive: a perfect split needs grid[40] < t <= grid[60]; the lowest is grid[41].
    assert stats.choose_threshold(y, p) == grid[41]
    assert stats.macro_f1(y, p, grid[60]) == 1.0
    assert stats.macro_f1(y, p, grid[40]) < 1.0


def test_choose_threshold_maximises_sklearn_macro_f1():
    y, a, _ = _synthetic(500, seed=9, digits=3)
    t = stats.choose_threshold(y, a)
    grid = stats.THRESHOLD_GRID
    scores = [f1_score(y, a >= g, labels=[0, 1], average="macro", zero_division=0) for g in grid]
    assert t == grid[int(np.argmax(scores))]
    assert stats.macro_f1(y, a, t) == pytest.approx(max(scores))


def test_binary_metrics_hand_made():
    # Perfectly calibrated constant forecast: 1 of 4 positive at p = 0.25 -> ECE 0.
    m = stats.binary_metrics([1, 0, 0, 0], [0.25] * 4, 0.5)
    assert m["ece"] == pytest.approx(0.0)
    assert m["brier"] == pytest.approx((0.75**2 + 3 * 0.25**2) / 4)
    assert m["auroc"] == 0.5 and m["positive_rate"] == 0.25 and m["n"] == 4 and m["n_pos"] == 1
    # Bins: {0.05 | y=0}, {0.55 | y=1}, {0.95, 0.95 | y=1, 1} -> (0.05 + 0.45 + 0.1) / 4.
    m = stats.binary_metrics([0, 1, 1, 1], [0.05, 0.55, 0.95, 0.95], 0.5)
    assert m["ece"] == pytest.approx(0.15)
    assert m["brier"] == pytest.approx((0.05**2 + 0.45**2 + 2 * 0.05**2) / 4)
    assert m["auroc"] == 1.0 and m["auprc"] == 1.0 and m["macro_f1"] == 1.0
    assert stats.expected_calibration_error([1], [1.0]) == 0.0  # p = 1 lands in the top bin


def test_binary_metrics_against_sklearn_and_one_class():
    y, a, _ = _synthetic(400, seed=10)
    m = stats.binary_metrics(y, a, 0.4)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, a))
    assert m["auprc"] == pytest.approx(average_precision_score(y, a))
    assert m["macro_f1"] == pytest.approx(f1_score(y, a >= 0.4, average="macro"))
    assert m["predicted_positive_rate"] == pytest.approx(np.mean(a >= 0.4))
    one = stats.binary_metrics([0, 0, 0], [0.2, 0.3, 0.9], 0.5)
    assert np.isnan(one["auroc"]) and np.isnan(one["auprc"])
    assert one["n_pos"] == 0 and one["brier"] == pytest.approx((0.04 + 0.09 + 0.81) / 3)
    with pytest.raises(ValueError):
        stats.binary_metrics([0, 1], [0.2, 1.3], 0.5)


# ---------------------------------------------------------------------------------- compare_to_flat


def test_compare_to_flat_detects_better_and_identical_settings():
    rng = np.random.default_rng(12)
    n = 3000
    y = (rng.random(n) < 0.3).astype(int)
    signal = y * 1.0
    flat = 1 / (1 + np.exp(-(signal + 1.5 * rng.normal(size=n))))
    better = 1 / (1 + np.exp(-(2.5 * signal + 0.8 * rng.normal(size=n))))
    ids = np.arange(n) * 7 + 3
    parts = []
    for setting, prob, thr in (("000", flat, 0.4), ("111", better, 0.45), ("010", flat, 0.4)):
        order = rng.permutation(n)  # rows arrive shuffled: alignment must use sample_id
        parts.append(pd.DataFrame({"setting": setting, "sample_id": ids[order], "label": y[order],
                                   "prob": prob[order], "threshold": thr}))
    out = stats.compare_to_flat(pd.concat(parts, ignore_index=True), n_resamples=300, seed=1)
    assert out["setting"].tolist() == ["010", "111"]  # paper order: G1 before all-levels
    best = out.set_index("setting").loc["111"]
    same = out.set_index("setting").loc["010"]
    assert best["delta_auroc"] > 0.1 and best["p_auroc"] < 1e-6
    assert best["delta_macro_f1"] > 0 and best["p_macro_f1"] < 0.01
    assert best["delta_auprc"] > 0 and best["p_auprc"] < 0.01
    assert best["auroc"] == pytest.approx(roc_auc_score(y, better))
    assert best["auroc_flat"] == pytest.approx(roc_auc_score(y, flat))
    for col in ("p_auroc", "p_macro_f1", "p_auprc"):
        assert same[col] == pytest.approx(1.0)
        assert same[col.replace("p_", "delta_")] == 0
        assert (out[f"{col}_holm"] >= out[col] - 1e-15).all()
    assert best["p_macro_f1_holm"] == pytest.approx(min(1.0, 2 * best["p_macro_f1"]))
    assert best["n"] == n and best["n_pos"] == y.sum()


def test_compare_to_flat_equals_pairwise_public_calls_and_handles_missing_samples():
    y, flat, better = _synthetic(600, seed=13)
    _, worse, _ = _synthetic(600, seed=14)
    ids = np.arange(600)
    frame = pd.concat([
        pd.DataFrame({"setting": "000", "sample_id": ids, "label": y, "prob": flat, "threshold": 0.45}),
        pd.DataFrame({"setting": "001", "sample_id": ids, "label": y, "prob": better, "threshold": 0.5}),
        # '100' lacks the first 50 samples: it is compared with flat on the other 550 only.
        pd.DataFrame({"setting": "100", "sample_id": ids[50:], "label": y[50:], "prob": worse[50:],
                      "threshold": 0.55}),
    ])
    out = stats.compare_to_flat(frame, n_resamples=120, seed=3).set_index("setting")
    assert out.index.tolist() == ["100", "001"]
    assert out.loc["100", "n"] == 550 and out.loc["001", "n"] == 600
    for setting, prob, thr, keep in (("001", better, 0.5, ids >= 0), ("100", worse, 0.55, ids >= 50)):
        dl = stats.delong_test(y[keep], prob[keep], flat[keep])
        assert out.loc[setting, "p_auroc"] == pytest.approx(dl["p_value"], rel=1e-12)
        f1 = stats.paired_bootstrap(y[keep], prob[keep], flat[keep], "macro_f1", n_resamples=120, seed=3,
                                    threshold_a=thr, threshold_b=0.45)
        ap = stats.paired_bootstrap(y[keep], prob[keep], flat[keep], "auprc", n_resamples=120, seed=3)
        assert out.loc[setting, "delta_macro_f1"] == pytest.approx(f1["diff"], abs=1e-12)
        assert out.loc[setting, "p_macro_f1"] == f1["p_value"]
        assert out.loc[setting, "delta_auprc_ci_low"] == pytest.approx(ap["ci_low"], abs=1e-12)
        assert out.loc[setting, "p_auprc"] == ap["p_value"]


def test_compare_to_flat_rejects_bad_frames():
    frame = pd.DataFrame({"setting": ["000", "000", "100", "100"], "sample_id": [1, 2, 1, 2],
                          "label": [0, 1, 1, 1], "prob": [0.1, 0.9, 0.2, 0.8], "threshold": 0.5})
    with pytest.raises(ValueError, match="labels differ"):
        stats.compare_to_flat(frame)
    with pytest.raises(ValueError, match="flat setting"):
        stats.compare_to_flat(frame[frame["setting"] == "100"])
    with pytest.raises(ValueError, match="missing"):
        stats.compare_to_flat(frame.drop(columns="threshold"))


# -------------------------------------------------------------------------------- paper results


@pytest.fixture(scope="module")
def paper() -> pd.DataFrame:
    return stats.load_paper_results()


def _value(df: pd.DataFrame, table: int, model: str, setting: str, metric: str) -> pd.Series:
    keep = (df["table"] == table) & (df["model"] == model) & (df["setting"] == setting)
    row = df[keep & (df["metric"] == metric)]
    assert len(row) == 1
    return row.iloc[0]


def test_paper_results_shape_and_keys(paper):
    assert paper.shape == (96, 10)
    assert list(paper.columns) == ["table", "task", "model", "setting", "metric", "value", "significant",
                                   "best", "dataset", "source"]
    assert not paper.duplicated(["table", "model", "setting", "metric"]).any()
    assert sorted(paper["setting"].unique()) == sorted(SETTINGS)
    assert paper.groupby("table").size().tolist() == [32, 32, 32]
    tasks = paper.groupby("table")[["task", "dataset"]].agg(set)
    assert tasks.loc[1, "task"] == {"readmission_30d"} and tasks.loc[1, "dataset"] == {"MIMIC-IV"}
    assert tasks.loc[2, "task"] == {"emergency_next"} and tasks.loc[2, "dataset"] == {"MIMIC-IV"}
    assert tasks.loc[3, "task"] == {"icu_readmission"} and tasks.loc[3, "dataset"] == {"eICU"}
    assert paper["significant"].dtype == bool and paper["best"].dtype == bool
    assert paper["value"].between(0.3, 0.8).all()


def test_paper_results_spot_values(paper):
    r = _value(paper, 1, "bert", "000", "auroc")
    assert r["value"] == 0.6808 and not r["significant"] and not r["best"]
    r = _value(paper, 2, "graph", "011", "auroc")
    assert r["value"] == 0.7577 and r["significant"] and r["best"]
    r = _value(paper, 1, "graph", "110", "macro_f1")
    assert r["value"] == 0.6088 and r["significant"] and r["best"]
    r = _value(paper, 2, "bert", "111", "macro_f1")
    assert r["value"] == 0.4988 and not r["significant"]
    r = _value(paper, 3, "graph", "000", "macro_f1")
    assert r["value"] == 0.380 and r["significant"]  # the printed (probably typo) star on a baseline
    r = _value(paper, 3, "bert", "100", "auroc")
    assert r["value"] == 0.571 and r["significant"] and r["best"]
    assert not _value(paper, 3, "graph", "010", "macro_f1")["best"]  # ties 0.487 with G0+G2, not bold
    assert _value(paper, 3, "graph", "101", "macro_f1")["best"]


def test_paper_results_bold_is_column_max(paper):
    bold = paper[paper["best"]]
    assert len(bold) == 12 and not bold.duplicated(["table", "model", "metric"]).any()
    col_max = paper.groupby(["table", "model", "metric"])["value"].max()
    for _, r in bold.iterrows():
        assert r["value"] == col_max[(r["table"], r["model"], r["metric"])]


def test_paper_claim_26_of_28_in_domain_auroc_significant(paper):
    auroc = paper[(paper["metric"] == "auroc") & paper["table"].isin([1, 2])]
    base = auroc[auroc["setting"] == "000"].set_index(["table", "model"])["value"]
    variants = auroc[auroc["setting"] != "000"]
    assert len(variants) == 28
    keys = list(zip(variants["table"], variants["model"], strict=True))
    gains = variants["value"].to_numpy() > base.loc[keys].to_numpy()
    sig = variants["significant"].to_numpy()
    assert sig.sum() == 26 and (sig & gains).sum() == 26
    misses = variants.loc[~variants["significant"], ["model", "setting"]].drop_duplicates()
    assert misses.values.tolist() == [["bert", "010"]]  # HICD-BERT G1 on both tasks
    # Transfer: HICD-Graph AUROC significant for 6 of 7 variants, HICD-BERT only for G0.
    t3 = paper[(paper["table"] == 3) & (paper["metric"] == "auroc") & (paper["setting"] != "000")]
    assert t3.groupby("model")["significant"].sum().to_dict() == {"bert": 1, "graph": 6}


def test_bootstrap_ci_matches_a_plain_loop_over_the_same_resamples() -> None:
    """The vectorised one-model interval uses bootstrap_indices' resamples: same draws as a loop."""
    from sklearn.metrics import average_precision_score

    from hicd_core.stats import bootstrap_ci, bootstrap_indices

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 300), 0, 1)
    draws = [average_precision_score(y[rows], p[rows]) for rows in bootstrap_indices(300, 200, 7)
             if 0 < y[rows].sum() < len(rows)]
    ci = bootstrap_ci(y, p, "auprc", n_resamples=200, seed=7)
    assert ci["n_valid"] == len(draws)
    assert np.allclose([ci["ci_low"], ci["ci_high"]], np.quantile(draws, [0.025, 0.975]), atol=1e-12)
    assert ci["value"] == pytest.approx(average_precision_score(y, p))


# ------------------------------------------------------------------------------------ calibration


def _inflated(n: int, seed: int, odds_factor: float = 9.0):
    """Calibrated probabilities, and the same with every odds multiplied by ``odds_factor`` -- what a
    weighted sampler plus pos_weight does to a model (both weights ~ N_neg / N_pos = 3 here)."""
    rng = np.random.default_rng(seed)
    true = 1 / (1 + np.exp(-(rng.normal(size=n) * 1.2 - 1.2)))
    y = (rng.random(n) < true).astype(int)
    odds = true / (1 - true) * odds_factor
    return y, true, odds / (1 + odds)


def test_platt_recalibration_lowers_brier_and_ece_on_inflated_odds() -> None:
    y_val, _, raw_val = _inflated(3000, seed=1)
    y_test, true_test, raw_test = _inflated(3000, seed=2)
    cal = stats.fit_platt(y_val, raw_val)
    assert cal["method"] == "platt" and cal["note"] == ""
    # The inflation is a constant logit shift of log 9: Platt's intercept undoes it, slope ~ 1.
    assert cal["intercept"] == pytest.approx(-np.log(9.0), abs=0.25)
    assert cal["slope"] == pytest.approx(1, abs=0.15)
    fixed = stats.apply_platt(raw_test, cal)
    before = stats.binary_metrics(y_test, raw_test, 0.5)
    after = stats.calibration_scores(y_test, fixed)
    assert after["brier_calibrated"] <= before["brier"] and after["ece_calibrated"] < before["ece"]
    assert after["brier_calibrated"] == pytest.approx(np.mean((fixed - y_test) ** 2))
    assert after["brier_calibrated"] < 1.05 * np.mean((true_test - y_test) ** 2)  # near the true risks' Brier
    assert roc_auc_score(y_test, fixed) == pytest.approx(roc_auc_score(y_test, raw_test))  # monotone
    assert stats.calibration_scores(y_test, raw_test, suffix="")["brier"] == pytest.approx(before["brier"])


def test_platt_edge_cases() -> None:
    one = stats.fit_platt([1, 1, 1], [0.2, 0.9, 0.5])
    assert one["method"] == "identity"
    assert np.allclose(stats.apply_platt([0.2, 0.9], one), [0.2, 0.9])
    backwards = stats.fit_platt([1, 1, 0, 0, 1, 0], [0.1, 0.2, 0.8, 0.9, 0.15, 0.7])
    assert backwards["slope"] == 0 and "negative" in backwards["note"]
    assert np.ptp(stats.apply_platt([0.1, 0.5, 0.99], backwards)) == 0  # prevalence for everyone
    separable = stats.fit_platt([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])  # Platt's targets keep it finite
    assert np.isfinite(separable["slope"]) and np.all(np.isfinite(stats.apply_platt([0.0, 1.0], separable)))
