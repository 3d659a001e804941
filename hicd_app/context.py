"""The selection every page reads: which run store and which cohorts, as an :class:`AppContext`.

The entry point draws the sidebar once per run (:func:`entry_context`) and leaves the result in the
session; a page calls :func:`context` at its top. When a page script runs without the entry point
(``AppTest.switch_page`` does that), :func:`context` draws the sidebar itself, so the selection,
the widgets and their state are the same either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from hicd_app import cache
from hicd_core import synthetic
from hicd_core.cohort import (
    ADMISSIONS,
    EICU,
    MEDS,
    MIMIC_III,
    MIMIC_IV,
    SOURCE_LABELS,
    VISIT_KIND,
    Cohort,
    CohortInputError,
)
from hicd_core.experiments.runstore import RunStore, default_store_root

STORE_ENV = "HICD_STORE"
NO_AUTOTRAIN_ENV = "HICD_NO_AUTOTRAIN"
#: Session-state key of the context computed by the entry point for the current script run.
CONTEXT_KEY = "_hicd_context"
ENTRY_RUN_KEY, SEEN_RUN_KEY = "_hicd_entry_run", "_hicd_seen_run"  # did the entry point run this time?
DATA_MODES = {"store": "Cohorts of the run store", "synthetic": "Synthetic default",
              "folders": "Your data (MIMIC-IV, MIMIC-III, MEDS, eICU)"}
#: What the source folder in "your data" may be: the sources of hospital admissions.
SOURCE_KINDS = tuple(kind for kind, visits in VISIT_KIND.items() if visits == ADMISSIONS)
SOURCE_HINTS = {MIMIC_IV: "the MIMIC-IV root or its hosp/ folder", MIMIC_III: "the MIMIC-III folder",
                MEDS: "the MEDS root (data/, metadata/)"}


def launch_store_root() -> Path:
    """The store opened at launch: ``$HICD_STORE`` or the default bundle ``$HICD_DATA_DIR/runs/default``."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else default_store_root()


def autotrain_disabled() -> bool:
    """``HICD_NO_AUTOTRAIN=1`` turns the first-launch training off; ``=0`` turns it on explicitly.

    Unset, it is on, except inside a pytest run: a test that opens the app without the flag must
    never leave a training process behind.
    """
    value = os.environ.get(NO_AUTOTRAIN_ENV, "").strip().lower()
    if value:
        return value not in ("0", "false", "no")
    return "PYTEST_CURRENT_TEST" in os.environ


#: The longest folder or file name the common file systems (ext4, APFS, NTFS) accept, in bytes.
MAX_NAME_BYTES = 255


def user_path(text: str) -> tuple[Path | None, str | None]:
    """A folder path the user typed, normalised (``~`` expanded, made absolute) so it can be shown
    back, or ``(None, why not)``: a NUL character or an over-long name is a message, never a crash."""
    text = text.strip()
    if not text:
        return None, None
    if "\x00" in text:
        return None, "The path contains a NUL character; type it again."
    try:
        path = Path(text).expanduser().resolve(strict=False)
    except (OSError, RuntimeError, ValueError) as exc:
        return None, f"{text[:80]!r} is not a usable path ({type(exc).__name__}: {exc})."
    long_names = [part for part in path.parts
                  if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES]
    if long_names:
        return None, (f"A folder name in the path is {len(long_names[0].encode())} bytes long; file systems "
                      f"allow at most {MAX_NAME_BYTES}. Check the path ({str(path)[:80]}...).")
    return path, None


def is_default_bundle(root: Path, info: dict) -> bool:
    """The default bundle: the launch store, empty or trained on the synthetic default cohorts."""
    if root.resolve() != launch_store_root().resolve():
        return False
    if not info:
        return True
    default_source = str(synthetic.default_root() / "mimic-iv")
    return bool(info.get("synthetic")) and info.get("source_path") == default_source


@dataclass
class CohortSet:
    """The cohorts a page shows: the MIMIC-IV-layout source and the eICU-layout target (either may be
    None)."""

    source: Cohort | None = None
    target: Cohort | None = None
    mode: str = ""  # a DATA_MODES key
    label: str = ""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def cohorts(self) -> dict[str, Cohort]:
        return {c.site: c for c in (self.source, self.target) if c is not None}

    @property
    def synthetic(self) -> bool:
        return any(c.synthetic for c in self.cohorts.values())


