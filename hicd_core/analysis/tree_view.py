"""ICD-10-CM tree data and figures for the tree page (sunburst / icicle)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hicd_core.hierarchy import attach_counts, chapter_order, tree_nodes
from hicd_core.hierarchy import icd10 as _icd10

ROOT_ID = "ICD-10-CM"
COLOR_QUANTITIES = ("frequency", "outcome rate", "mean attribution", "billable codes")


def structural_counts() -> pd.Series:
    """Number of billable codes under each category (a cohort-free size for the tree)."""
    tree = _icd10.tree_frame()
    billable = tree[tree["billable"]]
    return billable.groupby("code").size()


def tree_table(code_counts: pd.Series | None = None, values: pd.Series | None = None,
               focus: str | None = None, include_codes: bool = False) -> pd.DataFrame:
    """Nodes to draw: chapters -> blocks -> categories (-> codes under ``focus``), sized by counts.

    ``code_counts``: occurrences per undotted code in a cohort (``None``: billable-code counts).
    ``values``: an optional per-node colour value indexed by node id (``CH:IX``, ``CA:I21``...).
    ``focus``: a node id (chapter or block) to restrict to its subtree; codes are added when
    ``include_codes`` (kept off for the whole tree: 96k code nodes are too many for a browser).
    """
    nodes = tree_nodes("code" if include_codes else "category")
    counts = structural_counts() if code_counts is None else code_counts
    table = attach_counts(nodes, counts, "size")
    table = table[table["size"] > 0]
    if focus:
        keep = {focus}
        frontier = {focus}
        parents = table["parent"].to_numpy()
        ids = table["id"].to_numpy()
        while frontier:
            children = set(ids[np.isin(parents, list(frontier))])
            frontier = children - keep
            keep |= children
        table = table[table["id"].isin(keep)].copy()
        table.loc[table["id"] == focus, "parent"] = ""
    else:
        table = pd.concat([pd.DataFrame([{"id": ROOT_ID, "parent": "", "level": "root", "code": ROOT_ID,
                                          "title": "ICD-10-CM", "chapter": "", "size": table.loc[
                                              table["level"] == "chapter", "size"].sum()}]),
                           table.assign(parent=table["parent"].replace("", ROOT_ID))], ignore_index=True)
    if values is not None:
        table["color"] = table["id"].map(values)
    return table.reset_index(drop=True)


def tree_figure(table: pd.DataFrame, kind: str = "sunburst", color_label: str = "frequency",
                max_depth: int = 3) -> go.Figure:
    """Sunburst or icicle of a :func:`tree_table`; node ids travel in ``customdata`` for selection."""
    trace_type = {"sunburst": go.Sunburst, "icicle": go.Icicle}.get(kind)
    if trace_type is None:
        raise ValueError(f"kind must be 'sunburst' or 'icicle', got {kind!r}")
    labels = np.where(table["level"].isin(["chapter", "root"]), "Ch " + table["code"], table["code"])
    labels[table["level"].to_numpy() == "root"] = "ICD-10-CM"
    hover = table["title"].str.slice(0, 90)
    colours = table["color"] if "color" in table else np.log1p(table["size"])
    bar_title = color_label if "color" in table else f"log(1+{color_label})"
    trace = trace_type(
        ids=table["id"], parents=table["parent"], labels=labels, values=table["size"], branchvalues="total",
        customdata=np.stack([table["id"], hover, table["size"]], axis=1), maxdepth=max_depth,
        hovertemplate="<b>%{label}</b><br>%{customdata[1]}<br>size: %{customdata[2]:,}<extra></extra>",
        marker={"colors": colours, "colorscale": "Viridis", "showscale": True,
                "colorbar": {"title": {"text": bar_title}}},
    )
    figure = go.Figure(trace)
    figure.update_layout(margin={"t": 10, "l": 0, "r": 0, "b": 0}, height=650)
    return figure


def chapter_options() -> list[str]:
    return chapter_order()[:-1]
