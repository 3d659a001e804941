"""Where every run of a store stands, with the Slurm task behind it: finished / running / pending /
failed. Read from the store (run folders, failure records, ``slurm/jobs.json``) and ``squeue``, so it
is right whether or not the process that submitted the sweep is still alive."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.slurm import ACTIVE, SlurmError, _squeue_states, latest_tasks, task_error

STATES = ("finished", "running", "pending", "failed")
COLUMNS = ["run_id", "model", "setting", "task", "kind", "seed", "status", "job", "detail"]


def store_status(store: RunStore) -> tuple[pd.DataFrame, str]:
    """One row per known run (submitted to Slurm, finished, or failed) and a note on what could not
    be checked (e.g. no ``squeue`` on this machine: queued tasks cannot be told from ended ones)."""
    note = ""
    try:
        tasks = latest_tasks(store.root)
    except SlurmError as exc:
        tasks, note = {}, str(exc)
    states: dict[str, str] | None = None
    if tasks:
        try:
            states = _squeue_states()
        except SlurmError as exc:
            note = f"{exc}; Slurm states unknown"
    specs: dict[str, dict] = {run_id: task["runs"][run_id] for run_id, task in tasks.items()}
    for run in store.finished_runs():
        specs.setdefault(run["run_id"], run["spec"])
    failed_dir = store.root / "failed"
    for path in sorted(failed_dir.glob("*.json")) if failed_dir.is_dir() else []:
        specs.setdefault(path.stem, (store.failure(path.stem) or {}).get("spec", {}))
    rows = []
    for run_id, spec in sorted(specs.items()):
        task = tasks.get(run_id)
        job = task["task_id"] if task else ""
        state = states.get(job) if (states is not None and task) else None
        failure = store.failure(run_id)
        if store.is_finished(run_id):
            status, detail = "finished", ""
        elif state in ACTIVE:
            running = state == "RUNNING" and any(store.runs_dir.glob(f".tmp-{run_id}-*"))
            status = "running" if running else "pending"
            waiting = state == "RUNNING" and not running
            detail = f"Slurm {state.lower()}" + (" (queued behind its group's other runs)" if waiting else "")
        elif failure is not None and ((failure.get("slurm") or {}).get("task_id") == job or not task):
            status, detail = "failed", (failure.get("error") or "").strip().split("\n")[0]
        elif task and states is not None:
            status, detail = "failed", task_error(task)
        else:
            status, detail = "pending", "Slurm state unknown" if task else ""
        rows.append({"run_id": run_id, **{key: spec.get(key) for key in COLUMNS[1:6]}, "status": status,
                     "job": job, "detail": detail})
    return pd.DataFrame(rows, columns=COLUMNS), note


def counts(table: pd.DataFrame) -> dict[str, int]:
    return {state: int((table["status"] == state).sum()) for state in STATES}


def log_folder(store_root: Path) -> Path:
    return Path(store_root) / "slurm" / "logs"
