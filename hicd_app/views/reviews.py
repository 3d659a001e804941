"""Reviews page: the evidence from review sessions (preference for the hierarchical explanation with
its Wilson interval and sign test, per reviewer too; agreement between reviewers; comments), the
downloads (CSV, a self-contained HTML report, the session export) and the import of a session held
elsewhere. Reviewer text is shown only in tables, which never render HTML or Markdown."""

from __future__ import annotations

import math

import streamlit as st

from hicd_core.analysis import review_sessions as rs
from hicd_core.analysis import review_stats as stats
from hicd_core.analysis.charts import model_name
from hicd_core.analysis.reviews import ReviewError
from hicd_core.hierarchy import Setting

st.title("Reviews")
st.caption("What clinicians said in review sessions: do they find the hierarchy-aware explanation more "
           "clinically plausible than the flat one? Shares count decided answers only (one side preferred); "
           "'both' and 'neither' are shown beside them.")

sessions = rs.list_sessions()
with st.expander("Import a session held elsewhere", expanded=sessions.empty):
    upload = st.file_uploader("Session export (.json)", type=["json"], key="rv_import")
    if upload is not None and st.button("Import", key="rv_import_go"):
        try:
            result = rs.import_session(upload.getvalue())
            st.success(f"Session {result['session_id']}: "
                       + ("new here; " if result["new_session"] else "already here; ")
                       + f"{result['added']} answers added, {result['updated']} updated. Its results code "
                       + f"here: {result['results_code']}.")
            sessions = rs.list_sessions()
        except ReviewError as exc:
            st.error(str(exc))

if sessions.empty:
    st.info("No review sessions yet. Create one on the Review session page.")
    st.stop()

st.dataframe(sessions, hide_index=True, width="stretch", key="rv_sessions")
titles = dict(zip(sessions["session_id"], sessions["title"], strict=True))
sid = st.selectbox("Session", sessions["session_id"].tolist(), key="rv_session",
                   format_func=lambda s: f"{s} · {titles.get(s) or 'untitled'}")
config, items = rs.get_session(sid)
answers = rs.answers(sid)
label = Setting(config["setting"]).label
st.subheader(f"Session {sid}: flat vs {label}")
st.caption(f"{model_name(config['model'])}, task {config['task']}, seed {config['seed']}; "
           f"{len(items)} items chosen {config['selection']}; "
           f"{'blinded' if config['blinded'] else 'unblinded'}; created {config['created_at']}.")
if not rs.results_unlocked(config, st.session_state.get(f"rv_code_{sid}", "")):
    st.text(f"{answers['rater'].nunique()} reviewers have given {len(answers)} answers so far.")
    code = st.text_input("Results code of this blinded session (the facilitator was shown it on creation)",
                         type="password", max_chars=16, key="rv_code")
    if code and rs.results_unlocked(config, code):
        st.session_state[f"rv_code_{sid}"] = code
        st.rerun()
    if code:
        st.error("That is not this session's results code.")
    st.stop()
if answers.empty:
    st.info("No answers yet.")
    st.stop()

summary = stats.preference_summary(answers)
top = summary.iloc[0]
cols = st.columns(4)
cols[0].metric("Answers", int(top["answers"]), help="every saved answer, of every reviewer")
cols[1].metric("Prefer the hierarchical explanation",
               "—" if not top["decided"] else f"{top['share_hierarchy']:.0%}",
               help="share of decided answers (one side preferred)")
cols[2].metric("95% interval (Wilson)",
               "—" if not top["decided"] else f"{top['ci_low']:.0%} to {top['ci_high']:.0%}")
cols[3].metric("Sign test p (two-sided)", "—" if math.isnan(top["p_value"]) else f"{top['p_value']:.3g}")
st.text(stats.share_sentence(top))
st.markdown("#### Per reviewer")
for row in summary.iloc[1:].itertuples(index=False):  # plain text: names never render as HTML/Markdown
    st.text(f"{row.group}: {stats.share_sentence(row._asdict())}")
st.dataframe(summary, hide_index=True, width="stretch", key="rv_summary",
             column_config={c: st.column_config.NumberColumn(format="percent")
                            for c in ("share_hierarchy", "ci_low", "ci_high")})

st.markdown("#### Agreement between reviewers")
agree = stats.agreement(answers)
if math.isnan(agree["kappa"]):
    st.text(f"Not computed: {agree['note']}.")
else:
    cols = st.columns(3)
    cols[0].metric(agree["method"], f"{agree['kappa']:.2f}")
    cols[1].metric("Raw agreement", f"{agree['percent_agreement']:.0%}")
    cols[2].metric("Items answered by all", f"{agree['shared_items']} ({agree['raters']} reviewers)")
    st.caption("Chance-corrected agreement on which explanation is more plausible (hierarchy / flat / both / "
               "neither), over the items every reviewer answered.")

st.markdown("#### Comments")
comments = stats.comments_table(answers)
if comments.empty:
    st.text("No comments.")
else:
    st.dataframe(comments, hide_index=True, width="stretch", key="rv_comments")

cols = st.columns(3)
cols[0].download_button("Answers (CSV)", lambda: stats.answers_csv(answers), file_name=f"review_{sid}.csv",
                        mime="text/csv", key="rv_csv", on_click="ignore", icon=":material/download:")
cols[1].download_button("Session report (HTML)",
                        lambda: stats.report_html(config, answers, setting_label=label),
                        file_name=f"review_{sid}.html", mime="text/html", key="rv_html", on_click="ignore",
                        icon=":material/download:")
cols[2].download_button("Export the session (to pool at another site)", lambda: rs.export_session(sid),
                        file_name=f"review_session_{sid}.json", mime="application/json", key="rv_export",
                        on_click="ignore", icon=":material/download:")
