"""Embedding analysis: exact similarity formulas, sampling, silhouette, tightness ranking, UMAP caching.

Labels are real ICD-10-CM codes from four blocks in three chapters (E08-E13 in IV, I20-I25 and
I30-I5A in IX, J40-J4A in X). UMAP runs in ONE small module-scoped fixture (~300 points, ~8 s for
the first call of a process); everything else is sub-second.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hicd_core.experiments import embeddings as E

BLOCKS = ("E08-E13", "I20-I25", "I30-I5A", "J40-J4A")


@pytest.fixture(scope="module")
def codes() -> list[str]:
    """Up to 6 billable codes per category of the four blocks (about 270 codes, 47 categories)."""
    from hicd_core.hierarchy.icd10 import tree_frame

    tree = tree_frame()
    leaves = tree[tree["billable"] & tree["block"].isin(BLOCKS)]
    return leaves.groupby("category").head(6)["code"].tolist()


@pytest.fixture(scope="module")
def labels(codes: list[str]) -> pd.DataFrame:
    return E.code_labels(codes)


def clustered(labels: pd.DataFrame, dims: int = 32, seed: int = 0) -> np.ndarray:
    """Category centre + small noise, category centres near their chapter's centre."""
    rng = np.random.default_rng(seed)
    chapter_centre = {ch: rng.normal(size=dims) for ch in labels["chapter"].unique()}
    pairs = labels[["category", "chapter"]].drop_duplicates().itertuples(index=False)
    category_centre = {cat: chapter_centre[ch] + 0.8 * rng.normal(size=dims) for cat, ch in pairs}
    return np.stack([category_centre[cat] + 0.3 * rng.normal(size=dims) for cat in labels["category"]])


