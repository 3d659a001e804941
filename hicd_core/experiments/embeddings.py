"""Embedding analysis: how tightly the hierarchy packs code embeddings (paper notes §9).

The paper's only embedding measure is the mean pairwise cosine similarity of HICD-Graph code
embeddings, split by relationship (same 3-character category / same chapter, different category /
different chapter) and per chapter. This module computes those exactly, adds what the paper leaves
out (chapter silhouette, a tightness-vs-AUROC rank correlation, 2-D UMAP maps, nearest neighbours),
and keeps every function pure: an embedding matrix plus the rows' hierarchy labels in, numbers out.

Public API::

    code_labels(codes)                                 -> code, chapter, block, category, kind
    fine_groups(labels, fine)                          -> finest relationship group per row
    relationship_similarity(emb, labels, ...)          -> dict: mean/std/n_pairs per relationship
    chapter_similarity(emb, labels)                    -> per-chapter mean intra-chapter cosine
    chapter_similarity_wide(per_setting)               -> chapter x setting table (the paper's heatmap)
    silhouette_by_chapter(emb, labels, ...)            -> float (cosine, chapters as clusters)
    embedding_summary(emb, labels, ...)                -> relationship_similarity + silhouette
    tightness_table(per_setting)                       -> one row per hierarchy setting
    tightness_vs_auroc(tightness_df, auroc_by_setting) -> joined table + Spearman rho
    umap_2d(emb, seed, n_neighbors, cache_path)        -> Embedding2D (coords, method, cache info)
    nearest_neighbours(emb, codes, query_code, k)      -> code, cosine

Conventions:

* Every similarity is the cosine of L2-normalised rows (a zero row stays zero and has similarity 0
  with everything). Computation is float64.
* ``labels`` is a frame aligned row-for-row with ``emb`` (normally ``code_labels(codes)``). Graph
  ancestor nodes (``CHAP_IX``, ``BLOCK_I20-I25``, ``PREFIX_I2x``, ``CAT_I21``) have ``kind ==
  'ancestor'`` and are excluded from every analysis unless ``include_ancestors=True``.
* Means over pairs use the sum-of-vectors identity, so they are exact at any size in O(n d):
  for unit rows ``x_i`` of a group with sum ``s``, ``sum_{i<j} x_i.x_j = (||s||^2 - sum_i ||x_i||^2) / 2``.
  Standard deviations are exact too, from per-group Gram matrices (``sum_{i,j} (x_i.x_j)^2 =
  ||X^T X||_F^2``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicd_core.hierarchy import chapter_order, chapter_titles, normalize_codes
from hicd_core.hierarchy.icd10 import UNKNOWN, clean
from hicd_core.runtime import atomic_write_bytes, atomic_write_json, stable_hash

try:  # a scikit-learn dependency, so normally present
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    def threadpool_limits(*_args: Any, **_kwargs: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

__all__ = [
    "ANCESTOR_PREFIXES", "EXACT_KNN_MAX", "MIN_UMAP_POINTS", "RELATIONSHIPS", "UMAP_CACHE_VERSION",
    "Embedding2D", "chapter_similarity", "chapter_similarity_wide", "code_labels", "embedding_summary",
    "fine_groups",
    "nearest_neighbours", "normalize_rows", "relationship_similarity", "silhouette_by_chapter",
    "tightness_table", "tightness_vs_auroc", "umap_2d",
]

#: The paper's three relationship groups, finest first.
RELATIONSHIPS = ("same_category", "same_chapter", "different_chapter")
#: Graph ancestor node name prefixes (see :mod:`hicd_core.models.graph_build`).
ANCESTOR_PREFIXES = ("CHAP_", "BLOCK_", "PREFIX_", "CAT_")
#: Below this many points UMAP's neighbour graph is too small to mean anything; PCA is used instead.
MIN_UMAP_POINTS = 20
#: Up to this many rows UMAP gets an exact, precomputed kNN graph (see :func:`umap_2d`).
EXACT_KNN_MAX = 30_000
#: Bumped whenever the UMAP recipe changes, so old cache files are never reused.
UMAP_CACHE_VERSION = 3

LABEL_COLUMNS = ("code", "chapter", "block", "category", "kind")
#: Pair-cosine quantiles reported per relationship (box-plot figures).
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
QUANTILE_NAMES = ("q05", "q25", "median", "q75", "q95")
#: Levels that can play the finest relationship group (see :func:`fine_groups`).
FINE_LEVELS = ("auto", "category", "prefix", "block")


# --------------------------------------------------------------------------------------------- labels


@cache
def _prefix_group_parents() -> dict[str, tuple[str, str]]:
    """``'I2'`` -> (chapter, block) when every category with that 2-character prefix shares it, else UNK."""
    from hicd_core.hierarchy.icd10 import tree_frame

    tree = tree_frame()
    cats = tree[tree["kind"] == "category"]
    out = {}
    for prefix, group in cats.groupby(cats["code"].str[:2]):
        chapters, blocks = group["chapter"].unique(), group["block"].unique()
        out[str(prefix)] = (str(chapters[0]) if len(chapters) == 1 else UNKNOWN,
                            str(blocks[0]) if len(blocks) == 1 else UNKNOWN)
    return out


@cache
def _block_chapters() -> dict[str, str]:
    from hicd_core.hierarchy.icd10 import tree_frame

    tree = tree_frame()
    blocks = tree[tree["kind"] == "block"]
    return dict(zip(blocks["code"].astype(str), blocks["chapter"].astype(str), strict=True))


def _ancestor_label(name: str) -> tuple[str, str, str]:
    """(chapter, block, category) of a CHAP_/BLOCK_/PREFIX_ node name; UNK where not derivable."""
    if name.startswith("CHAP_"):
        chapter = name[len("CHAP_"):]
        return (chapter if chapter in chapter_order() else UNKNOWN, UNKNOWN, UNKNOWN)
    if name.startswith("BLOCK_"):
        block = name[len("BLOCK_"):]
        chapter = _block_chapters().get(block, UNKNOWN)
        return (chapter, block if chapter != UNKNOWN else UNKNOWN, UNKNOWN)
    # PREFIX_I2x groups the categories I20-I29; they can span blocks (and, for D/H, chapters).
    chapter, block = _prefix_group_parents().get(name[len("PREFIX_"):][:2], (UNKNOWN, UNKNOWN))
    return (chapter, block, UNKNOWN)


def code_labels(codes: Sequence[str]) -> pd.DataFrame:
    """Hierarchy labels for embedding rows, so every analysis groups rows the same way.

    Code nodes (dotted or undotted ICD-10-CM, categories such as ``I21`` included) are resolved
    with :func:`normalize_codes`; unresolvable codes get ``UNK`` everywhere. Graph ancestor nodes
    get the parents that are derivable from their name (``BLOCK_I20-I25`` -> chapter ``IX``;
    ``PREFIX_D5x`` -> chapter ``III``; ``PREFIX_D4x``, which spans blocks, -> block ``UNK``) and
    ``kind == 'ancestor'`` so analyses can leave them out.

    >>> code_labels(["I214", "I50.9", "CHAP_IX", "BLOCK_I20-I25", "XYZ"])
                code chapter    block category      kind
    0           I214      IX  I20-I25      I21      code
    1          I50.9      IX  I30-I5A      I50      code
    2        CHAP_IX      IX      UNK      UNK  ancestor
    3  BLOCK_I20-I25      IX  I20-I25      UNK  ancestor
    4            XYZ     UNK      UNK      UNK      code
    """
    names = [str(code) for code in codes]
    is_ancestor = np.array([name.startswith(ANCESTOR_PREFIXES) for name in names], dtype=bool)
    chapter = np.full(len(names), UNKNOWN, dtype=object)
    block = chapter.copy()
    category = chapter.copy()
    # Code nodes and category nodes (CAT_I21 -> I21) resolve in one vectorised call.
    resolvable = [i for i, name in enumerate(names) if not is_ancestor[i] or name.startswith("CAT_")]
    if resolvable:
        norm = normalize_codes([names[i].removeprefix("CAT_") for i in resolvable])
        chapter[resolvable] = norm["chapter"].astype(str).to_numpy()
        block[resolvable] = norm["block"].astype(str).to_numpy()
        category[resolvable] = norm["category"].astype(str).to_numpy()
    for i in np.flatnonzero(is_ancestor):
        if not names[i].startswith("CAT_"):
            chapter[i], block[i], category[i] = _ancestor_label(names[i])
    return pd.DataFrame({"code": names, "chapter": chapter, "block": block, "category": category,
                         "kind": np.where(is_ancestor, "ancestor", "code")})


# ------------------------------------------------------------------------------------------- helpers


def normalize_rows(emb: np.ndarray) -> np.ndarray:
    """Float64 L2-normalised copy of ``emb`` (zero rows stay zero), so dot products are cosines."""
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (rows, dims) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _check_aligned(emb: np.ndarray, labels: pd.DataFrame) -> None:
    if len(labels) != len(emb):
        raise ValueError(f"labels has {len(labels)} rows but the embedding matrix has {len(emb)}")
    missing = {"chapter", "category"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels lacks column(s) {sorted(missing)}; build it with code_labels()")


def _row_mask(labels: pd.DataFrame, include_ancestors: bool) -> np.ndarray:
    if include_ancestors or "kind" not in labels.columns:
        return np.ones(len(labels), dtype=bool)
    return (labels["kind"].astype(str) != "ancestor").to_numpy()


def _group_sums(x: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: row count, sum over pairs i<j of x_i.x_j, and sum over pairs of (x_i.x_j)^2."""
    counts = np.bincount(group, minlength=n_groups).astype(np.float64)
    sums = np.zeros((n_groups, x.shape[1]))
    np.add.at(sums, group, x)
    sq_norms = np.bincount(group, weights=np.einsum("ij,ij->i", x, x), minlength=n_groups)
    sq_norms4 = np.bincount(group, weights=np.einsum("ij,ij->i", x, x) ** 2, minlength=n_groups)
    pair_sum = (np.einsum("ij,ij->i", sums, sums) - sq_norms) / 2
    # sum_{i,j} (x_i.x_j)^2 = ||X_g^T X_g||_F^2; subtract the diagonal (||x_i||^4) and halve.
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(n_groups + 1))
    frob = np.zeros(n_groups)
    # The Grams are small (at most d x d): BLAS threads only add contention (10x slower on a busy host).
    with threadpool_limits(1, user_api="blas"):
        for g in np.flatnonzero(counts > 1):  # one Gram per group, never a loop over pairs
            rows = x[order[bounds[g]:bounds[g + 1]]]
            gram = rows @ rows.T if len(rows) <= x.shape[1] else rows.T @ rows
            frob[g] = np.einsum("ij,ij->", gram, gram)
    pair_sq_sum = np.where(counts > 1, (frob - sq_norms4) / 2, 0.0)  # a lone row has no pairs
    return counts, pair_sum, pair_sq_sum


