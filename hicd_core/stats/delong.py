"""DeLong's test and interval for AUROC (see :mod:`hicd_core.stats`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from hicd_core.stats.metrics import _labels, _scores


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
