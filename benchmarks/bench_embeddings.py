"""Benchmarks of the embedding-analysis layer at HICD-Graph scale (5,000 codes x 128 dimensions).

``embeddings_similarity_5k``: code_labels, relationship_similarity (exact means, 200k-pair samples),
chapter_similarity and the 5,000-row cosine silhouette, checked against a brute-force similarity
matrix and sklearn's ``silhouette_score``.
``embeddings_umap_2k`` / ``embeddings_umap_5k``: UMAP's first call in a fresh process (import + numba
JIT + fit), a cache hit, a warm recompute with another seed, and the map's trustworthiness.
``embeddings_umap_5k_nndescent``: the same first call with umap's own kNN (what ``umap_2d`` avoids).

Every figure is wall seconds unless its key says otherwise; CPU seconds are given too, because a loaded
shared machine inflates wall time. Run ``python -m benchmarks NAME`` or this file (every benchmark, each
in its own process, printed as JSON).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # executed as a script from a checkout that is not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import Clock  # noqa: E402
from hicd_core.experiments import embeddings as E  # noqa: E402

DIMS = 128
SEED = 0


def _codes(n: int, seed: int = SEED) -> list[str]:
    """``n`` distinct billable ICD-10-CM codes drawn across all chapters."""
    from hicd_core.hierarchy.icd10 import tree_frame

    tree = tree_frame()
    leaves = tree.loc[tree["billable"], "code"].to_numpy()
    return sorted(np.random.default_rng(seed).choice(leaves, n, replace=False).tolist())


def _embeddings(labels, dims: int = DIMS, seed: int = SEED) -> np.ndarray:
    """Chapter centre + category offset + code noise: the hierarchy-shaped geometry being measured."""
    rng = np.random.default_rng(seed)
    chapters = labels["chapter"].astype(str).to_numpy()
    categories = labels["category"].astype(str).to_numpy()
    chapter_centre = {ch: rng.normal(size=dims) for ch in np.unique(chapters)}
    category_offset = {cat: 0.8 * rng.normal(size=dims) for cat in np.unique(categories)}
    base = np.stack([chapter_centre[ch] + category_offset[cat]
                     for ch, cat in zip(chapters, categories, strict=True)])
    return (base + 0.6 * rng.normal(size=base.shape)).astype(np.float32)


def similarity_5k() -> dict[str, Any]:
    """Relationship and per-chapter similarity plus silhouette on 5,000 x 128."""
    fig: dict[str, Any] = {}
    codes = _codes(5000)
    with Clock() as took:
        labels = E.code_labels(codes)
    fig["code_labels_s"] = took.wall
    emb = _embeddings(labels)
    fig["n_codes"], fig["dims"] = emb.shape
    with Clock() as took:
        result = E.relationship_similarity(emb, labels, max_pairs=200_000, seed=SEED, return_samples=True)
    fig["relationship_similarity_s"], fig["relationship_similarity_cpu_s"] = took.wall, took.cpu
    with Clock() as took:
        E.relationship_similarity(emb, labels, max_pairs=200_000, seed=SEED)
    fig["relationship_similarity_repeat_s"] = took.wall
    with Clock() as took:  # max_pairs=0: no quantile samples
        E.relationship_similarity(emb, labels, max_pairs=0, seed=SEED)
    fig["relationship_similarity_exact_only_s"] = took.wall
    for name in E.RELATIONSHIPS:
        fig[f"{name}_mean"] = round(result[name], 4)
        fig[f"{name}_pairs"] = result[f"n_{name}"]
        fig[f"{name}_sample_mean_minus_exact"] = float(result["samples"][name].mean() - result[name])
    fig["n_categories"], fig["n_chapters"] = result["n_categories"], result["n_chapters"]

    # The module leaves out UNK rows and one-code chapters (silhouette); the references do the same.
    sizes = labels["chapter"].value_counts()
    known = (labels["chapter"] != "UNK").to_numpy()
    clustered = known & labels["chapter"].map(sizes).ge(2).to_numpy()

    # Reference: the brute-force way, the full 5,000 x 5,000 similarity matrix and boolean masks.
    def brute() -> dict[str, float]:
        x = E.normalize_rows(emb[known])
        sims = x @ x.T
        chapter = labels["chapter"].to_numpy()[known]
        category = labels["category"].to_numpy()[known]
        upper = np.triu(np.ones(sims.shape, dtype=bool), 1)
        same_chapter = chapter[:, None] == chapter[None, :]
        same_category = same_chapter & (category[:, None] == category[None, :])
        return {"same_category": sims[upper & same_category].mean(),
                "same_chapter": sims[upper & same_chapter & ~same_category].mean(),
                "different_chapter": sims[upper & ~same_chapter].mean()}

    with Clock() as took:
        exact = brute()
    fig["brute_force_matrix_s"] = took.wall
    fig["max_abs_diff_vs_brute_force"] = float(max(abs(exact[k] - result[k]) for k in E.RELATIONSHIPS))
    with Clock() as took:
        table = E.chapter_similarity(emb, labels)
    fig["chapter_similarity_s"] = took.wall
    fig["chapter_rows"] = len(table)
    with Clock() as took:
        score = E.silhouette_by_chapter(emb, labels)
    fig["silhouette_s"], fig["silhouette_cpu_s"] = took.wall, took.cpu
    fig["silhouette"] = round(score, 4)

    # Reference: sklearn's O(n^2) silhouette on the same rows.
    def sklearn_silhouette() -> float:
        from sklearn.metrics import silhouette_score

        return silhouette_score(E.normalize_rows(emb[clustered]), labels["chapter"].to_numpy()[clustered],
                                metric="cosine")

    with Clock() as took:
        reference = sklearn_silhouette()
    fig["sklearn_silhouette_s"], fig["sklearn_silhouette_cpu_s"] = took.wall, took.cpu
    fig["silhouette_abs_diff_vs_sklearn"] = abs(reference - score)
    with Clock() as took:
        E.embedding_summary(emb, labels)
    fig["embedding_summary_s"] = took.wall
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fig.items()}


def _umap(n: int) -> dict[str, Any]:
    fig: dict[str, Any] = {"n_points": n, "dims": DIMS}
    labels = E.code_labels(_codes(n))
    emb = _embeddings(labels)
    with tempfile.TemporaryDirectory() as cache:
        with Clock() as took:
            __import__("umap")
        fig["import_umap_s"] = took.wall
        with Clock() as took:
            first = E.umap_2d(emb, seed=SEED, cache_path=Path(cache))
        fig["first_call_s"], fig["first_call_cpu_s"] = took.wall, took.cpu
        with Clock() as took:
            cached = E.umap_2d(emb, seed=SEED, cache_path=Path(cache))
        fig["cached_call_s"] = took.wall
        fig["cache_hit"] = cached.cache_hit
        with Clock() as took:
            E.umap_2d(emb, seed=SEED + 1)
        fig["warm_recompute_other_seed_s"], fig["warm_recompute_cpu_s"] = took.wall, took.cpu
        fig["cache_file_kib"] = first.cache_file.stat().st_size / 1024
    fig["method"], fig["knn"] = first.method, first.params["knn"]
    with Clock() as took:
        E._exact_knn(E.normalize_rows(emb).astype(np.float32), 15)
    fig["exact_knn_s"] = took.wall
    E._pca_2d(E.normalize_rows(emb[:50]))  # import sklearn.decomposition outside the timing
    with Clock() as took:
        E._pca_2d(E.normalize_rows(emb))
    fig["pca_2d_s"] = took.wall

    # Quality: trustworthiness (sklearn, 15 neighbours, cosine input) of the 2-D map vs plain PCA.
    from sklearn.manifold import trustworthiness

    x = E.normalize_rows(emb)
    fig["trustworthiness_umap"] = trustworthiness(x, first.coords, n_neighbors=15)
    fig["trustworthiness_pca"] = trustworthiness(x, E._pca_2d(x), n_neighbors=15)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in fig.items()}


def umap_5k_nndescent() -> dict[str, Any]:
    """Reference: the first call with umap's own NNDescent kNN (``EXACT_KNN_MAX`` set to 0)."""
    E.EXACT_KNN_MAX = 0
    return _umap(5000)


def umap_2k() -> dict[str, Any]:
    """UMAP on 2,000 points (exact kNN: below umap's 4,096-point NNDescent cut-off)."""
    return _umap(2000)


def umap_5k() -> dict[str, Any]:
    """UMAP on 5,000 points (NNDescent kNN: its own JIT on the first call)."""
    return _umap(5000)


BENCHMARKS = {"embeddings_similarity_5k": similarity_5k, "embeddings_umap_2k": umap_2k,
              "embeddings_umap_5k": umap_5k, "embeddings_umap_5k_nndescent": umap_5k_nndescent}


if __name__ == "__main__":
    # One fresh process per benchmark (first-call figures mean nothing in a warmed-up process).
    from benchmarks.run import run_one

    print(json.dumps({name: run_one(name, "benchmarks.bench_embeddings") for name in BENCHMARKS}, indent=2))
