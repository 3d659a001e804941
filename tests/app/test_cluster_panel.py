"""The sidebar's training panel on a store a Slurm sweep was submitted to: it keeps polling while runs
are pending or running, shows the job and array-task ids, and stops polling once nothing is queued.

No Slurm here: ``slurm/jobs.json`` is a recorded submission (the shape ``SlurmExecutor`` writes) and
``squeue`` is a stand-in script on ``PATH`` that prints the states this test sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hicd_app import context, training

APP = str(Path(__file__).resolve().parents[2] / "app.py")
RUNS = {"4242_0": "bert-111-readmission_30d-s0", "4242_1": "graph-111-readmission_30d-s0"}


@pytest.fixture
def cluster_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    (root / "runs").mkdir(parents=True)
    (root / "slurm").mkdir()
    tasks = [{"task_id": task, "submitted": 0.0, "stdout": str(root / "slurm" / f"{task}.out"),
              "stderr": str(root / "slurm" / f"{task}.err"),
              "runs": {run: {"model": run.split("-")[0], "setting": "111", "task": "readmission_30d",
                             "kind": "task", "seed": 0}}}
             for task, run in RUNS.items()]
    (root / "slurm" / "jobs.json").write_text(json.dumps({"tasks": tasks}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text('#!/bin/sh\ncat "$FAKE_SQUEUE_STATES"\n')
    squeue.chmod(0o755)
    monkeypatch.setenv("FAKE_SQUEUE_STATES", str(tmp_path / "states.txt"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(context.STORE_ENV, str(root))
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "1")
    return root


def _states(root: Path, lines: str) -> None:
    """What the stand-in ``squeue`` prints next (``task|STATE`` lines)."""
    Path(os.environ["FAKE_SQUEUE_STATES"]).write_text(lines)


def test_cluster_sweep_is_polled_while_queued_and_shows_job_ids(cluster_store: Path, monkeypatch) -> None:
    panels: list[str] = []

    def recorder(name: str):
        def panel(root: str, version: str) -> None:
            panels.append(name)
            training._status_panel(root, version)
        return panel

    monkeypatch.setattr(training, "running_status", recorder("polling"))
    monkeypatch.setattr(training, "idle_status", recorder("idle"))
    # Task 0 runs (its run folder is being written), task 1 waits in the queue.
    _states(cluster_store, "4242_0|RUNNING\n4242_1|PENDING\n")
    (cluster_store / "runs" / f".tmp-{RUNS['4242_0']}-abc").mkdir()
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    captions = "\n".join(str(c.value) for c in at.sidebar.caption)
    assert panels == ["polling"]
    assert "Slurm jobs 4242" in captions
    assert "running: task 4242_0" in captions and "pending: task 4242_1" in captions
    progress = [str(p.proto.text) for p in at.sidebar.get("progress")]
    assert any("Cluster: 0 of 2 runs finished, 1 running, 1 pending, 0 failed" in text for text in progress)

    # Both tasks leave the queue without writing their runs: failed, nothing to wait for, no polling.
    _states(cluster_store, "")
    (cluster_store / "runs" / f".tmp-{RUNS['4242_0']}-abc").rmdir()
    at.run()
    assert not at.exception, at.exception
    assert panels[-1] == "idle"
    captions = "\n".join(str(c.value) for c in at.sidebar.caption)
    assert "failed: task 4242_0, 4242_1" in captions


def test_cluster_active_reads_the_store_and_squeue(cluster_store: Path) -> None:
    _states(cluster_store, "4242_1|PENDING\n")
    assert training.cluster_active(cluster_store)
    _states(cluster_store, "")
    assert not training.cluster_active(cluster_store)
    assert not training.cluster_active(cluster_store.parent)  # never submitted to Slurm
