"""The sweep on a real Slurm (a single-node one: ``scripts/slurm-local.sh start``, which CI runs).

Skipped, with the reason, only where no Slurm node is up. Small synthetic data, HICD-Graph only and
few runs keep them to a few minutes on two cores; the time-limit test needs Slurm's one-minute
minimum time limit to pass at least once.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core import cli
from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.spec import SOURCE_TASKS, load_preset
from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs
from hicd_core.hierarchy import Setting


def _slurm_missing() -> str | None:
    """Why the Slurm tests cannot run here (None: a node is up)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (no sinfo/sbatch): run scripts/slurm-local.sh start"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering (scripts/slurm-local.sh start)"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()[:200]} (scripts/slurm-local.sh start)"
    states = out.stdout.split()
    if not any(state.rstrip("*~#").startswith(("idle", "mixed", "allocated")) for state in states):
        return f"no Slurm node is up (sinfo states: {states or 'none'}); run scripts/slurm-local.sh start"
    return None


MISSING = _slurm_missing()
needs_slurm = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def test_slurm_options_parse_and_name_themselves() -> None:
    """Slurm's time formats in minutes; extra keys go to submitit where it has them, else to sbatch;
    a bad value is an error naming its option (no Slurm needed)."""
    from hicd_core.experiments.slurm_config import (
        SlurmConfig,
        SlurmConfigError,
        parse_extra,
        parse_time_minutes,
    )

    times = ("90", "1:30", "2:00:00", "1-0", "1-2:30:01")
    assert [parse_time_minutes(t) for t in times] == [90, 2, 120, 1440, 1591]
    params = SlurmConfig(extra=parse_extra(["qos=high", "signal_delay_s=120"])).submitit_parameters(
        "cuda", "job", [])
    assert params["qos"] == "high" and params["signal_delay_s"] == 120 and params["gpus_per_task"] == 1
    assert "gpus_per_task" not in SlurmConfig(extra={"foo": "x"}).submitit_parameters("cpu", "job", [])
    assert SlurmConfig(extra={"foo": "x"}).submitit_parameters("cpu", "job", [])["additional_parameters"] == {
        "foo": "x"}
    for bad, option in ((lambda: parse_time_minutes("soon"), "--slurm-time"),
                        (lambda: parse_extra(["qos"]), "--slurm-extra"),
                        (lambda: SlurmConfig(mem="lots").validated(), "--slurm-mem")):
        with pytest.raises(SlurmConfigError, match=option):
            bad()


