"""Review session page: a facilitator creates a session; a reviewer joins with its id and a name and
works through the worklist, one item at a time, comparing two explanations of the same prediction.

Blinded sessions label the explanations A and B in the session's stored random order: nothing on
this page then names a setting or says which side is which. Text that reviewers typed is shown
only through elements that never render HTML or Markdown (tables, ``st.text``).
"""

from __future__ import annotations

import contextlib

import plotly.graph_objects as go
import streamlit as st

from hicd_app.context import context, store_cohorts
from hicd_core.analysis import review_items as items_lib
from hicd_core.analysis import review_sessions as rs
from hicd_core.analysis.patient_view import cohort_problem, runs_by_setting, store_problem
from hicd_core.analysis.reviews import MAX_COMMENT, MAX_REVIEWER, VERDICTS, ReviewError
from hicd_core.hierarchy import FLAT, Setting

SESSION, REVIEWER, POSITION = "rs_session", "rs_reviewer", "rs_position"


def _setting_name(setting: str) -> str:
    return f"{Setting(setting).label} ({setting})"


def _side_figure(side: items_lib.Side) -> go.Figure:
    """Signed bars of the ranked list (neutral names: safe for a blinded page)."""
    rows = side.rows.iloc[::-1]
    labels = [f"{c} {t[:40]}".strip() for c, t in zip(rows["code"], rows["title"], strict=True)]
    figure = go.Figure(go.Bar(x=rows["attribution"], y=labels, orientation="h", name=side.letter,
                              marker_color=["#4c78a8" if v >= 0 else "#e45756" for v in rows["attribution"]]))
    figure.update_layout(height=80 + 24 * len(rows), margin={"t": 10, "l": 10, "r": 10, "b": 10},
                         xaxis={"title": "pushes the risk up (right) or down (left)"}, showlegend=False)
    return figure


def create_panel(ctx) -> None:
    """The facilitator's form: which runs, which patients, how many, blinded or not."""
    from hicd_app import cache

    if store_problem(ctx.store_root, ctx.store) or ctx.store is None:
        st.info("Open a run store with finished runs in the sidebar to create a session.")
        return
    runs = cache.task_runs(ctx.root_key, ctx.version)
    if runs.empty:
        st.info("The run store has no finished task runs yet.")
        return
    cols = st.columns(4)
    model = cols[0].selectbox("Model", sorted(runs["model"].unique()), key="rs_new_model")
    tasks = sorted(runs.loc[runs["model"] == model, "task"].unique())
    task = cols[1].selectbox("Task", tasks, key="rs_new_task")
    seeds = sorted(runs.loc[(runs["model"] == model) & (runs["task"] == task), "seed"].unique())
    seed = cols[2].selectbox("Seed", seeds, key="rs_new_seed")
    by_setting = runs_by_setting(runs, model, task, int(seed))
    hierarchical = [s for s in by_setting if s != str(FLAT)]
    if str(FLAT) not in by_setting or not hierarchical:
        st.info("These runs lack the flat model or a hierarchical setting to compare it with.")
        return
    setting = cols[3].selectbox("Compare flat with", hierarchical, index=len(hierarchical) - 1,
                                format_func=_setting_name, key="rs_new_setting")
    cols = st.columns(4)
    method = cols[0].selectbox("Patients", list(items_lib.SELECTIONS), format_func=items_lib.SELECTIONS.get,
                               key="rs_new_method")
    n_items = cols[1].number_input("Items", 1, rs.MAX_ITEMS, 30, key="rs_new_n")
    rng_seed = cols[2].number_input("Random seed", 0, 2**31 - 1, 0, key="rs_new_rng")
    title = cols[3].text_input("Title (optional)", max_chars=rs.MAX_TITLE, key="rs_new_title")
    blinded = st.toggle("Blinded (A/B in a random stored order, no setting names)", True, key="rs_new_blind")
    hide_risk = st.toggle("Also hide the risk numbers", False, key="rs_new_hide", disabled=not blinded)
    if st.button("Create session", key="rs_create", type="primary"):
        try:
            items = items_lib.plan_items(ctx.store, by_setting[str(FLAT)], by_setting[setting], method=method,
                                         n=int(n_items), seed=int(rng_seed))
            config = rs.SessionConfig(
                title=title, model=model, task=task, seed=int(seed), setting=setting, selection=method,
                n_items=len(items), rng_seed=int(rng_seed), blinded=bool(blinded),
                hide_risk=bool(blinded and hide_risk), flat_run=by_setting[str(FLAT)],
                setting_run=by_setting[setting],
                cohort_fingerprint=str(ctx.info.get("source_fingerprint", "")),
                store_root=str(ctx.store_root))
            sid = rs.create_session(config, items)
        except (ReviewError, items_lib.SelectionError, OSError, KeyError) as exc:
            st.error(f"The session could not be created: {exc}")
            return
        st.success(f"Session {sid} created with {len(items)} items. Give reviewers the id {sid}; they join "
                   "on this page.")
        if config.blinded:
            code = rs.get_session(sid)[0]["results_code"]
            st.info(f"Results code: {code}. Keep it to yourself: the Reviews page asks for it before it "
                    "shows this blinded session's answers (seeing them would unblind a reviewer still at "
                    "work).")
        st.session_state["rs_created"] = sid


