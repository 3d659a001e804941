"""The across-seed test (Obuchowski-Rockette with Hillis df) and the cluster (patient) bootstrap.

Checked against textbook computations written here from the definitions: the OR ANOVA with a
brute-force DeLong covariance, scipy's one-sample t-test, and a loop over explicitly expanded
cluster resamples scored with sklearn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score, f1_score

from hicd_core import stats
from hicd_core.stats.compare import _cross_mean
from hicd_core.stats.delong import _delong_components
from tests.test_stats import _delong_reference

# ------------------------------------------------------------------------------------- fixtures


def _seed_runs(n: int, seeds: int, rng: np.random.Generator, gain: float = 0.0, seed_noise: float = 0.3,
               patient_quirk: float = 0.8) -> tuple[np.ndarray, dict[tuple[int, str], np.ndarray]]:
    """Labels and scores of a flat and a hierarchy run per training seed on ONE test set.

    Each setting has a per-patient quirk shared by all its seeds (test-set noise common to the
    seeds) and a per-seed perturbation (training-seed noise); ``gain`` is the true AUROC advantage.
    """
    y = (rng.random(n) < 0.35).astype(int)
    base = rng.normal(size=n)
    quirk = {s: patient_quirk * rng.normal(size=n) for s in ("000", "111")}
    runs = {}
    for sd in range(seeds):
        for setting, signal in (("000", 1.0), ("111", 1.0 + gain)):
            score = signal * y + base + quirk[setting] + seed_noise * rng.normal(size=n)
            runs[(sd, setting)] = np.round(1 / (1 + np.exp(-score)), 3)  # rounding: ties
    return y, runs


def _long_frame(y: np.ndarray, runs: dict[tuple[int, str], np.ndarray], patients: np.ndarray | None = None
                ) -> pd.DataFrame:
    ids = np.arange(y.size) * 3 + 1
    parts = [pd.DataFrame({"seed": sd, "setting": st, "sample_id": ids, "label": y, "prob": p,
                           "threshold": 0.5, "patient_id": ids if patients is None else patients})
             for (sd, st), p in runs.items()]
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- across_seed_test


def _or_textbook(theta: np.ndarray, cov: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Obuchowski-Rockette for t modalities x r readers from the ANOVA formulas (Hillis 2007, eqs. 3-5).

    ``theta`` is (t, r); ``cov`` the (t*r, t*r) error covariance ordered modality-major.
    """
    t, r = theta.shape
    grand = theta.mean()
    ms_t = r * np.sum((theta.mean(axis=1) - grand) ** 2) / (t - 1)
    inter = theta - theta.mean(axis=1, keepdims=True) - theta.mean(axis=0, keepdims=True) + grand
    ms_tr = np.sum(inter**2) / ((t - 1) * (r - 1))
    cov2, cov3 = [], []
    for i in range(t):
        for j in range(r):
            for i2 in range(t):
                for j2 in range(r):
                    if j == j2:
                        continue
                    (cov2 if i == i2 else cov3).append(cov[i * r + j, i2 * r + j2])
    shift = r * max(np.mean(cov2) - np.mean(cov3), 0.0)
    f_stat = ms_t / (ms_tr + shift)
    ddf = (ms_tr + shift) ** 2 / (ms_tr**2 / ((t - 1) * (r - 1)))
    diff = theta[0].mean() - theta[1].mean()
    half = sps.t.ppf(0.5 + level / 2, ddf) * np.sqrt(2 / r * (ms_tr + shift))
    return {"diff": diff, "p": float(sps.f.sf(f_stat, t - 1, ddf)), "df": ddf, "low": diff - half,
            "high": diff + half}


def test_across_seed_auroc_matches_the_obuchowski_rockette_textbook() -> None:
    rng = np.random.default_rng(5)
    y, runs = _seed_runs(160, seeds=4, rng=rng, gain=0.4)
    order = [(sd, st) for st in ("111", "000") for sd in range(4)]  # modality-major for the textbook
    aucs, cov = _delong_reference(y, [runs[k] for k in order])
    book = _or_textbook(aucs.reshape(2, 4), cov)
    covariance = stats.seed_cross_covariance(_long_frame(y, runs), n_resamples=50).set_index("setting")
    diffs = aucs[:4] - aucs[4:]
    out = stats.across_seed_test(diffs, covariance.loc["111", "cross_cov_auroc"])
    assert covariance.loc["111", "n_seeds"] == 4 and covariance.loc["111", "seeds"] == "0,1,2,3"
    assert out["diff"] == pytest.approx(book["diff"], abs=1e-12)
    assert out["p_value"] == pytest.approx(book["p"], rel=1e-9)
    assert out["df"] == pytest.approx(book["df"], rel=1e-9)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((book["low"], book["high"]), rel=1e-9)
    assert out["cross_cov"] > 0  # same test patients: the seeds' differences are correlated


