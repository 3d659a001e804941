"""HICD Explorer: ``streamlit run app.py``.

The entry point only builds the navigation and the shared sidebar (data source, run store,
background training); every page lives in ``pages/`` and is a thin view over ``hicd_core``.
The sidebar's selection is computed once per run and handed to the page (``app_state.context()``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from hicd_core.analysis import app_state

st.set_page_config(page_title="HICD Explorer", page_icon=":deciduous_tree:", layout="wide")

PAGES = {
    "Data": [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("pages/icd_tree.py", title="ICD-10-CM tree", icon=":material/account_tree:"),
    ],
    "Models": [
        st.Page("pages/level_ablation.py", title="Level ablation", icon=":material/stacked_line_chart:"),
        st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
        st.Page("pages/transfer.py", title="Transfer", icon=":material/swap_horiz:"),
    ],
}
# The Patient page is written separately; it is listed as soon as its file exists.
if (Path(__file__).resolve().parent / "pages" / "patient.py").is_file():
    PAGES["Patients"] = [st.Page("pages/patient.py", title="Patient", icon=":material/person:")]

navigation = st.navigation(PAGES)
app_state.entry_sidebar()
navigation.run()
