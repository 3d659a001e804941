"""Data and figures for the Patient page: which runs, which test patients, and its figures.

The page takes its run store and cohort from the shared sidebar (``hicd_app.context``);
:func:`store_problem` and :func:`cohort_problem` say in plain words why it cannot show anything yet.

Figure builders are pure (data in, ``go.Figure`` out) and unit-testable; none of them logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hicd_core.analysis.attributions import COMPONENTS, Attribution, PatientReport
from hicd_core.cohort.schema import TEST, Cohort
from hicd_core.experiments.runstore import RunStore
from hicd_core.hierarchy import Setting, chapter_order, setting_rank

COMPONENT_COLOURS = {"code": "#4c78a8", "G0": "#f58518", "G1": "#e45756", "G2": "#72b7b2", "age": "#54a24b",
                     "position": "#b279a2", "segment": "#9d755d"}
KIND_COLOURS = {"code": "#4c78a8", "chapter": "#f58518", "block": "#e45756", "prefix": "#72b7b2",
                "category": "#72b7b2"}


# ============================================================================ store and cohort
def store_problem(root: Path, store: RunStore | None) -> str | None:
    """Why the sidebar's run store cannot be shown (missing, not a store), else None."""
    if store is None or not (Path(root) / "store.json").is_file():
        return (f"No run store at {root}. Train models first (Level ablation page or "
                "`python -m hicd_core sweep`), or pick another run store in the sidebar ($HICD_STORE "
                "sets the one opened at launch).")
    return None


def cohort_problem(root: Path, info: dict, cohort: Cohort | None, errors: list[str] | tuple[str, ...] = ()
                   ) -> str | None:
    """Why the cohort the store was trained on (``cohort``, loaded from ``store.json``'s recorded
    source) cannot be used for attributions, else None. Sample ids and patient indices are only
    meaningful in the very cohort the models were trained on, so a changed one is refused."""
    site, path = info.get("source_site"), info.get("source_path")
    if not site or not path:
        return f"store.json of {root} does not say where its source cohort came from."
    if cohort is None:
        detail = " ".join(errors)
        return (f"The source cohort of this store ({site}) is no longer at its recorded path."
                + (f" {detail}" if detail else ""))
    expected = info.get("source_fingerprint")
    if expected and cohort.fingerprint != expected:
        return (f"The source cohort changed since the models were trained (fingerprint "
                f"{cohort.fingerprint} != {expected}); retrain or restore the data.")
    return None


def history_window(model: str, config: Any) -> str:
    """What part of the history the model reads, from its trained config."""
    if model == "bert":
        return f"its most recent tokens, at most {int(config.max_len)} including [CLS]"
    if model.startswith("counts-"):
        return "every code of the whole history, counted (no length limit)"
    return f"its {int(config.max_visits)} most recent visits"


def task_runs(store: RunStore) -> pd.DataFrame:
    """Finished task runs (not transfer probes): run_id, model, setting, task, seed."""
    rows = [{"run_id": r["run_id"], **{k: r["spec"][k] for k in ("model", "setting", "task", "seed")}}
            for r in store.finished_runs() if r.get("spec", {}).get("kind", "task") == "task"]
    frame = pd.DataFrame(rows, columns=["run_id", "model", "setting", "task", "seed"])
    if frame.empty:
        return frame
    frame["rank"] = frame["setting"].map(setting_rank)
    return frame.sort_values(["model", "task", "seed", "rank"]).drop(columns="rank").reset_index(drop=True)


def runs_by_setting(runs: pd.DataFrame, model: str, task: str, seed: int) -> dict[str, str]:
    """setting -> run_id for one model family, task and seed (paper table order)."""
    sel = runs[(runs["model"] == model) & (runs["task"] == task) & (runs["seed"] == seed)]
    return dict(zip(sel["setting"], sel["run_id"], strict=True))