def join_panel() -> None:
    """Session id and name; remembered in the URL so that a reopened browser resumes."""
    params = st.query_params
    if SESSION not in st.session_state and params.get("session") and params.get("reviewer"):
        with contextlib.suppress(ReviewError):  # a reopened link: resume where this reviewer stopped
            _join(params["session"], params["reviewer"])
    if "rs_created" in st.session_state:  # a facilitator who just created a session joins it in one click
        st.session_state["rs_join_id"] = st.session_state.pop("rs_created")
    st.session_state.setdefault("rs_join_id", params.get("session", ""))
    st.session_state.setdefault("rs_join_name", params.get("reviewer", ""))
    cols = st.columns([1, 2, 1])
    sid = cols[0].text_input("Session id", max_chars=12, key="rs_join_id")
    name = cols[1].text_input("Your name", max_chars=MAX_REVIEWER, key="rs_join_name")
    cols[2].write("")
    if cols[2].button("Join", key="rs_join", type="primary"):
        try:
            _join(sid, name)
        except ReviewError as exc:
            st.error(str(exc))


def _join(session_id: str, name: str) -> None:
    reviewer = rs.clean_reviewer(name)
    config, items = rs.get_session(session_id)
    done = rs.progress(config["session_id"], reviewer)
    todo = [p for p in items["position"].astype(int) if p not in done]
    st.session_state[SESSION], st.session_state[REVIEWER] = config["session_id"], reviewer
    st.session_state[POSITION] = todo[0] if todo else 0
    st.query_params.update({"session": config["session_id"], "reviewer": reviewer})


def _go(position: int) -> None:
    st.session_state[POSITION] = position


def worklist(ctx) -> None:
    sid, reviewer = st.session_state[SESSION], st.session_state[REVIEWER]
    config, items = rs.get_session(sid)
    done = rs.progress(sid, reviewer)
    n = len(items)
    position = min(max(int(st.session_state.get(POSITION, 0)), 0), n - 1)
    blinded, show_risk = bool(config["blinded"]), not bool(config.get("hide_risk"))
    st.subheader(f"Session {sid} · item {position + 1} of {n}")
    st.text(f"Reviewing as {reviewer}. {len(done)} of {n} answered.")
    st.progress(len(done) / n)
    nav = st.columns([1, 1, 3, 1])
    nav[0].button("Previous", key="rs_prev", disabled=position == 0, on_click=_go, args=(position - 1,))
    nav[1].button("Next", key="rs_next", disabled=position >= n - 1, on_click=_go, args=(position + 1,))
    marks = {p: f"{p + 1} {'✓ answered' if p in done else '· to do'}" for p in range(n)}
    nav[2].selectbox("Go to item", list(range(n)), index=position, format_func=marks.get,
                     key=f"rs_goto_{position}",
                     on_change=lambda: _go(st.session_state[f"rs_goto_{position}"]))
    if nav[3].button("Leave session", key="rs_leave"):
        for key in (SESSION, REVIEWER, POSITION):
            st.session_state.pop(key, None)
        st.query_params.clear()
        st.rerun()

    if ctx.store is None:
        st.info("Open the run store of this session in the sidebar to see its explanations.")
        return
    data = ctx.data if ctx.data.mode == "store" else store_cohorts(ctx.info)
    problem = cohort_problem(ctx.store_root, ctx.info, data.source, data.errors)
    fingerprint = config.get("cohort_fingerprint")
    if not problem and fingerprint and data.source is not None and data.source.fingerprint != fingerprint:
        problem = "This session was made on another cohort than the run store open in the sidebar."
    if problem or data.source is None:
        st.info(f"{problem} Open the run store this session was made on in the sidebar.")
        return
    if data.source.synthetic:  # not widgets.banner: its note on the hierarchy signal has no place here
        st.warning("SYNTHETIC data: generated patients, not real people.", icon=":material/science:")
    item = items.iloc[position]
    try:
        with st.spinner("Preparing the two explanations ..."):
            view = items_lib.explain_item(ctx.store, config, item, data.source)
    except (OSError, KeyError, ValueError) as exc:
        st.error(f"The explanations of this item could not be computed: {exc}")
        return

    st.markdown("#### Visit timeline")
    st.dataframe(view.timeline, hide_index=True, width="stretch", key=f"rs_timeline_{position}")
    if not blinded:
        st.caption(f"Patient {view.patient_index} · sample {view.sample_id} · outcome {view.label} · "
                   f"stratum {items_lib.STRATUM_WORDS.get(str(item['stratum']), item['stratum'])}")
    columns = st.columns(2)
    for column, side in zip(columns, view.sides, strict=True):
        with column:
            heading = f"Explanation {side.letter}" + ("" if blinded else f": {_setting_name(side.setting)}")
            st.markdown(f"#### {heading}")
            if show_risk:
                st.metric(f"Risk {side.letter}", f"{side.risk:.3f}",
                          help="calibrated risk" if side.calibrated else "uncalibrated model output")
            st.dataframe(side.rows[["rank", "effect", "code", "title", "acts_through", "share"]],
                         hide_index=True, width="stretch", key=f"rs_rows_{position}_{side.letter}",
                         column_config={"share": st.column_config.NumberColumn(format="percent")})
            st.plotly_chart(_side_figure(side), key=f"rs_fig_{position}_{side.letter}", width="stretch")
            if not blinded:
                with st.expander("Attribution charts"):
                    _detail_charts(side, position)
    answer_form(config, reviewer, position, n, blinded)
    with st.expander("Facilitator: prepare every item now"):
        st.caption("Computes both explanations of every item once (kept by this server), so that each "
                   "reviewer opens the next item in well under a second.")
        if st.button("Prepare all items", key="rs_prepare"):
            bar = st.progress(0.0)
            for index, (_, row) in enumerate(items.iterrows()):
                items_lib.explain_item(ctx.store, config, row, data.source)
                bar.progress((index + 1) / n)
            st.success(f"All {n} items prepared.")


