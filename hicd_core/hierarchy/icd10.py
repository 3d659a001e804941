"""The ICD-10-CM tree (chapter -> block -> 3-character category -> code) from the official tabular list.

Source of truth: the CDC tabular-list XML shipped inside the ``simple-icd-10-cm`` package (read
offline, never downloaded). Parsing that XML costs ~1.5 s and ~180 MB per process, so the
flattened tree is cached as parquet keyed by the package version and our code version; later
processes load it in a fraction of that and never import the XML parser at all.

Every code is stored undotted (``I214``) because that is how MIMIC-IV stores codes; the dotted form
is derived. Chapters are identified by roman numerals (``IX``) as in the printed classification.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from importlib import metadata
from pathlib import Path

import pandas as pd

from hicd_core import CODE_VERSION
from hicd_core.runtime import cached_frame

UNKNOWN = "UNK"
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV",
         "XVI", "XVII", "XVIII", "XIX", "XX", "XXI", "XXII"]
#: Node kinds in tree order.
KINDS = ("chapter", "block", "category", "subcategory", "extended")

_TABULAR_RE = re.compile(r"icd10c-tabular-(\w+)-(\d+)-(\d{4})\.xml")


class InvalidCodeError(ValueError):
    """A single-code lookup got something that is not an ICD-10-CM code (or a mappable ICD-9 code)."""


def package_version() -> str:
    return metadata.version("simple-icd-10-cm")


@functools.cache
def code_set_release() -> dict[str, str]:
    """Which ICD-10-CM release the tree comes from, read off the bundled file name.

    >>> code_set_release()["fiscal_year"]
    'FY2026'
    """
    # find_spec locates the package without executing it (its import parses the whole XML).
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("simple-icd-10-cm is not installed")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    names = [entry.name for entry in data.iterdir()]
    for name in names:
        match = _TABULAR_RE.fullmatch(name)
        if match:
            month, day, year = match.groups()
            return {
                "code_set": "ICD-10-CM",
                "fiscal_year": f"FY{year}",
                "release": f"{month} {day}, {year} update",
                "source_file": name,
                "package": f"simple-icd-10-cm=={package_version()}",
            }
    raise RuntimeError(f"no tabular-list XML found in simple_icd_10_cm/data (saw {names})")


def code_set_year() -> str:
    """Short label recorded with every artifact, e.g. ``ICD-10-CM FY2026``."""
    return f"ICD-10-CM {code_set_release()['fiscal_year']}"


def undot(code: str) -> str:
    return code.replace(".", "")


def dotted(code: str) -> str:
    """``I214`` -> ``I21.4``; chapters, blocks and 3-character categories are returned unchanged."""
    if len(code) <= 3 or "-" in code:
        return code
    return f"{code[:3]}.{code[3:]}"


def _build_tree_frame() -> pd.DataFrame:
    # Imported here: the XML parse is the cost the parquet cache exists to avoid.
    import simple_icd_10_cm as cm

    rows = []
    for code in cm.get_all_codes(with_dots=False):
        if cm.is_chapter(code):
            chapter = ROMAN[int(code) - 1]
            rows.append((f"CH:{chapter}", "chapter", chapter, "", "", cm.get_description(code), False))
            continue
        if cm.is_block(code) and not cm.is_category(code):
            ancestors = cm.get_ancestors(code)
            if not cm.get_children(code):
                continue  # empty header sections (C00-C96, V00-V99, ...) hold no codes
            chapter = ROMAN[int(ancestors[-1]) - 1]
            rows.append((code, "block", chapter, code, "", cm.get_description(code), False))
            continue
        if cm.is_block(code):  # a name shared by a single-category block and its category (B99)
            ancestors = cm.get_ancestors(code)
            chapter = ROMAN[int(ancestors[-1]) - 1]
            rows.append((f"{code}-{code}", "block", chapter, code, "", cm.get_description(code), False))
        ancestors = cm.get_ancestors(code)  # nearest first, chapter last
        chapter = ROMAN[int(ancestors[-1]) - 1]
        block = ancestors[-2] if len(ancestors) >= 2 else code
        if block == code or "-" not in block:
            block = f"{code[:3]}-{code[:3]}"  # single-category block, given a range-shaped id
        if cm.is_category(code):
            kind = "category"
        elif cm.is_extended_subcategory(code):
            kind = "extended"
        else:
            kind = "subcategory"
        rows.append((code, kind, chapter, block, code[:3], cm.get_description(code), cm.is_leaf(code)))
    frame = pd.DataFrame(rows, columns=["code", "kind", "chapter", "block", "category", "description",
                                        "billable"])
    return frame.drop_duplicates("code").reset_index(drop=True)


@functools.cache
def tree_frame() -> pd.DataFrame:
    """Every chapter, block and code of ICD-10-CM, one row each (cached on disk by package version).

    Columns: ``code`` (undotted; chapters are ``CH:IX``), ``kind``, ``chapter`` (roman), ``block``
    (range id such as ``I20-I25``; single-category blocks are ``B99-B99``), ``category`` (3 chars),
    ``description``, ``billable`` (a leaf of the tabular list).
    """
    return cached_frame(f"icd10cm-tree-{package_version()}-v{CODE_VERSION}.parquet", _build_tree_frame)


@functools.cache
def code_index() -> dict[str, int]:
    """Undotted code -> row in :func:`tree_frame` (codes, categories and blocks)."""
    frame = tree_frame()
    return {code: i for i, code in enumerate(frame["code"].tolist())}


@functools.cache
def chapter_titles() -> dict[str, str]:
    frame = tree_frame()
    chapters = frame[frame["kind"] == "chapter"]
    titles = dict(zip(chapters["chapter"], chapters["description"], strict=True))
    titles[UNKNOWN] = "Unknown or unmapped code"
    return titles


@functools.cache
def block_titles() -> dict[str, str]:
    frame = tree_frame()
    blocks = frame[frame["kind"] == "block"]
    titles = dict(zip(blocks["code"], blocks["description"], strict=True))
    titles[UNKNOWN] = "Unknown or unmapped code"
    return titles


def chapter_order() -> list[str]:
    """Chapters in classification order, then ``UNK`` (a fixed colour order for every chart)."""
    return [*ROMAN, UNKNOWN]


def clean(code: object) -> str:
    """Strip whitespace and dots and upper-case; anything not a string becomes ``''``."""
    if not isinstance(code, str):
        return ""
    return code.strip().upper().replace(".", "").replace(" ", "")


@functools.lru_cache(maxsize=200_000)
def resolve_icd10(cleaned: str) -> tuple[str, str] | tuple[None, str]:
    """Resolve a cleaned ICD-10-CM string to a code in the tree.

    Returns ``(code, status)`` where status is ``valid`` (in this release), ``approximate`` (an
    older or over-specific code resolved to its nearest ancestor in this release, e.g. ``S030XXA``
    -> ``S030``), or ``(None, reason)`` with reason ``empty``, ``looks_icd9`` or ``invalid``.

    >>> resolve_icd10("I214")
    ('I214', 'valid')
    >>> resolve_icd10("4280")
    (None, 'looks_icd9')
    """
    if not cleaned:
        return None, "empty"
    index = code_index()
    # Second character: a digit, or a letter for the newer categories such as QA0 (FY2026).
    if not re.fullmatch(r"[A-Z][0-9A-Z][0-9A-Z]{1,5}", cleaned):
        if re.fullmatch(r"([0-9]{3,5}|V[0-9]{2,4}|E[0-9]{3,4})", cleaned):
            return None, "looks_icd9"
        return None, "invalid"
    if cleaned in index and "-" not in cleaned:
        return cleaned, "valid"
    candidate = cleaned
    while len(candidate) > 3:
        candidate = candidate[:-1]
        if candidate in index:
            return candidate, "approximate"
    if re.fullmatch(r"[0-9]{3,5}", cleaned):
        return None, "looks_icd9"
    return None, "invalid"
