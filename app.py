"""HICD Explorer: ``streamlit run app.py``.

The entry point builds the navigation (Streamlit's ``st.navigation`` pattern; the pages are the
scripts in ``hicd_app/views/``), shows a server's first start step by step, and draws the shared
sidebar (run store, data source, background training) before running the chosen page.
"""

from __future__ import annotations

import streamlit as st

from hicd_app import startup
from hicd_app.navigation import PAGE_CONFIG, navigation_pages

st.set_page_config(**PAGE_CONFIG)
page = st.navigation(navigation_pages())
startup.prepare()
with startup.timed_run(page.title):
    startup.sidebar()
    page.run()