def brute_force(emb: np.ndarray, labels: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every pair's cosine by relationship, from the full similarity matrix."""
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.triu_indices(len(x), 1)
    sims = np.einsum("ij,ij->i", x[i], x[j])
    chapter, category = labels["chapter"].to_numpy(), labels["category"].to_numpy()
    same_chapter = chapter[i] == chapter[j]
    same_category = same_chapter & (category[i] == category[j])
    return {"same_category": sims[same_category], "same_chapter": sims[same_chapter & ~same_category],
            "different_chapter": sims[~same_chapter]}


# ---------------------------------------------------------------------------------------------- labels


def test_code_labels_resolves_codes_and_graph_ancestors():
    frame = E.code_labels(["I214", "I21.4", "I21", "CHAP_IX", "BLOCK_I20-I25", "PREFIX_I2x", "PREFIX_D5x",
                           "CAT_E11", "BLOCK_NOPE", "XYZ"])
    assert list(frame.columns) == ["code", "chapter", "block", "category", "kind"]
    rows = frame.set_index("code")
    assert tuple(rows.loc["I21.4", ["chapter", "block", "category", "kind"]]) == (
        "IX", "I20-I25", "I21", "code")
    assert tuple(rows.loc["I21", ["chapter", "category"]]) == ("IX", "I21")
    assert tuple(rows.loc["CHAP_IX", ["chapter", "block", "category"]]) == ("IX", "UNK", "UNK")
    assert tuple(rows.loc["BLOCK_I20-I25", ["chapter", "block"]]) == ("IX", "I20-I25")
    # I20-I29 spans blocks I20-I25 and I26-I28: chapter derivable, block not.
    assert tuple(rows.loc["PREFIX_I2x", ["chapter", "block"]]) == ("IX", "UNK")
    assert rows.loc["PREFIX_D5x", "chapter"] == "III"
    assert tuple(rows.loc["CAT_E11", ["chapter", "block", "category"]]) == ("IV", "E08-E13", "E11")
    assert rows.loc["BLOCK_NOPE", "chapter"] == "UNK"
    assert rows.loc["XYZ", "chapter"] == "UNK"
    assert frame["kind"].tolist() == ["code"] * 3 + ["ancestor"] * 6 + ["code"]


# ------------------------------------------------------------------------------------ relationship sims


def test_clustered_embeddings_keep_the_paper_gradient(labels):
    result = E.relationship_similarity(clustered(labels), labels)
    assert "samples" not in result and json.loads(json.dumps(result)) == result  # storable in run metrics
    assert result["fine_level"] == "category"
    assert result["same_category"] > result["same_chapter"] > result["different_chapter"]
    assert result["n_chapters"] == 3 and result["n_categories"] == labels["category"].nunique()


def test_random_embeddings_give_equal_groups(labels):
    emb = np.random.default_rng(1).normal(size=(len(labels), 256))
    result = E.relationship_similarity(emb, labels)
    values = [result[name] for name in E.RELATIONSHIPS]
    assert max(values) - min(values) < 0.02 and all(abs(v) < 0.02 for v in values)


def test_exact_means_stds_counts_and_enumeration_match_brute_force(labels):
    emb = clustered(labels, dims=8) + 0.5  # a common offset: non-zero means everywhere
    result = E.relationship_similarity(emb, labels, max_pairs=10**9, return_samples=True)
    for name, sims in brute_force(emb, labels).items():
        assert result[f"n_{name}"] == len(sims)
        assert result[name] == pytest.approx(sims.mean(), abs=1e-12)
        assert result[f"std_{name}"] == pytest.approx(sims.std(), abs=1e-9)
        assert not result[f"sampled_{name}"]
        np.testing.assert_allclose(np.sort(result["samples"][name]), np.sort(sims), atol=1e-6)  # float32
        assert result[f"median_{name}"] == pytest.approx(np.median(sims), abs=1e-6)
        assert result[f"q05_{name}"] == pytest.approx(np.quantile(sims, 0.05), abs=1e-6)


def test_large_groups_are_sampled_uniformly_and_reproducibly(labels):
    emb = clustered(labels, dims=8)
    truth = brute_force(emb, labels)
    first = E.relationship_similarity(emb, labels, max_pairs=3000, seed=7, return_samples=True)
    again = E.relationship_similarity(emb, labels, max_pairs=3000, seed=7, return_samples=True)
    other = E.relationship_similarity(emb, labels, max_pairs=3000, seed=8, return_samples=True)
    for name, sims in truth.items():
        sample = first["samples"][name]
        assert first[f"sampled_{name}"] == (len(sims) > 3000)
        assert first[name] == pytest.approx(sims.mean(), abs=1e-12)  # the mean never depends on sampling
        np.testing.assert_array_equal(sample, again["samples"][name])
        if first[f"sampled_{name}"]:
            assert len(sample) == 3000
            assert not np.array_equal(sample, other["samples"][name])
            # drawn pairs belong to the group (checked on 200), and the sample mean is unbiased
            assert all(np.abs(sims - value).min() < 1e-6 for value in sample[:200])
            assert abs(sample.mean() - sims.mean()) < 5 * sims.std() / np.sqrt(3000)


def test_ancestors_and_unknown_rows_are_excluded_by_default(labels):
    extra = E.code_labels(["CHAP_IX", "BLOCK_I20-I25", "XYZ"])
    both = pd.concat([labels, extra], ignore_index=True)
    emb = clustered(labels)
    rng = np.random.default_rng(3)
    with_extra = np.vstack([emb, rng.normal(size=(3, emb.shape[1]))])
    base = E.relationship_similarity(emb, labels)
    result = E.relationship_similarity(with_extra, both)
    assert result["n_excluded"] == 3 and result["n_rows"] == len(labels)
    for name in E.RELATIONSHIPS:
        assert result[name] == pytest.approx(base[name])
    included = E.relationship_similarity(with_extra, both, include_ancestors=True)
    assert included["n_rows"] == len(labels) + 2  # the UNK code is still left out
    # an ancestor without a category has no same-category partner
    assert included["n_same_category"] == base["n_same_category"]
    n_ix = int((labels["chapter"] == "IX").sum())
    assert included["n_same_chapter"] == base["n_same_chapter"] + 2 * n_ix + 1  # + the two ancestors' pair


def test_category_level_vocabulary_groups_by_two_character_prefix():
    # The paper's graph nodes are categories: no two share a category, so 'auto' uses the I2x-style group.
    codes = ["I20", "I21", "I25", "I26", "I50", "I51", "E10", "E11", "J44", "J45", "J40"]
    frame = E.code_labels(codes)
    emb = np.random.default_rng(10).normal(size=(len(codes), 4))
    result = E.relationship_similarity(emb, frame)
    assert result["fine_level"] == "prefix"
    assert (result["n_same_category"], result["n_same_chapter"], result["n_different_chapter"]) == (11, 8, 36)
    by_category = E.relationship_similarity(emb, frame, fine="category")
    assert by_category["n_same_category"] == 0 and np.isnan(by_category["same_category"])
    # I2x spans two blocks: I20-I25 holds I20, I21, I25 (3 pairs); I26 is alone in I26-I28.
    assert E.relationship_similarity(emb, frame, fine="block")["n_same_category"] == 3 + 1 + 1 + 3
    with pytest.raises(ValueError, match="unknown fine level"):
        E.relationship_similarity(emb, frame, fine="leaf")


def test_misaligned_labels_raise(labels):
    with pytest.raises(ValueError, match="rows"):
        E.relationship_similarity(np.zeros((3, 4)), labels)


# --------------------------------------------------------------------------------------- per chapter


def test_chapter_similarity_formula_matches_brute_force():
    codes = ["I214", "I219", "I200", "E119", "E1010", "J449", "ZZZ1", "QQQ"]
    frame_labels = E.code_labels(codes)
    emb = np.random.default_rng(2).normal(size=(len(codes), 5)) + 0.4
    emb[3] = 0.0  # a zero row: similarity 0 with everything, still counted
    table = E.chapter_similarity(emb, frame_labels).set_index("chapter")
    assert list(table.index) == ["IV", "IX", "X", "UNK"]
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    x = emb / np.where(norms > 0, norms, 1)
    for chapter, group in frame_labels.groupby("chapter"):
        rows = group.index.to_numpy()
        sims = (x[rows] @ x[rows].T)[np.triu_indices(len(rows), 1)]
        assert table.loc[chapter, "n_codes"] == len(rows)
        if len(rows) < 2:
            assert np.isnan(table.loc[chapter, "mean_cosine"])
        else:
            assert table.loc[chapter, "mean_cosine"] == pytest.approx(sims.mean(), abs=1e-12)
            assert table.loc[chapter, "std_cosine"] == pytest.approx(sims.std(), abs=1e-6)  # one-pass formula
    wide = E.chapter_similarity_wide({"000": table.reset_index(), "011": table.reset_index()})
    assert list(wide.columns) == ["000", "011"] and list(wide.index) == ["IV", "IX", "X", "UNK"]


def test_silhouette_closed_form_equals_sklearn(labels):
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(9)
    for emb in (clustered(labels, dims=8), rng.normal(size=(len(labels), 8)) + 0.2):
        x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        expected = silhouette_score(x, labels["chapter"].to_numpy(), metric="cosine")
        assert E.silhouette_by_chapter(emb, labels) == pytest.approx(expected, abs=1e-9)
    rows = np.sort(np.random.default_rng(1).choice(len(labels), 60, replace=False))
    expected = silhouette_score(x[rows], labels["chapter"].to_numpy()[rows], metric="cosine")
    assert E.silhouette_by_chapter(emb, labels, sample=60, seed=1) == pytest.approx(expected, abs=1e-9)


def test_silhouette_separates_clustered_from_random(labels):
    clustered_score = E.silhouette_by_chapter(clustered(labels), labels)
    random_score = E.silhouette_by_chapter(np.random.default_rng(4).normal(size=(len(labels), 32)), labels)
    assert clustered_score > random_score + 0.1
    assert abs(random_score) < 0.05
    sampled = E.silhouette_by_chapter(clustered(labels), labels, sample=100, seed=1)
    assert sampled == E.silhouette_by_chapter(clustered(labels), labels, sample=100, seed=1)
    assert sampled != E.silhouette_by_chapter(clustered(labels), labels, sample=100, seed=2)
    one_chapter = E.code_labels(["I214", "I219", "I200", "E119"])  # E11 is a one-code chapter: dropped
    assert np.isnan(E.silhouette_by_chapter(np.eye(4), one_chapter))


# ----------------------------------------------------------------------------------------- tightness


def test_tightness_table_orders_settings_and_spearman_is_one_on_monotone_case():
    settings = ["111", "000", "100", "010", "001", "110", "101", "011"]
    per_setting = {s: {"same_category": 0.3 + 0.01 * k, "same_chapter": 0.25, "different_chapter": 0.2,
                       "silhouette": 0.01 * k} for k, s in enumerate(settings)}
    table = E.tightness_table(per_setting)
    assert list(table.index) == ["000", "100", "010", "001", "110", "101", "011", "111"]
    assert table.loc["011", "label"] == "G1+G2"
    assert table.loc["111", "tightness"] == pytest.approx(0.3 - 0.2)
    assert table.loc["000", "chapter_contrast"] == pytest.approx(0.05)
    auroc = pd.Series({s: 0.70 + 0.001 * k for k, s in enumerate(settings)})
    joined = E.tightness_vs_auroc(table, auroc)
    assert joined.attrs["spearman"]["rho"] == pytest.approx(1.0)
    assert joined.attrs["spearman"]["n"] == 8
    np.testing.assert_allclose(joined["spearman_rho"], 1.0)
    assert joined.attrs["spearman_all"]["silhouette"] == pytest.approx(1.0)
    assert np.isnan(joined.attrs["spearman_all"]["chapter_contrast"])  # constant column
    assert joined.loc["011", "rank_measure"] == 1 and joined.loc["011", "rank_auroc"] == 1
    assert joined.loc["111", "rank_measure"] == 8
    by_label = auroc.rename(index=table["label"].to_dict())  # keyed 'G1+G2' rather than '011'
    assert E.tightness_vs_auroc(table, by_label).attrs["spearman"]["rho"] == pytest.approx(1.0)
    reversed_ = E.tightness_vs_auroc(table, -auroc, measure="same_category")
    assert reversed_.attrs["spearman"]["rho"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="unknown measure"):
        E.tightness_vs_auroc(table, auroc, measure="nope")


def test_embedding_summary_feeds_tightness_table(labels):
    summary = E.embedding_summary(clustered(labels), labels, silhouette_sample=200)
    json.dumps(summary, allow_nan=True)
    table = E.tightness_table({"011": summary})
    assert table.loc["011", "silhouette"] == summary["silhouette"]
    assert table.loc["011", "tightness"] > 0


# ---------------------------------------------------------------------------------------------- UMAP


@pytest.fixture(scope="module")
def umap_runs(labels, tmp_path_factory):
    """The module's only cold UMAP call, plus warm calls for the cache and reproducibility checks."""
    cache = tmp_path_factory.mktemp("umap-cache")
    emb = clustered(labels).astype(np.float32)
    first = E.umap_2d(emb, seed=0, cache_path=cache)
    cached = E.umap_2d(emb, seed=0, cache_path=cache)
    fresh = E.umap_2d(emb, seed=0)
    changed = E.umap_2d(emb * np.float32(-1.0), seed=0, cache_path=cache)
    return {"cache": cache, "first": first, "cached": cached, "fresh": fresh, "changed": changed}


def test_umap_is_seeded_and_reproducible(umap_runs, labels):
    first, fresh = umap_runs["first"], umap_runs["fresh"]
    assert first.method == "umap" and first.coords.shape == (len(labels), 2)
    assert first.params["knn"] == "exact"
    assert np.isfinite(first.coords).all()
    np.testing.assert_array_equal(first.coords, fresh.coords)


def test_umap_cache_is_reused_and_keyed_by_content(umap_runs):
    first, cached, changed = umap_runs["first"], umap_runs["cached"], umap_runs["changed"]
    assert not first.cache_hit and cached.cache_hit
    assert cached.cache_file == first.cache_file and first.cache_file.exists()
    np.testing.assert_array_equal(cached.coords, first.coords)
    assert np.load(first.cache_file, allow_pickle=False).dtype == np.float32
    assert not changed.cache_hit and changed.cache_file != first.cache_file
    assert sorted(p.name for p in umap_runs["cache"].glob("*.npy")) == sorted(
        [first.cache_file.name, changed.cache_file.name])
    assert first.cache_file.with_suffix(".json").exists()


def test_exact_knn_matches_a_full_sort():
    rng = np.random.default_rng(8)
    x = E.normalize_rows(rng.normal(size=(50, 6))).astype(np.float32)
    indices, distances, index = E._exact_knn(x, 5)
    sims = x @ x.T
    np.fill_diagonal(sims, np.inf)
    np.testing.assert_array_equal(indices, np.argsort(-sims, axis=1, kind="stable")[:, :5])
    assert index is None and (indices[:, 0] == np.arange(50)).all() and (distances[:, 0] == 0).all()
    expected = np.sqrt(np.maximum(2 - 2 * np.take_along_axis(x @ x.T, indices[:, 1:], 1), 0))
    np.testing.assert_allclose(distances[:, 1:], expected, atol=1e-6)
    assert (np.diff(distances, axis=1) >= 0).all()


def test_tiny_inputs_fall_back_to_pca(tmp_path):
    emb = np.random.default_rng(5).normal(size=(10, 6))
    result = E.umap_2d(emb, cache_path=tmp_path)
    assert result.method == "pca" and result.coords.shape == (10, 2)
    assert E.umap_2d(emb, cache_path=tmp_path).cache_hit
    single = E.umap_2d(np.ones((1, 3)))
    assert single.method == "pca" and single.coords.shape == (1, 2)
    with pytest.raises(ValueError, match="directory"):
        E.umap_2d(emb, cache_path=tmp_path / "coords.npy")


# ------------------------------------------------------------------------------------ nearest neighbours


def test_nearest_neighbours_returns_planted_neighbour_first(codes):
    rng = np.random.default_rng(6)
    emb = rng.normal(size=(len(codes), 16))
    query = codes.index("I214") if "I214" in codes else 0
    planted = (query + 17) % len(codes)
    emb[planted] = 3.0 * emb[query] + 0.01 * rng.normal(size=16)  # same direction, different length
    table = E.nearest_neighbours(emb, codes, codes[query], k=5)
    assert list(table.columns) == ["rank", "code", "cosine"] and len(table) == 5
    assert table.iloc[0]["code"] == codes[planted] and table.iloc[0]["cosine"] > 0.99
    assert codes[query] not in table["code"].tolist()
    assert table["cosine"].is_monotonic_decreasing
    dotted = codes[query][:3] + "." + codes[query][3:]
    assert E.nearest_neighbours(emb, codes, dotted.lower(), k=1).iloc[0]["code"] == codes[planted]
    with pytest.raises(KeyError, match="no embedding row"):
        E.nearest_neighbours(emb, codes, "Z99.89X", k=3)
    # an ancestor node planted as the closest row is skipped unless asked for
    names = [*codes, "CHAP_IX"]
    with_node = np.vstack([emb, emb[query]])
    assert E.nearest_neighbours(with_node, names, codes[query], k=1).iloc[0]["code"] == codes[planted]
    assert E.nearest_neighbours(with_node, names, codes[query], k=1, include_ancestors=True).iloc[0][
        "code"] == "CHAP_IX"
