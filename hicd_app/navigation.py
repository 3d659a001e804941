"""The app's pages and their navigation sections (Streamlit's documented ``st.navigation`` pattern:
every page is listed here explicitly, so no folder is scanned and file names decide nothing)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).resolve().parent / "views"
#: ``st.set_page_config`` of every run. An explicit emoji favicon also keeps Streamlit from using a
#: page's Material icon as the favicon, which the browser would fetch from Google's font servers.
PAGE_CONFIG = {"page_title": "HICD Explorer", "page_icon": ":deciduous_tree:", "layout": "wide"}

#: (section, script in views/, title, icon); the first page is the default.
PAGES = (
    ("Data", "overview.py", "Overview", ":material/dashboard:"),
    ("Data", "icd_tree.py", "ICD-10-CM tree", ":material/account_tree:"),
    ("Models", "level_ablation.py", "Level ablation", ":material/stacked_line_chart:"),
    ("Models", "embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("Models", "transfer.py", "Transfer", ":material/swap_horiz:"),
    ("Patients", "patient.py", "Patient", ":material/person:"),
    ("Reviews", "review_session.py", "Review session", ":material/rate_review:"),
    ("Reviews", "reviews.py", "Reviews", ":material/fact_check:"),
)


def navigation_pages() -> dict[str, list[st.Page]]:
    """The pages in their sections, for ``st.navigation``."""
    sections: dict[str, list[st.Page]] = {}
    for index, (section, script, title, icon) in enumerate(PAGES):
        page = st.Page(VIEWS / script, title=title, icon=icon, default=index == 0)
        sections.setdefault(section, []).append(page)
    return sections
