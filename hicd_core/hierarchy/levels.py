"""Level schemes: which ids play G0, G1 and G2 for a code.

``ontology`` (default)
    G0 = chapter (``IX``), G1 = official block (``I20-I25``), G2 = 3-character category (``I21``),
    as the paper's project page defines the levels.
``prefix``
    G0/G1/G2 = the 1-, 2- and 3-character prefix of the undotted code (``S``, ``S7``, ``S72``),
    which is what the paper's HICD-BERT actually uses (no ontology access).
``graph``
    The paper's HICD-Graph ancestor nodes: chapter, block, and the 2-character prefix group
    (``S7x``), because graph nodes are already 3-character categories. With leaf-code nodes the
    ``ontology`` scheme's G2 (the category) is the natural third ancestor instead.

Every id is namespaced by level (``G0:IX``, ``G1:I20-I25``, ``G2:I21``) so the three vocabularies can
share one table without collisions. Unresolved codes get ``G*:UNK``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from hicd_core.hierarchy.icd10 import UNKNOWN

SCHEMES = ("ontology", "prefix", "graph")
LEVELS = ("G0", "G1", "G2")
#: All 8 (G0, G1, G2) on/off settings, in the order the paper's tables use.
SETTINGS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1))
SETTING_LABELS = {(0, 0, 0): "none", (1, 0, 0): "G0", (0, 1, 0): "G1", (0, 0, 1): "G2",
                  (1, 1, 0): "G0+G1", (1, 0, 1): "G0+G2", (0, 1, 1): "G1+G2", (1, 1, 1): "G0+G1+G2"}
assert set(SETTINGS) == set(itertools.product((0, 1), repeat=3))


def setting_key(setting: tuple[int, int, int]) -> str:
    """``(1, 0, 1)`` -> ``'101'`` (used in run names and CLI flags)."""
    return "".join(str(int(bit)) for bit in setting)


def parse_setting(key: str) -> tuple[int, int, int]:
    """``'101'`` -> ``(1, 0, 1)``; raises a clear error on anything else.

    >>> parse_setting("011")
    (0, 1, 1)
    """
    if len(key) != 3 or set(key) - {"0", "1"}:
        raise ValueError(f"hierarchy setting must be three 0/1 digits like '011', got {key!r}")
    return tuple(int(ch) for ch in key)  # type: ignore[return-value]


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown level scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return scheme


def _level_values(code: str | None, chapter: str, block: str, category: str, scheme: str) -> tuple[str, ...]:
    if code is None or chapter == UNKNOWN:
        return (UNKNOWN, UNKNOWN, UNKNOWN)
    if scheme == "ontology":
        return (chapter, block, category)
    if scheme == "prefix":
        return (code[:1], code[:2], code[:3])
    return (chapter, block, f"{code[:2]}x")


def level_ids(normalized: pd.DataFrame, scheme: str = "ontology") -> pd.DataFrame:
    """G0/G1/G2 ids (categorical, level-namespaced) for the output of ``normalize_codes``.

    Vectorised over distinct (code, chapter, block, category) combinations.

    >>> from hicd_core.hierarchy.bulk import normalize_codes
    >>> level_ids(normalize_codes(["S72.001A"]), "graph").iloc[0].tolist()
    ['G0:XIX', 'G1:S70-S79', 'G2:S7x']
    """
    check_scheme(scheme)
    icd = normalized["icd10"]
    icd = icd if isinstance(icd.dtype, pd.CategoricalDtype) else icd.astype("category")
    codes = icd.cat.codes.to_numpy()
    distinct = list(icd.cat.categories)
    # Chapter/block/category are functions of the ICD-10 code, so one lookup per distinct code.
    present, first_pos = np.unique(codes, return_index=True)
    parts = {name: normalized[name].to_numpy()[first_pos] for name in ("chapter", "block", "category")}
    by_code = {int(code_id): (parts["chapter"][i], parts["block"][i], parts["category"][i])
               for i, code_id in enumerate(present) if code_id >= 0}
    table = []
    for code_id in range(len(distinct)):
        found = by_code.get(code_id)
        table.append(_level_values(distinct[code_id], *found, scheme) if found else (UNKNOWN,) * 3)
    table.append((UNKNOWN, UNKNOWN, UNKNOWN))  # position -1: unresolved codes
    out = {}
    take = np.where(codes < 0, len(distinct), codes)
    for i, level in enumerate(LEVELS):
        labels = pd.Categorical([f"{level}:{row[i]}" for row in table])
        out[level] = pd.Categorical.from_codes(labels.codes[take], labels.categories)
    return pd.DataFrame(out, index=normalized.index)


def levels_of_code(code: str, scheme: str = "ontology") -> tuple[str, str, str]:
    """Level ids of one code (convenience for views and tests)."""
    from hicd_core.hierarchy.bulk import normalize_codes

    frame = level_ids(normalize_codes([code]), scheme)
    return tuple(frame.iloc[0].tolist())  # type: ignore[return-value]
