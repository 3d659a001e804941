"""The vectorised (optionally patient-clustered) bootstrap (see :mod:`hicd_core.stats`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from hicd_core.stats.metrics import BOOTSTRAP_METRICS, _f1_pair, _labels, _scores

_CHUNK_CELLS = 4_000_000  # indices per vectorised block of resamples (~32 MB of int64)


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
