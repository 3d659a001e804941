"""Level schemes: which ids play G0, G1 and G2 for a code.

``ontology`` (default)
    G0 = chapter (``IX``), G1 = official block (``I20-I25``), G2 = 3-character category (``I21``),
    as the paper's project page defines the levels.
``prefix``
    G0/G1/G2 = the 1-, 2- and 3-character prefix of the undotted code (``S``, ``S7``, ``S72``),
    which is what the paper's HICD-BERT actually uses (no ontology access). A code given as ICD-10
    that this ICD-10-CM release does not know (a newer or misspelt code) still gets the prefixes of
    its cleaned string when the frame carries ``raw_code`` (cohort diagnoses do); ICD-9 codes the GEMs
    cannot map and empty codes stay ``UNK`` (an ICD-9 string's prefixes are not ICD-10 prefixes).
``graph``
    The paper's HICD-Graph ancestor nodes: chapter, block, and the 2-character prefix group
    (``S7x``), because graph nodes are already 3-character categories. With leaf-code nodes the
    ``ontology`` scheme's G2 (the category) is the natural third ancestor instead.

Every id is namespaced by level (``G0:IX``, ``G1:I20-I25``, ``G2:I21``) so the three vocabularies can
share one table without collisions. Unresolved codes get ``G*:UNK`` (except under ``prefix``, above).

The permuted-hierarchy control (:func:`permute_hierarchy`, :class:`HierarchyPermutation`) keeps the
codes and outcomes and gives every *unit* (a model's own code key: HICD-BERT's full codes, HICD-Graph's
3-character category nodes) the place in the tree of another unit, drawn by a seeded uniform random
permutation of the units. Every level id is then computed from that donor under the same scheme.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from hicd_core.hierarchy.icd10 import UNKNOWN

SCHEMES = ("ontology", "prefix", "graph")
LEVELS = ("G0", "G1", "G2")
#: ``real``: the ICD-10-CM tree; ``permuted``: the permuted-hierarchy control (module docstring).
HIERARCHIES = ("real", "permuted")


class Setting(StrEnum):
    """One of the 8 (G0, G1, G2) on/off hierarchy settings: the one form a setting takes everywhere.

    Members are strings (``Setting.G1_G2 == "011"``), so run ids, JSON, parquet columns and CLI
    flags keep the plain three-digit key; definition order is the paper's table order (none,
    singles, pairs, all), so ``list(Setting)`` and :attr:`rank` are the display order.
    ``Setting("012")`` raises a :class:`ValueError` that says what a setting looks like.

    >>> Setting("011").bits, Setting("011").label, Setting("011").levels
    ((0, 1, 1), 'G1+G2', ('G1', 'G2'))
    >>> [s.key for s in Setting][:4], Setting.FLAT.label, Setting.from_bits((1, 0, 1)).rank
    (['000', '100', '010', '001'], 'none (flat)', 5)
    """

    FLAT = "000"
    G0 = "100"
    G1 = "010"
    G2 = "001"
    G0_G1 = "110"
    G0_G2 = "101"
    G1_G2 = "011"
    ALL = "111"

    @classmethod
    def _missing_(cls, value: object) -> Setting:
        raise ValueError(f"hierarchy setting must be three 0/1 digits like '011', got {value!r}")

    @classmethod
    def from_bits(cls, bits: tuple[int, int, int] | tuple[bool, bool, bool]) -> Setting:
        """``(1, 0, 1)`` -> ``Setting.G0_G2``."""
        return cls("".join(str(int(bit)) for bit in bits))

    @classmethod
    def parse_list(cls, text: str) -> tuple[Setting, ...]:
        """``'all'`` or a comma list like ``'000,011'`` (a CLI flag), in the order given."""
        if text.strip() == "all":
            return tuple(cls)
        settings = tuple(cls(part.strip()) for part in text.split(",") if part.strip())
        if not settings:
            raise ValueError(f"no hierarchy setting in {text!r}: give 'all' or keys like '000,011'")
        return settings

    @property
    def key(self) -> str:
        """The plain three-digit key (``'011'``), e.g. for run names and JSON."""
        return self.value

    @property
    def bits(self) -> tuple[int, int, int]:
        """``(G0, G1, G2)`` as 0/1 ints, the form the models gate their level embeddings with."""
        return tuple(int(ch) for ch in self.value)  # type: ignore[return-value]

    @property
    def levels(self) -> tuple[str, ...]:
        """The enabled level names, e.g. ``('G1', 'G2')``."""
        return tuple(level for level, bit in zip(LEVELS, self.bits, strict=True) if bit)

    @property
    def label(self) -> str:
        """What tables and charts print: ``'none (flat)'``, ``'G0'``, ..., ``'G0+G1+G2'``."""
        return "+".join(self.levels) or "none (flat)"

    @property
    def rank(self) -> int:
        """Position in the paper's table order (0 for flat, 7 for all levels)."""
        return _RANK[self]

    @property
    def is_flat(self) -> bool:
        return self is Setting.FLAT


