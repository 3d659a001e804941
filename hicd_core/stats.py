"""Evaluation statistics for comparing hierarchy settings against the flat-code baseline.

The paper (notes §7.3-7.4, §12) reports F1-macro at a validation-tuned threshold and AUROC, and flags
each hierarchy variant against the same model's ``'000'`` variant with a DeLong test (AUROC) and a
paired bootstrap (F1-macro) at p < 0.05, without a multiplicity correction. This module provides
those tests plus what the paper leaves out (AUPRC, calibration and Platt recalibration, Holm
correction, a cluster (patient-level) bootstrap, and a test across training seeds that treats the seed
as the unit), so our runs can be compared with the published numbers in ``assets/paper_results.csv``.

Public API::

    choose_threshold(y_true, prob)                        -> float (validation data only)
    binary_metrics(y_true, prob, threshold)               -> dict of auroc, auprc, macro_f1, brier, ece...
    fit_platt(y_val, prob_val) / apply_platt(prob, cal)   -> Platt recalibration (validation-fitted)
    calibration_scores(y_true, prob)                      -> Brier and ECE, keys suffixed "_calibrated"
    auroc(y_true, prob)                                   -> float (NaN when one class only)
    bootstrap_ci(y_true, prob, metric, ...)               -> dict (value, percentile 95% CI)
    delong_test(y_true, prob_a, prob_b)                   -> dict (paired AUROC difference a - b)
    delong_ci(y_true, prob)                               -> dict (single AUROC with 95% CI)
    paired_bootstrap(y_true, prob_a, prob_b, metric, ...) -> dict (difference a - b, CI, p-value)
    bootstrap_indices(n, n_resamples, seed)               -> the exact resample index sets used
    holm(p_values)                                        -> Holm-Bonferroni adjusted p-values
    seed_summary(values)                                  -> mean, sd, n, 95% t-interval
    compare_to_flat(frame, ...)                           -> one row per non-flat setting (one seed)
    seed_cross_covariance(frame, ...)                     -> test-sampling covariance across seeds
    across_seed_test(diffs, cross_cov)                    -> setting - flat over seeds (seed = unit)
    load_paper_results()                                  -> the paper's Tables 1-3, long format

The bootstrap functions take ``clusters`` (``compare_to_flat``: ``cluster=True`` and a
``patient_id`` column): whole patients are resampled, so admissions of one patient stay together.

Conventions: labels are 0/1; a sample is predicted positive when ``prob >= threshold``; macro-F1
is the unweighted mean of the F1 of class 1 and class 0 (both classes always count, an undefined F1
counts as 0, i.e. sklearn's ``f1_score(labels=[0, 1], average="macro", zero_division=0)``); every
difference is ``a - b`` (``compare_to_flat`` passes the hierarchy setting as ``a``, flat as ``b``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy import stats as sps
from sklearn.metrics import average_precision_score, roc_auc_score

from hicd_core.hierarchy.levels import FLAT, setting_rank

__all__ = [
    "ACROSS_SEED_METHOD", "BOOTSTRAP_METRICS", "ONE_SEED_METHOD", "PAPER_RESULTS_PATH", "THRESHOLD_GRID",
    "across_seed_test", "apply_platt", "auroc", "binary_metrics", "bootstrap_ci", "bootstrap_indices",
    "calibration_scores", "choose_threshold", "compare_to_flat", "delong_ci", "delong_test",
    "expected_calibration_error", "fit_platt", "holm", "load_paper_results", "macro_f1", "paired_bootstrap",
    "seed_cross_covariance", "seed_summary",
]

#: The paper's threshold sweep: 200 evenly spaced values in [0.01, 0.99] (notes §5.4, §6.3).
THRESHOLD_GRID: np.ndarray = np.linspace(0.01, 0.99, 200)
BOOTSTRAP_METRICS = ("macro_f1", "auprc", "auroc")
PAPER_RESULTS_PATH = Path(__file__).resolve().parents[1] / "assets" / "paper_results.csv"

_CHUNK_CELLS = 4_000_000  # indices per vectorised block of resamples (~32 MB of int64)


# ----------------------------------------------------------------------------------------- inputs
def _labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int8)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0/1 labels")
    return y.astype(np.int8)


def _scores(prob: Any, n: int, *, unit: bool = False, name: str = "prob") -> np.ndarray:
    p = np.asarray(prob, dtype=np.float64)
    if p.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like y_true, got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if unit and p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] for calibration metrics")
    return p


def _f1_pair(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """Macro-F1 from (broadcastable) confusion counts; an undefined class F1 counts as 0."""
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn, tn))
    den_pos = 2 * tp + fp + fn
    den_neg = 2 * tn + fn + fp
    f1_pos = np.divide(2 * tp, den_pos, out=np.zeros(np.broadcast(tp, den_pos).shape), where=den_pos > 0)
    f1_neg = np.divide(2 * tn, den_neg, out=np.zeros(np.broadcast(tn, den_neg).shape), where=den_neg > 0)
    return (f1_pos + f1_neg) / 2


# ------------------------------------------------------------------------------ threshold, metrics
def macro_f1(y_true: Any, prob: Any, threshold: float) -> float:
    """Macro-F1 of ``prob >= threshold`` over both classes (the paper's reported F1).

    >>> macro_f1([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5)
    0.5
    """
    y = _labels(y_true)
    p = _scores(prob, y.size)
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(y == 1)) - tp
    tn = int(np.sum(y == 0)) - fp
    return float(_f1_pair(tp, fp, fn, tn))


def choose_threshold(y_true: Any, prob: Any, grid: np.ndarray | None = None) -> float:
    """Threshold in :data:`THRESHOLD_GRID` that maximises macro-F1 -- call it on VALIDATION data.

    Tuning on the test split would inflate the reported F1, which is why the paper tunes on
    validation. All 200 confusion matrices come from one sort and a cumulative sum; ties go to the
    lowest threshold.

    >>> t = choose_threshold([0, 0, 0, 1, 1], [0.05, 0.2, 0.3, 0.35, 0.8])
    >>> round(t, 4), 0.3 < t <= 0.35  # the lowest grid value that separates the classes
    (0.3006, True)
    """
    y = _labels(y_true)
    p = _scores(prob, y.size)
    thresholds = THRESHOLD_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if y.size == 0:
        raise ValueError("choose_threshold needs at least one sample")
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    pos_before = np.concatenate(([0], np.cumsum(y[order], dtype=np.int64)))  # positives below index i
    n_pos = int(pos_before[-1])
    n_neg = y.size - n_pos
    first_ge = np.searchsorted(p_sorted, thresholds, side="left")  # samples with p >= t start here
    tp = n_pos - pos_before[first_ge]
    fp = (y.size - first_ge) - tp
    scores = _f1_pair(tp, fp, n_pos - tp, n_neg - fp)
    return float(thresholds[int(np.argmax(scores))])


def expected_calibration_error(y_true: Any, prob: Any, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins on [0, 1]: sum_b (n_b / n) * |mean(y_b) - mean(p_b)|.

    Bins are ``[k/10, (k+1)/10)`` with the last one closed, so ``p = 1`` falls in the top bin.
    Empty bins contribute nothing. AUROC is blind to miscalibration; the transfer probe and seed
    averages can shift calibration, so we log it although the paper does not.

    >>> round(expected_calibration_error([0, 1, 1, 1], [0.05, 0.95, 0.95, 0.55]), 4)  # (.05 + .1 + .45) / 4
    0.15
    """
    y = _labels(y_true)
    p = _scores(prob, y.size, unit=True)
    if y.size == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)
    return float(np.sum(np.abs(sum_y - sum_p)) / y.size)


def auroc(y_true: Any, prob: Any) -> float:
    """AUROC of ``prob`` for 0/1 ``y_true``; NaN when ``y_true`` holds a single class.

    sklearn raises on a single-class split (AUROC is undefined there); returning NaN instead lets a
    sweep, an early-stopping loop or a probe search go on, and callers decide how to treat it.

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), auroc([1, 1], [0.2, 0.9])
    (0.75, nan)
    """
    y = _labels(y_true)
    p = _scores(prob, y.size)
    return float(roc_auc_score(y, p)) if 0 < int(y.sum()) < y.size else float("nan")


def binary_metrics(y_true: Any, prob: Any, threshold: float) -> dict[str, float | int]:
    """All per-split metrics of one model at its (validation-chosen) threshold.

    Keys: ``auroc``, ``auprc`` (average precision), ``positive_rate`` (prevalence n_pos / n, the
    AUPRC of a random ranker), ``predicted_positive_rate`` (share with ``prob >= threshold``),
    ``macro_f1``, ``threshold``, ``brier`` (mean squared error of the probability), ``ece``
    (:func:`expected_calibration_error`, 10 bins), ``n`` and ``n_pos``. With a single class in
    ``y_true`` the ranking metrics are NaN instead of raising, so one bad split does not kill a sweep.
    """
    y = _labels(y_true)
    p = _scores(prob, y.size, unit=True)
    n = int(y.size)
    n_pos = int(y.sum())
    two_classes = 0 < n_pos < n
    return {
        "auroc": auroc(y, p),
        "auprc": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "positive_rate": n_pos / n if n else float("nan"),
        "predicted_positive_rate": float(np.mean(p >= threshold)) if n else float("nan"),
        "macro_f1": macro_f1(y, p, threshold) if n else float("nan"),
        "threshold": float(threshold),
        "brier": float(np.mean((p - y) ** 2)) if n else float("nan"),
        "ece": expected_calibration_error(y, p),
        "n": n,
        "n_pos": n_pos,
    }


# ------------------------------------------------------------------------------------- calibration
_LOGIT_CLIP = 1e-12  # probabilities are clipped to [1e-12, 1 - 1e-12] before the logit


def _logit(prob: np.ndarray) -> np.ndarray:
    p = np.clip(prob, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def fit_platt(y_true: Any, prob: Any) -> dict[str, Any]:
    """Platt scaling fitted on VALIDATION data: ``p_cal = sigmoid(slope * logit(prob) + intercept)``.

    Platt (1999), "Probabilistic outputs for support vector machines and comparisons to regularized
    likelihood methods": maximum likelihood with his smoothed targets ``(N+ + 1) / (N+ + 2)`` and
    ``1 / (N- + 2)`` (finite even on separable data), fitted with sklearn's ``LogisticRegression``
    (no penalty) on the logit of the raw probability, each sample entered once per class with its
    target as the weight. Why Platt rather than temperature scaling (Guo et al. 2017): the paper's
    recipe (weighted sampler and ``pos_weight``) shifts every logit by a constant, the log of the
    weights' odds factor (King & Zeng 2001, prior correction); temperature scaling has no intercept
    and cannot undo a shift, Platt's intercept does and its slope is the temperature. Monotone
    (slope >= 0), so AUROC and the ranking are unchanged. A fitted negative slope (a model worse than
    chance on validation) falls back to the intercept only (every sample gets the validation
    prevalence); one class in validation gives the identity map. Returns ``method``, ``slope``,
    ``intercept``, ``n`` and ``note``.

    >>> cal = fit_platt([0, 0, 0, 1, 1, 0, 1, 0], [0.2, 0.4, 0.5, 0.9, 0.7, 0.6, 0.8, 0.3])
    >>> cal["method"], cal["slope"] > 0
    ('platt', True)
    """
    from sklearn.linear_model import LogisticRegression

    y = _labels(y_true)
    p = _scores(prob, y.size)
    n_pos, n = int(y.sum()), int(y.size)
    if n_pos == 0 or n_pos == n:
        return {"method": "identity", "slope": 1.0, "intercept": 0.0, "n": n,
                "note": "one class in the validation split: probabilities left as they are"}
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n - n_pos + 2))
    x = np.concatenate([_logit(p), _logit(p)])[:, None]
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    weights = np.concatenate([target, 1 - target])
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(x, labels, sample_weight=weights)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    note = ""
    if slope < 0:
        slope, intercept = 0.0, float(_logit(np.array([target.mean()]))[0])
        note = "the fitted slope was negative (worse than chance on validation): prevalence only"
    return {"method": "platt", "slope": slope, "intercept": intercept, "n": n, "note": note}


