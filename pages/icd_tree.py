"""ICD-10-CM tree page: the hierarchy as a sunburst or icicle, with search and a node detail panel."""

from __future__ import annotations

import streamlit as st

from hicd_core.analysis import tree_view
from hicd_core.hierarchy import code_set_release, node_path, search_nodes


@st.cache_data(show_spinner="Building the ICD-10-CM tree ...")
def cached_table(focus: str | None, include_codes: bool):
    return tree_view.tree_table(focus=focus, include_codes=include_codes)


@st.cache_data
def cached_search(query: str):
    return search_nodes(query, limit=50)


release = code_set_release()
st.title("ICD-10-CM tree")
st.caption(f"Source: the official tabular list, {release['fiscal_year']} ({release['release']}), "
           f"bundled with {release['package']} and read offline.")

controls = st.columns([2, 1, 1])
query = controls[0].text_input("Search by code or words in the title", key="tree_search",
                               placeholder="e.g. I21.4, S72, heart failure")
kind = controls[1].radio("Chart", ["sunburst", "icicle"], horizontal=True, key="tree_kind")
depth = controls[2].slider("Depth shown", 2, 4, 3, key="tree_depth")

focus = None
if query:
    hits = cached_search(query)
    if hits.empty:
        st.info(f"No ICD-10-CM code or title matches {query!r}.")
    else:
        labels = [f"{row.code} — {row.title[:80]} ({row.level})" for row in hits.itertuples()]
        choice = st.selectbox(f"{len(hits)} match(es); pick one to focus the chart", labels, key="tree_hit")
        selected = hits.iloc[labels.index(choice)]
        path = node_path(selected["id"])
        st.markdown(" → ".join(f"**{node['code']}** {node['title']}" for node in path))
        focus = path[0].name if len(path) == 1 else path[min(1, len(path) - 1)].name

table = cached_table(focus, include_codes=focus is not None)
figure = tree_view.tree_figure(table, kind=kind, color_label="billable codes", max_depth=depth)
st.plotly_chart(figure, key="tree_chart", width="stretch")
st.caption("How to read it: the centre is the whole classification (or the block you searched for); "
           "rings go chapter → block → 3-character category → code. Segment size is the number of "
           "billable codes below the node. Click a segment to zoom in, the centre to zoom out.")
st.download_button("Download the tree table (CSV)", table.to_csv(index=False).encode(),
                   file_name="icd10cm_tree.csv", mime="text/csv", key="tree_csv")
