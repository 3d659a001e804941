"""Patient page: one test patient's visits, predicted risk under every hierarchy setting, Captum
attributions over the hierarchical tokens (HICD-BERT) or code/ancestor nodes (HICD-Graph), the counts-lr
baseline's exact per-code shares (beside either), and a clinician review panel. A thin view over
:mod:`hicd_core.analysis`."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from hicd_app import cache, widgets
from hicd_app.context import context, store_cohorts
from hicd_core.analysis import attributions as attr_lib
from hicd_core.analysis import patient_view as view
from hicd_core.analysis import reviews
from hicd_core.analysis.charts import model_name
from hicd_core.checksums import DamagedArtifactError
from hicd_core.hierarchy import Setting
from hicd_core.models.common import ArtifactError

STEP_CHOICES = (16, 32, 64, 128)
#: What reading a damaged or half-written store raises (files, JSON / parquet content, missing keys).
READ_ERRORS = (OSError, ValueError, KeyError)
#: What computing attributions raises for a run or sample that is not there, or for a model whose files
#: do not verify (anything else is a bug and keeps its traceback, e.g. the token-order consistency check).
ATTRIBUTION_ERRORS = (OSError, KeyError, ArtifactError, DamagedArtifactError)


def _message(exc: Exception) -> str:
    """The exception's own words (``str`` of a KeyError adds quotes), else its class name."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text or type(exc).__name__


ctx = context()  # the shared sidebar: run store and cohorts
st.title("Patient explanations")
st.caption("One test patient: the visits the model saw, the predicted risk under every trained hierarchy "
           "setting, and which hierarchical tokens drove it (Captum integrated gradients). De-identified "
           "indices only.")

problem = view.store_problem(ctx.store_root, ctx.store)
if problem or ctx.store is None:
    st.info(problem)
    st.stop()
store = ctx.store
try:
    runs = cache.task_runs(ctx.root_key, ctx.version)
except READ_ERRORS as exc:
    st.error(f"The run store at {ctx.store_root} could not be read: {_message(exc)}")
    st.stop()
if runs.empty:
    st.info(f"The run store at {ctx.store_root} has no finished task runs yet.")
    st.stop()

# The cohort the store's runs were trained on: the sidebar's when it shows the store's cohorts (the
# same cached object), else loaded through the same cache from store.json.
data = ctx.data if ctx.data.mode == "store" else store_cohorts(ctx.info)
problem = view.cohort_problem(ctx.store_root, ctx.info, data.source, data.errors)
if problem or data.source is None:
    st.info(problem)
    st.stop()
cohort = data.source
widgets.banner(replace(ctx, data=data))  # this page's data is the store's cohort, whatever the sidebar
st.caption(f"Cohort: {cohort.label}, {len(cohort.patients):,} patients"
           + (" (generated, not real people: attributions show what the models learned from a simulation)."
              if cohort.synthetic else "."))

controls = st.columns(4)
# counts-gbm has no per-code decomposition (boosted trees are not additive in the codes): not listed.
models = [m for m in sorted(runs["model"].unique()) if m != "counts-gbm"]
model = controls[0].selectbox("Model", models, format_func=model_name, key="pt_model")
tasks = sorted(runs.loc[runs["model"] == model, "task"].unique())
task = controls[1].selectbox("Task", tasks, key="pt_task")
seeds = sorted(runs.loc[(runs["model"] == model) & (runs["task"] == task), "seed"].unique())
seed = controls[2].selectbox("Seed", seeds, key="pt_seed")
by_setting = view.runs_by_setting(runs, model, task, int(seed))
reference = controls[3].selectbox("Filter on the risk of", list(by_setting),
                                  format_func=lambda s: Setting(s).label, key="pt_reference",
                                  help="Whose stored test predictions the risk filter and the list use.")

try:
    candidates = cache.candidates(ctx.root_key, by_setting[reference], cohort.fingerprint, task, cohort)
except READ_ERRORS as exc:
    st.error(f"The stored test predictions of run {by_setting[reference]} could not be read: {_message(exc)}")
    st.stop()
filters = st.columns([1, 2, 1])
label = filters[0].radio("Label", ["all", "1", "0"], horizontal=True, key="pt_label")
risk = filters[1].slider("Stored predicted risk", 0.0, 1.0, (0.0, 1.0), 0.01, key="pt_risk")
patient_text = filters[2].text_input("Patient index (optional)", key="pt_patient_index",
                                     placeholder="e.g. 42")
