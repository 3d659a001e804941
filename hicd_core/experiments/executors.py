"""Where a sweep's run groups execute: the executor interface and the local process pool.

A :class:`~hicd_core.experiments.sweep.Sweep` decides *what* to run (the unfinished runs, grouped by
shared pretraining with :func:`~hicd_core.experiments.sweep.run_groups`); an executor decides *where*.
Every executor hands each group to ``Sweep._run_todo`` in some process that has the cohorts and the
store, so the runs it writes are the same wherever they ran. A further engine (Ray, ...) is one new
class with a ``run`` method; :mod:`hicd_core.experiments.slurm` is the Slurm one.

The local pool: on CPU the runs are spread over worker processes (``workers``), one group of runs
sharing a pretraining per task. The small CPU presets are overhead-bound: one HICD-BERT setting costs
64 CPU-s on 1 thread against 81 on 2 (benchmarks/bench_bert.py), and on two cores two 1-thread workers
finish the default bundle 1.50x sooner than one 2-thread process (bench_sweep.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import sys
import time
import traceback
import types
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.spec import RunSpec
from hicd_core.models.common import pick_device

if TYPE_CHECKING:
    from hicd_core.experiments.sweep import Sweep, SweepEvent

Group = list[tuple[str, RunSpec]]


class Executor(Protocol):
    """Runs a sweep's unfinished runs (``todo``, in order) and returns run_id -> outcome.

    Outcomes are ``finished`` / ``failed``, or for an executor that can return before the runs end
    (Slurm with ``detach``) ``submitted`` / ``queued`` (already in the cluster's queue)."""

    def run(self, sweep: Sweep, todo: Group) -> dict[str, str]: ...


def cpu_cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Most worker processes ``workers="auto"`` starts: each holds its own copy of the cohorts (loading a
#: full-MIMIC-IV-size cohort peaks at 1.7 GB, benchmarks/bench_cohort.py), so more would trade memory
#: for little.
MAX_AUTO_WORKERS = 4


def resolve_workers(workers: int | str, device: str) -> int:
    """``auto``: one process on CUDA (the GPU is the shared resource); on CPU one per core, at most
    :data:`MAX_AUTO_WORKERS`."""
    if workers == "auto":
        if pick_device(device).type == "cuda":
            return 1
        workers = min(cpu_cores(), MAX_AUTO_WORKERS)
    count = int(workers)
    if count < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    return count


def overall_and_eta(done_fraction: float, n_runs: int, started: float) -> tuple[float, float | None]:
    """Sweep progress in [0, 1] from the summed run fractions, and a linear ETA once it means much."""
    overall = done_fraction / n_runs
    elapsed = time.perf_counter() - started
    return overall, (elapsed / overall * (1 - overall) if overall > 0.02 else None)


#: Thread-pool sizes a worker process reads at start-up (OpenMP for torch and PyG, BLAS for numpy and
#: scikit-learn, numba for UMAP). Left at their defaults, two processes each spin two threads on two
#: cores and every run was measured ~3x slower than in one process.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def _child_thread_env(threads: int) -> Iterator[None]:
    """Set :data:`THREAD_ENV` while worker processes are spawned (they inherit the environment)."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update(dict.fromkeys(THREAD_ENV, str(threads)))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _plain_main() -> Iterator[None]:
    """Spawned workers re-run the parent's ``__main__`` when it is a file (multiprocessing's spawn
    rule): a script without a main guard, or a Streamlit page that AppTest installed as ``__main__``,
    would then run again inside every worker and kill it. The workers need nothing from it, so they
    are spawned while ``__main__`` is an empty module."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the sweep process dies (a killed sweep must
    not leave workers writing into the store behind a resumed one)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def group_sweep(store_root: str, descriptor: dict, device: str, embeddings: bool | tuple, callback: Any = None
                ) -> Sweep:
    """A Sweep in a fresh process: its own cohorts (read back from the parsed-cohort cache) and store."""
    from hicd_core.experiments.sweep import Cohorts, Sweep

    return Sweep(RunStore(Path(store_root)), Cohorts.from_descriptor(descriptor), device=device,
                 callback=callback, embeddings=embeddings)


_WORKER: dict[str, Any] = {}