_RANK = {setting: index for index, setting in enumerate(Setting)}
FLAT = Setting.FLAT
#: All 8 settings in the paper's table order.
SETTINGS: tuple[Setting, ...] = tuple(Setting)


def setting_label(value: object) -> str:
    """A frame cell's label: the setting's label, or the cell as text when it is not a setting (a
    damaged run's row may have none)."""
    try:
        return Setting(value).label
    except ValueError:
        return "" if value is None or value != value else str(value)


def setting_rank(value: str) -> int:
    """Sort key for setting keys in frames; anything that is not a setting sorts last."""
    try:
        return Setting(value).rank
    except ValueError:
        return len(SETTINGS)


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown level scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return scheme


def check_hierarchy(hierarchy: str) -> str:
    if hierarchy not in HIERARCHIES:
        raise ValueError(f"unknown hierarchy {hierarchy!r}; choose one of {', '.join(HIERARCHIES)}")
    return hierarchy


def _level_values(code: str | None, chapter: str, block: str, category: str, scheme: str) -> tuple[str, ...]:
    if scheme == "prefix":  # string prefixes need no ontology, so a code it lacks still gets them
        return (code[:1], code[:2], code[:3]) if code else (UNKNOWN, UNKNOWN, UNKNOWN)
    if code is None or chapter == UNKNOWN:
        return (UNKNOWN, UNKNOWN, UNKNOWN)
    if scheme == "ontology":
        return (chapter, block, category)
    return (chapter, block, f"{code[:2]}x")


