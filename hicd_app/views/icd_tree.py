"""ICD-10-CM tree page: the hierarchy sized by a cohort's code frequencies and coloured by frequency,
outcome rate or attribution, with search, a node detail panel, and HICD-Graph's co-occurrence +
hierarchy neighbourhood around a code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from hicd_app import cache, widgets
from hicd_app.context import context
from hicd_core.analysis import charts, tree_view
from hicd_core.cohort import Cohort
from hicd_core.hierarchy import SETTINGS, Setting, code_set_release, node_path
from hicd_core.runtime import safe_csv

NO_COHORT = "no cohort (billable codes)"
ATTRIBUTION_STEPS = 16  # IG steps for the tree colour: a coarse mean over many samples


def attribution_values(cohort: Cohort) -> tuple[pd.Series | None, str]:
    """Mean attribution per node of a chosen run, and what determines it (store, run, sample count):
    computed on request (integrated gradients are slow) and cached; None (with the reason on screen)
    when not available."""
    if ctx.store is None or cohort.fingerprint != ctx.info.get("source_fingerprint"):
        st.info("Mean attributions are not available for this cohort: they need the source cohort the "
                "store's runs were trained on (data source 'Cohorts of the run store'). Colouring by "
                "frequency instead.")
        return None, ""
    results = cache.results(ctx.root_key, ctx.version)
    runs = results[(results["kind"] == "task") & results["task"].isin(list(cohort.tasks))] \
        if not results.empty else results
    if runs.empty:
        st.info("Mean attributions are not available yet: no finished run of this cohort's tasks.")
        return None, ""
    labels = {row.run_id: f"{charts.model_name(row.model)} · {Setting(row.setting).label} · {row.task} · "
                          f"seed {row.seed}" for row in runs.itertuples()}
    columns = st.columns([3, 1, 1])
    run_id = columns[0].selectbox("Attributions of run", list(labels), format_func=labels.get,
                                  key="tree_attr_run")
    n = columns[1].select_slider("Test samples", [10, 25, 50, 100, 200], value=25, key="tree_attr_n")
    done = st.session_state.setdefault("tree_attr_done", set())
    key = (ctx.root_key, run_id, cohort.fingerprint, n)
    if key not in done:
        if not columns[2].button("Compute", key="tree_attr_go", type="primary"):
            st.info(f"Integrated gradients over {n} test samples take a while on a CPU; press Compute. "
                    "Colouring by frequency until then.")
            return None, ""
        done.add(key)
    task = str(runs.set_index("run_id").loc[run_id, "task"])
    try:
        table = cache.mean_attributions(ctx.root_key, run_id, cohort.fingerprint, task, n,
                                            ATTRIBUTION_STEPS, cohort)
    except Exception as exc:  # an optional colour must never break the tree
        done.discard(key)
        st.warning(f"Attributions could not be computed ({type(exc).__name__}: {exc}); colouring by "
                   "frequency instead.")
        return None, ""
    if table.empty:
        st.info("No attribution values came back; colouring by frequency instead.")
        return None, ""
    return table.set_index("id")["mean_attribution"], f"{ctx.root_key}|{run_id}|{n}"


ctx = context()
release = code_set_release()
st.title("ICD-10-CM tree")
st.caption(f"Source: the official tabular list, {release['fiscal_year']} ({release['release']}), "
           f"bundled with {release['package']} and read offline.")
widgets.banner(ctx, results=False)

cohorts = ctx.data.cohorts
controls = st.columns([1, 1, 1, 1])
site = controls[0].selectbox("Size by the codes of", [*cohorts, NO_COHORT], key="tree_site")
cohort = cohorts.get(site)
colour_options = (["frequency", "outcome rate", "mean attribution"] if cohort is not None
                  else ["billable codes"])
colour = controls[1].selectbox("Colour by", colour_options, key="tree_colour")
task = None
if colour == "outcome rate" and cohort is not None:
    tasks = sorted(cohort.tasks, key=lambda name: (name != "readmission_30d", name))  # the paper's main task
    task = controls[2].selectbox("Outcome of task", tasks, key="tree_task")
kind = controls[3].radio("Chart", ["sunburst", "icicle"], horizontal=True, key="tree_kind")

search_columns = st.columns([3, 1])
query = search_columns[0].text_input("Search by code or words in the title", key="tree_search",
                                     placeholder="e.g. I21.4, S72, heart failure")
depth = search_columns[1].slider("Depth shown", 2, 4, 3, key="tree_depth")

# ------------------------------------------------------------------------------- search and detail
focus = None
selected = None
if query:
    hits = cache.search(query)
    if hits.empty:
        st.info(f"No ICD-10-CM code or title matches {query!r}.")
    else:
        labels = [f"{row.code} — {row.title[:80]} ({row.level})" for row in hits.itertuples()]
        choice = st.selectbox(f"{len(hits)} match(es); pick one to focus the chart", labels, key="tree_hit")
        selected = hits.iloc[labels.index(choice)]
        path = node_path(selected["id"])
        st.markdown(" → ".join(f"**{node['code']}** {node['title']}" for node in path))
        focus = path[0].name if len(path) == 1 else path[min(1, len(path) - 1)].name

# ------------------------------------------------------------------------------------- colours
counts = cache.counts_of(cohort.fingerprint, cohort) if cohort is not None else None
values = None
values_key = ""  # with the fingerprint and colour, what the colour values are computed from
rates = None
colour_label = "billable codes" if cohort is None else "frequency"
if colour == "outcome rate" and cohort is not None and task is not None:
    rates = cache.outcome_rates_of(cohort.fingerprint, task, cohort).set_index("id")
    values = rates["rate"]
    colour_label = f"{task} rate"
elif colour == "mean attribution" and cohort is not None:
    values, values_key = attribution_values(cohort)
    if values is not None:
        colour_label = "mean attribution"

if selected is not None and cohort is not None:
    stats = tree_view.node_statistics(cohort, str(selected["id"]))
    detail = st.columns(4)
    detail[0].metric("Occurrences in cohort", f"{stats['occurrences']:,}")
    detail[1].metric("Patients", f"{stats['patients']:,}" if stats["patients"] >= tree_view.MIN_CELL or
                     stats["patients"] == 0 else f"< {tree_view.MIN_CELL}")
    detail[2].metric("Visits", f"{stats['visits']:,}")
    if rates is not None and str(selected["id"]) in rates.index:
        rate = rates.loc[str(selected["id"]), "rate"]
        detail[3].metric(f"{task} rate", "too few samples" if not np.isfinite(rate) else f"{rate:.1%}")
    st.caption(f"{selected['code']}: {selected['title']} ({selected['level']}); counts in {cohort.label}.")

key = f"{cohort.fingerprint if cohort is not None else 'none'}|{colour}|{task}|{values_key}"
table = cache.tree_table(focus, focus is not None, key, counts, values)
if values is not None:  # nodes without a value: the overall rate, or no attribution
    fill = float(cohort.tasks[task]["label"].mean()) if colour == "outcome rate" else 0.0
    table = table.assign(color=table["color"].astype(float).fillna(fill))
if table.empty:
    st.info("No code of the cohort falls under this node.")
else:
    figure = tree_view.tree_figure(table, kind=kind, color_label=colour_label, max_depth=depth)
    st.plotly_chart(figure, key="tree_chart", width="stretch")
    size_text = ("the number of diagnosis occurrences in the cohort below the node" if cohort is not None
                 else "the number of billable codes below the node")
    colour_text = {"frequency": "log(1 + occurrences)",
                   "outcome rate": (f"the share of positive {task} samples among samples whose history "
                                    "holds a code under the node (nodes with fewer than "
                                    f"{tree_view.MIN_CELL} samples are drawn at the overall rate)"),
                   "mean attribution": ("the mean integrated-gradients attribution of the code occurrences "
                                        "below the node, over the chosen run's test samples (0 where none)"),
                   "billable codes": "log(1 + billable codes)"}.get(colour, colour)
    st.caption("How to read it: the centre is the whole classification (or the block you searched for); "
               f"rings go chapter → block → 3-character category → code. Segment size is {size_text}; "
               f"colour is {colour_text}. Click a segment to zoom in, the centre to zoom out.")
    widgets.downloads("tree", table, figure, name="icd10cm_tree")


# ------------------------------------------------------------------------------- graph neighbourhood
@st.fragment
def graph_panel() -> None:
    st.header("HICD-Graph: co-occurrence and hierarchy around a code", divider="gray")
    if ctx.store is None:
        st.info("Open a run store with HICD-Graph runs to see its graph.")
        return
    results = cache.results(ctx.root_key, ctx.version)
    graph_runs = results[(results["model"] == "graph") & (results["kind"] == "task")] if not results.empty \
        else results
    if graph_runs.empty:
        st.info("No finished HICD-Graph run in this store yet; the graph appears when one finishes.")
        return
    run_of = dict(zip(graph_runs["setting"], graph_runs["run_id"], strict=False))
    settings = [s for s in SETTINGS if s in run_of]
    picked = selected is not None and selected["level"] in ("category", "code")
    default_code = str(selected["code"]) if picked else "I21"
    columns = st.columns([1, 1, 1, 1])
    setting = columns[0].selectbox("Setting", settings, index=len(settings) - 1,
                                   format_func=lambda s: Setting(s).label, key="tree_graph_setting")
    code = columns[1].text_input("Code", default_code, key="tree_graph_code").strip()
    hops = columns[2].slider("Hops", 1, 2, 1, key="tree_graph_hops")
    max_nodes = columns[3].slider("Max nodes", 20, 200, 60, step=10, key="tree_graph_nodes")
    try:
        page, nodes, edges = cache.network(ctx.root_key, run_of[setting], code, hops, max_nodes)
    except KeyError as exc:
        st.info(f"{exc.args[0] if exc.args else exc} Try a category such as I21 or E11.")
        return
    except (OSError, ValueError) as exc:
        st.warning(f"The graph of this run cannot be read ({type(exc).__name__}: {exc}).")
        return
    st.iframe(page, height=620)
    legend = " · ".join(f"{style['label']} ({'dashed' if style['dashes'] else 'solid'} {style['color']})"
                        for style in charts.EDGE_STYLES.values())
    st.caption(f"How to read it: {len(nodes)} nodes around {code} in the graph of setting "
               f"{Setting(setting).label} (built from the training admissions). Edges: {legend}. Grey solid "
               "edges join codes that co-occur in admissions more than chance (PMI); dashed edges join a "
               "code to its enabled ancestors. The flat setting has no ancestor nodes. Hover for titles and "
               "weights.")
    node_table = nodes.drop(columns=[c for c in ("node_id",) if c in nodes])
    first, second, third = st.columns([1, 1, 4])
    first.download_button("Nodes CSV", data=lambda: safe_csv(node_table, index=False).encode(),
                          file_name=f"graph_{setting}_{code}_nodes.csv", key="tree_graph_nodes_csv",
                          on_click="ignore", icon=":material/download:")
    second.download_button("HTML", data=lambda: page.encode(), file_name=f"graph_{setting}_{code}.html",
                           mime="text/html", key="tree_graph_html", on_click="ignore",
                           icon=":material/download:")
    third.download_button("Edges CSV", data=lambda: safe_csv(edges, index=False).encode(),
                          file_name=f"graph_{setting}_{code}_edges.csv", key="tree_graph_edges_csv",
                          on_click="ignore", icon=":material/download:")


graph_panel()