@dataclass
class AppContext:
    """The selection every page reads (computed once per script run by the entry point)."""

    store_root: Path
    store: RunStore | None
    store_problem: tuple[str, str] | None
    launch_default: bool
    default_bundle: bool
    version: str
    info: dict
    data: CohortSet
    running: bool

    @property
    def root_key(self) -> str:
        return str(self.store_root)

    @property
    def synthetic(self) -> bool:
        return bool(self.info.get("synthetic")) or self.data.synthetic


def try_load_cohort(site: str, path: str | Path, split_seed: int = 0) -> tuple[Cohort | None, str | None]:
    """A cohort, or a readable error (never a traceback): missing folder, missing table, bad columns."""
    label = SOURCE_LABELS.get(site, site)
    folder, problem = user_path(str(path))
    if problem:
        return None, f"{label}: {problem}"
    if folder is None:
        return None, None
    if not folder.exists():
        return None, f"{label}: no folder at {folder}."
    if not folder.is_dir():
        return None, f"{label}: {folder} is a file; name the folder that holds the tables."
    try:
        return cache.cohort(site, str(folder), int(split_seed), cache.folder_stamp(folder)), None
    except CohortInputError as exc:
        return None, f"{label} folder {folder} cannot be used: {exc}"
    except Exception as exc:  # a damaged file must give a message, not a traceback
        return None, f"{label} folder {folder} could not be read ({type(exc).__name__}: {exc})"


def store_cohorts(info: dict) -> CohortSet:
    """The cohorts the store's runs were trained on (from the paths recorded in store.json)."""
    data = CohortSet(mode="store", label="cohorts of the run store")
    for site, key in ((MIMIC_IV, "source"), (EICU, "target")):
        path = info.get(f"{key}_path")
        if not path:
            continue
        seed = int(info.get("source_split_seed", 0) or 0)
        cohort, error = try_load_cohort(info.get(f"{key}_site") or site, path, seed)
        if error:
            data.errors.append(f"The store's {key} cohort is not available here: {error}")
        elif cohort is not None:
            if cohort.fingerprint != info.get(f"{key}_fingerprint"):
                data.notes.append(f"The {cohort.site} files at {path} changed since the runs were trained "
                                  "(fingerprint differs): cohort views show today's files.")
            setattr(data, key, cohort)
    return data


def synthetic_cohorts(running: bool) -> CohortSet:
    data = CohortSet(mode="synthetic", label="synthetic default")
    root = synthetic.default_root()
    if not (root / "SYNTHETIC.json").is_file():
        if running:
            data.notes.append("The background sweep is generating the synthetic default; it appears here "
                              "in a moment.")
            return data
        with st.spinner("Generating the synthetic default cohorts (first launch only) ..."):
            synthetic.ensure_default()
    for site, key in ((MIMIC_IV, "source"), (EICU, "target")):
        cohort, error = try_load_cohort(site, root / ("mimic-iv" if site == MIMIC_IV else "eicu"))
        if error:
            data.errors.append(error)
        setattr(data, key, cohort)
    return data


def folder_cohorts(source_kind: str, source: str, eicu: str) -> CohortSet:
    """The source (``source_kind``: MIMIC-IV, MIMIC-III or MEDS) and the eICU target the user named."""
    data = CohortSet(mode="folders", label="your folders")
    if not source.strip() and not eicu.strip():
        data.notes.append(f"Name {SOURCE_HINTS[source_kind]} and/or an eICU folder above.")
    for site, key, path in ((source_kind, "source", source), (EICU, "target", eicu)):
        cohort, error = try_load_cohort(site, path)
        if error:
            data.errors.append(error)
        setattr(data, key, cohort)
    return data


def entry_context() -> AppContext:
    """Draw the sidebar from the entry point (every run of every page) and hand the result on."""
    from hicd_app.sidebar import sidebar

    ctx = sidebar()
    st.session_state[CONTEXT_KEY] = ctx
    st.session_state[ENTRY_RUN_KEY] = st.session_state.get(ENTRY_RUN_KEY, 0) + 1
    return ctx


def context() -> AppContext:
    """The selection for the current run; call it once, at the top of a page."""
    from hicd_app.sidebar import sidebar

    entry_run = st.session_state.get(ENTRY_RUN_KEY)
    fresh = entry_run is not None and entry_run != st.session_state.get(SEEN_RUN_KEY)
    if fresh and CONTEXT_KEY in st.session_state:
        st.session_state[SEEN_RUN_KEY] = entry_run
        return st.session_state[CONTEXT_KEY]
    ctx = sidebar()
    st.session_state[CONTEXT_KEY] = ctx
    return ctx
