"""HICD Explorer: ``streamlit run app.py``.

The entry point only builds navigation and the shared sidebar; every page lives in ``pages/`` and
is a thin view over ``hicd_core``.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="HICD Explorer", page_icon=":deciduous_tree:", layout="wide")

PAGES = {
    "Data": [
        st.Page("pages/icd_tree.py", title="ICD-10-CM tree", icon=":material/account_tree:", default=True),
    ],
}

navigation = st.navigation(PAGES)
navigation.run()
