"""HICD Explorer: ``streamlit run app.py``.

The entry point only builds the navigation and the shared sidebar (data source, run store,
background training); every page lives in ``pages/`` and is a thin view over ``hicd_core``.
The sidebar's selection is computed once per run and handed to the page (``app_state.context()``).
"""

from __future__ import annotations

import streamlit as st

from hicd_core.analysis import app_state

st.set_page_config(**app_state.PAGE_CONFIG)

navigation = st.navigation(app_state.navigation_pages())
app_state.entry_sidebar()
navigation.run()
