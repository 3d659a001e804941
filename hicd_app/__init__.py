"""HICD Explorer's Streamlit layer (``streamlit run app.py``).

``app.py`` builds the navigation from :mod:`hicd_app.navigation`, prepares a first start in view
(:mod:`hicd_app.startup`) and draws the shared sidebar (:mod:`hicd_app.sidebar`); the page scripts
live in ``hicd_app/views/``. Every Streamlit cache is in :mod:`hicd_app.cache`. Pages only call the
engine (:mod:`hicd_core`), cache and draw; the engine never imports this package or Streamlit.
"""
