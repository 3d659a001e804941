"""Level ablation: each metric across the 8 hierarchy settings, the difference to flat, and training
of settings or seeds that are not in the store yet."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hicd_app import cache, training, widgets
from hicd_core.analysis import charts, results_view
from hicd_core.experiments import report
from hicd_core.experiments.spec import DEFAULT_MODELS, MODELS, SOURCE_TASKS, parse_seeds
from hicd_core.hierarchy import SETTINGS, Setting

ctx, results = widgets.results_page("Level ablation", data=False)
names = results_view.evaluations(results)


@st.fragment
def results_panel() -> None:
    """Task, metric and display choices rerun only this panel."""
    controls = st.columns([2, 2, 1, 1])
    evaluation, metric, curve, paper = widgets.curve_controls(
        ctx, names, controls, key="abl",
        overlay_help="Overlay the paper's published MIMIC-IV / eICU values (Tables 1-3).")
    overlay = paper is not None
    marks = controls[3].radio("Marks", ["Holm-corrected p", "raw p"], key="abl_marks",
                              help="Which p-value the * marks on the heatmap use.")
    label = charts.METRIC_LABELS[metric]

    st.subheader(f"{label} by hierarchy setting: {evaluation}")
    figure = cache.curve_figure(ctx.root_key, ctx.version, evaluation, metric, overlay, "level")
    st.plotly_chart(figure, key="abl_curve", width="stretch")
    intervals = ", ".join(sorted(set(curve["interval"])))
    st.caption(f"How to read it: {charts.LEVEL_ORDER_CAPTION} One line per model; error bars are 95% "
               f"intervals ({intervals}). A point above the 'none (flat)' point of its line means that "
               "setting helped; a gap in a line is a setting not trained yet."
               + (f" Dashed lines: {charts.PAPER_LABEL}, the published numbers on real data, labelled as "
                  "such; compare shapes, not levels, with a synthetic store." if overlay else ""))
    download = curve if paper is None else pd.concat(
        [curve.assign(source="this store"), paper.assign(source=charts.PAPER_LABEL)], ignore_index=True)
    widgets.downloads("abl_curve", download, figure, name=f"level_curve_{metric}")

    st.subheader("Difference to the flat model")
    corrected = marks == "Holm-corrected p"
    comparison = cache.comparisons(ctx.root_key, ctx.version)
    widgets.show_problem(comparison)
    cells = cache.delta_cells(ctx.root_key, ctx.version, evaluation, metric, corrected)
    if cells.empty:
        st.info("No comparison yet: it needs the flat (000) run and another setting of the same model.")
    else:
        p_label = "Holm-corrected p" if corrected else "raw p"
        heatmap = cache.delta_heatmap(ctx.root_key, ctx.version, evaluation, metric, corrected, p_label)
        st.plotly_chart(heatmap, key="abl_heatmap", width="stretch")
        n_seeds = int(cells["n_seeds"].max())
        st.caption(f"How to read it: each cell is the setting's {label} minus the flat model's, on the same "
                   "test patients, averaged over training seeds (blue = better than flat). "
                   f"* marks {p_label} < 0.05 of the across-seed test"
                   + ("; Holm corrects for the 7 settings compared." if corrected else
                      "; uncorrected, as the paper marks it.") + f" It rests on {report.seed_note(n_seeds)}.")
        widgets.downloads("abl_heatmap", cells, heatmap, name=f"delta_to_flat_{metric}")
        across = cache.across_seed_table(ctx.root_key, ctx.version, evaluation, metric)
        st.markdown(f"**Across seeds: {label} difference to flat, 95% interval, p and Holm p**")
        st.dataframe(across, width="stretch", hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%+.4f")
                                    for c in ("delta", "ci_low", "ci_high")})
        widgets.downloads("abl_across", across, name=f"across_seeds_{metric}")

    st.subheader("Numbers per run (per-seed detail)")
    table = cache.numbers_table(ctx.root_key, ctx.version, evaluation, metric)
    st.dataframe(table, width="stretch", hide_index=True)
    st.caption("One row per finished run (test split). n / n_pos: test samples and positives. p and Holm p "
               "here are that seed's own test (DeLong for AUROC, paired bootstrap otherwise). Brier and ECE "
               "come calibrated (Platt scaling fitted on validation) and uncalibrated (the paper recipe's "
               "raw output); a degenerate threshold (predicted-positive rate 0 or 1) keeps macro-F1 "
               "unstarred.")
    widgets.downloads("abl_table", table, name=f"level_ablation_{metric}")


@st.fragment
def training_panel() -> None:
    """Train settings or seeds that are not in the store, as a background sweep."""
    st.subheader("Train more settings or seeds")
    runs = cache.listing(ctx.root_key, ctx.version, ctx.default_bundle)
    task_runs = runs[runs["kind"] == "task"] if not runs.empty else runs
    present_models = sorted(set(task_runs["model"])) if not task_runs.empty else list(DEFAULT_MODELS)
    present_tasks = sorted(set(task_runs["task"])) if not task_runs.empty else [SOURCE_TASKS[0]]
    columns = st.columns([1, 1, 2, 1])
    models = columns[0].multiselect("Models", list(MODELS), default=present_models, key="abl_train_models",
                                    format_func=charts.model_name)
    task = columns[1].selectbox("Task", list(SOURCE_TASKS), index=list(SOURCE_TASKS).index(present_tasks[0]),
                                key="abl_train_task")
    todo = task_runs[(task_runs["status"] != "finished") & (task_runs["task"] == task)
                     & task_runs["model"].isin(models)] if not task_runs.empty else task_runs
    missing = sorted(set(todo["setting"]), key=SETTINGS.index) if not todo.empty else []
    settings = columns[2].multiselect("Settings", list(SETTINGS), default=missing,
                                      format_func=lambda s: Setting(s).label, key="abl_train_settings")
    seeds_text = columns[3].text_input("Seeds", "0", key="abl_train_seeds", help="Comma list, e.g. 0,1,2")
    if missing:
        st.caption("Not trained yet for this task: " + ", ".join(Setting(s).label for s in missing))
    try:
        seeds = list(parse_seeds(seeds_text))
    except ValueError as exc:
        st.error(str(exc))
        seeds = []
    allowed = training.write_allowed(ctx.store_root, "abl_train")
    blocked = ctx.running or not settings or not models or not seeds or not allowed
    clicked = st.button("Train in the background", key="abl_train", disabled=blocked, type="primary",
                        help="Runs already finished are skipped; progress shows in the sidebar.")
    if ctx.running:
        st.caption("A sweep is running for this store; training more is possible once it ends.")
    if clicked:
        if training.start_training(ctx, models=models, tasks=[task], settings=settings, seeds=seeds):
            st.session_state["abl_flash"] = "Training started in the background; progress is in the sidebar."
        else:
            st.session_state["abl_flash"] = "A sweep is already running for this store."
        st.rerun()
    if "abl_flash" in st.session_state:
        st.success(st.session_state.pop("abl_flash"))


@st.fragment
def control_panel() -> None:
    """The permuted-hierarchy control next to the real tree's result, when the store has control runs."""
    from hicd_core.analysis import controls_view

    st.subheader("Permuted-hierarchy control")
    control_names = controls_view.control_evaluations(results)
    what = ("The control trains every hierarchical setting on a tree whose codes were shuffled between its "
            "groups (each chapter, block and category keeps its number of codes; the flat runs are shared). "
            "If a setting gains as much with the permuted tree, its gain is capacity or regularisation, "
            "not clinical structure.")
    if not control_names:
        st.caption(f"No control runs in this store. {what} Train it with `python -m hicd_core sweep "
                   "--preset control` (or `--hierarchy real,permuted`) on this store.")
        return
    evaluation = st.selectbox("Task", control_names, key="ctl_task")
    comparison = cache.comparisons(ctx.root_key, ctx.version)
    summary = controls_view.control_summary(report.across_seeds(comparison), evaluation)
    direct = controls_view.real_vs_permuted(results, evaluation,
                                            lambda run_id: cache.predictions(ctx.root_key, run_id))
    st.markdown("**AUROC gain over flat: real tree vs permuted-hierarchy control** (mean over seeds, 95% "
                "interval, Holm-corrected p)")
    st.dataframe(summary, width="stretch", hide_index=True)
    st.markdown("**Real tree minus permuted-hierarchy control** (AUROC, same test patients)")
    st.dataframe(direct, width="stretch", hide_index=True)
    seeds = sorted(set(direct["n_seeds"])) if not direct.empty else []
    st.caption(f"{what} The second table tests the real tree against the permuted one directly: "
               f"{direct['method'].iloc[0] if not direct.empty else ''}, Holm across the settings; it rests "
               f"on {', '.join(map(str, seeds)) or 'no'} seed(s) per setting.")
    safe = "".join(ch if ch.isalnum() else "_" for ch in evaluation)
    widgets.downloads("ctl_table", direct, name=f"permuted_control_{safe}")


if not names:
    st.info("No finished runs in this store yet, so there is nothing to plot. Runs appear here as they "
            "finish.")
else:
    results_panel()
    control_panel()
training_panel()
