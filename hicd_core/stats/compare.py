"""Holm, seed summaries, every setting against flat and the across-seed test (see
:mod:`hicd_core.stats`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from hicd_core.hierarchy.levels import FLAT, setting_rank
from hicd_core.stats.bootstrap import _bootstrap_distributions, _cluster_codes, _summarise_diff
from hicd_core.stats.delong import _delong_components, delong_test
from hicd_core.stats.metrics import _labels, _scores


# ------------------------------------------------------------------------------ multiplicity, seeds
def holm(p_values: Any) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values: monotone in the raw order, capped at 1, NaN left as NaN.

    The paper flags 7 variants per (model, task) at p < 0.05 with no correction; Holm controls the
    family-wise error over those 7 without assuming independence. NaNs do not count towards m.

    >>> holm([0.01, 0.04, 0.03, 0.005]).round(4).tolist()
    [0.03, 0.06, 0.06, 0.02]
    >>> holm([0.2, float("nan"), 0.01]).tolist()
    [0.2, nan, 0.02]
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def seed_summary(values: Any, level: float = 0.95) -> dict[str, float | int]:
    """Mean, sample SD and a t-interval over training seeds (NaNs dropped).

    The paper reports single runs; with seeds we can tell whether a 0.005 AUROC gain exceeds
    run-to-run noise (notes §10.4, §12). One value gives a NaN SD and interval.

    >>> s = seed_summary([0.70, 0.71, 0.72])
    >>> [round(float(s[k]), 4) for k in ("mean", "sd", "n", "ci_low", "ci_high")]
    [0.71, 0.01, 3.0, 0.6852, 0.7348]
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    nan = float("nan")
    if n == 0:
        return {"mean": nan, "sd": nan, "n": 0, "ci_low": nan, "ci_high": nan}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "sd": nan, "n": 1, "ci_low": nan, "ci_high": nan}
    sd = float(v.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "ci_low": mean - half, "ci_high": mean + half}


# ------------------------------------------------------------------------------------ vs flat '000'
_COMPARE_COLUMNS = (
    "setting", "n", "n_pos",
    "auroc_flat", "auroc", "delta_auroc", "delta_auroc_se", "p_auroc",
    "macro_f1_flat", "macro_f1", "delta_macro_f1", "delta_macro_f1_ci_low", "delta_macro_f1_ci_high",
    "p_macro_f1",
    "auprc_flat", "auprc", "delta_auprc", "delta_auprc_ci_low", "delta_auprc_ci_high", "p_auprc",
    "p_auroc_holm", "p_macro_f1_holm", "p_auprc_holm", "n_valid_resamples",
)


