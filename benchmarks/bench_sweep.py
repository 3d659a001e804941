"""The default bundle: ``sweep --preset default`` from scratch on the synthetic default (target:
under 15 minutes on 2 CPU cores), with where the time goes (per model and kind of run).

``sweep_default_bundle`` uses the CLI's default (``--workers auto``: two 1-thread processes on two
cores); ``sweep_default_bundle_1worker`` is the same sweep in one 2-thread process, the comparison
behind the default. Per-model seconds are summed over runs, so with two workers they add up to about
twice the wall time. ``sweep_bert_8_settings`` / ``sweep_graph_8_settings`` time one model family's
training alone (8 settings x both tasks, no transfer or embedding analysis).

Measured 2026-11-27 on the 2-core development machine (idle; default synthetic cohort, 12,000 source /
6,000 target patients):

* ``python -m hicd_core sweep --preset default`` (48 runs, workers auto = 2): 9 min 03 s wall,
  1,009 user CPU-s, largest process 4.2 GB RSS (``/usr/bin/time -v``). ``sweep_default_bundle_1worker``
  (one 2-thread process): 813 s, so the workers give 1.50x. Its worker-seconds by stage: BERT
  pretrain 150, fine-tune 193, first epochs ("start") 83, embeddings + UMAP 128, Graph transformer
  152, GCN 38, transfer 56, evaluate 14.
* ``sweep_bert_8_settings``: 281 s wall, 554 worker-s (16 runs); ``sweep_graph_8_settings``: 110 s
  wall, 206 worker-s. Re-run an hour later after the review clean-up: 305 s and 127 s with the
  same AUROCs; the machine was slower then (``transformer_throughput`` on the pre-clean-up commit:
  3,150 samples/s against 3,523 earlier, and 3,280 on the new code).
* ``sweep_tiny``: 51 s with two workers vs 80 s in one process (``sweep_tiny_1worker``): 1.57x.
  Before the worker thread pools were capped (OMP/BLAS/numba at one thread each) the same two
  workers took 183 s.

Measured 2026-12-06 on a different 2-core machine: AMD EPYC with AVX2 only (no AVX-512, no AMX, so
bf16 is off: emulated it was 6-11x slower, ``models.common.use_bf16``), idle, default bundle now with
counts-lr (72 runs per seed):

* ``sweep_default_one_seed`` (seed 0, embedding analysis on, as the CLI's ``--embeddings first-seed``
  does for the first seed): **1,152 s wall**, 2,250 user CPU-s, 1.8 GB peak RSS (``/usr/bin/time -v``).
  Worker-seconds by stage: BERT pretrain 443, fine-tune 687, first epochs ("start") 237, embeddings +
  UMAP 250, GCN 198, Graph transformer 362, evaluate 52, transfer 40; by model: BERT 1,598, Graph
  661, counts-lr 17. Seeds 1 and 2 skip the embedding analysis, so the 3-seed bundle is about
  1,152 + 2 x (1,152 - 250 / 2) = **~3,200 s (53 min) on this CPU**, an estimate from the one-seed
  run, not timed end to end. The 15-minute target was set on the AMX Xeon, where one seed took 9 min
  (above); this CPU is ~2.6x slower per core on the same work.
* Levers measured here: tokenisation is already once per cohort and vocabulary (0.39 CPU-s, then
  6 ms per task: nothing left to share); the evaluation now reuses the probabilities training
  computed (kept epoch's validation pass, final test pass). HICD-BERT + HICD-Graph, settings 000 and
  111, both tasks, no transfer or embeddings (``_sweep("default", embeddings="none", seeds=(0,),
  models=("bert", "graph"), settings=Setting.parse_list("000,111"), transfer=False)``, before on the
  previous commit): 531.7 -> 512.0 worker-s (-3.7 %), 281.7 -> 275.6 s wall, "evaluate" 14.6 ->
  3.5 s, identical AUROCs. A sparse backward for the GCN's link decoder
  instead of the Gram matrix: no faster at 2,260 nodes (0.18 vs 0.16 CPU-s per step), not adopted.
  UMAP is 90 % of the embedding analysis: 9.5 CPU-s per run at 11.6k codes, plus ~12 s of numba
  compilation once per worker.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def _sweep(preset_name: str, workers: int | str = "auto", embeddings: str | bool = "first-seed",
           **overrides) -> dict:
    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Sweep, expected_runs, resolve_cohorts

    preset = load_preset(preset_name).with_overrides(**overrides)
    start = time.perf_counter()
    cohorts = resolve_cohorts("synthetic", None, preset.synthetic_patients)
    cohort_s = time.perf_counter() - start
    specs = expected_runs(preset, cohorts)
    stages: dict[str, float] = {}  # worker-seconds per stage, summed over runs
    last: dict[str, tuple[float, str]] = {}

    def callback(event) -> None:
        now = time.perf_counter()
        if event.run_id in last:
            then, stage = last[event.run_id]
            stages[stage] = stages.get(stage, 0.0) + now - then
        last[event.run_id] = (now, event.stage)

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        sweep_start = time.perf_counter()
        outcome = Sweep(store, cohorts, callback=callback, embeddings=embeddings).run(specs, workers)
        wall = time.perf_counter() - sweep_start
        table = store.results_table()
        per_model = table.groupby(["model", "kind"])["train_seconds"].sum().round(1)
        runs = {row.run_id: {"auroc": round(row.auroc, 4), "s": row.train_seconds}
                for row in table.itertuples()}
    return {"runs": len(specs), "workers": workers, "failed": sum(v == "failed" for v in outcome.values()),
            "cohort_load_s": round(cohort_s, 1), "sweep_wall_s": round(wall, 1),
            "seconds_by_model_kind": json.dumps({f"{m}/{k}": v for (m, k), v in per_model.items()}),
            "seconds_by_stage": json.dumps({k: round(v, 1) for k, v in stages.items()}),
            "per_run": json.dumps(runs)}


BENCHMARKS = {
    "sweep_default_bundle": lambda: _sweep("default"),
    "sweep_default_bundle_1worker": lambda: _sweep("default", workers=1),
    # One seed of the bundle (with the embedding analysis): the unit the 3-seed figure is built from.
    "sweep_default_one_seed": lambda: _sweep("default", seeds=(0,)),
    # Training only (no transfer, no embedding analysis): all 8 settings of one model family, both
    # tasks, on the default cohort (issue targets: HICD-BERT 5 min, HICD-Graph 3 min on 2 cores).
    "sweep_bert_8_settings": lambda: _sweep("default", embeddings=False, models=("bert",), transfer=False),
    "sweep_graph_8_settings": lambda: _sweep("default", embeddings=False, models=("graph",), transfer=False),
    "sweep_tiny": lambda: _sweep("tiny"),
    "sweep_tiny_1worker": lambda: _sweep("tiny", workers=1),
}
