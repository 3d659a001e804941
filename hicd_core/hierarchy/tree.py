"""Tree export for views: one node table covering all of ICD-10-CM, plus cohort counts rolled up."""

from __future__ import annotations

import functools

import pandas as pd

from hicd_core.hierarchy import icd10

ROOT = "ICD-10-CM"
NODE_COLUMNS = ("id", "parent", "level", "code", "title", "chapter")


@functools.cache
def tree_nodes(max_level: str = "code") -> pd.DataFrame:
    """Nodes of the ICD-10-CM tree: ``id``, ``parent``, ``level``, ``code``, ``title``, ``chapter``.

    ``level`` is ``chapter``, ``block``, ``category`` or ``code`` (every code below a category hangs
    directly under its category, which is what the views draw). ``max_level='category'`` stops at
    categories (~2,200 nodes, cheap enough for a browser sunburst). Ids are namespaced
    (``CH:IX``, ``BL:I20-I25``, ``CA:I21``, ``CO:I214``) because a block and a category can share a
    name (``B99``).
    """
    tree = icd10.tree_frame()
    chapters = tree[tree["kind"] == "chapter"]
    blocks = tree[tree["kind"] == "block"]
    categories = tree[tree["kind"] == "category"]
    parts = [
        pd.DataFrame({"id": "CH:" + chapters["chapter"], "parent": "", "level": "chapter",
                      "code": chapters["chapter"], "title": chapters["description"],
                      "chapter": chapters["chapter"]}),
        pd.DataFrame({"id": "BL:" + blocks["code"], "parent": "CH:" + blocks["chapter"], "level": "block",
                      "code": blocks["code"], "title": blocks["description"], "chapter": blocks["chapter"]}),
        pd.DataFrame({"id": "CA:" + categories["code"], "parent": "BL:" + categories["block"],
                      "level": "category", "code": categories["code"], "title": categories["description"],
                      "chapter": categories["chapter"]}),
    ]
    if max_level == "code":
        codes = tree[tree["kind"].isin(["subcategory", "extended"])]
        parts.append(pd.DataFrame({"id": "CO:" + codes["code"], "parent": "CA:" + codes["category"],
                                   "level": "code", "code": codes["code"], "title": codes["description"],
                                   "chapter": codes["chapter"]}))
    elif max_level != "category":
        raise ValueError(f"max_level must be 'code' or 'category', got {max_level!r}")
    return pd.concat(parts, ignore_index=True)


def attach_counts(nodes: pd.DataFrame, code_counts: pd.Series, value_name: str = "count") -> pd.DataFrame:
    """Add a column with cohort counts rolled up the tree.

    ``code_counts`` is indexed by undotted ICD-10-CM code (any level: ``I214`` or ``I21``) with a
    count per code. Each node gets the total over its own code and all codes below it, so a
    sunburst sized by it is consistent (parent = sum of children plus its own occurrences).
    """
    tree = icd10.tree_frame().set_index("code")
    counts = code_counts[code_counts.index.isin(tree.index)].astype(float)
    info = tree.loc[counts.index, ["chapter", "block", "category", "kind"]]
    totals: dict[str, float] = {}
    for prefix, column in (("CH:", "chapter"), ("BL:", "block"), ("CA:", "category")):
        grouped = counts.groupby(info[column].to_numpy()).sum()
        totals.update({prefix + str(key): value for key, value in grouped.items() if key})
    is_code = ~info["kind"].isin(["category", "block", "chapter"])
    totals.update({"CO:" + key: value for key, value in counts[is_code.to_numpy()].items()})
    out = nodes.copy()
    out[value_name] = out["id"].map(totals).fillna(0.0)
    return out


def node_path(node_id: str) -> list[pd.Series]:
    """The chain of nodes from the chapter down to ``node_id`` (for the tree page's detail panel)."""
    nodes = tree_nodes().set_index("id")
    if node_id not in nodes.index:
        raise KeyError(f"no ICD-10-CM tree node {node_id!r}")
    path = []
    current = node_id
    while current:
        row = nodes.loc[current]
        path.append(row.rename(current))
        current = row["parent"]
    return path[::-1]


def search_nodes(query: str, limit: int = 50, max_level: str = "code") -> pd.DataFrame:
    """Nodes whose code starts with ``query`` (dots ignored) or whose title contains all its words."""
    nodes = tree_nodes(max_level)
    text = query.strip()
    if not text:
        return nodes.iloc[0:0]
    code_like = icd10.clean(text)
    by_code = nodes["code"].str.startswith(code_like) if code_like else False
    words = [w for w in text.lower().split() if w]
    by_title = pd.Series(True, index=nodes.index)
    for word in words:
        by_title &= nodes["title"].str.lower().str.contains(word, regex=False)
    hits = nodes[by_code | by_title]
    order = {"chapter": 0, "block": 1, "category": 2, "code": 3}
    hits = hits.assign(_rank=hits["level"].map(order), _exact=hits["code"] != code_like)
    return hits.sort_values(["_exact", "_rank", "code"]).drop(columns=["_rank", "_exact"]).head(limit)