patient_filter = int(patient_text) if patient_text.strip().isdigit() else None
shown = view.filter_candidates(candidates, label, risk, patient_filter)
if shown.empty:
    st.info("No test patient matches these filters.")
    st.stop()
cap = 1000
options = shown["sample_id"].astype(int).tolist()[:cap]
labels = cache.candidate_labels(ctx.root_key, by_setting[reference], cohort.fingerprint, task, cohort)
sample_id = st.selectbox(f"Test sample ({len(shown):,} match{'es' if len(shown) != 1 else ''}"
                         f"{f'; first {cap} listed' if len(shown) > cap else ''})", options,
                         format_func=labels.__getitem__, key="pt_sample")
n_steps = st.select_slider("Integration steps", STEP_CHOICES, value=32, key="pt_steps",
                           help="More steps make integrated gradients more exact (smaller delta) and slower.")

try:
    with st.spinner("Computing integrated-gradients attributions ..."):
        # attributions.py caches models and attributions in-process: a repeat visit is a cache hit.
        report = attr_lib.explain_patient(store, by_setting, cohort, task, int(sample_id), int(n_steps))
        config = attr_lib.load_model(store, by_setting[reference], family=model).config
except ATTRIBUTION_ERRORS as exc:
    st.error(f"Attributions could not be computed for this sample: {_message(exc)}")
    st.stop()

st.subheader(f"Patient {report.patient_id} · sample {report.sample_id} · label {report.label}")
st.caption(f"{model_name(model)}, task {task}, seed {seed}. History = visits 0 to "
           f"{report.anchor_visit_index} (the anchor); the model reads {view.history_window(model, config)}. "
           f"Attributions computed in {report.seconds:.2f} s{' (from cache)' if report.cached else ''}.")

st.markdown("#### Visit timeline")
st.plotly_chart(view.timeline_figure(report.timeline), key="pt_timeline", width="stretch")
with st.expander("Codes per visit (table)"):
    st.dataframe(report.timeline, hide_index=True, width="stretch")

st.markdown("#### Predicted risk under each hierarchy setting")
risk_cols = st.columns(min(len(report.risks), 8))
for col, row in zip(risk_cols, report.risks.itertuples(), strict=False):
    calibrated = row.prob_calibrated == row.prob_calibrated  # NaN: a run stored before recalibration
    col.metric(row.setting_label, f"{row.prob_calibrated if calibrated else row.prob:.3f}",
               help=("calibrated risk (Platt scaling fitted on the validation split); "
                     if calibrated else "UNCALIBRATED model output (run stored before recalibration); ")
                    + f"setting {row.setting}; uncalibrated model output {row.prob:.3f} against the "
                      f"decision threshold {row.threshold:.3f}: "
                      f"{'above' if row.predicted_positive else 'below'}")
st.caption("Risks are calibrated probabilities (Platt scaling on the validation split): the paper's training "
           "recipe inflates the raw outputs' odds, so only the calibrated values read as a chance. The chart "
           "shows the uncalibrated model output against each run's decision threshold.")
st.plotly_chart(view.risk_figure(report.risks), key="pt_risks", width="stretch")


