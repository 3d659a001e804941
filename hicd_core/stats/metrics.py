"""Inputs, threshold choice, point metrics and Platt recalibration (see :mod:`hicd_core.stats`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

#: The paper's threshold sweep: 200 evenly spaced values in [0.01, 0.99] (notes §5.4, §6.3).
THRESHOLD_GRID: np.ndarray = np.linspace(0.01, 0.99, 200)
BOOTSTRAP_METRICS = ("macro_f1", "auprc", "auroc")
PAPER_RESULTS_PATH = Path(__file__).resolve().parents[2] / "assets" / "paper_results.csv"


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
