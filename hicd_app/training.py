"""Background training in the app: the first-launch auto-start of the default bundle, the sidebar's
progress panel (a fragment polling the sweep's status file, and a cluster sweep's progress read from
the store while its runs are pending or running), the "train the default preset" button, and starting
a sweep of chosen runs from a page (a :class:`SweepPreset` handed over as JSON; to Slurm when the
store has a ``slurm.json``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from hicd_app import cache
from hicd_app.context import AppContext, autotrain_disabled, launch_store_root
from hicd_core.experiments import background
from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.slurm_config import SLURM_CONFIG_FILE
from hicd_core.experiments.spec import PRESETS, SweepPreset
from hicd_core.experiments.store_status import (
    default_expected_runs,
    extension_preset,
    store_version,
)
from hicd_core.runtime import atomic_write_bytes, data_dir, stable_hash

#: What the last cluster submission from this session said (job ids, or why it failed).
CLUSTER_FLASH = "cluster_flash"


def maybe_autotrain(root: Path, info: dict, default_bundle: bool, running: bool) -> str | None:
    """First launch on the default bundle: start the default preset in the background if runs are missing."""
    if autotrain_disabled() or running or not default_bundle or str(root) in cache.autotrain_attempted():
        return None
    cache.autotrain_attempted().add(str(root))
    expected = default_expected_runs(info)
    store = RunStore(root)
    if expected and all(store.is_finished(run_id) for run_id in expected):
        return None
    if background.start_sweep(root, PRESETS["default"]):
        return "Started training the default bundle in the background; pages fill in as runs finish."
    return None


def offer_default_training(root: Path, info: dict, default_bundle: bool, version: str) -> None:
    """A button (never an automatic start) that trains the default preset: into an empty store the
    user named, or into the default bundle when auto-start is off and runs are missing.

    Whether the default runs are all finished comes from the cached :func:`listing` of this store
    version (which includes them on the default bundle), not from a scan of the run folders."""
    if default_bundle:
        expected = default_expected_runs(info)
        if expected:
            runs = cache.listing(str(root), version, default_bundle)
            finished = set(runs.loc[runs["status"] == "finished", "run_id"]) if "run_id" in runs else set()
            if finished.issuperset(expected):
                return
        label = "Train the default bundle"
    elif not info and not (root / "runs").is_dir():
        label = "Train the default preset into this store"
    else:
        return
    st.caption("The default preset: 8 settings x HICD-BERT and HICD-Graph x two tasks + transfer, on the "
               "synthetic default. It runs in the background; pages fill in as runs finish.")
    allowed = write_allowed(root, "train_default")
    if st.button(label, key="train_default", icon=":material/play_arrow:", disabled=not allowed):
        if background.start_sweep(root, PRESETS["default"]):
            st.rerun()
        st.warning("A sweep is already running for this store.")


def _status_panel(root: str, version: str) -> bool:
    """Progress of the background sweep and of a cluster sweep; a full rerun when a run finished so
    pages fill in. Whether anything is still to come (a local sweep, or Slurm runs pending/running)."""
    status = background.read_status(Path(root))
    running = background.is_running(Path(root))
    view = background.training_view(status, running)
    if view["state"] == "running":
        if view["n_runs"]:
            done = view["finished"] + view["failed"]
            st.progress(min(view["overall"], 1.0),
                        text=f"Overall: {done} of {view['n_runs']} runs done, ETA {view['eta']}")
            for run_id, stage, fraction in view["active"]:
                st.progress(min(fraction, 1.0), text=f"{run_id[:48]}: {stage}")
        else:
            st.progress(0.0, text="Preparing the cohorts ...")
        st.caption(f"finished {view['finished']}, failed {view['failed']} in this sweep")
    elif view["state"] in ("finished", "failed", "stopped"):
        st.caption(f"Last sweep {view['state']}: finished {view['finished']}, failed {view['failed']}."
                   + (f" {view['message']}" if view["message"] else ""))
    else:
        st.caption("No background training.")
    cluster_busy = _cluster_panel(Path(root))
    if store_version(Path(root)) != version:
        st.rerun()  # a run finished or failed: redraw the page with it
    return running or cluster_busy


_SEEN_BUSY = "training_seen_busy"


def _polling_panel(root: str, version: str) -> None:
    """The panel while something trains; once what this session saw training has ended, one full
    rerun lets the sidebar swap in the idle panel, so an ended sweep is not polled forever. Only on
    that transition: a sweep just started may not show as running yet, and rerunning then would wipe
    the page's "started" message."""
    seen = st.session_state.setdefault(_SEEN_BUSY, {})
    if _status_panel(root, version):
        seen[root] = True
    elif seen.pop(root, False):
        st.rerun()


def _cluster_table(root: Path) -> tuple[pd.DataFrame, str] | None:
    """Every run a Slurm sweep submitted to this store, with its state (None: never submitted)."""
    if not (root / "slurm" / "jobs.json").is_file():
        return None
    from hicd_core.experiments.cluster_status import store_status

    return store_status(RunStore(root))


