"""Background training for the app: a sweep in a separate process, observed through a status file.

A subprocess (not a thread) keeps Streamlit responsive, survives page reruns and browser
disconnects, and is stopped cleanly. Only one sweep runs per store: ``lock.json`` holds the PID of
the running sweep and is ignored once that process is gone. The sweep writes ``status.json``
(atomically, at most once a second) with per-run and overall progress and an ETA; pages poll it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hicd_core.experiments.spec import SweepPreset
from hicd_core.runtime import atomic_write_bytes, atomic_write_json

STATUS_FILE, LOCK_FILE, LOG_FILE = "status.json", "lock.json", "sweep.log"
#: The preset of the last sweep started from the app (JSON of :class:`SweepPreset` fields).
PRESET_FILE = "app_preset.json"


class StatusWriter:
    """A SweepCallback that mirrors events into ``status.json`` (throttled)."""

    def __init__(self, path: Path, min_interval: float = 1.0) -> None:
        self.path, self.min_interval = Path(path), min_interval
        self._last = 0.0
        self.started = time.time()
        self.finished: list[str] = []
        self.failed: list[str] = []
        self.active: dict[str, dict] = {}  # runs in progress (several with parallel workers)

    def __call__(self, event) -> None:
        if event.stage == "done":
            self.finished.append(event.run_id)
        elif event.stage == "failed":
            self.failed.append(event.run_id)
        if event.stage in ("done", "failed"):
            self.active.pop(event.run_id, None)
        else:
            self.active[event.run_id] = {"stage": event.stage, "fraction": event.run_fraction}
        now = time.time()
        if event.stage not in ("done", "failed", "start") and now - self._last < self.min_interval:
            return
        self._last = now
        atomic_write_json(self.path, {"state": "running", "pid": os.getpid(), "started": self.started,
                                      "updated": now, "event": asdict(event), "finished": self.finished,
                                      "failed": self.failed, "active": self.active})

    def close(self, state: str, message: str = "") -> None:
        atomic_write_json(self.path, {"state": state, "pid": os.getpid(), "started": self.started,
                                      "updated": time.time(), "finished": self.finished,
                                      "failed": self.failed, "message": message})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie (finished child not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return True


def read_status(store_root: Path) -> dict:
    """The last status of the store's background sweep: ``state`` is idle, running, finished,
    failed or stopped (a running state whose process is gone reads as stopped)."""
    path = Path(store_root) / STATUS_FILE
    if not path.is_file():
        return {"state": "idle"}
    try:
        status = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"state": "idle"}
    if status.get("state") == "running" and not _alive(int(status.get("pid", -1))):
        status["state"] = "stopped"
    return status


def is_running(store_root: Path) -> bool:
    lock = Path(store_root) / LOCK_FILE
    if not lock.is_file():
        return False
    try:
        pid = int(json.loads(lock.read_text())["pid"])
    except (json.JSONDecodeError, KeyError, ValueError):
        return False
    return _alive(pid)


def start_sweep(store_root: Path, preset: SweepPreset) -> bool:
    """Start ``python -m hicd_core sweep --preset <store>/PRESET_FILE --store STORE --status-file ...``
    unless one runs; the preset goes to the child as a JSON file, the same form a user can write.

    Returns False when a sweep is already running for this store. Output goes to ``sweep.log`` in
    the store (run ids and errors only; nothing patient-level is logged).
    """
    store_root = Path(store_root)
    store_root.mkdir(parents=True, exist_ok=True)
    if is_running(store_root):
        return False
    preset_file = store_root / PRESET_FILE
    atomic_write_bytes(preset_file, preset.to_json().encode())
    command = [sys.executable, "-m", "hicd_core", "sweep", "--preset", str(preset_file), "--store",
               str(store_root), "--quiet", "--status-file", str(store_root / STATUS_FILE)]
    log = open(store_root / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, cwd=Path(__file__).resolve().parents[2])
    now = time.time()
    atomic_write_json(store_root / LOCK_FILE, {"pid": process.pid, "command": command, "started": now})
    atomic_write_json(store_root / STATUS_FILE, {"state": "running", "pid": process.pid, "started": now,
                                                 "updated": now, "finished": [], "failed": []})
    return True


# ------------------------------------------------------------------------- what the app shows
def format_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "estimating"
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def training_view(status: dict, running: bool) -> dict[str, Any]:
    """What the sidebar shows about the background sweep, from ``read_status``."""
    event = status.get("event") or {}
    state = "running" if running else status.get("state", "idle")
    if state == "running" and not running:
        state = "stopped"
    return {
        "state": state,
        "overall": float(event.get("overall_fraction", 0.0)) if event else 0.0,
        "run": float(event.get("run_fraction", 0.0)) if event else 0.0,
        "run_id": str(event.get("run_id", "")),
        "stage": str(event.get("stage", "")),
        "n_runs": int(event.get("n_runs", 0)) if event else 0,
        "run_index": int(event.get("run_index", 0)) if event else 0,
        "eta": format_eta(event.get("eta_seconds")) if event else "estimating",
        "finished": len(status.get("finished", [])),
        "failed": len(status.get("failed", [])),
        "message": str(status.get("message", "")),
        # Runs in progress: one per worker process (older status files name only the last event's).
        "active": [(str(run_id), str(info.get("stage", "")), float(info.get("fraction", 0.0)))
                   for run_id, info in (status.get("active") or {}).items()]
        or ([(str(event["run_id"]), str(event.get("stage", "")), float(event.get("run_fraction", 0.0)))]
            if event.get("run_id") else []),
    }
