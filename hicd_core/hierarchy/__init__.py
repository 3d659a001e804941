"""ICD-10-CM hierarchy engine: look-ups, bulk normalisation, ICD-9 mapping, level schemes, tree export.

Public API::

    lookup("I21.4")                       -> CodeInfo (raises InvalidCodeError on a bad code)
    normalize_codes(codes, versions)      -> per-occurrence icd10/chapter/block/category/status
    level_ids(normalized, scheme)         -> G0/G1/G2 ids under 'ontology' | 'prefix' | 'graph'
    coverage_report(codes, versions)      -> mapped / approximate / unmapped / invalid counts
    tree_nodes(), attach_counts(...)      -> node table for views, with cohort counts rolled up
    code_set_year()                       -> 'ICD-10-CM FY2026', recorded with every artifact
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hicd_core.hierarchy import icd9, icd10
from hicd_core.hierarchy.bulk import RESOLVED, STATUSES, coverage_report, normalize_codes
from hicd_core.hierarchy.icd10 import (
    UNKNOWN,
    InvalidCodeError,
    chapter_order,
    chapter_titles,
    code_set_release,
    code_set_year,
    dotted,
)
from hicd_core.hierarchy.levels import (
    FLAT,
    LEVELS,
    SCHEMES,
    SETTINGS,
    Setting,
    level_ids,
    levels_of_code,
    setting_label,
    setting_rank,
)
from hicd_core.hierarchy.tree import attach_counts, node_path, search_nodes, tree_nodes

__all__ = [
    "FLAT",
    "LEVELS",
    "RESOLVED",
    "SCHEMES",
    "SETTINGS",
    "STATUSES",
    "UNKNOWN",
    "CodeInfo",
    "InvalidCodeError",
    "Setting",
    "attach_counts",
    "chapter_order",
    "chapter_titles",
    "code_set_release",
    "code_set_year",
    "coverage_report",
    "describe",
    "dotted",
    "level_ids",
    "levels_of_code",
    "lookup",
    "node_path",
    "normalize_codes",
    "search_nodes",
    "setting_label",
    "setting_rank",
    "tree_nodes",
]


@dataclass(frozen=True)
class CodeInfo:
    """Everything the tool knows about one code.

    Attributes:
        input: the string as given.
        source_version: 9 or 10.
        icd10: resolved undotted ICD-10-CM code (``I214``).
        icd10_dotted: the same, dotted (``I21.4``).
        status: see :mod:`hicd_core.hierarchy.bulk` (``valid``, ``approximate``, ``mapped``...).
        rule: how it was resolved (``icd10``, ``gem``, ``gem-multi``, ``descendants``...).
        chapter, chapter_title: G0 (``IX``, "Diseases of the circulatory system (I00-I99)").
        block, block_title: G1 (``I20-I25``).
        category, category_title: G2 (``I21``).
        description: the code's own title.
        valid: the resolved code is billable (a leaf of this release's tabular list).
        gem_targets: every GEM target, for ICD-9 input.
    """

    input: str
    source_version: int
    icd10: str
    icd10_dotted: str
    status: str
    rule: str
    chapter: str
    chapter_title: str
    block: str
    block_title: str
    category: str
    category_title: str
    description: str
    valid: bool
    gem_targets: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def describe(code: str) -> str:
    """Title of an undotted code, category, or block id (``''`` when unknown)."""
    frame = icd10.tree_frame()
    row = icd10.code_index().get(code)
    return "" if row is None else str(frame["description"].iat[row])


def lookup(code: str, version: int = 10) -> CodeInfo:
    """Look up one code; raises :class:`InvalidCodeError` naming the code when it cannot be resolved.

    >>> info = lookup("I21.4")
    >>> info.chapter, info.block, info.category, info.valid
    ('IX', 'I20-I25', 'I21', True)
    """
    row = normalize_codes([code], [version]).iloc[0]
    if row["status"] not in RESOLVED:
        reasons = {"empty": "it is empty", "looks_icd9": "it looks like an ICD-9 code (pass version=9)",
                   "invalid": "it is not an ICD-10-CM code", "unmapped": "the GEMs give no ICD-10-CM target"}
        raise InvalidCodeError(f"cannot resolve code {code!r}: {reasons.get(row['status'], row['status'])}")
    resolved = str(row["icd10"])
    cleaned = icd10.clean(code)
    return CodeInfo(
        input=code, source_version=version, icd10=resolved, icd10_dotted=dotted(resolved),
        status=str(row["status"]), rule=str(row["rule"]), chapter=str(row["chapter"]),
        chapter_title=chapter_titles()[str(row["chapter"])], block=str(row["block"]),
        block_title=icd10.block_titles().get(str(row["block"]), describe(str(row["category"]))),
        category=str(row["category"]), category_title=describe(str(row["category"])),
        description=describe(resolved), valid=bool(row["billable"]),
        gem_targets=tuple(icd9.gem_targets(cleaned)) if version == 9 else (),
    )