def cluster_active(root: Path) -> bool:
    """Whether a Slurm sweep on this store still has pending or running runs (the sidebar then polls).

    Without ``squeue`` on this machine a submitted, unfinished run counts as pending: its run folder
    may still appear on the shared store, so the panel keeps reading it."""
    found = _cluster_table(Path(root))
    if found is None:
        return False
    from hicd_core.experiments.cluster_status import counts

    count = counts(found[0])
    return count["running"] + count["pending"] > 0


def _task_list(tasks: list[str], limit: int = 6) -> str:
    shown = sorted(set(tasks), key=lambda task: (len(task), task))
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def _cluster_panel(root: Path) -> bool:
    """A Slurm sweep's progress, from the store and squeue (the submitting process may be gone), with
    its job ids and the array tasks running and pending. Whether runs are still pending/running."""
    if CLUSTER_FLASH in st.session_state:
        st.caption(st.session_state[CLUSTER_FLASH])
    found = _cluster_table(root)
    if found is None:
        return False
    from hicd_core.experiments.cluster_status import counts

    table, note = found
    count = counts(table)
    total = max(1, len(table))
    st.progress(count["finished"] / total,
                text=f"Cluster: {count['finished']} of {len(table)} runs finished, {count['running']} "
                     f"running, {count['pending']} pending, {count['failed']} failed")
    jobs = sorted({job.split("_")[0] for job in table["job"] if job}, key=lambda job: (len(job), job))
    lines = [f"Slurm jobs {', '.join(jobs[-5:])}" + (f" ({note})" if note else "")]
    for state in ("running", "pending", "failed"):
        tasks = [job for job in table.loc[table["status"] == state, "job"] if job]
        if tasks:
            lines.append(f"{state}: task {_task_list(tasks)}")
    st.caption("  \n".join(lines))
    return count["running"] + count["pending"] > 0


def submit_to_cluster(root: Path, preset: SweepPreset) -> str:
    """Submit ``preset`` to Slurm with the store's ``slurm.json`` (``sweep --executor slurm --detach``,
    which returns once submitted); its summary line, with the job ids."""
    path = root / "slurm" / "app_preset.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, preset.to_json().encode())
    command = [sys.executable, "-m", "hicd_core", "sweep", "--preset", str(path), "--store", str(root),
               "--executor", "slurm", "--detach", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
    return next((line for line in done.stdout.splitlines() if line.startswith("submitted")), "submitted")


running_status = st.fragment(run_every=2)(_polling_panel)


idle_status = st.fragment(_status_panel)


def training_note(ctx: AppContext, table: pd.DataFrame | None = None) -> None:
    """Say plainly what is still training (or missing) so an empty chart is never a mystery."""
    if ctx.store is None:
        return
    counts, todo = cache.listing_status(ctx.root_key, ctx.version, ctx.default_bundle)
    expected = sum(counts.values())
    if ctx.running:
        st.info(f"Training in the background: {counts['finished']} of {expected} expected runs finished. "
                f"Still to come: {todo or 'the remaining runs'}. This page fills in as they finish.",
                icon=":material/hourglass_top:")
    elif counts["missing"] or counts["failed"] or counts["damaged"]:
        damaged = (f"{counts['damaged']} damaged (left out of every result; a sweep redoes them), "
                   if counts["damaged"] else "")
        st.info(f"{counts['finished']} of {expected} expected runs finished, {damaged}"
                f"{counts['failed']} failed, {counts['missing']} not trained. Not trained: {todo}.",
                icon=":material/info:")


def write_allowed(root: Path, key: str) -> bool:
    """Whether the app may write into ``root``: always inside the data directory or into the store it
    was launched on (``$HICD_STORE``); anywhere else only after the user ticks a box that names that
    exact, normalised path."""
    try:
        inside = root.resolve().is_relative_to(data_dir().resolve())
    except OSError:
        inside = False
    if inside or root.resolve() == launch_store_root().resolve():
        return True
    return st.checkbox(f"Allow writing into {root.resolve()}", key=f"{key}_confirm_{stable_hash(str(root))}",
                       help="This folder is outside HICD Explorer's data directory; training writes runs, "
                            "a lock file, a status file and a log there.")


def start_training(ctx: AppContext, **subset: Any) -> bool:
    """Start a background sweep of exactly these runs in the current store (False if one runs)."""
    if ctx.store is None:
        return False
    preset = extension_preset(ctx.store, ctx.info, ctx.default_bundle, **subset)
    if (Path(ctx.store_root) / SLURM_CONFIG_FILE).is_file():  # this store trains on a Slurm cluster
        try:
            st.session_state[CLUSTER_FLASH] = "Slurm: " + submit_to_cluster(Path(ctx.store_root), preset)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            st.session_state[CLUSTER_FLASH] = f"Slurm submission failed: {exc}"
            return False
        return True
    return background.start_sweep(ctx.store_root, preset)