def _compare_block(
    y: np.ndarray,
    probs: dict[str, np.ndarray],
    thresholds: dict[str, float],
    flat: str,
    settings: Sequence[str],
    n_resamples: int,
    seed: int,
    codes: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """``compare_to_flat`` rows for settings aligned on one common set of samples."""
    rows: dict[str, dict[str, Any]] = {}
    for st in settings:
        dl = delong_test(y, probs[st], probs[flat])
        rows[st] = {"setting": st, "n": int(y.size), "n_pos": int(y.sum()), "auroc_flat": dl["auc_b"],
                    "auroc": dl["auc_a"], "delta_auroc": dl["diff"], "delta_auroc_se": dl["se"],
                    "p_auroc": dl["p_value"]}
    if not 0 < y.sum() < y.size:
        return rows
    order = [flat, *settings]
    full, boot, valid = _bootstrap_distributions(
        y, [probs[st] for st in order], [thresholds[st] for st in order], ["macro_f1", "auprc"],
        n_resamples, seed, codes)
    for i, st in enumerate(settings, start=1):
        for metric in ("macro_f1", "auprc"):
            point = float(full[metric][i] - full[metric][0])
            summary = _summarise_diff(point, boot[metric][i] - boot[metric][0])
            rows[st] |= {f"{metric}_flat": float(full[metric][0]), metric: float(full[metric][i]),
                         f"delta_{metric}": summary["diff"], f"delta_{metric}_ci_low": summary["ci_low"],
                         f"delta_{metric}_ci_high": summary["ci_high"], f"p_{metric}": summary["p_value"]}
        rows[st]["n_valid_resamples"] = int(valid.sum())
    return rows


def compare_to_flat(
    frame: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
    flat: str = FLAT,
    cluster: bool = False,
) -> pd.DataFrame:
    """Each hierarchy setting vs the flat baseline for ONE (model, task, seed), as the paper tests.

    ``frame`` is long: columns ``setting`` ('000', '101', ...), ``sample_id``, ``label``, ``prob``
    and ``threshold`` (one validation-chosen value per setting). Rows are aligned on ``sample_id``
    (labels must agree; when a setting lacks some samples, each pair keeps only the samples both
    sides have, and ``n`` says how many). Per setting: delta AUROC with
    a DeLong p-value, delta macro-F1 and delta AUPRC with paired-bootstrap p-values (the same
    resamples for every setting), and Holm-adjusted versions of each p across the compared settings.
    Deltas are setting minus flat. One row per non-flat setting, in the paper's table order.
    ``cluster`` resamples the ``patient_id`` column's patients instead of samples (the cluster
    bootstrap; admissions of one patient are correlated); the paper's bootstrap is per sample.
    """
    needed = {"setting", "sample_id", "label", "prob", "threshold"} | ({"patient_id"} if cluster else set())
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"compare_to_flat needs columns {sorted(needed)}; missing {sorted(missing)}")
    df = frame.assign(setting=frame["setting"].astype(str))
    if df.duplicated(["setting", "sample_id"]).any():
        raise ValueError("duplicate (setting, sample_id) rows: pass one model, task and seed at a time")
    thresholds = df.groupby("setting")["threshold"].agg(["min", "max"])
    if (thresholds["max"] - thresholds["min"] > 1e-12).any():
        raise ValueError("threshold must be constant within a setting (one validation-chosen value)")
    if flat not in thresholds.index:
        raise ValueError(f"flat setting {flat!r} not in frame (settings: {sorted(thresholds.index)})")
    labels = df.pivot(index="sample_id", columns="setting", values="label")
    probs = df.pivot(index="sample_id", columns="setting", values="prob")
    if ((labels.max(axis=1) - labels.min(axis=1)) > 0).any():
        raise ValueError("labels differ between settings for the same sample_id")
    y_all = labels.max(axis=1).to_numpy()
    settings = sorted((s for s in thresholds.index if s != flat), key=lambda s: (setting_rank(s), s))
    thr = {s: float(thresholds.loc[s, "min"]) for s in [flat, *settings]}
    complete = probs.notna().all(axis=1).to_numpy()
    if complete.all():  # usual case: one pass, every setting scored on the same resamples
        blocks = [(settings, np.ones(len(probs), dtype=bool))]
    else:  # some setting lacks some samples: align each pair on its own common sample_ids
        blocks = [([st], (probs[flat].notna() & probs[st].notna()).to_numpy()) for st in settings]
    by_setting: dict[str, dict[str, Any]] = {}
    patients = df.groupby("sample_id")["patient_id"].first().reindex(probs.index).to_numpy() if cluster \
        else None
    for block, keep in blocks:
        y = _labels(y_all[keep].astype(np.int64))
        p = {st: _scores(probs[st].to_numpy()[keep], y.size, name=f"prob[{st}]") for st in [flat, *block]}
        codes = _cluster_codes(patients[keep], y.size) if patients is not None else None
        by_setting |= _compare_block(y, p, thr, flat, block, n_resamples, seed, codes)
    rows = [by_setting[st] for st in settings]
    out = pd.DataFrame(rows, columns=list(_COMPARE_COLUMNS))
    for metric in ("auroc", "macro_f1", "auprc"):
        out[f"p_{metric}_holm"] = holm(out[f"p_{metric}"].to_numpy(dtype=np.float64))
    return out


