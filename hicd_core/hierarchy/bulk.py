"""Vectorised normalisation of millions of code occurrences into ICD-10-CM hierarchy columns.

Work is done once per *distinct* (code string, ICD version) pair -- a few tens of thousands even for
full MIMIC-IV -- and broadcast back to the occurrences with integer takes, so the per-row cost is a
factorisation plus array indexing. Nothing raises on bad input: every occurrence gets a ``status``.

Statuses:

``valid``        ICD-10-CM code present in this release.
``approximate``  ICD-10 code resolved to its nearest ancestor in this release, or an ICD-9 code
                 mapped through its descendants or category, or through the backward GEM
                 (ICD-10 -> ICD-9) when the forward GEM says "no map" (see :mod:`icd9`).
``mapped``       ICD-9-CM code mapped directly through the GEM.
``unmapped``     ICD-9-CM code the GEM cannot map. Kept with chapter ``UNK``.
``looks_icd9``   passed as ICD-10 but shaped like ICD-9 (``4280``). Kept with chapter ``UNK``.
``invalid``      neither (``XYZ``, ``123456789``), or passed as ICD-9 without an ICD-9-CM shape (``E``,
                 ``0``, ``99999999``): never "approximated" to some category. Kept with chapter ``UNK``.
``empty``        ``''``/``None``/whitespace. Kept with chapter ``UNK``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hicd_core.hierarchy import icd9, icd10
from hicd_core.hierarchy.icd10 import UNKNOWN

STATUSES = ("valid", "approximate", "mapped", "unmapped", "looks_icd9", "invalid", "empty")
#: Statuses whose occurrences carry a real ICD-10-CM code and hierarchy.
RESOLVED = frozenset({"valid", "approximate", "mapped"})

OUTPUT_COLUMNS = ("icd10", "chapter", "block", "category", "billable", "status", "rule")


def _resolve_one(raw: object, version: int) -> tuple[str | None, str, str]:
    cleaned = icd10.clean(raw)
    if not cleaned:
        return None, "empty", "none"
    if version == 9:
        if not icd9.plausible_icd9(cleaned):  # 'E', 'V', '0', '99999999' are not ICD-9-CM codes
            return None, "invalid", "not-icd9-shaped"
        target, status, rule = icd9.map_icd9(cleaned)
        if target is None:
            return None, status, rule
        code, icd10_status = icd10.resolve_icd10(target)
        if code is None:
            return None, "unmapped", f"{rule}:target-not-in-release"
        if icd10_status == "approximate" and status == "mapped":
            rule = f"{rule}:target-ancestor"
        return code, status, rule
    code, status = icd10.resolve_icd10(cleaned)
    return code, status, "icd10" if code is not None else "none"


def normalize_unique(codes: Sequence[object], versions: Sequence[int]) -> pd.DataFrame:
    """Normalise a small set of distinct (code, version) pairs with a row-wise loop.

    Used on distinct values only; :func:`normalize_codes` is the entry point for occurrences.
    """
    tree = icd10.tree_frame()
    index = icd10.code_index()
    chapters, blocks, categories = tree["chapter"].to_numpy(), tree["block"].to_numpy(), tree[
        "category"].to_numpy()
    billable = tree["billable"].to_numpy()
    records = []
    for raw, version in zip(codes, versions, strict=True):
        code, status, rule = _resolve_one(raw, int(version))
        if code is None:
            records.append((None, UNKNOWN, UNKNOWN, UNKNOWN, False, status, rule))
        else:
            row = index[code]
            records.append((code, chapters[row], blocks[row], categories[row], bool(billable[row]), status,
                            rule))
    return pd.DataFrame.from_records(records, columns=list(OUTPUT_COLUMNS))


def normalize_codes(codes: Sequence[object] | pd.Series, versions: Sequence[int] | int = 10) -> pd.DataFrame:
    """Normalise code occurrences (dotted or undotted; ICD-9 where ``versions`` says 9).

    Returns one row per input with categorical columns ``icd10`` (undotted, missing when
    unresolved), ``chapter`` (roman or ``UNK``), ``block``, ``category``, ``status``, ``rule``
    and a boolean ``billable``. The index matches the input's position.

    >>> normalize_codes(["I21.4", "4280", "", "XYZ"], [10, 9, 10, 10])[["icd10", "chapter", "status"]]
      icd10 chapter      status
    0  I214      IX       valid
    1  I509      IX      mapped
    2   NaN     UNK       empty
    3   NaN     UNK     invalid
    """
    code_series = codes if isinstance(codes, pd.Series) else pd.Series(codes, dtype=object)
    code_series = code_series.reset_index(drop=True)
    n = len(code_series)
    if np.isscalar(versions):
        version_arr = np.full(n, int(versions), dtype=np.int8)
    else:
        version_arr = pd.to_numeric(pd.Series(versions), errors="coerce").fillna(10).to_numpy(np.int8)
        if len(version_arr) != n:
            raise ValueError(f"codes ({n}) and versions ({len(version_arr)}) differ in length")
    code_ids, uniques = pd.factorize(code_series, use_na_sentinel=True)
    # Missing values get their own id so they flow through as 'empty'.
    code_ids = np.where(code_ids < 0, len(uniques), code_ids).astype(np.int64)
    unique_values = [*list(uniques), None]
    pair_keys = code_ids * 2 + (version_arr == 9)
    inverse, distinct_keys = pd.factorize(pair_keys)  # hashing: several times faster than np.unique
    distinct = normalize_unique([unique_values[k // 2] for k in distinct_keys],
                                [9 if k % 2 else 10 for k in distinct_keys])
    out = {}
    for column in OUTPUT_COLUMNS:
        values = distinct[column]
        if column == "billable":
            out[column] = values.to_numpy(bool)[inverse]
            continue
        categories = pd.Categorical(values)
        out[column] = pd.Categorical.from_codes(categories.codes[inverse], categories.categories)
    return pd.DataFrame(out)


def coverage_report(codes: Sequence[object] | pd.Series, versions: Sequence[int] | int = 10,
                    normalized: pd.DataFrame | None = None) -> pd.DataFrame:
    """Counts of occurrences and distinct codes per source version and status.

    Columns: ``source_version``, ``status``, ``occurrences``, ``distinct_codes``, ``share`` (of that
    version's occurrences). Pass ``normalized`` to reuse an earlier :func:`normalize_codes` result.
    """
    if normalized is None:
        normalized = normalize_codes(codes, versions)
    raw = codes if isinstance(codes, pd.Series) else pd.Series(codes, dtype=object)
    n = len(normalized)
    version_arr = np.full(n, int(versions)) if np.isscalar(versions) else np.asarray(versions)
    frame = pd.DataFrame({"source_version": version_arr, "status": normalized["status"].astype(str),
                          "raw": raw.reset_index(drop=True).astype(object)})
    grouped = frame.groupby(["source_version", "status"], observed=True).agg(
        occurrences=("raw", "size"), distinct_codes=("raw", "nunique")).reset_index()
    totals = grouped.groupby("source_version")["occurrences"].transform("sum")
    grouped["share"] = grouped["occurrences"] / totals
    return grouped
