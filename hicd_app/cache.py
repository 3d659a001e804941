"""Every Streamlit cache of the app, in one place.

Each wrapper keys its result by the store path plus a cheap store version
(:func:`hicd_core.experiments.store_status.store_version`: run folder count and file mtimes), so runs
finished by a background sweep appear without a restart, and finished runs, which never change,
are read once. Cohorts are keyed by their fingerprint (the ``_cohort`` argument itself is not
hashed). The functions they wrap are plain engine functions, unit-tested without Streamlit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from hicd_core.analysis import embedding_view, tree_view
from hicd_core.analysis.results_view import CURVE_COLUMNS, curve_table
from hicd_core.cohort import Cohort, cohort_summary, load_cohort
from hicd_core.experiments import report
from hicd_core.experiments.runstore import RunStore, StoreFileError
from hicd_core.experiments.store_status import expected_for, verify_store

#: What a damaged or foreign store raises while being read (unreadable or missing files, bad JSON or
#: parquet, missing fields). Anything else is a bug and must show as one, not as a damaged store.
STORE_ERRORS = (OSError, ValueError, KeyError, json.JSONDecodeError)


def failure(what: str, exc: Exception) -> str:
    return f"{what} failed: {type(exc).__name__}: {exc}"


def _guarded(what: str, build: Callable[[], pd.DataFrame], columns: list[str] | None = None) -> pd.DataFrame:
    """A damaged file in a store must give a message, not a traceback: an empty frame (with
    ``columns``) whose ``attrs['error']`` says what failed (``widgets.show_problem`` prints it)."""
    try:
        return build()
    except STORE_ERRORS as exc:
        frame = pd.DataFrame(columns=columns)
        frame.attrs["error"] = failure(what, exc)
        return frame


# ------------------------------------------------------------------------------------ cohorts
@st.cache_resource(show_spinner="Loading the cohort (first time: parsing the source tables) ...",
                   max_entries=8)
def cohort(site: str, path: str, split_seed: int, stamp: int) -> Cohort:
    """A cohort read through the engine's parsed-cohort cache; ``stamp`` changes with the folder."""
    return load_cohort(site, path, split_seed=split_seed)


@st.cache_data(show_spinner=False, max_entries=16)
def summary_of(fingerprint: str, _cohort: Cohort) -> dict:
    return cohort_summary(_cohort)


@st.cache_data(show_spinner=False, max_entries=16)
def counts_of(fingerprint: str, _cohort: Cohort) -> pd.Series:
    return tree_view.code_counts(_cohort)


@st.cache_data(show_spinner="Computing outcome rates per node ...", max_entries=16)
def outcome_rates_of(fingerprint: str, task: str, _cohort: Cohort) -> pd.DataFrame:
    return tree_view.node_outcome_rates(_cohort, task)


@st.cache_data(show_spinner="Comparing the sites' codes ...", max_entries=8)
def coverage_of(source_fp: str, target_fp: str, _source: Cohort, _target: Cohort) -> pd.DataFrame:
    from hicd_core.experiments.transfer import code_coverage

    return code_coverage(_source, _target)


# ---------------------------------------------------------------------------------- run store
@st.cache_data(show_spinner=False, max_entries=32)
def store_info(root: str, version: str) -> tuple[dict, str | None]:
    """(store.json, None), or ({}, what is wrong with it) when it is damaged."""
    try:
        return RunStore(root).store_info(), None
    except (OSError, StoreFileError) as exc:
        return {}, str(exc)


@st.cache_data(show_spinner="Checking every file of the run store against its checksums ...",
               max_entries=8)
def verification(root: str, version: str) -> pd.DataFrame:
    return _guarded("Verifying the store", lambda: verify_store(RunStore(root)))


@st.cache_data(show_spinner=False, max_entries=16)
def results(root: str, version: str) -> pd.DataFrame:
    return _guarded("Reading the finished runs", lambda: report.results(RunStore(root)))


@st.cache_data(show_spinner=False, max_entries=16)
def finished_runs(root: str, version: str) -> tuple[list[dict], str | None]:
    """(finished runs, None), or ([], what failed) when the store cannot be read."""
    try:
        return RunStore(root).finished_runs(), None
    except STORE_ERRORS as exc:
        return [], failure("Reading the finished runs", exc)


