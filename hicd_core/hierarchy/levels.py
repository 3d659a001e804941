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

from enum import StrEnum

import numpy as np
import pandas as pd

from hicd_core.hierarchy.icd10 import UNKNOWN

SCHEMES = ("ontology", "prefix", "graph")
LEVELS = ("G0", "G1", "G2")


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