@st.fragment
def attribution_panel(report) -> None:
    """The attribution views; their widgets rerun only this block."""
    st.markdown("#### Attributions")
    settings = list(report.attributions)
    setting = st.selectbox("Setting", settings, format_func=lambda s: f"{s} · {Setting(s).label}",
                           index=len(settings) - 1, key="pt_attr_setting")
    attr = report.attributions[setting]
    views = cache.attribution_views(report_key, setting, report)
    level, note = view.convergence_note(attr)
    {"ok": st.success, "warn": st.warning, "bad": st.error}[level](f"Convergence check: {note}")
    if attr.model == "counts":
        st.caption(f"Exact shares ({attr.baseline}); in logit units (positive pushes the risk up).")
    else:
        st.caption(f"Baseline: {attr.baseline}. Integrated gradients, {attr.n_steps} steps; attributions are "
                   "in logit units (positive pushes the risk up).")
    if attr.model in attr_lib.TOKEN_MODELS:
        st.plotly_chart(views["heatmap"], key="pt_heat", width="stretch")
        st.plotly_chart(views["bars"], key="pt_bars", width="stretch")
        st.dataframe(views["totals"], width="stretch")
        with st.expander("Per-position table"):
            st.dataframe(attr.table, hide_index=True, width="stretch")
        value = st.radio("Tree roll-up of", ["diagnosis", "total"], horizontal=True, key="pt_roll_value",
                         help="diagnosis = code + enabled hierarchy components; total adds age, position, "
                              "segment")
    else:
        st.plotly_chart(views["nodes"], key="pt_nodes", width="stretch")
        st.dataframe(views["totals"], width="stretch")
        with st.expander("Per-node table"):
            st.dataframe(attr.table, hide_index=True, width="stretch")
        value = "diagnosis"
    tree, sunburst = cache.rollup_views(report_key, setting, value, report)
    st.markdown("##### Rolled up the ICD-10-CM tree")
    st.plotly_chart(sunburst, key="pt_sunburst", width="stretch")
    st.caption("Segment size = |attribution| below the node; colour = signed sum (red lowers, blue raises "
               "the risk on this scale). Code -> category -> block -> chapter.")
    exact_run = counts_runs.get(setting)
    if attr.model != "counts" and exact_run:
        st.markdown("##### Beside the exact explanation of the counts-lr baseline")
        try:
            exact, _ = attr_lib.explain_sample(store, exact_run, cohort, report.task, report.sample_id)
        except ATTRIBUTION_ERRORS as exc:
            st.info(f"The counts-lr run {exact_run} could not be explained: {_message(exc)}")
        else:
            side = cache.exact_comparison(report_key, setting, value, exact_run, tree, exact)
            st.caption(f"Same sample, same setting ({Setting(setting).label}): integrated gradients of "
                       f"{model_name(report.model)} (approximate) next to counts-lr's exact shares "
                       f"(risk {exact.prob:.3f} uncalibrated), summed per chapter, block and category.")
            st.dataframe(side, hide_index=True, width="stretch", key="pt_exact_compare")
    st.markdown("##### Totals per setting")
    st.plotly_chart(views["totals_figure"], key="pt_totals", width="stretch")
    st.download_button("Download the patient report (ZIP: CSVs, JSON, HTML)",
                       lambda: attr_lib.report_zip(report),
                       file_name=f"patient_{report.patient_id}_sample_{report.sample_id}_{report.model}.zip",
                       mime="application/zip", key="pt_download", on_click="ignore")


counts_runs = view.runs_by_setting(runs, "counts-lr", task, int(seed)) if model != "counts-lr" else {}
#: What the attribution report is of (its figures are cached per process under this key).
report_key = (ctx.root_key, ctx.version, tuple(sorted(by_setting.items())), cohort.fingerprint, task,
              int(sample_id), int(n_steps))
attribution_panel(report)


@st.fragment
def review_panel(report) -> None:
    """Reviewer name, verdict and comment; saved to the local SQLite review store."""
    st.markdown("#### Clinician review")
    cols = st.columns([1, 2])
    settings = list(report.attributions)
    setting = cols[0].selectbox("Setting reviewed", settings, index=len(settings) - 1, key="review_setting",
                                format_func=lambda s: f"{s} · {Setting(s).label}")
    run_id = report.attributions[setting].run_id
    name = cols[0].text_input("Reviewer", key="review_name")
    verdict = cols[0].radio("Verdict", reviews.VERDICTS, horizontal=True, key="review_verdict")
    comment = cols[1].text_area("Comment", key="review_comment", height=110)
    if st.button("Save review", key="review_save"):
        try:
            reviews.add_review(name, run_id, report.model, setting, report.task, report.patient_id, verdict,
                               comment, sample_id=report.sample_id)
            st.success("Review saved.")
        except reviews.ReviewError as exc:
            st.error(str(exc))
    # Patient indices restart in every cohort: only reviews under this report's runs (their ids carry
    # the cohort fingerprint) are of this patient.
    earlier = reviews.list_reviews(report.patient_id,
                                   run_ids=[a.run_id for a in report.attributions.values()])
    if earlier.empty:
        st.caption("No reviews of this patient under these runs yet.")
    else:
        st.markdown(f"Earlier reviews of patient {report.patient_id} under these runs")
        st.dataframe(earlier, hide_index=True, width="stretch", key="review_table")
    st.download_button("Export all reviews (CSV)", reviews.export_csv, file_name="reviews.csv",
                       mime="text/csv", key="review_export", on_click="ignore")


review_panel(report)