def test_slurm_options_need_the_slurm_executor(tmp_path: Path, capsys) -> None:
    assert cli.main(["sweep", "--slurm-partition", "gpu", "--store", str(tmp_path / "s")]) == 2
    assert cli.main(["sweep", "--detach", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--slurm-partition applies to --executor slurm" in err and "--detach applies" in err
    assert "Traceback" not in err


@pytest.fixture(autouse=True)
def _no_orphaned_jobs():
    """A failing Slurm test cancels the jobs it submitted (those not queued before it started)."""
    if MISSING is not None:
        yield
        return

    def queued() -> set[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%F"], capture_output=True, text=True, timeout=30)
        return set(out.stdout.split())

    before = queued()
    yield
    left = queued() - before
    if left:
        subprocess.run(["scancel", *sorted(left)], timeout=30, check=False)


def _config(**overrides):
    from hicd_core.experiments.slurm_config import SlurmConfig

    return SlurmConfig(**{"cpus_per_task": 1, "time": "10", **overrides})


def _attempts(store: RunStore) -> list[dict]:
    folder = store.root / "slurm" / "attempts"
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text().splitlines()]


def _finished_at(store: RunStore, run_id: str) -> float:
    return json.loads((store.run_dir(run_id) / "run.json").read_text())["finished_at"]


def _wait_gone(task_id: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30)
        if task_id not in out.stdout.split():
            return
        time.sleep(0.5)
    raise AssertionError(f"Slurm task {task_id} still queued after {timeout}s")


@needs_slurm
def test_slurm_sweep_gives_the_local_results(small_synthetic_dir: Path, tmp_path: Path, capsys) -> None:
    """The tiny sweep (HICD-Graph, two settings, with transfer) through ``--executor slurm`` finishes
    every run with the same results table as the local executor: same specs, seeds and 1-thread
    processes, so the same numbers (only the timing column differs)."""
    common = ["sweep", "--preset", "tiny", "--models", "graph", "--settings", "000,011", "--quiet",
              "--cohort", f"mimic-iv:{small_synthetic_dir / 'mimic-iv'}",
              "--target", f"eicu:{small_synthetic_dir / 'eicu'}"]
    assert cli.main([*common, "--store", str(tmp_path / "local"), "--workers", "2"]) == 0
    assert cli.main([*common, "--store", str(tmp_path / "slurm"), "--executor", "slurm",
                     "--slurm-cpus-per-task", "1", "--slurm-time", "15"]) == 0
    capsys.readouterr()
    local = RunStore(tmp_path / "local").results_table().set_index("run_id").sort_index()
    slurm = RunStore(tmp_path / "slurm").results_table().set_index("run_id").sort_index()
    assert len(slurm) == 4 and list(slurm.index) == list(local.index)
    pd.testing.assert_frame_equal(slurm.drop(columns="train_seconds"), local.drop(columns="train_seconds"))
    for run_id in local.index:
        np.testing.assert_array_equal(RunStore(tmp_path / "slurm").predictions(run_id)["prob"],
                                      RunStore(tmp_path / "local").predictions(run_id)["prob"])
    # Every run was written by a Slurm task, recorded with its job id; status says so.
    jobs = json.loads((tmp_path / "slurm" / "slurm" / "jobs.json").read_text())["tasks"]
    assert sorted(run for task in jobs for run in task["runs"]) == sorted(local.index)
    assert cli.main(["status", "--store", str(tmp_path / "slurm"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["finished"] == 4 and all(row["job"] for row in status["runs"])
    assert json.loads((tmp_path / "slurm" / "slurm.json").read_text())["cpus_per_task"] == 1


def _group_specs(small_source_cohort, small_target_cohort, epochs_scale: float | None = None):
    """One run group: HICD-Graph flat, three tasks and the transfer probe (four runs, one pretraining)."""
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    preset = load_preset("tiny").with_overrides(models=("graph",), settings=Setting.parse_list("000"),
                                                tasks=SOURCE_TASKS, epochs_scale=epochs_scale)
    return cohorts, expected_runs(preset, cohorts, "cpu")


@needs_slurm
def test_cancelled_task_resubmitted_redoes_nothing(small_source_cohort, small_target_cohort,
                                                   tmp_path: Path) -> None:
    """``scancel`` of an array task mid-group, then the same sweep again: only the unfinished runs are
    submitted, the finished ones are left untouched, and every run ends finished."""
    from hicd_core.experiments.slurm import SlurmExecutor

    cohorts, specs = _group_specs(small_source_cohort, small_target_cohort)
    store = RunStore(tmp_path / "store")
    first = SlurmExecutor(_config(), detach=True)
    outcome = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs, executor=first)
    assert set(outcome.values()) == {"submitted"} and len(first.submitted) == 1
    task_id = first.submitted[0]["task_id"]
    deadline = time.time() + 300
    while time.time() < deadline and not any(store.is_finished(run_id) for run_id in specs):
        time.sleep(0.2)
    subprocess.run(["scancel", task_id.split("_")[0]], check=True, timeout=30)
    _wait_gone(task_id)
    done_before = {run_id: _finished_at(store, run_id) for run_id in specs if store.is_finished(run_id)}
    assert 1 <= len(done_before) < len(specs), f"cancel came too late to test a resume: {done_before}"

    again = SlurmExecutor(_config(), poll_seconds=0.5)
    outcome = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs, executor=again)
    assert all(outcome[run_id] == "skipped" for run_id in done_before)
    assert {outcome[run_id] for run_id in specs if run_id not in done_before} == {"finished"}, outcome
    resubmitted = {run_id for task in again.submitted for run_id in task["runs"]}
    assert resubmitted == set(specs) - set(done_before)
    assert {run_id: _finished_at(store, run_id) for run_id in done_before} == done_before
    assert len(store.results_table()) == len(specs)


def _scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                         timeout=30).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def _release_begin_time(job: str, deadline: float) -> None:
    """Slurm holds a requeued job about two minutes (pending, Reason=BeginTime); once it is held so,
    start it now, as an admin would (``scontrol update StartTime=now``). Nothing to do if it already
    runs again; a job still pending for another reason is left to the scheduler."""
    stop = min(deadline, time.time() + 60)
    while time.time() < stop:
        info = _scontrol_job(job)
        if info.get("JobState") == "PENDING" and info.get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=30)
            return
        if info.get("JobState") not in ("PENDING", "REQUEUED", "COMPLETING", "REQUEUE_HOLD"):
            return
        time.sleep(0.2)


def _worker_pid(store: RunStore, deadline: float) -> int:
    """The first attempt's Python process (its attempt record says host and pid)."""
    while time.time() < deadline:
        pids = [a["pid"] for a in _attempts(store) if "pid" in a and a.get("restart", 0) == 0]
        if pids:
            return pids[0]
        time.sleep(0.2)
    raise AssertionError("the Slurm task never logged its first attempt")


def _signalled_or_gone(pid: int) -> bool:
    """Whether a signal is queued for the (stopped) process, or it has already gone: slurmstepd
    continues a stopped task when it signals it, so the handler may already have run and exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return bool(int(fields.get("ShdPnd", "0"), 16) | int(fields.get("SigPnd", "0"), 16)) \
        or fields.get("State", "").startswith("Z")


@needs_slurm
def test_time_limit_kill_is_requeued_and_resumes(small_source_cohort, small_target_cohort,
                                                 tmp_path: Path) -> None:
    """A task that reaches its time limit mid-group gets submitit's signal, checkpoints and is requeued;
    the requeued attempt skips what the first one finished, and the group completes.

    Slurm time limits come in minutes and its signal comes at one of its 30 s checks, so how much
    training fits before the signal depends on the CPU. To make the test independent of speed the
    task is stopped (SIGSTOP) once its first run has finished, its limit is cut (``scontrol update
    TimeLimit``, as an admin or a reservation would), and it is continued as soon as Slurm's signal
    is pending (slurmstepd may continue it itself when it signals); the limit is restored once the
    task has been requeued."""
    import os
    import signal

    from hicd_core.experiments.slurm import SlurmExecutor

    cohorts, specs = _group_specs(small_source_cohort, small_target_cohort, epochs_scale=2.0)
    store = RunStore(tmp_path / "store")
    config = _config(extra={"signal_delay_s": "30"})
    submit = SlurmExecutor(config, detach=True, max_num_timeout=5)
    Sweep(store, cohorts, device="cpu", embeddings=True).run(specs, executor=submit)
    job = submit.submitted[0]["task_id"]
    deadline = time.time() + 600
    pid = _worker_pid(store, deadline)
    while time.time() < deadline and not any(store.is_finished(run_id) for run_id in specs):
        time.sleep(0.1)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert not all(store.is_finished(run_id) for run_id in specs), "the group ended before the cut"
        # The limit 10-70 s from now; Slurm signals about 30 s ahead of it (up to a minute early).
        hours, minutes, seconds = (int(part) for part in _scontrol_job(job)["RunTime"].split(":"))
        limit = -(-(hours * 3600 + minutes * 60 + seconds + 10) // 60)
        subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={limit}"], check=True, timeout=30)
        while time.time() < deadline and not _signalled_or_gone(pid):
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    while time.time() < deadline and int(_scontrol_job(job).get("Restarts", 0)) < 1:
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], check=True, timeout=30)
    _release_begin_time(job, deadline)
    # Wait for the rest through the executor (it submits nothing: the group is still queued).
    wait = SlurmExecutor(config, poll_seconds=0.5)
    outcome = Sweep(store, cohorts, device="cpu", embeddings=True).run(specs, executor=wait)
    assert not wait.submitted
    assert set(outcome.values()) <= {"finished", "skipped"}, \
        [store.failure(run_id) for run_id in specs]
    attempts = _attempts(store)
    assert max(a.get("restart", 0) for a in attempts) >= 1, attempts  # requeued by the time limit
    finished = [(a["restart"], a["finished"]) for a in attempts if "finished" in a]
    # Every run finished exactly once across the attempts: the requeued one resumed, redid nothing.
    assert sorted(run_id for _, run_id in finished) == sorted(specs), finished
    assert {restart for restart, _ in finished} == {0, 1}, finished  # some before, the rest after
    log = Path(submit.submitted[0]["stdout"]).read_text()  # submitit's own log lines
    assert "this job is timed-out" in log and "Requeued job" in log, log[-2000:]
