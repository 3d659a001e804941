"""Overhead of the Slurm executor against the local one, on a tiny sweep (HICD-Graph, 2 settings,
readmission_30d + transfer, no embedding analysis: 2 run groups of 2 runs) on this machine's
single-node Slurm (``scripts/slurm-local.sh start``; 2 CPUs, so both tasks run at once, as both
local workers do).

Per Slurm task: ``queue_s`` (submission to the task's Python starting: sbatch, scheduling, srun,
interpreter + submitit start), ``cohort_load_s`` (imports + reading the cohorts from the parsed-cohort
cache), and the sweep's wall time against the local executor's with the same 1-thread processes.

Measured 2026-12-05 on the 2-core development machine while other test suites ran on it (load
average 3-9, so the wall times carry their noise; the per-task figures are the ones to read),
``python -m benchmarks slurm_vs_local``: local 97.8 s, Slurm 103 s for the same 4 runs, so 2.4 s of
overhead per group; 8.2 s from the sweep's start (sbatch included) to a task's Python running the
group (Slurm's scheduling pass, srun, interpreter and submitit start, unpickling), 0.6 s to read the
cohorts back from the parsed-cohort cache. A requeued task additionally waits out Slurm's 2-minute
requeue delay (seen in tests/test_slurm.py's time-limit test).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _tiny(tmp: Path):
    from hicd_core.cohort import load_cohort
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, expected_runs
    from hicd_core.hierarchy import Setting
    from hicd_core.synthetic import write_synthetic

    write_synthetic(tmp / "syn", seed=0, hierarchy_signal=0.9, n_source_patients=2500, n_target_patients=1200)
    syn = tmp / "syn"
    cohorts = Cohorts(load_cohort("mimic-iv", syn / "mimic-iv"), load_cohort("eicu", syn / "eicu"))
    preset = load_preset("tiny").with_overrides(models=("graph",), settings=Setting.parse_list("000,011"))
    return cohorts, expected_runs(preset, cohorts, "cpu")


def slurm_vs_local() -> dict:
    from hicd_core.experiments.executors import LocalExecutor
    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.slurm import SlurmExecutor
    from hicd_core.experiments.slurm_config import SlurmConfig
    from hicd_core.experiments.sweep import Sweep

    if shutil.which("sbatch") is None:
        return {"skipped": "no Slurm here: scripts/slurm-local.sh start"}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cohorts, specs = _tiny(tmp)
        start = time.perf_counter()
        Sweep(RunStore(tmp / "local"), cohorts, device="cpu", embeddings=False).run(
            specs, executor=LocalExecutor(2))
        local_s = time.perf_counter() - start
        store = RunStore(tmp / "slurm")
        executor = SlurmExecutor(SlurmConfig(cpus_per_task=1, time="30"), poll_seconds=0.5)
        start, wall_start = time.perf_counter(), time.time()
        outcome = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs, executor=executor)
        slurm_s = time.perf_counter() - start
        submitted = {task["task_id"]: task["submitted"] for task in executor.submitted}
        lines = [json.loads(line) for path in (store.root / "slurm" / "attempts").glob("*.jsonl")
                 for line in path.read_text().splitlines()]
        started = {line["task_id"]: line["started"] for line in lines
                   if "skipped" in line and "ended" not in line}
        ready = {line["task_id"]: line["ready"] for line in lines if "ready" in line}
        # From the sweep's start (sbatch included) to the task's Python running GroupTask.
        queue = [started[t] - wall_start for t in submitted]
        load = [ready[t] - started[t] for t in submitted]
    failed = sum(v == "failed" for v in outcome.values())
    return {"runs": len(specs), "groups": len(submitted), "failed": failed,
            "local_wall_s": round(local_s, 1), "slurm_wall_s": round(slurm_s, 1),
            "overhead_per_group_s": round((slurm_s - local_s) / max(1, len(submitted)), 1),
            "queue_s_mean": round(statistics.mean(queue), 2), "queue_s_max": round(max(queue), 2),
            "cohort_load_s_mean": round(statistics.mean(load), 2)}


BENCHMARKS = {"slurm_vs_local": slurm_vs_local}