def apply_platt(prob: Any, calibration: dict[str, Any]) -> np.ndarray:
    """The calibrated probabilities ``sigmoid(slope * logit(prob) + intercept)`` (see :func:`fit_platt`)."""
    p = np.asarray(prob, dtype=np.float64)
    z = float(calibration["slope"]) * _logit(p) + float(calibration["intercept"])
    return 1.0 / (1.0 + np.exp(-z))


def calibration_scores(y_true: Any, prob: Any, suffix: str = "_calibrated") -> dict[str, float]:
    """Brier score and 10-bin ECE of ``prob`` under the keys ``brier<suffix>`` and ``ece<suffix>``."""
    y = _labels(y_true)
    p = _scores(prob, y.size, unit=True)
    nan = float("nan")
    return {f"brier{suffix}": float(np.mean((p - y) ** 2)) if y.size else nan,
            f"ece{suffix}": expected_calibration_error(y, p)}


# ------------------------------------------------------------------------------------------ DeLong
def _delong_components(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for k score vectors (Sun & Xu 2014, midranks).

    ``probs`` has shape (k, n). The structural components are V10_i = (Tz_i - Tx_i) / n_neg for
    positives and V01_j = 1 - (Tz_j - Ty_j) / n_pos for negatives, where T are midranks within
    positives (Tx), negatives (Ty) and all samples (Tz): O(n log n) instead of O(n_pos * n_neg).
    """
    pos = probs[:, y == 1]
    neg = probs[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = sps.rankdata(pos, axis=1)
    ty = sps.rankdata(neg, axis=1)
    tz = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    auc = v10.mean(axis=1)
    if m < 2 or n < 2:
        return auc, np.full((probs.shape[0], probs.shape[0]), np.nan)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return auc, cov


def delong_test(y_true: Any, prob_a: Any, prob_b: Any) -> dict[str, float]:
    """Paired DeLong test of AUROC(a) - AUROC(b) on the same samples (the paper's AUROC test).

    Both models score the same patients, so their AUROCs are correlated; DeLong's covariance
    accounts for that, unlike two independent CIs. Returns ``auc_a``, ``auc_b``, ``diff``, ``se``,
    ``z`` and a two-sided ``p_value``; all NaN when ``y_true`` has a single class. Identical scores
    give ``diff = 0``, ``se = 0`` and ``p_value = 1``.
    """
    y = _labels(y_true)
    a = _scores(prob_a, y.size, name="prob_a")
    b = _scores(prob_b, y.size, name="prob_b")
    nan = float("nan")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return {"auc_a": nan, "auc_b": nan, "diff": nan, "se": nan, "z": nan, "p_value": nan}
    auc, cov = _delong_components(y, np.vstack([a, b]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else nan
    if not np.isfinite(se):
        z = p = nan
    elif se <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) <= 1e-15 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / se
        p = float(2 * sps.norm.sf(abs(z)))
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "diff": diff, "se": se, "z": float(z),
            "p_value": float(p)}


def delong_ci(y_true: Any, prob: Any, level: float = 0.95) -> dict[str, float]:
    """AUROC with its DeLong standard error and a normal ``level`` CI clipped to [0, 1].

    >>> out = delong_ci([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(out["auc"], 4), out["ci_low"] < out["auc"] < out["ci_high"]
    (0.8889, True)
    """
    y = _labels(y_true)
    p = _scores(prob, y.size)
    n_pos = int(y.sum())
    nan = float("nan")
    if n_pos == 0 or n_pos == y.size:
        return {"auc": nan, "se": nan, "ci_low": nan, "ci_high": nan}
    auc, cov = _delong_components(y, p[None, :])
    se = float(np.sqrt(max(cov[0, 0], 0.0))) if np.isfinite(cov[0, 0]) else nan
    half = float(sps.norm.ppf(0.5 + level / 2)) * se
    return {"auc": float(auc[0]), "se": se, "ci_low": max(0.0, float(auc[0]) - half),
            "ci_high": min(1.0, float(auc[0]) + half)}


# --------------------------------------------------------------------------------------- bootstrap
def _index_chunks(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Resample index sets in blocks of up to 100 rows, all from one generator seeded with ``seed``.

    Blocks bound memory for large test sets; the block size depends on n only, so (seed, n,
    n_resamples) fixes the index sets.
    """
    rng = np.random.default_rng(seed)
    block = max(1, min(100, _CHUNK_CELLS // max(n, 1)))
    for start in range(0, n_resamples, block):
        yield rng.integers(0, n, size=(min(block, n_resamples - start), n))


def _cluster_codes(clusters: Any, n: int) -> np.ndarray | None:
    """Dense cluster codes (0..k-1 in order of first appearance), or None without clusters."""
    if clusters is None:
        return None
    values = np.asarray(clusters)
    if values.shape != (n,):
        raise ValueError(f"clusters must have shape ({n},) like y_true, got {values.shape}")
    codes, _ = pd.factorize(values)
    if (codes < 0).any():
        raise ValueError("clusters contain missing values")
    return codes.astype(np.int64)


def _weight_chunks(n: int, n_resamples: int, seed: int, codes: np.ndarray | None = None
                   ) -> Iterator[np.ndarray]:
    """How often each sample is drawn in each resample: float64 blocks of shape (c, n).

    Without ``codes`` the samples are drawn with replacement (the index sets of
    :func:`bootstrap_indices`). With ``codes`` (one cluster per sample, e.g. the patient) the
    CLUSTERS are drawn with replacement and every sample of a drawn cluster comes along as often as
    its cluster was drawn: the cluster (case) bootstrap of Davison & Hinkley (1997), Bootstrap
    Methods and their Application, section 3.8, which keeps the correlation of one patient's
    admissions. When every cluster holds one sample in sample order, both draws are identical.
    """
    units = n if codes is None else int(codes.max()) + 1 if codes.size else 0
    for idx in _index_chunks(units, n_resamples, seed):
        counts = np.empty((idx.shape[0], units))
        for row, drawn in enumerate(idx):  # one bincount per row: cache-friendly, faster than one big one
            counts[row] = np.bincount(drawn, minlength=units)
        yield counts if codes is None else counts[:, codes]


def bootstrap_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """The (n_resamples, n) index sets :func:`paired_bootstrap` draws for this ``seed``.

    Exposed so results can be audited (and tests can recompute a resample with sklearn). Every
    model and metric compared with the same seed sees the same resamples.
    """
    chunks = list(_index_chunks(n, n_resamples, seed))
    return np.concatenate(chunks) if chunks else np.empty((0, n), dtype=np.int64)


class _Ranked:
    """One score vector grouped by distinct value (descending), reused for every resample.

    A run of consecutive score groups that hold only negatives is merged into one group: AUROC and
    AP only need, at each group holding a positive, the negatives ranked above it and the negatives
    tied with it, so the merge is exact and shrinks the tables to at most 2 * n_pos + 1 groups.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        order = np.argsort(-p, kind="stable")
        p_sorted = p[order]
        group_sorted = np.cumsum(np.concatenate(([True], p_sorted[1:] != p_sorted[:-1]))) - 1
        has_pos = np.bincount(group_sorted, weights=y[order], minlength=int(group_sorted[-1]) + 1) > 0
        new_group = has_pos | np.concatenate(([True], has_pos[:-1]))
        merged = (np.cumsum(new_group) - 1)[group_sorted]
        self.n_groups = int(merged[-1]) + 1
        group = np.empty(p.size, dtype=np.int64)
        group[order] = merged
        # One key per sample: (label, score group); its one-hot matrix (keys x samples) turns the
        # resample weights into both count tables with one sparse product.
        key = y.astype(np.int64) * self.n_groups + group
        self.onehot = sparse.csr_matrix((np.ones(p.size), (key, np.arange(p.size))),
                                        shape=(2 * self.n_groups, p.size))

    def auroc_auprc(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AUROC and average precision for each resample (column of ``weights``, shape (n, c): how
        often each sample was drawn).

        A resample is the data with each sample repeated as often as it was drawn, so both metrics
        are weighted sums over score groups g (highest score first): AUROC = sum_g pos_g *
        (negatives below g + neg_g / 2) / (P * N), summed exactly (integer-valued float64, exact
        below 2**53); AP = sum_g (pos_g / P) * precision at g -- the step-wise sum sklearn's
        ``average_precision_score`` computes on the expanded data. Tables are laid out (groups,
        resamples) because numpy accumulates fast along a leading axis.
        """
        c = weights.shape[1]
        counts = np.asarray(self.onehot @ weights).reshape(2, self.n_groups, c)
        neg_g, pos_g = counts[0], counts[1]
        tp = np.cumsum(pos_g, axis=0)
        fp = np.cumsum(neg_g, axis=0)
        n_pos, n_neg = tp[-1], fp[-1]
        twice_u = np.sum(pos_g * (2 * (n_neg - fp) + neg_g), axis=0)  # 2 x Mann-Whitney U, exact
        with np.errstate(divide="ignore", invalid="ignore"):
            auroc = twice_u / (2.0 * n_pos * n_neg)
            predicted = tp + fp
            precision = np.divide(tp, predicted, out=np.zeros(tp.shape), where=predicted > 0)
            auprc = np.sum(pos_g * precision, axis=0) / n_pos
        return auroc, auprc


def _bootstrap_distributions(
    y: np.ndarray,
    probs: Sequence[np.ndarray],
    thresholds: Sequence[float],
    metrics: Sequence[str],
    n_resamples: int,
    seed: int,
    codes: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Metric values per model on the full data and on each resample (one-class resamples NaN).

    All k models are scored on the same resamples (clusters ``codes`` resampled together when
    given, see :func:`_weight_chunks`). Returns (full[metric] -> (k,), boot[metric] -> (k,
    n_resamples), valid mask (n_resamples,)).
    """
    n = y.size
    ranked = [_Ranked(y, p) for p in probs] if {"auroc", "auprc"} & set(metrics) else []
    k = len(probs)
    # Columns: label, then per model "predicted positive", then per model "true positive"; one matrix
    # product per block of resamples gives every count macro-F1 needs (exact: integer-valued floats).
    pred = np.column_stack([p >= t for p, t in zip(probs, thresholds, strict=True)])
    columns = np.column_stack([y[:, None] == 1, pred, pred & (y[:, None] == 1)]).astype(np.float64)

    def evaluate(weights: np.ndarray) -> dict[str, np.ndarray]:
        counts = (weights @ columns).T  # (c, n) @ (n, 1 + 2k); OpenBLAS is slow on columns.T @ weights.T
        n_pos, n_pred, tp = counts[:1], counts[1:k + 1], counts[k + 1:]
        total = weights.sum(axis=1)
        valid = (n_pos[0] > 0) & (n_pos[0] < total)
        out: dict[str, np.ndarray] = {"_valid": valid}
        if "macro_f1" in metrics:
            out["macro_f1"] = _f1_pair(tp, n_pred - tp, n_pos - tp, total - n_pos - (n_pred - tp))
        if ranked:
            columns_first = np.ascontiguousarray(weights.T)  # (n, c): one copy shared by every model
            pairs = [r.auroc_auprc(columns_first) for r in ranked]
            out["auroc"] = np.vstack([a for a, _ in pairs])
            out["auprc"] = np.vstack([b for _, b in pairs])
        for m in metrics:
            out[m] = np.where(valid[None, :], out[m], np.nan)
        return out

    full_eval = evaluate(np.ones((1, n)))
    full = {m: full_eval[m][:, 0] for m in metrics}
    parts = [evaluate(w) for w in _weight_chunks(n, n_resamples, seed, codes)]
    boot = {m: (np.concatenate([p[m] for p in parts], axis=1) if parts else np.empty((k, 0)))
            for m in metrics}
    valid = np.concatenate([p["_valid"] for p in parts]) if parts else np.empty(0, dtype=bool)
    return full, boot, valid


def _summarise_diff(point: float, diffs: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Percentile CI and two-sided bootstrap p-value with the +1 correction."""
    d = diffs[np.isfinite(diffs)]
    b = d.size
    if b == 0:
        return {"diff": point, "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    p_le = (1 + np.sum(d <= 0)) / (b + 1)
    p_ge = (1 + np.sum(d >= 0)) / (b + 1)
    return {"diff": point, "ci_low": float(lo), "ci_high": float(hi),
            "p_value": float(min(1.0, 2 * min(p_le, p_ge)))}


def paired_bootstrap(
    y_true: Any,
    prob_a: Any,
    prob_b: Any,
    metric: str,
    n_resamples: int = 1000,
    seed: int = 0,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    clusters: Any = None,
) -> dict[str, float | int]:
    """Paired bootstrap of ``metric(a) - metric(b)``: the paper's test for F1-macro.

    Samples are drawn with replacement and the SAME index sets score both models, so the shared
    difficulty of the test patients cancels out. ``metric`` is ``macro_f1`` (at ``threshold_a`` /
    ``threshold_b``, the validation-chosen thresholds; ``None`` means 0.5), ``auprc`` or ``auroc``.
    Resamples containing one class are skipped (``n_valid`` counts the rest). Returns the full-data
    ``diff``, a 95% percentile CI, and the two-sided p-value
    ``min(1, 2 * min((1 + #{d <= 0}) / (B + 1), (1 + #{d >= 0}) / (B + 1)))``. Identical seeds give
    identical results; 1000 resamples of 20,000 samples take well under a second per metric.
    ``clusters`` (one id per sample, e.g. the patient) resamples whole clusters instead of samples
    (the cluster bootstrap, :func:`_weight_chunks`); ``None`` is the paper's per-sample bootstrap.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric must be one of {BOOTSTRAP_METRICS}, got {metric!r}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be positive")
    y = _labels(y_true)
    a = _scores(prob_a, y.size, name="prob_a")
    b = _scores(prob_b, y.size, name="prob_b")
    if y.size == 0:
        raise ValueError("paired_bootstrap needs at least one sample")
    t_a = 0.5 if threshold_a is None else float(threshold_a)
    t_b = 0.5 if threshold_b is None else float(threshold_b)
    full, boot, valid = _bootstrap_distributions(y, [a, b], [t_a, t_b], [metric], n_resamples, seed,
                                                 _cluster_codes(clusters, y.size))
    out: dict[str, float | int] = {"metric_a": float(full[metric][0]), "metric_b": float(full[metric][1])}
    out |= _summarise_diff(float(full[metric][0] - full[metric][1]), boot[metric][0] - boot[metric][1])
    out |= {"n_resamples": int(n_resamples), "n_valid": int(valid.sum()), "seed": int(seed),
            "cluster": clusters is not None}
    if metric == "macro_f1":
        out |= {"threshold_a": t_a, "threshold_b": t_b}
    return out


def bootstrap_ci(
    y_true: Any,
    prob: Any,
    metric: str,
    threshold: float | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Any = None,
) -> dict[str, float | int]:
    """Percentile bootstrap ``level`` interval of ONE model's ``metric`` over resampled test samples
    (whole ``clusters`` resampled together when given, as in :func:`paired_bootstrap`).

    The same index sets as :func:`bootstrap_indices` / :func:`paired_bootstrap` for this ``seed``,
    scored vectorised (no per-resample loop). ``metric`` is ``macro_f1`` (at ``threshold``; ``None``
    means 0.5), ``auprc`` (average precision, as sklearn computes it) or ``auroc``. One-class
    resamples are skipped (``n_valid`` counts the rest); with none left the interval is NaN. Returns
    ``value`` (the full-data metric, NaN with one class), ``ci_low``, ``ci_high``, ``n_resamples``,
    ``n_valid`` and ``seed``.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric must be one of {BOOTSTRAP_METRICS}, got {metric!r}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be positive")
    y = _labels(y_true)
    p = _scores(prob, y.size)
    if y.size == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    t = 0.5 if threshold is None else float(threshold)
    full, boot, valid = _bootstrap_distributions(y, [p], [t], [metric], n_resamples, seed,
                                                 _cluster_codes(clusters, y.size))
    draws = boot[metric][0][valid]
    nan = float("nan")
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2]) if draws.size else (nan, nan)
    return {"value": float(full[metric][0]), "ci_low": float(low), "ci_high": float(high),
            "n_resamples": int(n_resamples), "n_valid": int(valid.sum()), "seed": int(seed)}


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


# ----------------------------------------------------------------------------------- paper numbers
def load_paper_results(path: Path | str | None = None) -> pd.DataFrame:
    """The paper's final Tables 1-3 (96 rows): table, task, model, setting, metric, value, significant,
    best, dataset, source. ``setting`` stays a 3-character string ('000' ... '111').

    >>> df = load_paper_results()
    >>> row = df.query("table == 1 and model == 'bert' and setting == '000' and metric == 'auroc'")
    >>> df.shape, row["value"].item()
    ((96, 10), 0.6808)
    """
    df = pd.read_csv(PAPER_RESULTS_PATH if path is None else path, dtype={"setting": str, "source": str})
    for col in ("significant", "best"):
        if df[col].dtype != bool:
            df[col] = df[col].astype(str).str.lower().map({"true": True, "false": False}).astype(bool)
    return df
