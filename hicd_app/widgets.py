"""Small pieces every page draws: the SYNTHETIC banner, store and problem messages, downloads, the
per-setting chart controls, and the shared top of the results pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from hicd_app import cache, training
from hicd_app.context import AppContext, context
from hicd_core import synthetic
from hicd_core.analysis import results_view
from hicd_core.analysis.charts import METRIC_LABELS, figure_html
from hicd_core.runtime import safe_csv

SYNTHETIC_BANNER = ("SYNTHETIC data: these patients and results come from the built-in synthetic "
                    "generator, not from MIMIC-IV or eICU. They show how the tool works, not what the "
                    "paper found.")


def signal_note(signal: float | None) -> str:
    """What the synthetic data's ``hierarchy_signal`` means, in one or two sentences ('' when unknown)."""
    if signal is None:
        return ""
    s = float(signal)
    text = (f" Generated with hierarchy_signal {s:g}: {s:.0%} of the variance of a code's outcome risk "
            f"lies in its chapter, block and category (shared along the ICD-10-CM hierarchy), {1 - s:.0%} "
            "in the code alone.")
    if s == 0:
        text += (" This is the null control: the hierarchy carries no outcome signal, so a 'significant' "
                 "gain from a hierarchy setting is a false positive or model capacity (level ids summarising "
                 "other signal), not clinical structure: compare with the permuted-hierarchy control.")
    return text


def _signals(ctx: AppContext, data: bool, results: bool) -> list[float]:
    """The hierarchy_signal of the synthetic data shown: the cohorts' SYNTHETIC.json and store.json
    (a store from before it recorded the signal: the marker next to its recorded source folder)."""
    found: list[float] = []
    if data:
        found += [c.meta["synthetic_params"]["hierarchy_signal"] for c in ctx.data.cohorts.values()
                  if c.synthetic and "hierarchy_signal" in (c.meta.get("synthetic_params") or {})]
    if results and ctx.info.get("synthetic"):
        signal = ctx.info.get("hierarchy_signal")
        if signal is None and ctx.info.get("source_path"):
            try:
                marker = synthetic.read_marker(Path(ctx.info["source_path"]).parent) or {}
                signal = marker.get("hierarchy_signal")
            except (OSError, ValueError):
                signal = None
        if signal is not None:
            found.append(signal)
    return sorted({float(value) for value in found})


def banner(ctx: AppContext, *, data: bool = True, results: bool = True) -> None:
    """The SYNTHETIC label on every page that shows synthetic data or results, with the
    ``hierarchy_signal`` the data was generated with and what it means."""
    synthetic = (data and ctx.data.synthetic) or (results and bool(ctx.info.get("synthetic")))
    if synthetic:
        signals = _signals(ctx, data, results)
        note = signal_note(signals[0]) if len(signals) == 1 else (
            " The data shown were generated with different hierarchy_signal values ("
            + ", ".join(f"{value:g}" for value in signals) + "): the share of outcome risk in the hierarchy."
            if signals else "")
        st.warning(SYNTHETIC_BANNER + note, icon=":material/science:")


def require_store(ctx: AppContext) -> bool:
    """A clear message instead of a traceback when there is no usable store."""
    if ctx.store is None:
        st.warning(f"No usable run store: {ctx.store_problem[1] if ctx.store_problem else ''} "
                   "Pick another folder in the sidebar.")
        return False
    return True


def show_problem(problem: pd.DataFrame | str | None) -> None:
    """The warning for a store read that failed: a :func:`_guarded` frame or a message (or nothing)."""
    message = problem.attrs.get("error") if isinstance(problem, pd.DataFrame) else problem
    if message:
        st.warning(f"{message}. The store may be damaged or written by another version.")


def downloads(key: str, data: pd.DataFrame, figure: Any | None = None, name: str | None = None) -> None:
    """CSV of a figure's data and a self-contained HTML of the chart; both built only on click."""
    name = name or key
    columns = st.columns([1, 1, 4])
    columns[0].download_button("CSV", data=lambda: safe_csv(data, index=False).encode(),
                               file_name=f"{name}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                               icon=":material/download:")
    if figure is not None:
        columns[1].download_button("HTML", data=lambda: figure_html(figure).encode(),
                                   file_name=f"{name}.html", mime="text/html", key=f"{key}_html",
                                   on_click="ignore", icon=":material/download:")


def curve_controls(ctx: AppContext, names: list[str], columns: list[Any], *, key: str,
                   task_label: str = "Task", overlay_help: str
                   ) -> tuple[str, str, pd.DataFrame, pd.DataFrame | None]:
    """The task selectbox, metric radio and paper-overlay toggle of a per-setting results chart, drawn
    in the first three of ``columns`` (keys ``{key}_task``, ``{key}_metric``, ``{key}_paper``), and
    the data they select: ``(evaluation, metric, curve, paper)``. ``curve`` is :func:`curve` with its
    intervals; ``paper`` is the paper's values, or None when the overlay is off. When the paper
    reports nothing for the choice, an info says there is nothing to overlay."""
    evaluation = columns[0].selectbox(task_label, names, key=f"{key}_task")
    metric = columns[1].radio("Metric", list(METRIC_LABELS), format_func=METRIC_LABELS.get,
                              key=f"{key}_metric", horizontal=True)
    overlay = columns[2].toggle("Paper overlay", key=f"{key}_paper", help=overlay_help)
    table = cache.curve(ctx.root_key, ctx.version, evaluation, metric)
    show_problem(table)
    paper = results_view.paper_values(evaluation, metric) if overlay else None
    if paper is not None and paper.empty:
        st.info(f"The paper reports no {METRIC_LABELS[metric]} for {evaluation}; nothing to overlay.")
    return evaluation, metric, table, paper


def results_page(title: str, *, data: bool = True) -> tuple[AppContext, pd.DataFrame]:
    """The shared top of every results page: sidebar context, title, synthetic/paper banner, a clear
    stop when there is no usable run store, the still-training note, and the results table."""
    ctx = context()
    st.title(title)
    banner(ctx, data=data)
    if not require_store(ctx):
        st.stop()
    training.training_note(ctx)
    table = cache.results(ctx.root_key, ctx.version)
    show_problem(table)
    return ctx, table