def _mean_std(total: float, total_sq: float, n_pairs: int) -> tuple[float, float]:
    if n_pairs <= 0:
        return float("nan"), float("nan")
    mean = total / n_pairs
    var = max(total_sq / n_pairs - mean * mean, 0.0)
    return float(mean), float(np.sqrt(var))


def _ranges_pairs(lo: np.ndarray, hi: np.ndarray, max_pairs: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Pairs (i, j) with j in [lo[i], hi[i]): all of them, or ``max_pairs`` uniform draws.

    Every unordered pair of a relationship is listed exactly once by its smaller sorted position,
    so drawing ``i`` with probability proportional to ``hi[i] - lo[i]`` and then ``j`` uniformly in
    the range samples the pairs uniformly (with replacement).
    """
    width = np.maximum(hi - lo, 0)
    total = int(width.sum())
    if total <= max_pairs:
        i = np.repeat(np.arange(len(lo)), width)
        starts = np.cumsum(width) - width
        j = np.arange(total) - np.repeat(starts, width) + np.repeat(lo, width)
        return i, j, True
    cdf = np.cumsum(width)
    i = np.searchsorted(cdf, rng.integers(0, total, size=max_pairs), side="right")
    j = lo[i] + (rng.random(max_pairs) * width[i]).astype(np.int64)
    j = np.minimum(j, hi[i] - 1)
    return i, j, False


def _pair_cosines(x: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 16_384) -> np.ndarray:
    """Cosines of the listed pairs, in float32 (for plots; the exact means never use them)."""
    x = x.astype(np.float32)
    out = np.empty(len(i), dtype=np.float32)
    for start in range(0, len(i), chunk):  # chunks bound the gathered (chunk, d) copies
        stop = start + chunk
        out[start:stop] = np.einsum("ij,ij->i", x[i[start:stop]], x[j[start:stop]])
    return out


# --------------------------------------------------------------------------------------- similarities


def fine_groups(labels: pd.DataFrame, fine: str = "auto") -> tuple[np.ndarray, str]:
    """The finest shared-ancestor group of each row, and the level used (see :func:`relationship_similarity`).

    ``category`` (3 characters, ``I21``), ``prefix`` (2-character group, ``I2x``: the G2 ``PREFIX_*`` node
    of category-level graphs), ``block`` (``I20-I25``), or ``auto``: ``category`` unless no two code rows
    share a category, as when the rows are themselves categories (the paper's graph vocabulary), then
    ``prefix``. ``UNK`` means no group.
    """
    if fine not in FINE_LEVELS:
        raise ValueError(f"unknown fine level {fine!r}; choose one of {', '.join(FINE_LEVELS)}")
    categories = labels["category"].astype(str).to_numpy()
    if fine == "auto":
        is_code = _row_mask(labels, include_ancestors=False) & (categories != UNKNOWN)
        fine = "category" if pd.Series(categories[is_code]).duplicated().any() else "prefix"
    if fine == "category":
        return categories.astype(object), fine
    if fine == "block":
        return labels["block"].astype(str).to_numpy().astype(object), fine
    names = labels["code"].astype(str) if "code" in labels.columns else pd.Series([""] * len(labels))
    # The 'graph' level scheme's G2 (hierarchy.levels: first two characters + 'x'), taken straight
    # from the category column: building a normalize_codes frame to call level_ids would cost more.
    prefix = np.where(categories != UNKNOWN, pd.Series(categories).str[:2].to_numpy() + "x", UNKNOWN)
    is_prefix_node = names.str.startswith("PREFIX_").to_numpy()
    prefix[is_prefix_node] = names[is_prefix_node].str[len("PREFIX_"):].to_numpy()
    return prefix.astype(object), fine


def relationship_similarity(emb: np.ndarray, labels: pd.DataFrame, max_pairs: int = 200_000, seed: int = 0,
                            *, fine: str = "auto", include_ancestors: bool = False,
                            return_samples: bool = False) -> dict[str, Any]:
    """Mean pairwise cosine per relationship: the paper's Fig. 4 measure of hierarchy-aware packing.

    Groups (each unordered pair of distinct rows counted once):

    * ``same_category``: same finest group (``fine``): the 3-character category for leaf codes, the
      2-character prefix group when the rows are categories (``fine='auto'`` picks; paper notes §3
      leave open which one the paper used; ``fine_level`` in the result says which was used);
    * ``same_chapter``: same chapter, different finest group;
    * ``different_chapter``: different chapters.

    Rows whose chapter is ``UNK`` are left out (their relationship is unknown; ``n_excluded`` counts
    them with the ancestors). A row without a finest group (an included CHAP_/BLOCK_ node) is its
    own group. Groups are nested in chapters (a group never pairs rows of two chapters).

    Returns a flat, JSON-serialisable dict: for each group ``g``, ``g`` (mean), ``std_g``, ``n_g`` (pair
    count), ``q05_g``, ``q25_g``, ``median_g``, ``q75_g``, ``q95_g`` (quantiles, for box plots) and
    ``sampled_g``; plus ``fine_level``, ``n_rows``, ``n_excluded``, ``n_chapters`` and ``n_categories``
    (finest groups). With ``return_samples`` it also holds ``samples`` (group -> float32 array of the
    pair cosines behind the quantiles, for distribution plots; not JSON-serialisable).

    Means and standard deviations are exact at any size (sum-of-vectors identity, see the module
    docstring) and never depend on sampling. The quantiles come from every pair of a group when it has
    at most ``max_pairs`` pairs (``sampled_g`` False); otherwise from ``max_pairs`` pairs drawn uniformly
    with replacement by ``numpy.random.default_rng(seed)`` (``sampled_g`` True), so the same inputs
    always give the same figures.
    """
    _check_aligned(emb, labels)
    keep = _row_mask(labels, include_ancestors)
    chapters = labels["chapter"].astype(str).to_numpy()
    keep = keep & (chapters != UNKNOWN)
    x = normalize_rows(np.asarray(emb)[keep])
    n = len(x)
    chapters = chapters[keep]
    fine_values, fine_level = fine_groups(labels, fine)
    categories = fine_values[keep]
    lonely = categories == UNKNOWN
    categories[lonely] = [f"\x00row{i}" for i in np.flatnonzero(lonely)]  # never share a category
    chap_id = pd.factorize(chapters)[0]
    cat_id = pd.factorize(pd.Series(chapters, dtype=object) + "\x01" + pd.Series(categories, dtype=object))[0]
    n_chap, n_cat = int(chap_id.max(initial=-1)) + 1, int(cat_id.max(initial=-1)) + 1

    # Exact sums per group: all pairs, same chapter (incl. same category), same category.
    _, all_sum, all_sq = _group_sums(x, np.zeros(n, dtype=np.int64), 1)
    chap_n, chap_sum, chap_sq = _group_sums(x, chap_id, n_chap)
    cat_n, cat_sum, cat_sq = _group_sums(x, cat_id, n_cat)
    pairs_all = n * (n - 1) // 2
    pairs_chap = int((chap_n * (chap_n - 1) // 2).sum())
    pairs_cat = int((cat_n * (cat_n - 1) // 2).sum())
    totals = {
        "same_category": (cat_sum.sum(), cat_sq.sum(), pairs_cat),
        "same_chapter": (chap_sum.sum() - cat_sum.sum(), chap_sq.sum() - cat_sq.sum(),
                         pairs_chap - pairs_cat),
        "different_chapter": (all_sum.sum() - chap_sum.sum(), all_sq.sum() - chap_sq.sum(),
                              pairs_all - pairs_chap),
    }

    # Pair ranges in (chapter, category) order: each row pairs with the later rows of its category,
    # of its chapter outside its category, and of later chapters.
    order = np.lexsort((cat_id, chap_id))
    pos = np.arange(n)
    chap_sorted = chap_id[order].astype(np.int64)
    key = chap_sorted * max(n_cat, 1) + cat_id[order]
    cat_end = np.searchsorted(key, key, side="right")
    chap_end = np.searchsorted(chap_sorted, chap_sorted, side="right")
    ranges = {"same_category": (pos + 1, cat_end), "same_chapter": (cat_end, chap_end),
              "different_chapter": (chap_end, np.full(n, n))}

    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {}
    samples = {}
    for name in RELATIONSHIPS:
        total, total_sq, n_pairs = totals[name]
        mean, std = _mean_std(total, total_sq, n_pairs)
        i, j, exact = _ranges_pairs(*ranges[name], max_pairs=max_pairs, rng=rng)
        samples[name] = _pair_cosines(x, order[i], order[j])
        quantiles = (np.quantile(samples[name], QUANTILES) if len(samples[name])
                     else np.full(len(QUANTILES), np.nan))
        result[name] = mean
        result[f"std_{name}"] = std
        result[f"n_{name}"] = int(n_pairs)
        for label, value in zip(QUANTILE_NAMES, quantiles, strict=True):
            result[f"{label}_{name}"] = float(value)
        result[f"sampled_{name}"] = not exact
    result.update(fine_level=fine_level, n_rows=int(n), n_excluded=int(len(labels) - n), n_chapters=n_chap,
                  n_categories=len(set(categories[~lonely])))
    if return_samples:
        result["samples"] = samples
    return result


def chapter_similarity(emb: np.ndarray, labels: pd.DataFrame, *,
                       include_ancestors: bool = False) -> pd.DataFrame:
    """Mean intra-chapter pairwise cosine per chapter (incl. ``UNK``): the paper's per-chapter heatmap.

    Exact via ``mean over pairs = (||sum||^2 - n) / (n (n - 1))`` on unit rows (zero rows handled by
    using their true squared norms). Columns: ``chapter``, ``title``, ``n_codes``, ``n_pairs``,
    ``mean_cosine`` (NaN for a one-code chapter), ``std_cosine``; rows in chapter order.
    """
    _check_aligned(emb, labels)
    keep = _row_mask(labels, include_ancestors)
    x = normalize_rows(np.asarray(emb)[keep])
    chapters = labels["chapter"].astype(str).to_numpy()[keep]
    ordered = [ch for ch in chapter_order() if ch in set(chapters)]
    ordered += sorted(set(chapters) - set(ordered))
    index = {ch: k for k, ch in enumerate(ordered)}
    group = np.array([index[ch] for ch in chapters], dtype=np.int64)
    counts, pair_sum, pair_sq = _group_sums(x, group, len(ordered))
    n_pairs = (counts * (counts - 1) // 2).astype(np.int64)
    stats = [_mean_std(s, q, int(p)) for s, q, p in zip(pair_sum, pair_sq, n_pairs, strict=True)]
    titles = chapter_titles()
    return pd.DataFrame({
        "chapter": ordered, "title": [titles.get(ch, "") for ch in ordered],
        "n_codes": counts.astype(np.int64), "n_pairs": n_pairs,
        "mean_cosine": [m for m, _ in stats], "std_cosine": [s for _, s in stats]})


def chapter_similarity_wide(per_setting: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Chapter x setting table of ``mean_cosine`` (the layout of the paper's intra-chapter heatmap)."""
    columns = {setting: frame.set_index("chapter")["mean_cosine"] for setting, frame in per_setting.items()}
    wide = pd.DataFrame(columns)
    order = [ch for ch in chapter_order() if ch in wide.index]
    return wide.loc[order + [ch for ch in wide.index if ch not in order]]


def silhouette_by_chapter(emb: np.ndarray, labels: pd.DataFrame, sample: int | None = None, seed: int = 0, *,
                          include_ancestors: bool = False) -> float:
    """Cosine silhouette with chapters as clusters: a single separation score the paper does not report.

    Equal to ``sklearn.metrics.silhouette_score(x, chapters, metric='cosine')`` only on the rows kept
    here: ``UNK`` rows and single-code chapters are dropped first, whereas sklearn given all rows
    would keep a single-code chapter's row, score it 0 and average it in. Computed exactly in O(n k d)
    instead of O(n^2 d): with unit rows, the mean cosine distance from ``x_i`` to cluster ``C`` is
    ``1 - x_i . s_C / |C|`` (own cluster: ``1 - (x_i . s_C - 1) / (|C| - 1)``), ``s_C`` the cluster's
    vector sum. So every row is used and no sampling is needed.

    ``UNK`` rows and chapters with a single code are left out (a one-member cluster has no
    cohesion). ``sample`` (default: none) reproduces a sampled silhouette: above ``sample`` rows,
    ``sample`` rows drawn without replacement by ``numpy.random.default_rng(seed)`` act as both the
    scored points and the clusters; a chapter left with one sampled row scores 0 there, as in sklearn.
    NaN when fewer than two chapters remain.
    """
    _check_aligned(emb, labels)
    keep = _row_mask(labels, include_ancestors)
    chapters = labels["chapter"].astype(str).to_numpy()
    keep = keep & (chapters != UNKNOWN)
    sizes = pd.Series(chapters[keep]).value_counts()
    keep = keep & np.isin(chapters, sizes[sizes >= 2].index.to_numpy())
    rows = np.flatnonzero(keep)
    if sample is not None and len(rows) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=sample, replace=False))
    group, names = pd.factorize(chapters[rows])
    if len(names) < 2 or len(names) >= len(rows):
        return float("nan")
    x = normalize_rows(np.asarray(emb)[rows])
    counts = np.bincount(group, minlength=len(names)).astype(np.float64)
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, group, x)
    with threadpool_limits(1, user_api="blas"):
        dots = x @ sums.T  # (n, k): sum of cosines from each row to each cluster
    own = np.arange(len(x))
    self_sq = np.einsum("ij,ij->i", x, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = 1.0 - (dots[own, group] - self_sq) / (counts[group] - 1)
        inter_all = 1.0 - dots / counts
    inter_all[own, group] = np.inf
    inter = inter_all.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = (inter - intra) / np.maximum(intra, inter)
    scores[counts[group] < 2] = 0.0
    return float(np.nan_to_num(scores).mean())


def embedding_summary(emb: np.ndarray, labels: pd.DataFrame, *, max_pairs: int = 0, seed: int = 0,
                      fine: str = "auto", silhouette_sample: int | None = None,
                      include_ancestors: bool = False) -> dict[str, Any]:
    """``relationship_similarity`` plus ``silhouette``, JSON-serialisable: a :func:`tightness_table` entry.

    ``max_pairs`` defaults to 0: no pairs are sampled, so the pair-cosine quantiles (``q05_g`` ...) are
    NaN (and ``sampled_g`` True for a non-empty group). Nothing that reads stored summaries uses them,
    and sampling is most of the cost; pass ``max_pairs`` (e.g. 200_000) to get them. Means, standard
    deviations and counts never depend on it.
    """
    out = relationship_similarity(emb, labels, max_pairs=max_pairs, seed=seed, fine=fine,
                                  include_ancestors=include_ancestors)
    out["silhouette"] = silhouette_by_chapter(emb, labels, sample=silhouette_sample, seed=seed,
                                              include_ancestors=include_ancestors)
    return out


# ------------------------------------------------------------------------------------------ tightness

TIGHTNESS_COLUMNS = ("same_category", "same_chapter", "different_chapter", "tightness", "chapter_contrast",
                     "silhouette")


def tightness_table(per_setting: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per hierarchy setting ('000', '100', ...) so settings can be ranked by cluster tightness.

    ``per_setting`` maps a setting key to :func:`embedding_summary` (or
    :func:`relationship_similarity`) output; a missing ``silhouette`` becomes NaN.

    Definitions:

    * ``tightness = same_category - different_chapter``: how much closer codes of one category are
      than unrelated codes. The paper compares the raw ``same_category`` mean across settings
      (Fig. 4(b)); a contrast is used here because a global shift of every similarity (anisotropy,
      which the hierarchy also raises: Fig. 4(a)) is not tighter clustering.
    * ``chapter_contrast = same_chapter - different_chapter``: the same contrast at chapter level.

    Rows follow the paper's setting order (index ``setting``; a ``label`` column gives ``G1+G2`` etc.;
    ``fine_level`` says what ``same_category`` grouped by, see :func:`relationship_similarity`).
    """
    from hicd_core.hierarchy import Setting, setting_rank

    rows = []
    for setting in sorted(per_setting, key=lambda s: (setting_rank(s), s)):
        entry = per_setting[setting]
        values = {name: float(entry.get(name, np.nan)) for name in (*RELATIONSHIPS, "silhouette")}
        try:
            label = Setting(setting).label
        except ValueError:
            label = setting
        rows.append({"setting": setting, "label": label, "fine_level": entry.get("fine_level", ""),
                     **{k: values[k] for k in RELATIONSHIPS},
                     "tightness": values["same_category"] - values["different_chapter"],
                     "chapter_contrast": values["same_chapter"] - values["different_chapter"],
                     "silhouette": values["silhouette"]})
    columns = ["setting", "label", "fine_level", *TIGHTNESS_COLUMNS]
    return pd.DataFrame(rows, columns=columns).set_index("setting")


def tightness_vs_auroc(tightness_df: pd.DataFrame, auroc_by_setting: pd.Series,
                       measure: str = "tightness") -> pd.DataFrame:
    """Join tightness and AUROC per setting, with Spearman's rho: does the tightest setting perform best?

    The paper claims the settings with the tightest clusters also reach the strongest AUROC (notes §9).
    ``auroc_by_setting`` is indexed by setting key (``'011'``) or label (``'G1+G2'``).
    Returns the settings present in both inputs with columns of ``tightness_df`` plus ``auroc``,
    ``rank_measure`` and ``rank_auroc`` (1 = highest), and ``spearman_rho`` (constant column).
    ``attrs['spearman']`` = ``{'measure', 'rho', 'p_value', 'n'}`` for ``measure`` and
    ``attrs['spearman_all']`` = measure -> rho for every tightness column. With eight settings the
    p-value is weak evidence at best; rho is NaN below three settings or on a constant column.
    """
    from scipy.stats import spearmanr

    if measure not in tightness_df.columns:
        raise ValueError(f"unknown measure {measure!r}; choose one of {list(tightness_df.columns)}")
    auroc = pd.Series(auroc_by_setting, dtype=float)
    auroc.index = auroc.index.astype(str)
    if "label" in tightness_df.columns and not auroc.index.isin(tightness_df.index).any():
        # AUROC keyed by label ('G1+G2') rather than setting key ('011').
        auroc = auroc.rename(index={label: key for key, label in tightness_df["label"].items()})
    joined = tightness_df.join(auroc.rename("auroc"), how="inner")
    valid = joined[[measure, "auroc"]].dropna()

    def rho_of(column: str) -> tuple[float, float]:
        pair = joined[[column, "auroc"]].dropna()
        if len(pair) < 3 or pair[column].nunique() < 2 or pair["auroc"].nunique() < 2:
            return float("nan"), float("nan")
        res = spearmanr(pair[column], pair["auroc"])
        return float(res.statistic), float(res.pvalue)

    rho, p_value = rho_of(measure)
    joined["rank_measure"] = joined[measure].rank(ascending=False, method="min")
    joined["rank_auroc"] = joined["auroc"].rank(ascending=False, method="min")
    joined["spearman_rho"] = rho
    joined.attrs["spearman"] = {"measure": measure, "rho": rho, "p_value": p_value, "n": len(valid)}
    joined.attrs["spearman_all"] = {col: rho_of(col)[0] for col in TIGHTNESS_COLUMNS if col in joined}
    return joined


# ----------------------------------------------------------------------------------------------- UMAP


@dataclass(frozen=True)
class Embedding2D:
    """2-D map of an embedding matrix.

    Attributes:
        coords: (n, 2) float32 coordinates, row-aligned with the input.
        method: ``'umap'`` or ``'pca'`` (fewer than :data:`MIN_UMAP_POINTS` rows).
        params: what produced them (seed, n_neighbors, min_dist, metric...), recorded for the app.
        cache_file: the ``.npy`` file read or written, or None without a cache.
        cache_hit: True when ``coords`` came from the cache.
        seconds: wall time of this call.
    """

    coords: np.ndarray
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    cache_file: Path | None = None
    cache_hit: bool = False
    seconds: float = 0.0


def _embedding_digest(x: np.ndarray) -> str:
    arr = np.ascontiguousarray(x)
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def _umap_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("umap-learn")
    except metadata.PackageNotFoundError:
        return "missing"


def umap_2d(emb: np.ndarray, seed: int = 0, n_neighbors: int = 15, cache_path: Path | None = None, *,
            min_dist: float = 0.1) -> Embedding2D:
    """Seeded 2-D UMAP of the cosine geometry, cached on disk because a first call costs seconds.

    Rows are L2-normalised and mapped with the euclidean metric: on unit vectors
    ``||a - b||^2 = 2 - 2 cos(a, b)``, so the neighbour graph is the cosine one without numba's
    extra JIT for ``metric='cosine'`` (stack notes §4.2). Up to :data:`EXACT_KNN_MAX` rows the
    neighbours are computed exactly here (sklearn's brute-force ``NearestNeighbors``) and passed to
    UMAP as ``precomputed_knn``: that skips umap's own kNN step and its JIT (the first call in a process drops
    about 4x at 5,000 points and 2x at 2,000), and makes the graph exact. Larger inputs use umap's
    NNDescent. ``random_state=seed`` with ``n_jobs=1`` makes the result reproducible.

    Fewer than :data:`MIN_UMAP_POINTS` rows use a 2-component PCA instead (UMAP needs enough
    neighbours); ``method`` says which was used. ``n_neighbors`` is capped at ``n - 1``.

    ``cache_path`` is a directory. Coordinates are stored as ``umap2d-<key>.npy`` (atomically, no
    pickle), where ``key`` hashes the embedding bytes, the parameters, the recipe version and the
    umap-learn version, so a changed input never reuses a stale file. A ``.json`` sidecar records the
    parameters for people; it is never used to decide validity. Old files are not deleted.
    """
    start = time.perf_counter()
    x = normalize_rows(emb).astype(np.float32)
    n = len(x)
    method = "pca" if n < MIN_UMAP_POINTS else "umap"
    neighbours = int(min(n_neighbors, max(n - 1, 1)))
    params: dict[str, Any] = {"method": method, "seed": int(seed), "n_neighbors": neighbours,
                              "min_dist": float(min_dist), "metric": "euclidean-on-unit-vectors",
                              "version": UMAP_CACHE_VERSION, "n": n, "dims": int(x.shape[1])}
    if method == "umap":
        params["umap_learn"] = _umap_version()
        params["knn"] = "exact" if n <= EXACT_KNN_MAX else "nndescent"
    cache_file = None
    if cache_path is not None:
        if Path(cache_path).suffix == ".npy":
            raise ValueError(f"cache_path is a directory (files are named by content hash), got {cache_path}")
        key = stable_hash(_embedding_digest(x), params)
        cache_file = Path(cache_path) / f"umap2d-{key}.npy"
        if cache_file.exists():
            try:
                coords = np.load(cache_file, allow_pickle=False)
            except (OSError, ValueError):
                coords = None  # unreadable: recompute and overwrite
            if coords is not None and coords.shape == (n, 2):
                return Embedding2D(coords, method, params, cache_file, True, time.perf_counter() - start)
    if method == "pca":
        coords = _pca_2d(x)
    else:
        import umap

        knn = _exact_knn(x, neighbours) if params["knn"] == "exact" else (None, None, None)
        reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, min_dist=min_dist, metric="euclidean",
                            random_state=seed, n_jobs=1, precomputed_knn=knn)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # the seed forces n_jobs=1
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")  # no .transform needed
            coords = reducer.fit_transform(x)
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    if cache_file is not None:
        buffer = io.BytesIO()
        np.save(buffer, coords, allow_pickle=False)
        atomic_write_bytes(cache_file, buffer.getvalue())
        atomic_write_json(cache_file.with_suffix(".json"), params)
    return Embedding2D(coords, method, params, cache_file, False, time.perf_counter() - start)


def _exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, None]:
    """Exact k nearest neighbours of unit rows (self first, distance 0), in umap's precomputed_knn form.

    sklearn's brute-force search for the other ``k - 1`` (``kneighbors()`` without ``X`` leaves each
    row itself out, duplicates included), then the row itself is put first, as umap expects.
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    k = min(k, n)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.zeros((n, k), dtype=np.float32)
    indices[:, 0] = np.arange(n)
    if k > 1:
        search = NearestNeighbors(n_neighbors=k - 1, algorithm="brute", metric="euclidean").fit(x)
        dist, idx = search.kneighbors(n_neighbors=k - 1)
        indices[:, 1:], distances[:, 1:] = idx, dist
    return indices, distances, None


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """2 PCA components, zero-padded when the data has fewer (1 row, 1 dimension, rank 1)."""
    out = np.zeros((len(x), 2), dtype=np.float32)
    k = min(2, len(x), x.shape[1])
    if len(x) >= 2 and k >= 1:
        from sklearn.decomposition import PCA

        out[:, :k] = PCA(n_components=k, random_state=0).fit_transform(x)
    return out