@st.cache_data(show_spinner="Comparing each setting with the flat model (DeLong, paired bootstrap) ...",
               max_entries=8)
def comparisons(root: str, version: str) -> pd.DataFrame:
    return _guarded("Comparing with the flat model", lambda: report.comparisons(RunStore(root)))


@st.cache_data(show_spinner=False, max_entries=64)
def delta_cells(root: str, version: str, evaluation: str | None, metric: str, corrected: bool
                ) -> pd.DataFrame:
    """The heatmap cells of the store (across-seed tests): the same for every session, so computed
    once per process; per session they were the largest app cost under load (2026-12-05 profile)."""
    from hicd_core.analysis.results_view import delta_cells as cells

    return cells(comparisons(root, version), evaluation, metric, corrected)


@st.cache_data(show_spinner=False, max_entries=8)
def headline(root: str, version: str) -> pd.DataFrame:
    """The Overview's headline (best setting per model and task, across seeds), once per process."""
    return report.headline(comparisons(root, version))


@st.cache_data(show_spinner=False, max_entries=64)
def across_seed_table(root: str, version: str, evaluation: str, metric: str) -> pd.DataFrame:
    """Level ablation's across-seed table: the same for every session, so computed once per process."""
    from hicd_core.analysis.results_view import across_seed_table as table

    return table(comparisons(root, version), evaluation, metric)


@st.cache_data(show_spinner=False, max_entries=64)
def numbers_table(root: str, version: str, evaluation: str, metric: str) -> pd.DataFrame:
    """Level ablation's per-run table, once per process."""
    from hicd_core.analysis.results_view import numbers_table as table

    return table(results(root, version), comparisons(root, version), evaluation, metric)


# Figures shared by every session are built once per process (a plotly figure takes 0.1-0.3 s to build,
# with the GIL held, on 2 cores). ``st.plotly_chart`` serialises a figure without changing it, so one
# object can serve every session: never mutate what these return.
@st.cache_resource(show_spinner=False, max_entries=64)
def curve_figure(root: str, version: str, evaluation: str, metric: str, overlay: bool, kind: str) -> Any:
    """``kind`` ``level``: Level ablation's curve; ``transfer``: the Transfer page's bars."""
    from hicd_core.analysis import charts
    from hicd_core.analysis.results_view import paper_values

    table = curve(root, version, evaluation, metric)
    paper = paper_values(evaluation, metric) if overlay else None
    build = charts.transfer_figure if kind == "transfer" else charts.level_curve_figure
    return build(table, metric, paper)


@st.cache_resource(show_spinner=False, max_entries=64)
def delta_heatmap(root: str, version: str, evaluation: str | None, metric: str, corrected: bool,
                  p_label: str | None) -> Any:
    """The difference-to-flat heatmap of :func:`delta_cells` (``p_label`` None: the chart's default)."""
    from hicd_core.analysis import charts

    cells = delta_cells(root, version, evaluation, metric, corrected)
    extra = {} if p_label is None else {"p_label": p_label}
    return charts.delta_heatmap_figure(cells, metric, **extra)


@st.cache_data(show_spinner=False, max_entries=512)
def predictions(root: str, run_id: str) -> pd.DataFrame:
    """A finished run never changes, so its predictions are keyed by run id alone."""
    return RunStore(root).predictions(run_id)


@st.cache_data(show_spinner=False, max_entries=16)
def listing(root: str, version: str, default_bundle: bool) -> pd.DataFrame:
    store = RunStore(root)
    return _guarded("Listing the runs",
                    lambda: store.listing(expected_for(store, store_info(root, version)[0], default_bundle)))


@st.cache_data(show_spinner=False, max_entries=16)
def listing_status(root: str, version: str, default_bundle: bool) -> tuple[dict[str, int], str]:
    """Run counts by status and the one line naming what is not trained yet (every page's note)."""
    from hicd_core.experiments.store_status import listing_counts, missing_summary

    runs = listing(root, version, default_bundle)
    return listing_counts(runs), missing_summary(runs)


