"""Hierarchy engine targets: tree build < 5 s cold; 5M occurrences / ~30k distinct codes < 2 s warm."""

from __future__ import annotations

import time

import numpy as np


def tree_cold() -> dict:
    """Build the full ICD-10-CM tree from the tabular-list XML, bypassing the parquet cache."""
    from hicd_core.hierarchy import icd10

    start = time.perf_counter()
    frame = icd10._build_tree_frame()
    built = time.perf_counter() - start
    icd10.tree_frame.cache_clear()
    start = time.perf_counter()
    icd10.tree_frame()
    cached = time.perf_counter() - start
    return {"cold_build_s": round(built, 3), "nodes": len(frame), "warm_disk_cache_load_s": round(cached, 3)}


def bulk_normalize() -> dict:
    """Normalise 5M occurrences drawn from ~30k distinct codes (ICD-10 and ICD-9 mixed)."""
    from hicd_core.hierarchy import icd9, icd10, level_ids, normalize_codes

    rng = np.random.default_rng(0)
    tree = icd10.tree_frame()
    leaves = tree.loc[tree["billable"], "code"].to_numpy()
    icd9_codes = icd9.gem_table()["icd9cm"].unique()
    distinct10 = rng.choice(leaves, 22_000, replace=False)
    distinct9 = rng.choice(icd9_codes, 8_000, replace=False)
    n = 5_000_000
    is9 = rng.random(n) < 0.4
    weights10 = 1 / np.arange(1, len(distinct10) + 1) ** 1.1
    weights9 = 1 / np.arange(1, len(distinct9) + 1) ** 1.1
    codes = np.empty(n, dtype=object)
    codes[~is9] = rng.choice(distinct10, (~is9).sum(), p=weights10 / weights10.sum())
    codes[is9] = rng.choice(distinct9, is9.sum(), p=weights9 / weights9.sum())
    versions = np.where(is9, 9, 10).astype(np.int8)
    import pandas as pd

    series = pd.Series(codes, dtype="str")
    normalize_codes(series[:1000], versions[:1000])  # warm-up: caches, lazy tables
    start = time.perf_counter()
    cold_distinct = normalize_codes(series, versions)
    first = time.perf_counter() - start
    start = time.perf_counter()
    normalize_codes(series, versions)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    level_ids(cold_distinct, "ontology")
    levels = time.perf_counter() - start
    return {"occurrences": n, "distinct": int(series.nunique()), "first_call_s": round(first, 3),
            "warm_call_s": round(warm, 3), "level_ids_s": round(levels, 3),
            "occurrences_per_s_warm": round(n / warm)}


BENCHMARKS = {"hierarchy_tree_cold": tree_cold, "hierarchy_bulk_5m": bulk_normalize}
