"""Patient-attribution benchmarks: one patient across every trained setting, first call and cached.

Run::

    .venv/bin/python -m benchmarks patient_attributions_8_settings
    HICD_STORE=/path/to/store .venv/bin/python -m benchmarks.bench_attributions

The store is ``$HICD_STORE`` when set; otherwise a tiny store (8 settings x both models x
readmission_30d, the ``tiny`` sweep preset, no transfer, no embedding maps) is built once under the
data directory and reused. "first" includes loading every model from disk (as the page's first
visit does) but not Python imports; "cached" is the same call again. ``first_cpu_s`` is the CPU
time the process used for the first call: on a shared machine it tells what the call costs when
the cores are free (with ``torch`` at 1 thread it is the wall time of an idle core). Target: one
patient across all 8 settings under 3 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TASK = "readmission_30d"
N_STEPS = 32


def _store_and_cohort() -> tuple[Any, Any, str]:
    from hicd_core.cohort import load_cohort
    from hicd_core.experiments.runstore import RunStore

    env = os.environ.get("HICD_STORE")
    if env:
        store = RunStore(Path(env).expanduser())
        info = store.store_info()
        if not info.get("source_path"):
            raise SystemExit(f"HICD_STORE={env}: no store.json naming its source cohort")
        cohort = load_cohort(info["source_site"], info["source_path"],
                             split_seed=int(info.get("source_split_seed", 0) or 0))
        if info.get("source_fingerprint") and cohort.fingerprint != info["source_fingerprint"]:
            raise SystemExit(f"HICD_STORE={env}: the source cohort changed since the models were trained")
        return store, cohort, "HICD_STORE"
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs
    from hicd_core.runtime import data_dir
    from hicd_core.synthetic import write_synthetic

    root = data_dir() / "bench" / "attributions"
    synthetic = root / "synthetic"
    if not (synthetic / "SYNTHETIC.json").is_file():
        write_synthetic(synthetic, seed=0, hierarchy_signal=0.9, n_source_patients=2500,
                        n_target_patients=1200)
    cohort = load_cohort("mimic-iv", synthetic / "mimic-iv")
    store = RunStore(root / "store")
    preset = load_preset("tiny").with_overrides(transfer=False)
    cohorts = Cohorts(cohort, None)
    Sweep(store, cohorts, device="cpu", embeddings=False).run(expected_runs(preset, cohorts, "cpu"))
    return store, cohort, "tiny store built on the fly"


def _patient_across_settings(model: str) -> dict[str, Any]:
    import torch

    from hicd_core.analysis import attributions as A
    from hicd_core.analysis import patient_view as view

    store, cohort, source = _store_and_cohort()
    runs = view.task_runs(store)
    task = TASK if TASK in set(runs["task"]) else str(runs["task"].iloc[0])
    by_setting = view.runs_by_setting(runs, model, task, int(runs["seed"].min()))
    cands = view.test_candidates(store, next(iter(by_setting.values())), cohort, task)
    # A patient with history and a median-length input: representative, not the easiest case.
    rich = cands[cands["visit_index"] >= 1]
    rich = rich if len(rich) else cands
    sample_id = int(rich["sample_id"].iloc[len(rich) // 2])
    warm = int(cands["sample_id"].iloc[0])
    A.explain_sample(store, next(iter(by_setting.values())), cohort, task, warm, N_STEPS)  # imports, kernels
    A.clear_caches()
    start, cpu = time.perf_counter(), time.process_time()
    report = A.explain_patient(store, by_setting, cohort, task, sample_id, N_STEPS)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    again = A.explain_patient(store, by_setting, cohort, task, sample_id, N_STEPS)
    cached = time.perf_counter() - start
    attr = next(iter(report.attributions.values()))
    return {
        "store": source, "model": model, "task": task, "n_settings": len(by_setting), "n_steps": N_STEPS,
        "input_length": len(attr.table) if model == "bert" else int(attr.table["visit_index"].nunique()),
        "first_s": round(first, 3), "first_cpu_s": round(first_cpu, 3), "cached_s": round(cached, 4),
        "cached_ok": bool(again.cached),
        "per_setting_s": {s: round(a.seconds, 3) for s, a in report.attributions.items()},
        "max_abs_delta": float(report.risks["delta"].abs().max()),
        "max_relative_delta": float(report.risks["relative_delta"].max()),
        "torch_threads": torch.get_num_threads(),
        "attribution_threads": os.environ.get(A.THREADS_ENV, "1 (default)"), "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def bench_patient_bert() -> dict[str, Any]:
    """HICD-BERT: one patient, every trained setting (multi-layer LIG, all components in one call)."""
    return _patient_across_settings("bert")


def bench_patient_graph() -> dict[str, Any]:
    """HICD-Graph: one patient, every trained setting (LIG on the node embeddings)."""
    return _patient_across_settings("graph")


def bench_mean_attribution() -> dict[str, Any]:
    """Mean attribution per tree node over 20 test patients (what the tree page may colour by)."""
    from hicd_core.analysis import attributions as A
    from hicd_core.analysis import patient_view as view

    store, cohort, source = _store_and_cohort()
    runs = view.task_runs(store)
    by_setting = view.runs_by_setting(runs, "bert", TASK, int(runs["seed"].min()))
    run_id = by_setting.get("111", next(iter(by_setting.values())))
    cands = view.test_candidates(store, run_id, cohort, TASK)
    ids = cands["sample_id"].astype(int).tolist()[:20]
    A.load_model(store, run_id)
    start = time.perf_counter()
    frame = A.mean_attribution_by_code(store, run_id, cohort, TASK, ids, N_STEPS)
    seconds = time.perf_counter() - start
    return {"store": source, "n_samples": len(ids), "seconds": round(seconds, 3), "n_nodes": len(frame),
            "finite": bool(np.isfinite(frame["mean_attribution"]).all())}


BENCHMARKS = {
    "patient_attributions_8_settings": bench_patient_bert,
    "patient_attributions_graph_8_settings": bench_patient_graph,
    "mean_attribution_20_patients": bench_mean_attribution,
}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for name in sys.argv[1:] or list(BENCHMARKS):
        print(json.dumps({"name": name, **BENCHMARKS[name]()}, default=str))