def test_across_seed_without_shared_noise_is_the_paired_t_test() -> None:
    diffs = np.array([0.012, 0.031, -0.004, 0.022, 0.018])
    out = stats.across_seed_test(diffs, cross_cov=0.0)
    ref = sps.ttest_1samp(diffs, 0.0)
    assert out["p_value"] == pytest.approx(ref.pvalue, rel=1e-12) and out["df"] == 4
    low, high = ref.confidence_interval()
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((low, high), rel=1e-12)
    assert out["sd_seeds"] == pytest.approx(diffs.std(ddof=1))
    # A negative covariance estimate is clipped to 0 (Obuchowski-Rockette's max(Cov2 - Cov3, 0)).
    assert stats.across_seed_test(diffs, cross_cov=-1.0)["p_value"] == pytest.approx(ref.pvalue)
    wider = stats.across_seed_test(diffs, cross_cov=1e-4)
    assert wider["se"] > out["se"] and wider["p_value"] > out["p_value"] and wider["df"] > out["df"]


def test_across_seed_edge_cases() -> None:
    one = stats.across_seed_test([0.03], cross_cov=float("nan"))
    assert one["n_seeds"] == 1 and one["diff"] == 0.03 and np.isnan(one["p_value"]) and np.isnan(one["se"])
    none = stats.across_seed_test([])
    assert none["n_seeds"] == 0 and np.isnan(none["diff"])
    same = stats.across_seed_test([0.0, 0.0, 0.0])
    assert same["p_value"] == 1.0 and same["se"] == 0.0
    shifted = stats.across_seed_test([0.02, 0.02, 0.02], cross_cov=1e-4)  # no seed noise: df infinite
    assert shifted["df"] == float("inf") and shifted["p_value"] == pytest.approx(2 * sps.norm.sf(2.0))


def test_across_seed_false_positive_rate_under_the_null() -> None:
    """No true difference, test-set noise shared by the seeds: the OR test rejects about 5% of the
    time; a paired t-test over seeds (ignoring that the seeds share the test patients) far more."""
    rng = np.random.default_rng(20)
    rejections = {"or": 0, "t": 0}
    sims = 300
    for _ in range(sims):
        y, runs = _seed_runs(200, seeds=3, rng=rng, gain=0.0, seed_noise=0.25, patient_quirk=0.9)
        order = [(sd, st) for sd in range(3) for st in ("111", "000")]
        aucs, cov = _delong_components(y, np.vstack([runs[k] for k in order]))
        diffs = aucs[0::2] - aucs[1::2]
        contrast = np.kron(np.eye(3), [1.0, -1.0])
        cross = _cross_mean(contrast @ cov @ contrast.T)
        rejections["or"] += stats.across_seed_test(diffs, cross)["p_value"] < 0.05
        rejections["t"] += sps.ttest_1samp(diffs, 0.0).pvalue < 0.05
    rate = {k: v / sims for k, v in rejections.items()}
    assert rate["or"] <= 0.09, rate  # nominal 5%; +-2.5% Monte Carlo error at 300 simulations
    assert rate["t"] >= 3 * max(rate["or"], 0.02), rate


def test_seed_cross_covariance_bootstrap_matches_a_loop() -> None:
    rng = np.random.default_rng(8)
    y, runs = _seed_runs(150, seeds=2, rng=rng, gain=0.3)
    frame = _long_frame(y, runs)
    out = stats.seed_cross_covariance(frame, n_resamples=120, seed=4).set_index("setting")
    diffs = {0: [], 1: []}
    for rows in stats.bootstrap_indices(y.size, 120, 4):
        if y[rows].min() == y[rows].max():
            continue
        for sd in (0, 1):
            f1 = [f1_score(y[rows], runs[(sd, st)][rows] >= 0.5, labels=[0, 1], average="macro",
                           zero_division=0) for st in ("111", "000")]
            diffs[sd].append(f1[0] - f1[1])
    expected = np.cov(np.array([diffs[0], diffs[1]]))[0, 1]
    assert out.loc["111", "cross_cov_macro_f1"] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert np.isfinite(out.loc["111", "cross_cov_auprc"])