def _worker_init(store_root: str, descriptor: dict, device: str, embeddings: bool | tuple, threads: int,
                 events: Any) -> None:
    """Start of a worker process: its thread count, its own cohorts and a Sweep over the store.

    A failure here is kept and raised by every task of the worker, so the runs fail with its message
    (an exception escaping an initializer only breaks the pool, without saying why)."""
    import torch

    _die_with_parent()
    torch.set_num_threads(threads)
    try:
        _WORKER["sweep"] = group_sweep(store_root, descriptor, device, embeddings, events.put)
    except Exception as exc:
        _WORKER["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _worker_run(group: Group) -> dict[str, str]:
    if "error" in _WORKER:
        raise RuntimeError(f"the worker process could not start: {_WORKER['error']}")
    sweep: Sweep = _WORKER["sweep"]
    sweep.forget_group()
    return sweep._run_todo(group, write_table=False)


class LocalExecutor:
    """This machine: in the calling process, or groups over ``workers`` spawned processes."""

    def __init__(self, workers: int | str = 1) -> None:
        self.workers = workers

    def run(self, sweep: Sweep, todo: Group) -> dict[str, str]:
        count = resolve_workers(self.workers, sweep.device) if sweep.cohorts.reloadable() else 1
        if count > 1 and todo:
            # Even when fewer groups than workers are left, they run in workers with the same thread
            # count: float results depend on it, and a resumed sweep must match an uninterrupted one.
            return _run_parallel(sweep, todo, count)
        return sweep._run_todo(todo)


def _run_parallel(sweep: Sweep, todo: Group, workers: int) -> dict[str, str]:
    """Groups of runs on up to ``workers`` processes (spawned: no forked torch state), each with
    cores // ``workers`` threads. Their events come back through a queue and are re-expressed
    against the whole sweep; this process alone writes the results table.

    A worker that dies (killed, out of memory) breaks the whole pool; the groups it took down
    with it are then retried one per single-process pool, so only the group that kills its
    process fails.
    """
    from hicd_core.experiments.sweep import SweepEvent, run_groups

    store = sweep.store
    index_of = {run_id: index for index, (run_id, _) in enumerate(todo)}
    fraction = dict.fromkeys(index_of, 0.0)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    sweep_start = time.perf_counter()
    threads = max(1, cpu_cores() // workers) if pick_device(sweep.device).type == "cpu" else 1
    initargs = (str(store.root), sweep.cohorts.descriptor(), sweep.device, sweep.embeddings, threads, events)

    def relay(event: SweepEvent) -> None:
        fraction[event.run_id] = event.run_fraction
        overall, eta = overall_and_eta(sum(fraction.values()), len(todo), sweep_start)
        if event.stage == "done":
            store.write_results_table()
        sweep.callback(replace(event, run_index=index_of[event.run_id], n_runs=len(todo),
                               overall_fraction=overall, eta_seconds=eta))

    def relay_pending() -> None:
        while True:
            try:
                relay(events.get_nowait())
            except queue.Empty:
                return

    def fail(group: Group, detail: str) -> dict[str, str]:
        """Record the group's unfinished runs as failed with ``detail``."""
        failed: dict[str, str] = {}
        for run_id, spec in group:
            if not store.is_finished(run_id):
                store.mark_failed(run_id, spec, detail)
                failed[run_id] = "failed"
                relay(SweepEvent(run_id, 0, len(todo), "failed", 1.0, 0.0, None, detail))
        return failed

    def run_pool(groups: list[Group], size: int) -> tuple[dict[str, str], list[Group]]:
        """Finished outcomes, and the groups a broken pool did not finish."""
        done: dict[str, str] = {}
        broken: list[Group] = []
        with _child_thread_env(threads), _plain_main(), ProcessPoolExecutor(
                max_workers=size, mp_context=context, initializer=_worker_init, initargs=initargs) as pool:
            futures = {pool.submit(_worker_run, group): group for group in groups}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                relay_pending()
                for future in finished:
                    try:
                        done.update(future.result())
                    except BrokenProcessPool:
                        broken.append(futures[future])
                    except Exception as exc:  # the worker could not start: its message, per run
                        done.update(fail(futures[future], str(exc)))
        relay_pending()  # the workers have exited, so everything they sent is readable
        return done, broken

    groups = run_groups(todo)
    outcome, broken = run_pool(groups, min(workers, len(groups)))
    for group in broken:  # isolate: one process per group, so a crash fails only its own runs
        left = [(run_id, spec) for run_id, spec in group if not store.is_finished(run_id)]
        done, still_broken = run_pool([left], 1) if left else ({}, [])
        outcome.update(done)
        for crashed in still_broken:
            outcome.update(fail(crashed, "the worker process running this run died (killed or out of "
                                         "memory)"))
    for run_id, _ in todo:  # runs of a retried group that finished before the crash
        if run_id not in outcome and store.is_finished(run_id):
            outcome[run_id] = "finished"
    store.write_results_table()
    return outcome