def _detail_charts(side: items_lib.Side, position: int) -> None:
    from hicd_core.analysis import patient_view as view

    attr = side.attribution
    if attr.model == "bert":
        figure = view.component_bars(attr)
    elif "node" in attr.table:
        figure = view.graph_node_figure(attr)
    else:
        return
    st.plotly_chart(figure, key=f"rs_detail_{position}_{side.letter}", width="stretch")


def answer_form(config: dict, reviewer: str, position: int, n: int, blinded: bool) -> None:
    sid = config["session_id"]
    mine = rs.answers(sid, reviewer=reviewer)
    saved = mine[mine["position"] == position]
    previous = saved.iloc[0] if len(saved) else None
    with st.form(key=f"rs_form_{position}"):
        st.markdown("#### Your answer")
        choices = list(rs.PREFERENCES)
        current = previous["preference"] if previous is not None else None
        preference = st.radio("Which explanation is more clinically plausible?", choices,
                              index=choices.index(current) if current in choices else None,
                              format_func=rs.PREFERENCE_WORDS.get, horizontal=True, key=f"rs_pref_{position}")
        verdicts: dict[str, str | None] = {"A": None, "B": None}
        if not blinded:
            cols = st.columns(2)
            for col, letter in zip(cols, ("A", "B"), strict=True):
                old = previous[f"verdict_{letter.lower()}"] if previous is not None else None
                verdicts[letter] = col.radio(f"Explanation {letter} on its own", VERDICTS, horizontal=True,
                                             index=VERDICTS.index(old) if old in VERDICTS else None,
                                             key=f"rs_verdict_{letter}_{position}")
        comment = st.text_area(f"Comment (optional, at most {MAX_COMMENT:,} characters)",
                               value=str(previous["comment"]) if previous is not None else "",
                               max_chars=MAX_COMMENT, key=f"rs_comment_{position}")
        cols = st.columns(2)
        save = cols[0].form_submit_button("Save", key=f"rs_save_{position}")
        save_next = cols[1].form_submit_button("Save and next", type="primary",
                                               key=f"rs_save_next_{position}")
    if save or save_next:
        try:
            rs.save_answer(sid, reviewer, position, preference=preference, verdict_a=verdicts["A"],
                           verdict_b=verdicts["B"], comment=comment)
        except ReviewError as exc:
            st.error(str(exc))
            return
        if save_next and position < n - 1:
            _go(position + 1)
            st.rerun()
        st.success(f"Answer to item {position + 1} saved.")


ctx = context()
st.title("Review session")
st.caption("Clinicians compare two explanations of the same prediction and say which is more clinically "
           "plausible. Answers are saved as they are given; close the browser at any time and rejoin "
           "with the same id and name to resume.")
if SESSION in st.session_state:
    try:
        worklist(ctx)
    except ReviewError as exc:
        st.error(str(exc))
else:
    join_panel()
    if SESSION in st.session_state:
        st.rerun()
    with st.expander("Create a session (facilitator)", expanded=False):
        create_panel(ctx)