# ---------------------------------------------------------------------------------- nearest neighbours


def nearest_neighbours(emb: np.ndarray, codes: Sequence[str], query_code: str, k: int = 10, *,
                       include_ancestors: bool = False) -> pd.DataFrame:
    """The ``k`` rows most cosine-similar to ``query_code`` (itself excluded), most similar first.

    ``query_code`` matches a row's code exactly or ignoring dots and case (``I21.4`` finds ``I214``).
    Graph ancestor nodes (``CHAP_IX``...) are not candidates unless ``include_ancestors``: they exist
    only in some settings, so leaving them out keeps the lists of different settings comparable.
    Columns: ``rank`` (1-based), ``code``, ``cosine``. Ties keep row order.
    """
    names = [str(code) for code in codes]
    if len(names) != len(emb):
        raise ValueError(f"{len(names)} codes for an embedding matrix of {len(emb)} rows")
    try:
        row = names.index(str(query_code))
    except ValueError:
        wanted = clean(str(query_code))
        matches = [i for i, name in enumerate(names) if clean(name) == wanted]
        if not matches:
            raise KeyError(f"code {query_code!r} has no embedding row") from None
        row = matches[0]
    x = normalize_rows(emb)
    sims = x @ x[row]
    candidate = np.ones(len(names), dtype=bool)
    if not include_ancestors:
        candidate &= ~np.array([name.startswith(ANCESTOR_PREFIXES) for name in names], dtype=bool)
    candidate[row] = False
    k = max(0, min(int(k), int(candidate.sum())))
    order = np.flatnonzero(candidate)[np.argsort(-sims[candidate], kind="stable")[:k]]
    return pd.DataFrame({"rank": np.arange(1, k + 1), "code": [names[i] for i in order],
                         "cosine": sims[order]})

