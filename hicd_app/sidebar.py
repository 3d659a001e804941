"""The shared sidebar: run store, data source and background training, drawn on every page run."""

from __future__ import annotations

import streamlit as st

from hicd_app import cache, training
from hicd_app.context import (
    DATA_MODES,
    SOURCE_HINTS,
    SOURCE_KINDS,
    AppContext,
    CohortSet,
    folder_cohorts,
    is_default_bundle,
    launch_store_root,
    store_cohorts,
    synthetic_cohorts,
    user_path,
)
from hicd_core.cohort import SOURCE_LABELS
from hicd_core.experiments import background
from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.store_status import store_problem, store_version

SIDEBAR_KEYS = ("store_mode", "store_path", "data_mode", "data_kind", "data_source", "data_eicu")


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
            root, path_problem = user_path(typed)
            root = root or launch_root
        else:
            root, path_problem = launch_root, None
        launch_default = root == launch_root and path_problem is None
        problem = (("error", path_problem) if path_problem
                   else store_problem(root, launch_default=launch_default))
        if problem:
            st.error(problem[1])
        version = store_version(root)
        info, info_problem = cache.store_info(str(root), version) if problem is None else ({}, None)
        if info_problem:
            st.warning(info_problem)
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
            kind = st.selectbox("Source", list(SOURCE_KINDS), format_func=SOURCE_LABELS.get,
                                key=_kept("data_kind"))
            source = st.text_input(f"{SOURCE_LABELS[kind]} folder", key=_kept("data_source"),
                                   help=f"Name {SOURCE_HINTS[kind]}.")
            eicu = st.text_input("eICU folder (transfer target, optional)", key=_kept("data_eicu"))
            data = folder_cohorts(kind, source, eicu)
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
            polling = running or training.cluster_active(root)  # a local or a Slurm sweep
            (training.running_status if polling else training.idle_status)(str(root), version)
            if not running:
                training.offer_default_training(root, info, default_bundle, version)
    _keep_sidebar_values()
    return AppContext(store_root=root, store=RunStore(root) if problem is None else None,
                      store_problem=problem, launch_default=launch_default, default_bundle=default_bundle,
                      version=version, info=info, data=data, running=running)
