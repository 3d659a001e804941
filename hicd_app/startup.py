"""The first start of a server, in view.

A server's first session has slow one-time work to do before any page can draw: importing the
engine (pandas, PyTorch, the ICD-10-CM tables), writing the synthetic default on first launch, and
parsing and caching the cohorts. Done silently, that left an empty main pane for 7-30 s. Here each
step is shown in the main pane as it runs, from the first second (this module imports only
Streamlit, so the status box is drawn before anything heavy is imported), with its time when done.
Later sessions of the same server skip it: every step's result sits in a Streamlit cache.

After the first start the process's long-lived heap (engine modules, ICD-10-CM tables, cohorts) is
frozen out of the garbage collector, and Streamlit's forced full collection after every script run
is turned off (:func:`_spare_the_collector`): on this heap each forced ``gc.collect(2)`` took
0.3-0.8 s with the GIL held, so under load every session waited behind every other session's
collection (measured 2026-12-05, ``benchmarks/bench_browser.py`` ``concurrent_sessions``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import streamlit as st


@st.cache_resource(show_spinner=False)
def _server() -> dict[str, bool]:
    """Per-server-process state: whether the first start's work is done."""
    return {"prepared": False}


@contextmanager
def _step(text: str):
    started = time.perf_counter()
    line = st.empty()
    line.markdown(f":material/hourglass_top: {text} ...")
    yield
    line.markdown(f":material/check: {text} ({time.perf_counter() - started:.1f} s)")


def _load_engine() -> None:
    from hicd_app import sidebar  # noqa: F401  (the engine's modules, imported once per process)
    from hicd_core.hierarchy import icd10

    icd10.tree_frame()


def _cohort_steps() -> list[tuple[str, Callable[[], Any]]]:
    """What the sidebar's default selection will load, as (description, action) steps."""
    from hicd_app import cache, context
    from hicd_core.experiments.store_status import store_problem, store_version

    root = context.launch_store_root()
    if store_problem(root, launch_default=True) is not None:
        return []
    info = cache.store_info(str(root), store_version(root))[0]
    if info.get("source_path"):
        return [(f"Reading the cohorts this run store was trained on ({info['source_path']})",
                 lambda: context.store_cohorts(info))]
    if not context.is_default_bundle(root, info):
        return []
    from hicd_core import synthetic

    steps = []
    folder = synthetic.default_root()
    if synthetic.read_marker(folder) is None:
        steps.append((f"Writing the SYNTHETIC two-site cohort (MIMIC-IV and eICU layouts) to {folder}",
                      synthetic.ensure_default))
    steps.append(("Reading and caching the synthetic cohorts (normalising every code once)",
                  lambda: context.synthetic_cohorts(running=False)))
    return steps


def _spare_the_collector() -> None:
    """Once per process, after the first start: stop full garbage collections from walking the
    long-lived heap.

    Streamlit runs ``gc.collect(2)`` after every script run (``runner.postScriptGC``). With PyTorch,
    pandas, the ICD-10-CM tables and the cohorts loaded that walks ~0.5 M objects, holding the GIL for
    0.3-0.8 s per page view, so ten concurrent sessions queue behind each other's collections.
    ``gc.freeze()`` moves everything alive now (all of it shared and kept for the process's life) out
    of the collector's reach, and the forced per-run collection is turned off: Python's own
    generational collector still runs and still frees a session's cycles. A ``runner.postScriptGC``
    the user set in a config file or flag is respected.
    """
    import gc

    from streamlit import config
    from streamlit.config_option import ConfigOption

    if config.get_where_defined("runner.postScriptGC") == ConfigOption.DEFAULT_DEFINITION:
        config.set_option("runner.postScriptGC", False, "hicd_app.startup")
    gc.collect()
    gc.freeze()


def prepare() -> None:
    """Run the first start's slow steps, each shown as it runs; nothing on later sessions."""
    server = _server()
    if server["prepared"]:
        return
    started = time.perf_counter()
    with st.status("Starting HICD Explorer: first start of this server ...", expanded=True) as status:
        with _step("Loading the engine (pandas, PyTorch, the ICD-10-CM FY2026 tables)"):
            _load_engine()
        for text, action in _cohort_steps():
            with _step(text):
                action()
        status.update(label=f"Ready: first start took {time.perf_counter() - started:.0f} s",
                      state="complete", expanded=False)
    _spare_the_collector()
    server["prepared"] = True


def sidebar() -> None:
    """The shared sidebar, drawn after :func:`prepare` (its imports are warm by then)."""
    from hicd_app.context import entry_context

    entry_context()


#: When set, every script run's server time (sidebar + page) is appended to this file as one JSON line
#: (page title and seconds; nothing about patients). Used by ``benchmarks/bench_app.py``'s load test to
#: separate server time from browser rendering; off by default.
TIMINGS_ENV = "HICD_TIMINGS"


@contextmanager
def timed_run(title: str):
    """Time one script run and append it to ``$HICD_TIMINGS`` when that is set."""
    import os

    target = os.environ.get(TIMINGS_ENV)
    started = time.perf_counter()
    try:
        yield
    finally:  # st.stop() and reruns end a run by raising: they are timed too
        if target:
            import json
            import threading

            line = json.dumps({"page": title, "seconds": round(time.perf_counter() - started, 4),
                               "thread": threading.get_ident(), "at": time.time()})
            with open(target, "a") as handle:  # one short append per run: lines never interleave
                handle.write(line + "\n")
