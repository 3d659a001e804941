"""Overview: the cohorts per site, the state of the run store, and the headline result per model and task."""

from __future__ import annotations

import streamlit as st

from hicd_app import cache, training, widgets
from hicd_app.context import context
from hicd_core.analysis import charts
from hicd_core.experiments import store_status
from hicd_core.hierarchy import setting_label

ctx = context()
st.title("Overview")
widgets.banner(ctx)

# ----------------------------------------------------------------------------------------- cohorts
st.header("Cohorts", divider="gray")
summaries = {site: cache.summary_of(cohort.fingerprint, cohort)
             for site, cohort in ctx.data.cohorts.items()}
if not summaries:
    st.info("No cohort is loaded: pick a data source in the sidebar (the synthetic default always works)."
            + (" Problems: " + " ".join(ctx.data.errors) if ctx.data.errors else ""))
else:
    columns = st.columns(len(summaries))
    for column, summary in zip(columns, summaries.values(), strict=True):
        with column:
            dataset = charts.dataset_text(summary)
            st.markdown(f"**{summary['source']}**" + (f" ({dataset})" if dataset else "")
                        + (" — SYNTHETIC" if summary["synthetic"] else ""))
            first, second = st.columns(2)
            first.metric("Patients", f"{summary['patients']:,}")
            second.metric("Visits", f"{summary['visits']:,}")
            first.metric("Distinct ICD-10-CM codes", f"{summary['distinct_icd10_codes']:,}")
            coverage = summary["icd9_mapping_coverage"]
            second.metric("ICD-9 rows mapped", "no ICD-9" if coverage != coverage else f"{coverage:.1%}")
    table = charts.cohort_summary_table(summaries)
    st.dataframe(table, width="stretch")
    st.caption("How to read it: one column per site. 'ICD-9 rows mapped' is the share of ICD-9 diagnosis "
               "rows that the bundled GEMs turn into an ICD-10-CM code; unmapped rows keep only the chapter "
               "'UNK'.")
    widgets.downloads("overview_cohorts", table.reset_index(), name="cohort_summary")
    prevalence = charts.task_prevalence_table(summaries)
    st.subheader("Tasks")
    st.dataframe(prevalence, width="stretch", hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in prevalence.columns
                                if "rate" in c})
    st.caption("One sample per anchor visit; its input is that visit and every earlier one. The positive "
               "rate is the prevalence of the outcome (AUPRC of a random model equals it). Splits are by "
               "patient.")
    st.caption("Defaults are the paper's tasks (readmission_30d, emergency_next, icu_readmission). "
               "Limitation: readmission_30d counts a patient who died outside hospital within 30 days "
               "of discharge (or whose record ends) as not readmitted; readmission_30d_excl_deaths "
               "leaves those anchors out (their count is in the cohort problems). "
               "icu_readmission_readmit counts only a next unit stay typed 'readmit', not step-downs.")
    widgets.downloads("overview_tasks", prevalence, name="task_prevalence")
    quality = charts.data_quality_table(summaries)
    st.subheader("Data quality")
    if quality.empty:
        st.caption("No row of the source tables was dropped, distrusted or changed.")
    else:
        st.dataframe(quality, width="stretch", hide_index=True)
        st.caption("Every row a loader left out, distrusted (kept with an unknown value) or noted, by "
                   "reason: rows kept + rows counted = rows read. Nothing is dropped silently.")
        widgets.downloads("overview_quality", quality, name="data_quality")

@st.fragment
def verify_panel() -> None:
    """Check every file of the store against its checksums, on request (hashing takes a moment)."""
    if not st.button("Verify every file of this store", key="overview_verify", icon=":material/verified:"):
        return
    problems = cache.verification(ctx.root_key, ctx.version)
    widgets.show_problem(problems)
    damaged = problems[problems["what"] != "results table"] if not problems.empty else problems
    if damaged.empty and not problems.attrs.get("error"):
        st.success("Every run, model and pretraining file matches the checksum recorded when it was written.")
    elif not damaged.empty:
        st.error(f"{len(damaged)} damaged file(s): they are left out of every result (the table says what "
                 "to do).")
    if not problems.empty:
        st.dataframe(problems, width="stretch", hide_index=True)
        widgets.downloads("overview_verify", problems, name="store_verification")