# ------------------------------------------------------------------------------------ across seeds
#: The across-seed test's name, as result tables and the report print it.
ACROSS_SEED_METHOD = "Obuchowski-Rockette over seeds (Hillis df)"
ONE_SEED_METHOD = {"auroc": "one seed: per-seed DeLong", "macro_f1": "one seed: per-seed paired bootstrap",
                   "auprc": "one seed: per-seed paired bootstrap"}


def across_seed_test(diffs: Any, cross_cov: float = 0.0, level: float = 0.95) -> dict[str, Any]:
    """Setting minus flat across training seeds, with the seed as the unit: mean difference, interval, p.

    The design is the multi-reader multi-case ROC study with seeds as readers (random), the shared
    test patients as cases (random) and setting / flat as the two modalities: Obuchowski & Rockette
    (1995), Commun. Stat. Simul. Comput. 24:285-308, with Hillis's denominator degrees of freedom
    (Hillis 2007, Stat. Med. 26:596-619; Hillis et al. 2005, Stat. Med. 24:1579-1607). For two
    modalities and r seeds with per-seed differences d_j it reduces to::

        var(mean d) = s_d^2 / r + max(c, 0)      t = mean d / sqrt(var)
        df = var^2 / ((s_d^2 / r)^2 / (r - 1))   p = 2 * P(T_df > |t|), CI = mean d +- t_df * sqrt(var)

    where s_d^2 is the between-seed variance of the d_j (training-seed noise) and ``cross_cov`` = c
    is the mean test-sampling covariance of two different seeds' differences, 2 (Cov2 - Cov3) in
    their notation (DeLong or bootstrap; :func:`seed_cross_covariance`). Every seed is scored on the
    SAME test patients, so their sampling error does not average out over seeds; c puts it back (a
    plain paired t-test over seeds is the c = 0 case and is anti-conservative here). Needs r >= 2;
    with one seed every field but ``diff`` is NaN (the caller falls back to the per-seed test).

    >>> out = across_seed_test([0.03, 0.05, 0.04], cross_cov=0.0)
    >>> round(out["diff"], 4), round(out["se"], 5), out["df"], round(out["p_value"], 4)
    (0.04, 0.00577, 2.0, 0.0202)
    """
    d = np.asarray(diffs, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    r = int(d.size)
    nan = float("nan")
    out: dict[str, Any] = {"diff": float(d.mean()) if r else nan, "se": nan, "ci_low": nan, "ci_high": nan,
                           "df": nan, "t": nan, "p_value": nan, "n_seeds": r,
                           "sd_seeds": float(d.std(ddof=1)) if r > 1 else nan,
                           "cross_cov": max(float(cross_cov), 0.0) if np.isfinite(cross_cov) else 0.0}
    if r < 2:
        return out
    seed_part = out["sd_seeds"] ** 2 / r
    var = seed_part + out["cross_cov"]
    se = float(np.sqrt(var))
    df = float(var**2 * (r - 1) / seed_part**2) if seed_part > 0 else float("inf")
    if se <= 1e-15:
        t, p = (0.0, 1.0) if abs(out["diff"]) <= 1e-15 else (float(np.sign(out["diff"]) * np.inf), 0.0)
        half = 0.0
    else:
        t = out["diff"] / se
        p = float(2 * sps.t.sf(abs(t), df))
        half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return out | {"se": se, "ci_low": out["diff"] - half, "ci_high": out["diff"] + half, "df": df,
                  "t": float(t), "p_value": float(p)}


def _cross_mean(cov: np.ndarray) -> float:
    """Mean off-diagonal element of a (r, r) covariance matrix (NaN when r < 2)."""
    r = cov.shape[0]
    return float((cov.sum() - np.trace(cov)) / (r * (r - 1))) if r > 1 else float("nan")


def seed_cross_covariance(
    frame: pd.DataFrame,
    n_resamples: int = 1000,
    seed: int = 0,
    flat: str = FLAT,
    cluster: bool = False,
) -> pd.DataFrame:
    """Per non-flat setting, the test-sampling covariance c that :func:`across_seed_test` needs.

    ``frame`` is long like :func:`compare_to_flat`'s plus a ``seed`` column (``patient_id`` with
    ``cluster``): one model and evaluation, several training seeds scored on the same test samples.
    On the samples every run scored, the per-seed differences d_j = metric(setting, seed j) -
    metric(flat, seed j) get their joint covariance: DeLong's for AUROC (all 2r AUROCs at once),
    the paired bootstrap's for macro-F1 and AUPRC (every run scored on the same resamples, whole
    patients with ``cluster``). Returns ``setting``, ``n_seeds``, ``seeds`` and ``cross_cov_<metric>``
    (the mean covariance of two different seeds' d_j; NaN with fewer than two seeds).
    """
    needed = {"seed", "setting", "sample_id", "label", "prob", "threshold"} | (
        {"patient_id"} if cluster else set())
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"seed_cross_covariance needs columns {sorted(needed)}; missing {sorted(missing)}")
    df = frame.assign(setting=frame["setting"].astype(str), seed=frame["seed"].astype(int))
    probs = df.pivot(index="sample_id", columns=["seed", "setting"], values="prob")
    keep = probs.notna().all(axis=1).to_numpy()
    labels = df.groupby("sample_id")["label"].agg(["min", "max"]).reindex(probs.index)
    if (labels["max"] - labels["min"] > 0).any():
        raise ValueError("labels differ between runs for the same sample_id")
    y = _labels(labels["max"].to_numpy()[keep].astype(np.int64))
    runs = list(probs.columns)
    thresholds = df.groupby(["seed", "setting"])["threshold"].first()
    codes = None
    if cluster:
        patients = df.groupby("sample_id")["patient_id"].first().reindex(probs.index).to_numpy()[keep]
        codes = _cluster_codes(patients, y.size)
    score = np.vstack([_scores(probs[run].to_numpy()[keep], y.size, name=f"prob{run}") for run in runs]) \
        if runs else np.empty((0, y.size))
    two_classes = 0 < int(y.sum()) < y.size
    delong_cov = _delong_components(y, score)[1] if two_classes and runs else None
    boot: dict[str, np.ndarray] = {}
    if two_classes and runs:
        _, boot, valid = _bootstrap_distributions(y, list(score), [float(thresholds[run]) for run in runs],
                                                  ["macro_f1", "auprc"], n_resamples, seed, codes)
        boot = {m: v[:, valid] for m, v in boot.items()}
    index = {run: i for i, run in enumerate(runs)}
    rows = []
    for setting in sorted({s for _, s in runs if s != flat}, key=lambda s: (setting_rank(s), s)):
        seeds = sorted(sd for sd, st in runs if st == setting and (sd, flat) in index)
        a = [index[(sd, setting)] for sd in seeds]
        b = [index[(sd, flat)] for sd in seeds]
        row: dict[str, Any] = {"setting": setting, "n_seeds": len(seeds), "seeds": ",".join(map(str, seeds))}
        contrast = np.zeros((len(seeds), len(runs)))
        contrast[np.arange(len(seeds)), a] += 1.0
        contrast[np.arange(len(seeds)), b] -= 1.0
        row["cross_cov_auroc"] = _cross_mean(contrast @ delong_cov @ contrast.T) \
            if delong_cov is not None and len(seeds) > 1 else float("nan")
        for metric in ("macro_f1", "auprc"):
            draws = boot[metric][a] - boot[metric][b] if metric in boot else np.empty((0, 0))
            row[f"cross_cov_{metric}"] = _cross_mean(np.atleast_2d(np.cov(draws))) \
                if len(seeds) > 1 and draws.shape[1] > 1 else float("nan")
        rows.append(row)
    columns = ["setting", "n_seeds", "seeds", "cross_cov_auroc", "cross_cov_macro_f1", "cross_cov_auprc"]
    return pd.DataFrame(rows, columns=columns)
