"""The sweep on a Slurm cluster through submitit: one job-array task per run group.

* Each task (:class:`GroupTask`) reads the cohorts from the parsed-cohort cache named in the sweep's
  cohort descriptor (no re-parsing of raw files on the node), skips the group's runs that are already
  finished, and writes every run directory atomically into the store, which must sit on storage that
  the submitting machine and the nodes share. Nothing depends on the submitting process: ``--detach``
  returns at once, ``status`` and ``report`` read the store.
* A task that times out or is preempted gets submitit's ``USR2`` signal; :meth:`GroupTask.checkpoint`
  hands back the same task, so the requeued job resumes its group (finished runs are skipped, the
  interrupted run starts over from its atomic temp folder's absence).
* Submissions are recorded in ``<store>/slurm/jobs.json`` under a file lock: a second sweep on the
  same store submits only the groups that are neither finished nor still in the queue.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hicd_core.experiments.executors import THREAD_ENV, Group, group_sweep
from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.slurm_config import SlurmConfig
from hicd_core.runtime import atomic_write_json

if TYPE_CHECKING:
    from hicd_core.experiments.sweep import Sweep

SLURM_DIR, JOBS_FILE = "slurm", "jobs.json"
#: squeue states of a task that is still the cluster's business (it will run, or runs now).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED"}


class SlurmError(RuntimeError):
    """Slurm cannot be reached or refused a submission; the message says which command and why."""


def _squeue_states() -> dict[str, str]:
    """Array task id (``123_4``) or job id -> squeue state, for this user's jobs."""
    if shutil.which("squeue") is None:
        raise SlurmError("squeue not found: --executor slurm needs the Slurm client commands on this machine")
    try:
        out = subprocess.run(["squeue", "-h", "-r", "--me", "-o", "%i|%T"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise SlurmError(f"squeue failed: {detail.strip()}") from exc
    states = {}
    for line in out.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            states[job] = state
    return states


def queue_state(task_id: str, states: dict[str, str]) -> str | None:
    """The task's squeue state, or None once Slurm no longer lists it (it ended)."""
    return states.get(task_id)


@contextlib.contextmanager
def _store_lock(store_root: Path) -> Iterator[None]:
    """Serialise submissions to one store (two sweeps must not both submit the same group)."""
    folder = store_root / SLURM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "submit.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_jobs(store_root: Path) -> list[dict]:
    """Every task this store has submitted, oldest first: ``task_id``, ``runs`` (run_id -> spec
    fields), ``stdout``, ``stderr``, ``submitted``."""
    path = Path(store_root) / SLURM_DIR / JOBS_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        return list(data.get("tasks", []))
    except (OSError, ValueError, AttributeError) as exc:
        raise SlurmError(f"{path} is unreadable ({exc}); delete it to forget earlier submissions") from exc


def latest_tasks(store_root: Path) -> dict[str, dict]:
    """run_id -> the most recent task submitted for it."""
    latest: dict[str, dict] = {}
    for task in read_jobs(store_root):
        for run_id in task["runs"]:
            latest[run_id] = task
    return latest


def _tail(path: str | None, lines: int = 3) -> str:
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def task_error(task: dict) -> str:
    """Why a task ended without finishing its runs: its own error (submitit's result file) else the
    end of its stderr, and where its log is."""
    detail = ""
    result = task.get("result")
    if result and Path(result).is_file():
        try:
            import pickle

            with open(result, "rb") as handle:
                kind, payload = pickle.load(handle)  # written by submitit inside our own job
            if kind == "error":
                detail = str(payload).strip().splitlines()[-1]
        except Exception:  # an unreadable result file says nothing more than the log does
            detail = ""
    detail = detail or _tail(task.get("stderr")) or "no error message (killed by Slurm or the node?)"
    return (f"Slurm task {task['task_id']} ended without finishing this run: {detail} "
            f"(log: {task.get('stderr')})")


@dataclass
class GroupTask:
    """One job-array task: a run group, resumable (submitit's checkpoint protocol)."""

    store_root: str
    descriptor: dict
    group: Group
    device: str
    embeddings: bool | tuple  # resolved by Sweep.run (embedding_seeds)
    threads: int

    def __call__(self) -> dict[str, str]:
        import submitit
        import torch

        torch.set_num_threads(self.threads)
        env = submitit.JobEnvironment()
        store = RunStore(Path(self.store_root))
        left = [(run_id, spec) for run_id, spec in self.group if not store.is_finished(run_id)]
        attempt = {"task_id": env.job_id, "restart": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
                   "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                   "skipped": [run_id for run_id, _ in self.group if store.is_finished(run_id)]}
        self._log_attempt(attempt)

        def log_done(event: Any) -> None:
            if event.stage == "done":
                self._log_attempt({"task_id": env.job_id, "restart": attempt["restart"],
                                   "finished": event.run_id, "at": time.time()})

        sweep = group_sweep(self.store_root, self.descriptor, self.device, self.embeddings, log_done)
        self._log_attempt({"task_id": env.job_id, "restart": attempt["restart"], "ready": time.time()})
        outcome = sweep._run_todo(left, write_table=False)
        for run_id, status in outcome.items():
            failure = store.failure(run_id) if status == "failed" else None
            if failure is not None:  # say where the task's own log is
                failure["slurm"] = {"task_id": env.job_id, "stdout": str(env.paths.stdout),
                                    "stderr": str(env.paths.stderr)}
                atomic_write_json(store.root / "failed" / f"{run_id}.json", failure)
        self._log_attempt({**attempt, "ended": time.time(), "outcome": outcome})
        return outcome

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """On timeout or preemption: requeue the same group; finished runs are skipped on restart."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)

    def _log_attempt(self, record: dict) -> None:
        """One JSON line per attempt start and end under ``slurm/attempts/`` (what ran where, when)."""
        folder = Path(self.store_root) / SLURM_DIR / "attempts"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{record['task_id']}.jsonl", "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")


def _setup_lines(threads: int) -> list[str]:
    """Shell lines run before each task: the engine importable on the node, the data dir, and the
    thread pools sized like the local workers' (float results depend on the thread count)."""
    package_root = Path(__file__).resolve().parents[2]
    lines = [f"export PYTHONPATH={shlex.quote(str(package_root))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    if os.environ.get("HICD_DATA_DIR"):
        lines.append(f"export HICD_DATA_DIR={shlex.quote(os.environ['HICD_DATA_DIR'])}")
    lines += [f"export {name}={threads}" for name in THREAD_ENV]
    return lines


class SlurmExecutor:
    """Submits the run groups as a Slurm job array and (unless ``detach``) waits, relaying progress
    read from the store. Interrupting the wait leaves the jobs running (say so, with their ids)."""

    def __init__(self, config: SlurmConfig, detach: bool = False, poll_seconds: float = 2.0,
                 max_num_timeout: int = 3) -> None:
        self.config, self.detach, self.poll_seconds = config, detach, poll_seconds
        self.max_num_timeout = max_num_timeout
        self.submitted: list[dict] = []  # the tasks this executor submitted

    def run(self, sweep: Sweep, todo: Group) -> dict[str, str]:
        from hicd_core.experiments.sweep import run_groups

        store = sweep.store
        if not todo:
            return {}
        if not sweep.cohorts.reloadable():
            raise SlurmError("--executor slurm needs cohorts read from folders (the tasks read them again)")
        with _store_lock(store.root):
            states = _squeue_states()
            latest = latest_tasks(store.root)
            queued = {run_id for run_id, _ in todo
                      if run_id in latest and queue_state(latest[run_id]["task_id"], states) in ACTIVE}
            groups = [[item for item in group if item[0] not in queued] for group in run_groups(todo)]
            groups = [group for group in groups if group]
            if groups:
                self.submitted = self._submit(sweep, groups)
        outcome = dict.fromkeys(queued, "queued")
        if self.detach:
            return {**outcome, **{run_id: "submitted" for task in self.submitted for run_id in task["runs"]}}
        return self._wait(sweep, todo)

    def _submit(self, sweep: Sweep, groups: list[Group]) -> list[dict]:
        import submitit

        store = sweep.store
        threads = self.config.cpus_per_task
        executor = submitit.SlurmExecutor(folder=store.root / SLURM_DIR / "logs" / "%j",
                                          max_num_timeout=self.max_num_timeout, python=sys.executable)
        executor.update_parameters(**self.config.submitit_parameters(
            sweep.device, f"hicd-{store.root.name}"[:64], _setup_lines(threads)))
        tasks = [GroupTask(str(store.root), sweep.cohorts.descriptor(), group, sweep.device, sweep.embeddings,
                           threads) for group in groups]
        try:
            jobs = executor.submit_array(tasks)
        except Exception as exc:  # sbatch's own message (bad partition, account, ...)
            raise SlurmError(f"sbatch refused the job array: {str(exc).strip().splitlines()[-1]}") from exc
        records = [{"task_id": job.job_id, "submitted": time.time(), "stdout": str(job.paths.stdout),
                    "stderr": str(job.paths.stderr), "result": str(job.paths.result_pickle),
                    "runs": {run_id: asdict(spec) for run_id, spec in group}}
                   for job, group in zip(jobs, groups, strict=True)]
        path = store.root / SLURM_DIR / JOBS_FILE
        atomic_write_json(path, {"tasks": [*read_jobs(store.root), *records]})
        return records

    def _wait(self, sweep: Sweep, todo: Group) -> dict[str, str]:
        """Poll squeue and the store until every task of ``todo`` has ended; relay events."""
        from hicd_core.experiments.sweep import SweepEvent

        store, n_runs = sweep.store, len(todo)
        index_of = {run_id: index for index, (run_id, _) in enumerate(todo)}
        outcome: dict[str, str] = {}
        started: set[str] = set()

        def emit(run_id: str, stage: str, message: str = "") -> None:
            fraction = 1.0 if run_id in outcome else 0.0
            overall = len(outcome) / n_runs
            sweep.callback(SweepEvent(run_id, index_of[run_id], n_runs, stage, fraction, overall, None,
                                      message))

        try:
            while len(outcome) < n_runs:
                states = _squeue_states()
                latest = latest_tasks(store.root)
                for run_id, spec in todo:
                    if run_id in outcome:
                        continue
                    task = latest.get(run_id)
                    state = queue_state(task["task_id"], states) if task else None
                    if store.is_finished(run_id):
                        outcome[run_id] = "finished"
                        emit(run_id, "done")
                    elif state in ACTIVE:
                        running = any(store.runs_dir.glob(f".tmp-{run_id}-*"))
                        if running and run_id not in started:
                            started.add(run_id)
                            emit(run_id, f"running ({task['task_id']})")
                    elif task is not None and state is None:
                        failure = store.failure(run_id) or {}
                        if (failure.get("slurm") or {}).get("task_id") != task["task_id"]:  # none of its own
                            store.mark_failed(run_id, spec, task_error(task))
                        outcome[run_id] = "failed"
                        emit(run_id, "failed", (store.failure(run_id) or {}).get("error", "").splitlines()[0])
                    elif task is None:  # never submitted: an earlier sweep holds it? report it plainly
                        outcome[run_id] = "failed"
                        store.mark_failed(run_id, spec, "not submitted and not finished")
                        emit(run_id, "failed", "not submitted")
                if len(outcome) < n_runs:
                    time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            ids = sorted({task["task_id"].split("_")[0] for task in self.submitted})
            print(f"\nstopped waiting; the Slurm jobs keep running (cancel with: scancel {' '.join(ids)}); "
                  "`python -m hicd_core status` shows their progress", file=sys.stderr)
            raise
        store.write_results_table()
        return outcome