def test_seed_cross_covariance_needs_two_seeds_and_checks_labels() -> None:
    rng = np.random.default_rng(9)
    y, runs = _seed_runs(80, seeds=1, rng=rng)
    out = stats.seed_cross_covariance(_long_frame(y, runs), n_resamples=20)
    assert out["n_seeds"].tolist() == [1]
    assert out[["cross_cov_auroc", "cross_cov_macro_f1"]].isna().all().all()
    frame = _long_frame(y, runs)
    frame.loc[0, "label"] = 1 - frame.loc[0, "label"]
    with pytest.raises(ValueError, match="labels differ"):
        stats.seed_cross_covariance(frame)
    with pytest.raises(ValueError, match="missing"):
        stats.seed_cross_covariance(frame.drop(columns="seed"))


# ---------------------------------------------------------------------------- cluster bootstrap


def test_cluster_bootstrap_with_one_sample_per_patient_is_the_plain_bootstrap() -> None:
    rng = np.random.default_rng(2)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    a = np.round(1 / (1 + np.exp(-(1.5 * y + rng.normal(size=n)))), 2)
    b = np.round(1 / (1 + np.exp(-(1.0 * y + rng.normal(size=n)))), 2)
    patients = rng.permutation(10 * n)[:n]  # unique, in no particular order
    for metric in ("macro_f1", "auprc", "auroc"):
        plain = stats.paired_bootstrap(y, a, b, metric, n_resamples=150, seed=6)
        clustered = stats.paired_bootstrap(y, a, b, metric, n_resamples=150, seed=6, clusters=patients)
        assert clustered.pop("cluster") is True and plain.pop("cluster") is False
        assert clustered == plain
    frame = pd.concat([pd.DataFrame({"setting": s, "sample_id": np.arange(n), "patient_id": patients,
                                     "label": y, "prob": p, "threshold": 0.5})
                       for s, p in (("000", b), ("111", a))])
    pd.testing.assert_frame_equal(stats.compare_to_flat(frame, n_resamples=80, cluster=True),
                                  stats.compare_to_flat(frame, n_resamples=80))


def _clustered(n_patients: int, per_patient: int, rng: np.random.Generator):
    """Admissions of one patient share a label tendency and each model's score offset (within-patient
    correlation that does not cancel in the paired difference)."""
    patients = np.repeat(np.arange(n_patients), per_patient)

    def per_patient_normal() -> np.ndarray:
        return np.repeat(rng.normal(size=n_patients), per_patient)

    frailty = per_patient_normal()
    y = (rng.random(patients.size) < 1 / (1 + np.exp(-(frailty * 1.5 - 0.8)))).astype(int)
    a = 1 / (1 + np.exp(-(frailty + 0.6 * y + per_patient_normal() + 0.3 * rng.normal(size=y.size))))
    b = 1 / (1 + np.exp(-(frailty + 0.3 * y + per_patient_normal() + 0.3 * rng.normal(size=y.size))))
    return patients, y, a, b


def test_cluster_bootstrap_matches_an_expanded_loop_and_widens_the_interval() -> None:
    rng = np.random.default_rng(11)
    patients, y, a, _ = _clustered(60, 4, rng)
    clustered = stats.bootstrap_ci(y, a, "auprc", n_resamples=200, seed=3, clusters=patients)
    members = [np.flatnonzero(patients == k) for k in range(60)]
    draws = []
    for drawn in stats.bootstrap_indices(60, 200, 3):  # the same cluster draws, expanded by hand
        rows = np.concatenate([members[k] for k in drawn])
        if 0 < y[rows].sum() < rows.size:
            draws.append(average_precision_score(y[rows], a[rows]))
    assert clustered["n_valid"] == len(draws)
    assert np.allclose([clustered["ci_low"], clustered["ci_high"]], np.quantile(draws, [0.025, 0.975]),
                       atol=1e-12)
    patients, y, a, b = _clustered(150, 8, np.random.default_rng(12))  # 8 correlated admissions each
    for metric in ("auprc", "macro_f1"):
        widths = {}
        for name, clusters in (("plain", None), ("cluster", patients)):
            out = stats.paired_bootstrap(y, a, b, metric, n_resamples=400, seed=1, clusters=clusters)
            widths[name] = out["ci_high"] - out["ci_low"]
        assert widths["cluster"] > 1.2 * widths["plain"], (metric, widths)


def test_cluster_bootstrap_rejects_bad_clusters() -> None:
    with pytest.raises(ValueError, match="shape"):
        stats.paired_bootstrap([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.2, 0.7, 0.3, 0.6], "auroc",
                               clusters=[1, 2, 3])
    with pytest.raises(ValueError, match="missing"):
        stats.bootstrap_ci([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], "auroc", clusters=[1, None, 2, 2])
    frame = pd.DataFrame({"setting": ["000", "100"], "sample_id": [1, 1], "label": [0, 0], "prob": 0.5,
                          "threshold": 0.5})
    with pytest.raises(ValueError, match="patient_id"):
        stats.compare_to_flat(frame, cluster=True)