@st.cache_data(show_spinner="Computing intervals ...", max_entries=64)
def curve(root: str, version: str, evaluation: str, metric: str) -> pd.DataFrame:
    return _guarded("Computing the intervals", lambda: curve_table(
        results(root, version), evaluation, metric, lambda run_id: predictions(root, run_id)),
                    columns=list(CURVE_COLUMNS))


@st.cache_resource
def autotrain_attempted() -> set[str]:
    """Store roots this server already auto-started (once per process: never a restart loop)."""
    return set()


# --------------------------------------------------------------------------- embeddings, graphs
@st.cache_data(show_spinner=False, max_entries=64)
def embedding_bundle(root: str, run_id: str) -> tuple[list[str], np.ndarray, pd.DataFrame] | None:
    return embedding_view.load_embedding_bundle(RunStore(root), run_id)


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours(root: str, run_id: str, code: str, k: int = 10) -> pd.DataFrame:
    bundle = embedding_bundle(root, run_id)
    if bundle is None:
        return pd.DataFrame(columns=["rank", "code", "cosine", "chapter", "title"])
    codes, matrix, points = bundle
    return embedding_view.neighbours_table(codes, matrix, points, code, k)


@st.cache_data(show_spinner=False, max_entries=64)
def tightness(root: str, version: str, model: str, task: str, seed: int
              ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Relationship similarities and per-chapter similarity across settings (None: no summaries)."""
    runs, _ = finished_runs(root, version)
    summaries = embedding_view.stored_embedding_summaries(runs, model, task, seed)
    return embedding_view.tightness_frames(summaries) if summaries else None


@st.cache_resource(show_spinner=False, max_entries=64)
def tightness_figures(root: str, version: str, model: str, task: str, seed: int) -> dict[str, Any]:
    """The Embeddings page's similarity bars and chapter heatmap, built once per process."""
    from hicd_core.analysis import charts

    tight, wide = tightness(root, version, model, task, seed)
    return {"bars": charts.relationship_bars_figure(tight),
            "heatmap": None if wide.empty else charts.chapter_heatmap_figure(wide)}


@st.cache_resource(show_spinner=False, max_entries=64)
def tightness_scatter(root: str, version: str, model: str, task: str, seed: int, measure: str,
                      _auroc: pd.Series) -> tuple[pd.DataFrame, Any]:
    """Tightness against AUROC across settings and its scatter (``_auroc``: the same runs' AUROC)."""
    from hicd_core.analysis import charts
    from hicd_core.experiments.embeddings import TIGHTNESS_COLUMNS, tightness_vs_auroc

    tight, _ = tightness(root, version, model, task, seed)
    joined = tightness_vs_auroc(tight[["label", *TIGHTNESS_COLUMNS]], _auroc, measure=measure)
    return joined, charts.tightness_auroc_figure(joined, measure)


@st.cache_resource(show_spinner=False, max_entries=32)
def umap_chart(root: str, run_id: str, code: str, title: str) -> Any:
    """The UMAP figure of a run with ``code`` starred (shared, never mutated: plotly_chart copies it)."""
    from hicd_core.analysis.charts import umap_figure

    bundle = embedding_bundle(root, run_id)
    return None if bundle is None else umap_figure(bundle[2], highlight=code, title=title)


@st.cache_resource(show_spinner="Loading the HICD-Graph graph ...", max_entries=16)
def code_graph(root: str, run_id: str) -> Any:
    return tree_view.stored_code_graph(RunStore(root), run_id)


@st.cache_data(show_spinner="Building the ICD-10-CM tree ...", max_entries=64)
def tree_table(focus: str | None, include_codes: bool, key: str, _counts: pd.Series | None,
               _values: pd.Series | None) -> pd.DataFrame:
    """``key`` names what the unhashed counts and values are computed from: cohort fingerprint,
    colour, task (outcome rate) or store, run and sample count (mean attribution)."""
    return tree_view.tree_table(code_counts=_counts, values=_values, focus=focus, include_codes=include_codes)


@st.cache_data
def search(query: str) -> pd.DataFrame:
    from hicd_core.hierarchy import search_nodes

    return search_nodes(query, limit=50)


@st.cache_data(show_spinner="Drawing the graph ...", max_entries=32)
def network(root: str, run_id: str, code: str, hops: int, max_nodes: int
            ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    from hicd_core.analysis.charts import graph_network_html

    nodes, edges = code_graph(root, run_id).neighbourhood(code, k=hops, max_nodes=max_nodes)
    return graph_network_html(nodes, edges), nodes, edges


# ------------------------------------------------------------------------------- attributions
@st.cache_data(show_spinner="Computing integrated-gradients attributions over test samples ...",
               max_entries=16)
def mean_attributions(root: str, run_id: str, fingerprint: str, task: str, n: int, n_steps: int,
                      _cohort: Cohort) -> pd.DataFrame:
    """Mean attribution per tree node of a run over ``n`` test samples (one IG pass per patient)."""
    from hicd_core.analysis import attributions

    samples = attributions.attribution_samples(_cohort, task, n)
    return attributions.mean_attribution_by_code(RunStore(root), run_id, _cohort, task, samples,
                                                 n_steps=n_steps)


@st.cache_data(show_spinner=False, max_entries=16)
def task_runs(root: str, version: str) -> pd.DataFrame:
    """Finished task runs; ``version`` makes a newly finished run show up."""
    from hicd_core.analysis import patient_view

    return patient_view.task_runs(RunStore(root))


@st.cache_data(show_spinner=False, max_entries=32)
def candidates(root: str, run_id: str, fingerprint: str, task: str, _cohort: Cohort) -> pd.DataFrame:
    from hicd_core.analysis import patient_view

    return patient_view.test_candidates(RunStore(root), run_id, _cohort, task)


@st.cache_resource(show_spinner=False, max_entries=32)
def candidate_labels(root: str, run_id: str, fingerprint: str, task: str, _cohort: Cohort) -> dict[int, str]:
    """The patient list's labels, built once per process (the select box formats up to 1,000 per run)."""
    from hicd_core.analysis import patient_view

    return patient_view.candidate_labels(candidates(root, run_id, fingerprint, task, _cohort))


@st.cache_resource(show_spinner=False, max_entries=64)
def attribution_views(report_key: tuple, setting: str, _report: Any) -> dict[str, Any]:
    """The Patient page's attribution figures for one (report, setting), built once per process.

    ``report_key`` names the report (store, runs, task, sample, steps); the report object comes from
    the engine's in-process attribution cache and is not hashed. Streamlit still serialises a
    figure per view; building it (plotly's validation) is the part kept."""
    from hicd_core.analysis import attributions as attr_lib
    from hicd_core.analysis import patient_view as view

    attr = _report.attributions[setting]
    out: dict[str, Any] = {"totals": attr.component_totals().rename("total attribution").to_frame().T,
                           "totals_figure": view.totals_figure(_report)}
    if attr.model in attr_lib.TOKEN_MODELS:
        out.update(heatmap=view.component_heatmap(attr), bars=view.component_bars(attr))
    else:
        out["nodes"] = view.graph_node_figure(attr)
    return out


@st.cache_resource(show_spinner=False, max_entries=64)
def rollup_views(report_key: tuple, setting: str, value: str, _report: Any) -> tuple[pd.DataFrame, Any]:
    """One attribution rolled up the ICD-10-CM tree and its sunburst (see :func:`attribution_views`)."""
    from hicd_core.analysis import attributions as attr_lib
    from hicd_core.analysis import patient_view as view

    tree = attr_lib.rollup_tree(_report.attributions[setting], value)
    return tree, view.rollup_sunburst(tree)


@st.cache_data(show_spinner=False, max_entries=64)
def exact_comparison(report_key: tuple, setting: str, value: str, exact_run: str, _tree: pd.DataFrame,
                     _exact: Any) -> pd.DataFrame:
    """Integrated gradients beside counts-lr's exact shares, per chapter, block and category."""
    from hicd_core.analysis import attributions as attr_lib
    from hicd_core.analysis import patient_view as view

    return view.rollup_comparison(_tree, attr_lib.rollup_tree(_exact, "diagnosis"))


def folder_stamp(path: Path) -> int:
    """Changes when files are added to or replaced in the folder or a folder directly inside it
    (MIMIC-IV's hosp/, a MEDS root's data/ and metadata/)."""
    stamps = [path.stat().st_mtime_ns]
    stamps += [child.stat().st_mtime_ns for child in path.iterdir() if child.is_dir()]
    return max(stamps)
