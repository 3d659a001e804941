"""ICD-10-CM tree data and figures for the tree page (sunburst / icicle), and the cohort figures per
tree node it colours and reports: occurrences, outcome rates, and a HICD-Graph run's stored graph."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hicd_core.cohort import Cohort
from hicd_core.experiments.runstore import RunStore
from hicd_core.hierarchy import attach_counts, chapter_order, tree_nodes
from hicd_core.hierarchy import icd10 as _icd10

if TYPE_CHECKING:
    from hicd_core.models.graph_build import CodeGraph

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
MIN_CELL = 10  # smallest group whose outcome rate is shown (no rates of a handful of patients)


def code_counts(cohort: Cohort) -> pd.Series:
    """Occurrences per undotted ICD-10-CM code in the cohort's diagnoses."""
    codes = cohort.diagnoses["icd10"].dropna().astype(str)
    return codes.value_counts()


def node_ids_of_rows(diagnoses: pd.DataFrame) -> dict[str, np.ndarray]:
    """Tree node ids (``CH:``, ``BL:``, ``CA:``, ``CO:``) of each diagnosis row, one array per level."""
    out = {}
    for prefix, column in (("CH:", "chapter"), ("BL:", "block"), ("CA:", "category"), ("CO:", "icd10")):
        values = diagnoses[column].astype("string")
        valid = (values.notna() & (values != "") & (values != "UNK")).fillna(False).to_numpy(bool)
        out[prefix] = np.where(valid, (prefix + values.fillna("")).to_numpy(object), "")
    return out


def node_outcome_rates(cohort: Cohort, task: str, min_samples: int = MIN_CELL) -> pd.DataFrame:
    """Per tree node: the share of positive samples among samples whose history (the anchor visit and
    every earlier visit) holds a code under the node. Nodes with fewer than ``min_samples`` such
    samples get NaN, so no rate describes a handful of patients."""
    samples = cohort.tasks[task]
    diag = cohort.diagnoses[["patient_id", "visit_id", "chapter", "block", "category", "icd10"]]
    visit_index = cohort.visits.set_index("visit_id")["visit_index"]
    first_index = visit_index.reindex(diag["visit_id"]).to_numpy()
    order = samples.sort_values(["patient_id", "visit_index"])
    span = int(cohort.visits["visit_index"].max()) + 2 if len(cohort.visits) else 2
    keys = order["patient_id"].to_numpy(np.int64) * span + order["visit_index"].to_numpy(np.int64)
    positives = np.concatenate([[0], np.cumsum(order["label"].to_numpy(np.int64))])
    frames = []
    for ids in node_ids_of_rows(diag).values():
        part = pd.DataFrame({"id": ids, "patient_id": diag["patient_id"].to_numpy(), "first": first_index})
        part = part[part["id"] != ""].groupby(["id", "patient_id"], as_index=False)["first"].min()
        pid = part["patient_id"].to_numpy(np.int64)
        lo = np.searchsorted(keys, pid * span + part["first"].to_numpy(np.int64), side="left")
        hi = np.searchsorted(keys, pid * span + span - 1, side="left")
        part["samples"] = hi - lo
        part["positives"] = positives[hi] - positives[lo]
        frames.append(part.groupby("id", as_index=False)[["samples", "positives"]].sum())
    table = pd.concat(frames, ignore_index=True)
    share = table["positives"] / table["samples"].clip(lower=1)
    table["rate"] = np.where(table["samples"] >= min_samples, share, np.nan)
    return table


def node_statistics(cohort: Cohort, node_id: str) -> dict[str, int]:
    """Occurrences and distinct patients under a tree node in the cohort."""
    prefix, _, value = node_id.partition(":")
    column = {"CH": "chapter", "BL": "block", "CA": "category", "CO": "icd10"}.get(prefix)
    if column is None:
        return {"occurrences": 0, "patients": 0, "visits": 0}
    diag = cohort.diagnoses
    rows = diag[diag[column].astype(object) == value]
    return {"occurrences": len(rows), "patients": int(rows["patient_id"].nunique()),
            "visits": int(rows["visit_id"].nunique())}


def stored_code_graph(store: RunStore, run_id: str) -> CodeGraph:
    """The co-occurrence + hierarchy graph stored with a HICD-Graph run (no torch needed)."""
    from hicd_core.models.graph_build import CodeGraph

    path = store.run_dir(run_id) / "model" / "graph.json"
    return CodeGraph.from_dict(json.loads(path.read_text()))
