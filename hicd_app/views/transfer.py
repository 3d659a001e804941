"""Transfer: a frozen source-site encoder probed on the target site (the paper's MIMIC-IV -> eICU
protocol), per hierarchy setting and model, with intervals, and the code coverage behind it."""

from __future__ import annotations

import streamlit as st

from hicd_app import cache, widgets
from hicd_app.context import store_cohorts
from hicd_core.analysis import charts, results_view
from hicd_core.experiments import report
from hicd_core.hierarchy import Setting

ctx, results = widgets.results_page("Transfer")
transfer_runs = results[results["kind"] == "transfer"] if not results.empty else results
names = results_view.evaluations(transfer_runs) if not transfer_runs.empty else []


@st.fragment
def probe_panel() -> None:
    controls = st.columns([3, 2, 1])
    evaluation, metric, curve, paper = widgets.curve_controls(
        ctx, names, controls, key="tr", task_label="Source task -> target task",
        overlay_help="The paper's Table 3 (eICU).")
    overlay = paper is not None
    label = charts.METRIC_LABELS[metric]
    st.subheader(f"Probe {label} on the target site, per setting")
    figure = cache.curve_figure(ctx.root_key, ctx.version, evaluation, metric, overlay, "transfer")
    st.plotly_chart(figure, key="tr_bars", width="stretch")
    st.caption("How to read it: the encoder trained on the source site is frozen; a logistic-regression "
               "probe is fitted on the target site's training patients and tested on its test patients. "
               f"Bars are the test {label} with 95% intervals ({', '.join(sorted(set(curve['interval'])))}); "
               f"the y axis does not start at 0. {charts.LEVEL_ORDER_CAPTION}"
               + (f" Hatched bars: {charts.PAPER_LABEL}, the published eICU numbers (real data)." if overlay
                  else ""))
    widgets.downloads("tr_bars", curve, figure, name=f"transfer_{metric}")
    if ctx.store is not None and transfer_runs["model"].astype(str).str.startswith("counts-").any():
        runs, _ = cache.finished_runs(ctx.root_key, ctx.version)  # verified once per store version
        direct = results_view.counts_transfer_table(runs, evaluation.split(" -> ")[0])
        with st.expander("Count baselines: the probe (plotted) and the source model as is"):
            st.caption("For counts-LR / counts-GBM the bars are the same probe as for the deep models, on "
                       "the source's count features: the source vocabulary and roll-ups, so target codes the "
                       "source never saw count through their chapter / block / category. Beside it, the "
                       "source-trained model applied to the target unchanged (no target training; its source "
                       "task differs, so only its ranking is meaningful).")
            st.dataframe(direct, width="stretch", hide_index=True)
    comparison = cache.comparisons(ctx.root_key, ctx.version)
    widgets.show_problem(comparison)
    cells = cache.delta_cells(ctx.root_key, ctx.version, evaluation, metric, True)
    if not cells.empty:
        table = cells[["row", "setting", "delta", "ci_low", "ci_high", "p_holm", "p_raw", "n_seeds",
                       "method", "note"]].rename(columns={
            "p_holm": "Holm p", "p_raw": "raw p", "n_seeds": "seeds", "ci_low": "95% low",
            "ci_high": "95% high"})
        table["setting"] = table["setting"].map(lambda s: Setting(s).label)
        st.markdown(f"**Difference to the flat encoder ({label}), across training seeds**")
        st.dataframe(table, width="stretch", hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%+.4f")
                                    for c in ("delta", "95% low", "95% high")})
        st.caption(report.seed_note(int(cells["n_seeds"].max())) + "; Holm across the "
                   "settings.")
        widgets.downloads("tr_delta", table, name=f"transfer_delta_{metric}")


if not names:
    st.info("No transfer runs in this store yet. They need a target cohort (eICU layout) and the finished "
            "source-task runs; they are trained after them.")
else:
    probe_panel()

st.header("Code coverage behind the transfer", divider="gray")
data = ctx.data if ctx.data.mode == "store" else store_cohorts(ctx.info)
if data.source is None or data.target is None:
    st.info("The coverage needs both cohorts the store was trained on (source and target); "
            "they are not available here." + (" " + " ".join(data.errors) if data.errors else ""))
else:
    coverage = cache.coverage_of(data.source.fingerprint, data.target.fingerprint, data.source,
                                     data.target)
    figure = charts.coverage_figure(coverage)
    st.plotly_chart(figure, key="tr_coverage", width="stretch")
    st.dataframe(coverage, width="stretch", hide_index=True,
                 column_config={"share": st.column_config.NumberColumn(format="%.3f")})
    st.caption(f"How to read it: every diagnosis occurrence at the target site ({data.target.label}) is "
               f"matched against the codes of the source site's training patients ({data.source.label}): the "
               "same code, only the same 3-character category, only the same chapter, or nothing. Codes "
               "matched only higher up reach a flat model as unknown; a hierarchy setting can still place "
               "them, which is why hierarchy can matter more under transfer.")
    widgets.downloads("tr_coverage", coverage, figure, name="code_coverage")