# --------------------------------------------------------------------------- permuted hierarchy
def permute_hierarchy(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The permuted-hierarchy control's tree: each unit takes the tree position of another unit.

    ``table`` holds one row per distinct unit: ``key`` (the unit: a full code, or a 3-character
    category for HICD-Graph's nodes) and its real ``chapter``, ``block``, ``category``. The units
    whose chapter is known, sorted by key, are shuffled by one uniform random permutation
    (``numpy.random.default_rng([seed, 14])``); unit ``i`` then takes the whole ancestor path of its
    ``donor`` ``pi(i)``. Because ``pi`` is a bijection, every group (category, block, chapter) keeps
    exactly its number of units, the tree stays nested (a path comes from one real unit), every unit
    is still assigned, and the result depends only on the set of units and ``seed``. A unit keeps its
    real group with the chance a random assignment gives (no derangement: that would be *anti*-
    correlated with the real tree, not null). Codes of one category are scattered like any others.
    Units with an unknown chapter (not in the tree) keep ``UNK`` and themselves as donor.

    Returns ``key``, the permuted ``chapter``, ``block``, ``category`` and ``donor``, in ``table``'s
    row order.
    """
    keys = table["key"].astype(str).to_numpy()
    if len(set(keys)) != len(keys):
        raise ValueError("permute_hierarchy needs one row per unit (duplicate keys)")
    placed = np.flatnonzero(table["chapter"].astype(str).to_numpy() != UNKNOWN)
    placed = placed[np.argsort(keys[placed], kind="stable")]  # row order never changes the result
    donor_row = np.arange(len(keys))
    donor_row[placed] = placed[np.random.default_rng([int(seed), 14]).permutation(len(placed))]
    out = {"key": keys}
    for column in ("chapter", "block", "category"):
        out[column] = table[column].astype(str).to_numpy()[donor_row]
    out["donor"] = keys[donor_row]
    return pd.DataFrame(out, index=table.index)


@dataclass(frozen=True)
class HierarchyPermutation:
    """Which unit's tree position each unit takes (:func:`permute_hierarchy`), JSON-serialisable so
    a model applies the same permutation to another split or site.

    A unit outside the permuted set (a code only the target site has) gets the position of a unit of
    the set picked by a hash of (seed, unit): deterministic and, like the permutation, blind to the
    tree, so an unseen code still reaches *some* group, as it would under the real tree.
    """

    seed: int
    donors: Mapping[str, str] = field(default_factory=dict)
    _domain: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_domain", tuple(sorted(set(self.donors.values()))))

    @classmethod
    def build(cls, table: pd.DataFrame, seed: int) -> HierarchyPermutation:
        """From one row per unit (``key``, ``chapter``, ``block``, ``category``)."""
        permuted = permute_hierarchy(table, seed)
        known = table["chapter"].astype(str).to_numpy() != UNKNOWN
        return cls(int(seed), dict(zip(permuted["key"][known], permuted["donor"][known], strict=True)))

    def donor(self, unit: str) -> str | None:
        """The unit whose tree position ``unit`` takes (None when the permuted set is empty)."""
        found = self.donors.get(unit)
        if found is not None or not self._domain:
            return found
        digest = hashlib.sha256(f"{self.seed}:{unit}".encode()).digest()
        return self._domain[int.from_bytes(digest[:8], "big") % len(self._domain)]

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "donors": dict(sorted(self.donors.items()))}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> HierarchyPermutation | None:
        return None if not data else cls(int(data["seed"]), dict(data["donors"]))


def _tree_parts(code: str | None) -> tuple[str, str, str]:
    """(chapter, block, category) of a code or category in the ICD-10-CM tree, ``UNK`` when absent."""
    from hicd_core.hierarchy.icd10 import code_index, tree_frame

    row = code_index().get(code) if code else None
    if row is None:
        return (UNKNOWN, UNKNOWN, UNKNOWN)
    frame = tree_frame()
    return tuple(str(frame[name].iat[row]) for name in ("chapter", "block", "category"))  # type: ignore


def _unresolved_strings(normalized: pd.DataFrame, unresolved: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """For rows without an ICD-10-CM code: an id into a list of cleaned ICD-10 input strings (-1: none).

    Only codes given as ICD-10 count (``icd_version`` 10, or no such column); empty inputs get -1.
    """
    from hicd_core.hierarchy.icd10 import clean

    ids = np.full(len(normalized), -1, np.int64)
    if "raw_code" not in normalized.columns or not unresolved.any():
        return ids, []
    raw = normalized["raw_code"]
    raw = raw if isinstance(raw.dtype, pd.CategoricalDtype) else raw.astype("category")
    raw_codes = raw.cat.codes.to_numpy()
    wanted = unresolved & (raw_codes >= 0)
    if "icd_version" in normalized.columns:
        wanted &= normalized["icd_version"].to_numpy() != 9
    cleaned = np.array([clean(value) for value in raw.cat.categories] + [""], dtype=object)
    strings, inverse = np.unique(cleaned[np.where(wanted, raw_codes, -1)], return_inverse=True)
    keep = strings != ""
    remap = np.cumsum(keep) - 1
    ids = np.where(wanted & keep[inverse], remap[inverse], -1)
    return ids, [str(value) for value in strings[keep]]


def level_ids(normalized: pd.DataFrame, scheme: str = "ontology",
              permutation: HierarchyPermutation | None = None) -> pd.DataFrame:
    """G0/G1/G2 ids (categorical, level-namespaced) for the output of ``normalize_codes`` (or cohort
    diagnoses, whose ``raw_code`` gives unknown codes their prefixes under ``prefix``).

    With ``permutation`` every code's ids are those of its donor (the permuted-hierarchy control).
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

    def values(code: str, found: tuple[str, str, str] | None) -> tuple[str, ...]:
        if permutation is not None:
            code = permutation.donor(code) or code
            found = _tree_parts(code)
        return _level_values(code, *found, scheme) if found else (UNKNOWN,) * 3

    table = [values(distinct[code_id], by_code.get(code_id)) for code_id in range(len(distinct))]
    table.append((UNKNOWN, UNKNOWN, UNKNOWN))  # position len(distinct): unresolved codes
    take = np.where(codes < 0, len(distinct), codes)
    if scheme == "prefix":  # codes this release lacks still have a string to take prefixes of
        raw_ids, strings = _unresolved_strings(normalized, codes < 0)
        table += [values(text, None) if permutation is not None else _level_values(text, "", "", "", scheme)
                  for text in strings]
        take = np.where(raw_ids >= 0, len(distinct) + 1 + raw_ids, take)
    out = {}
    for i, level in enumerate(LEVELS):
        labels = pd.Categorical([f"{level}:{row[i]}" for row in table])
        out[level] = pd.Categorical.from_codes(labels.codes[take], labels.categories)
    return pd.DataFrame(out, index=normalized.index)


def levels_of_code(code: str, scheme: str = "ontology", version: int = 10) -> tuple[str, str, str]:
    """Level ids of one code (convenience for views and tests)."""
    from hicd_core.hierarchy.bulk import normalize_codes

    frame = normalize_codes([code], [version]).assign(raw_code=[code], icd_version=[version])
    frame = level_ids(frame, scheme)
    return tuple(frame.iloc[0].tolist())  # type: ignore[return-value]
