"""The shared sidebar: run store, data source and background training, drawn on every page run."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from hicd_app import cache, training
from hicd_app.context import (
    DATA_MODES,
    AppContext,
    CohortSet,
    folder_cohorts,
    is_default_bundle,
    launch_store_root,
    store_cohorts,
    synthetic_cohorts,
)
from hicd_core.experiments import background
from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.store_status import store_problem, store_version

SIDEBAR_KEYS = ("store_mode", "store_path", "data_mode", "data_mimic", "data_eicu")


def _kept(key: str) -> str:
    """A sidebar widget key whose value survives runs in which the widget is not the same widget.

    Streamlit drops a widget's state when a run does not render it (conventions B.1), and the same
    key drawn from another script (the entry point vs a page run on its own, as ``AppTest`` does) is
    a new widget. So the current value, or the one copied to a plain session key after the last run
    (:func:`_keep_sidebar_values`), is assigned to the key before the widget is drawn.
    """
    saved = f"_kept_{key}"
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]
    elif saved in st.session_state:
        st.session_state[key] = st.session_state[saved]
    return key


def _keep_sidebar_values() -> None:
    for key in SIDEBAR_KEYS:
        if key in st.session_state:
            st.session_state[f"_kept_{key}"] = st.session_state[key]


def sidebar() -> AppContext:
    """Draw the shared sidebar and return the selection (called by the entry point every run)."""
    launch_root = launch_store_root()
    with st.sidebar:
        st.subheader("Run store")
        mode = st.radio("Store", ["Default bundle", "Another folder"], key=_kept("store_mode"),
                        horizontal=True, help=f"Default: {launch_root}")
        if mode == "Another folder":
            typed = st.text_input("Run store directory", key=_kept("store_path"),
                                  placeholder="/path/to/runs/mystore")
            root = Path(typed.strip()).expanduser() if typed.strip() else launch_root
        else:
            root = launch_root
        launch_default = root == launch_root
        problem = store_problem(root, launch_default=launch_default)
        if problem:
            st.error(problem[1])
        version = store_version(root)
        info = cache.store_info(str(root), version) if problem is None else {}
        running = problem is None and background.is_running(root)
        default_bundle = problem is None and is_default_bundle(root, info)
        st.caption(f"{root}" + (" (default bundle)" if default_bundle else ""))

        st.subheader("Data source")
        mode_key = st.selectbox("Cohorts", list(DATA_MODES), format_func=DATA_MODES.get,
                                key=_kept("data_mode"))
        if mode_key == "store" and info.get("source_path"):
            data = store_cohorts(info)
        elif mode_key == "store" and default_bundle:  # before its first sweep: the synthetic default
            data = synthetic_cohorts(running)
            data.mode = "store"
        elif mode_key == "store":
            data = CohortSet(mode="store", label="cohorts of the run store",
                             notes=["This run store records no cohorts (no store.json with source folders); "
                                    "pick the synthetic default or your folders."])
        elif mode_key == "synthetic":
            data = synthetic_cohorts(running)
        else:
            mimic = st.text_input("MIMIC-IV folder (hosp/ inside)", key=_kept("data_mimic"))
            eicu = st.text_input("eICU folder", key=_kept("data_eicu"))
            data = folder_cohorts(mimic, eicu)
        for error in data.errors:
            st.error(error)
        for note in data.notes:
            st.caption(note)
        for cohort in data.cohorts.values():
            st.caption(f"{cohort.label}")

        st.subheader("Background training")
        if problem is None:
            message = training.maybe_autotrain(root, info, default_bundle, running)
            if message:
                running = True
                st.info(message)
            (training.running_status if running else training.idle_status)(str(root), version)
            if not running:
                training.offer_default_training(root, info, default_bundle, version)
    _keep_sidebar_values()
    return AppContext(store_root=root, store=RunStore(root) if problem is None else None,
                      store_problem=problem, launch_default=launch_default, default_bundle=default_bundle,
                      version=version, info=info, data=data, running=running)