# ---------------------------------------------------------------------------------------- run store
st.header("Run store", divider="gray")
if widgets.require_store(ctx):
    runs = cache.listing(ctx.root_key, ctx.version, ctx.default_bundle)
    widgets.show_problem(runs)
    counts = store_status.listing_counts(runs)
    first, second, third, fourth = st.columns(4)
    first.metric("Finished runs", counts["finished"])
    second.metric("Failed runs", counts["failed"])
    third.metric("Not trained yet", counts["missing"])
    fourth.metric("Damaged runs", counts["damaged"],
                  help="Runs whose files do not match the checksums recorded when they were written. They "
                       "are left out of every result and comparison; a sweep on this store redoes them.")
    training.training_note(ctx)
    if runs.empty:
        st.info("This store has no runs yet." + (" Training starts in the background on first launch."
                                                   if ctx.default_bundle else ""))
    else:
        view = runs.assign(setting=runs["setting"].map(setting_label) if "setting" in runs else "",
                           error=runs["error"].astype(str).str.split("\n").str[0])
        columns = ["model", "setting", "task", "kind", "target_task", "seed", "status", "error", "run_id"]
        with st.expander(f"All {len(view)} runs (finished, damaged, failed and missing)"):
            st.dataframe(view[[c for c in columns if c in view]], width="stretch", hide_index=True)
            widgets.downloads("overview_runs", view[[c for c in columns if c in view]], name="run_status")
        for row in view[view["status"] == "failed"].head(5).itertuples():
            st.warning(f"Failed: {row.run_id}: {row.error}")
        for row in view[view["status"] == "damaged"].head(5).itertuples():
            st.error(f"Damaged: {row.error}")
    verify_panel()

    # ------------------------------------------------------------------------------------- headline
    st.header("Headline: best setting against the flat model", divider="gray")
    results = cache.results(ctx.root_key, ctx.version)
    widgets.show_problem(results)
    if results.empty:
        st.info("No finished runs yet, so there is no headline. It appears as soon as a model's flat run and "
                "one hierarchy setting have finished.")
    else:
        comparison = cache.comparisons(ctx.root_key, ctx.version)
        widgets.show_problem(comparison)
        headline = cache.headline(ctx.root_key, ctx.version)
        if headline.empty:
            st.info("A headline needs the flat (000) run and at least one other setting of the same model "
                    "and task; not there yet.")
        else:
            columns = st.columns(min(4, len(headline)))
            for index, row in enumerate(headline.itertuples()):
                mark = " *" if row.significant_holm else ""
                columns[index % len(columns)].metric(
                    f"{charts.model_name(row.model)} · {row.evaluation}", f"{row.setting_label}{mark}",
                    delta=f"{row.delta_auroc:+.4f} AUROC vs flat", delta_color="normal",
                    help=f"mean AUROC {row.auroc:.4f} vs flat {row.auroc_flat:.4f}; 95% interval "
                         f"[{row.delta_auroc_ci_low:+.4f}, {row.delta_auroc_ci_high:+.4f}]; "
                         f"p = {row.p_auroc:.3g}, "
                         f"Holm-corrected p = {row.p_auroc_holm:.3g}; {row.seed_note}")
            table = headline[["model", "evaluation", "setting_label", "n_seeds", "auroc", "auroc_flat",
                              "delta_auroc", "delta_auroc_ci_low", "delta_auroc_ci_high", "p_auroc",
                              "p_auroc_holm", "significant_holm", "method_auroc"]].rename(
                columns={"setting_label": "best setting", "n_seeds": "seeds", "auroc_flat": "flat AUROC",
                         "delta_auroc": "Δ AUROC", "delta_auroc_ci_low": "95% low",
                         "delta_auroc_ci_high": "95% high", "p_auroc": "p", "p_auroc_holm": "Holm p",
                         "significant_holm": "Holm p < 0.05", "method_auroc": "test"})
            table["model"] = table["model"].map(charts.model_name)
            st.dataframe(table, width="stretch", hide_index=True,
                         column_config={c: st.column_config.NumberColumn(format="%.4f")
                                        for c in ("auroc", "flat AUROC", "Δ AUROC", "95% low", "95% high")})
            seeds = int(headline["n_seeds"].min())
            st.caption("How to read it: for each model and task, the hierarchy setting with the largest "
                       "test AUROC gain over the same model without hierarchy (flat, 000), as the mean over "
                       "training seeds with its 95% interval. The test treats the seed as the unit "
                       "(Obuchowski-Rockette with Hillis df: seed-to-seed spread plus the shared test "
                       "patients' sampling error), Holm-corrected across the settings; * marks Holm "
                       "p < 0.05. "
                       + (f"It rests on {seeds} seeds." if seeds > 1 else
                          "ONE training seed only: the p-values are that seed's DeLong tests and do not "
                          "measure training-seed noise, which is as large as the effects; train more seeds.")
                       + " The paper itself marks uncorrected per-seed DeLong p < 0.05.")
            widgets.downloads("overview_headline", table, name="headline")
            cells = cache.delta_cells(ctx.root_key, ctx.version, None, "auroc", corrected=True)
            heatmap = cache.delta_heatmap(ctx.root_key, ctx.version, None, "auroc", True, None)
            st.plotly_chart(heatmap, key="overview_heatmap", width="stretch")
            st.caption("How to read it: every model and task (rows) against its flat model, for each "
                       "hierarchy setting (columns): the test AUROC difference (blue = better than flat); "
                       "* marks Holm-corrected DeLong p < 0.05. The Level ablation page has the other "
                       "metrics and the raw p-values.")
            widgets.downloads("overview_heatmap", cells, heatmap, name="delta_auroc_all")