def test_candidates(store: RunStore, run_id: str, cohort: Cohort, task: str) -> pd.DataFrame:
    """The run's stored test predictions with each sample's anchor visit (de-identified indices only).

    Columns: ``sample_id``, ``patient_id``, ``label``, ``prob``, ``visit_index`` (the anchor).
    """
    pred = store.predictions(run_id)[["sample_id", "patient_id", "label", "prob"]]
    samples = cohort.tasks[task]
    samples = samples[samples["split"].astype(str) == TEST][["sample_id", "visit_index"]]
    frame = pred.merge(samples, on="sample_id", how="inner")
    return frame.sort_values(["patient_id", "visit_index"]).reset_index(drop=True)


def filter_candidates(frame: pd.DataFrame, label: str = "all", risk: tuple[float, float] = (0.0, 1.0),
                      patient: int | None = None) -> pd.DataFrame:
    """Candidates by label (``all``/``0``/``1``), predicted-risk range and optionally one patient index."""
    keep = frame["prob"].between(risk[0], risk[1])
    if label in ("0", "1"):
        keep &= frame["label"] == int(label)
    if patient is not None:
        keep &= frame["patient_id"] == int(patient)
    return frame[keep]


def candidate_labels(candidates: pd.DataFrame) -> dict[int, str]:
    """The patient list's labels by sample id, built in one vectorised pass (the list shows up to
    1,000 rows; one pandas lookup per row per view was a visible share of a page view under load).

    >>> frame = pd.DataFrame({"sample_id": [7], "patient_id": [3], "visit_index": [1], "label": [0],
    ...                       "prob": [0.25]})
    >>> candidate_labels(frame)[7]
    'patient 3 · sample 7 · anchor visit 1 · label 0 · stored risk 0.250'
    """
    ints = {name: candidates[name].astype(int).astype(str) for name in
            ("patient_id", "sample_id", "visit_index", "label")}
    risk = candidates["prob"].astype(float).map("{:.3f}".format)
    text = ("patient " + ints["patient_id"] + " · sample " + ints["sample_id"] + " · anchor visit "
            + ints["visit_index"] + " · label " + ints["label"] + " · stored risk " + risk)
    return dict(zip(candidates["sample_id"].astype(int).tolist(), text.tolist(), strict=True))


def convergence_note(attr: Attribution) -> tuple[str, str]:
    """(level, plain-language sentence) about Captum's convergence delta; level is ok/warn/bad."""
    gap = attr.logit - attr.baseline_logit
    share = attr.relative_delta
    if attr.model == "counts":  # a linear model's shares are exact: the delta is float rounding only
        return "ok", (f"Exact: the code shares add up to {attr.attr_sum:+.4f}, the logit minus the "
                      f"intercept ({gap:+.4f}; difference {attr.delta:+.1e}, float rounding). No "
                      "approximation involved.")
    if not np.isfinite(attr.delta):
        return "bad", "The convergence check failed (delta is not a number): do not trust these attributions."
    text = (f"The attributions add up to {attr.attr_sum:+.4f}; the model's score moved {gap:+.4f} from the "
            f"baseline to this patient. Captum's convergence delta (the gap between the two) is "
            f"{attr.delta:+.2e}")
    if share <= 0.05:
        return "ok", text + " — small, so the attributions account for the prediction."
    if share <= 0.2 or abs(attr.delta) < 0.01:
        return "warn", text + (f" ({share:.0%} of the change): roughly right. The score barely differs "
                               "from the baseline's, or the integral is coarse; more steps tighten it.")
    return "bad", text + f" ({share:.0%} of the change): too large; increase the number of steps."


# ============================================================================ figures
def timeline_figure(timeline: pd.DataFrame) -> go.Figure:
    """One marker per diagnosis: x = visit (days since the first visit), y = order in the visit,
    colour = chapter; code and title on hover."""
    figure = go.Figure()
    order = chapter_order()
    frame = timeline[timeline["code"] != ""].copy()
    frame["x"] = [f"visit {v}<br>day {d:g}" for v, d in zip(frame["visit_index"], frame["day"], strict=True)]
    for chapter in sorted(frame["chapter"].unique(), key=lambda c: order.index(c) if c in order else 99):
        part = frame[frame["chapter"] == chapter]
        figure.add_trace(go.Scatter(
            x=part["x"], y=part["seq"], mode="markers+text", text=part["code"], textposition="middle right",
            name=f"Ch {chapter}", marker={"size": 10, "symbol": "square"},
            customdata=np.stack([part["code"], part["title"].str.slice(0, 90)], axis=1),
            hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<extra>%{x}</extra>"))
    figure.update_layout(height=max(260, 22 * int(frame["seq"].max() if len(frame) else 5) + 120),
                         margin={"t": 10, "l": 10, "r": 10, "b": 10}, legend_title_text="chapter",
                         yaxis={"title": "order within visit", "autorange": "reversed"},
                         xaxis={"title": "", "categoryorder": "array",
                                "categoryarray": list(dict.fromkeys(frame["x"]))})
    return figure


def risk_figure(risks: pd.DataFrame) -> go.Figure:
    """Per setting: the uncalibrated model output (bars) against its decision threshold (markers), and
    the calibrated risk (diamonds; absent for runs stored before recalibration)."""
    labels = risks["setting_label"].tolist()
    traces = [
        go.Bar(x=labels, y=risks["prob"], name="uncalibrated model output", marker_color="#4c78a8",
               text=[f"{p:.3f}" for p in risks["prob"]], textposition="outside"),
        go.Scatter(x=labels, y=risks["threshold"], mode="markers", name="decision threshold",
                   marker={"symbol": "line-ew-open", "size": 28, "color": "#e45756", "line": {"width": 3}}),
    ]
    if "prob_calibrated" in risks and risks["prob_calibrated"].notna().any():
        traces.append(go.Scatter(x=labels, y=risks["prob_calibrated"], mode="markers",
                                 name="calibrated risk (Platt, validation)",
                                 marker={"symbol": "diamond", "size": 12, "color": "#54a24b"}))
    figure = go.Figure(traces)
    figure.update_layout(height=300, margin={"t": 10, "l": 10, "r": 10, "b": 10},
                         yaxis={"range": [0, 1.05], "title": "risk"}, legend={"orientation": "h"})
    return figure


def _token_labels(table: pd.DataFrame) -> list[str]:
    return [f"{i}: {t}" for i, t in zip(table["token_index"], table["token"], strict=True)]


def component_heatmap(attr: Attribution) -> go.Figure:
    """Heat strip: components (rows) x sequence positions (columns), diverging around zero."""
    table = attr.table
    comps = [c for c in COMPONENTS if c in attr.components]
    z = np.array([table[f"attr_{c}"].to_numpy() for c in comps])
    bound = float(np.abs(z).max()) if z.size else 1.0
    row = [f"{tok} · {title[:60]}" for tok, title in zip(table["token"], table["title"], strict=True)]
    hover = np.array([row for _ in comps])
    figure = go.Figure(go.Heatmap(
        z=z, x=_token_labels(table), y=comps, colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
        customdata=hover, hovertemplate="%{y} @ %{customdata}<br>attribution %{z:.4f}<extra></extra>",
        colorbar={"title": {"text": "attribution"}}))
    figure.update_layout(height=120 + 28 * len(comps), margin={"t": 10, "l": 10, "r": 10, "b": 10},
                         xaxis={"showticklabels": len(table) <= 60, "tickangle": -60})
    return figure


def component_bars(attr: Attribution) -> go.Figure:
    """Stacked (relative) bars per position: each component's signed share of the attribution."""
    table = attr.table
    x = _token_labels(table)
    figure = go.Figure([go.Bar(x=x, y=table[f"attr_{c}"], name=c, marker_color=COMPONENT_COLOURS.get(c),
                               customdata=table["title"].str.slice(0, 60),
                               hovertemplate="%{x}<br>%{customdata}<br>" + c + ": %{y:.4f}<extra></extra>")
                        for c in COMPONENTS if c in attr.components])
    figure.update_layout(barmode="relative", height=340, margin={"t": 10, "l": 10, "r": 10, "b": 10},
                         legend={"orientation": "h"}, yaxis={"title": "attribution (logit units)"},
                         xaxis={"showticklabels": len(table) <= 60, "tickangle": -60})
    return figure


def totals_figure(report: PatientReport) -> go.Figure:
    """Grouped bars: total attribution per component (or node kind) for every setting."""
    totals = report.component_totals()
    labels = [Setting(s).label for s in totals.index]
    figure = go.Figure([go.Bar(x=labels, y=totals[c], name=c, marker_color=COMPONENT_COLOURS.get(
        c, KIND_COLOURS.get(c))) for c in totals.columns])
    figure.update_layout(barmode="group", height=320, margin={"t": 10, "l": 10, "r": 10, "b": 10},
                         legend={"orientation": "h"}, yaxis={"title": "total attribution"})
    return figure


def rollup_sunburst(tree: pd.DataFrame) -> go.Figure:
    """Sunburst of :func:`~hicd_core.analysis.attributions.rollup_tree`: size = |attribution|,
    colour = signed attribution; node ids in ``customdata``."""
    bound = float(tree["value"].abs().max()) if len(tree) else 1.0
    labels = np.where(tree["level"] == "chapter", "Ch " + tree["code"], tree["code"])
    figure = go.Figure(go.Sunburst(
        ids=tree["id"], parents=tree["parent"], labels=labels, values=tree["size"], branchvalues="total",
        customdata=np.stack([tree["id"], tree["title"].str.slice(0, 80), tree["value"]], axis=1),
        hovertemplate=("<b>%{label}</b><br>%{customdata[1]}<br>attribution %{customdata[2]:.4f}"
                       "<extra></extra>"),
        marker={"colors": tree["value"], "colorscale": "RdBu", "cmid": 0, "cmin": -bound, "cmax": bound,
                "showscale": True, "colorbar": {"title": {"text": "attribution"}}}, maxdepth=3))
    figure.update_layout(height=520, margin={"t": 10, "l": 0, "r": 0, "b": 0})
    return figure


def graph_node_figure(attr: Attribution, top: int = 40) -> go.Figure:
    """Horizontal bars: the ``top`` (visit, node) attributions by magnitude, coloured by node kind."""
    table = attr.table.assign(mag=attr.table["attribution"].abs()).nlargest(top, "mag").iloc[::-1]
    labels = [f"visit {v} · {n}" for v, n in zip(table["visit_index"], table["node"], strict=True)]
    figure = go.Figure()
    for kind in dict.fromkeys(table["kind"]):
        part = table["kind"].to_numpy() == kind
        figure.add_trace(go.Bar(
            x=table["attribution"][part], y=np.asarray(labels)[part], orientation="h", name=kind,
            marker_color=KIND_COLOURS.get(kind), customdata=table["title"][part].str.slice(0, 70),
            hovertemplate="%{y}<br>%{customdata}<br>attribution %{x:.4f}<extra></extra>"))
    figure.update_layout(height=max(300, 18 * len(table) + 80), margin={"t": 10, "l": 10, "r": 10, "b": 10},
                         barmode="overlay", legend={"orientation": "h"},
                         yaxis={"categoryorder": "array", "categoryarray": labels},
                         xaxis={"title": "attribution (logit units)"})
    return figure


def rollup_comparison(approximate: pd.DataFrame, exact: pd.DataFrame, top: int = 30) -> pd.DataFrame:
    """Two :func:`~hicd_core.analysis.attributions.rollup_tree` frames side by side per tree node (chapter,
    block, category; codes left out), largest first: a deep model's integrated gradients (``approximate``)
    and the counts-lr baseline's exact shares (``exact``). A node only one of them reached shows 0."""
    keep = ["id", "level", "code", "title", "value"]
    levels = ("chapter", "block", "category")
    left = approximate.loc[approximate["level"].isin(levels), keep]
    right = exact.loc[exact["level"].isin(levels), keep]
    merged = left.merge(right, on=["id", "level", "code"], how="outer", suffixes=("", "_exact"))
    merged["title"] = merged["title"].fillna(merged.pop("title_exact"))
    merged = merged.rename(columns={"value": "integrated gradients", "value_exact": "counts-lr exact"})
    values = ["integrated gradients", "counts-lr exact"]
    merged[values] = merged[values].fillna(0.0)
    weight = merged["integrated gradients"].abs() + merged["counts-lr exact"].abs()
    merged = merged.assign(_w=weight).sort_values("_w", ascending=False).drop(columns="_w")
    return merged.drop(columns="id").head(top).reset_index(drop=True)
