"""The default bundle: ``sweep --preset default`` from scratch on the synthetic default (target:
under 15 minutes on 2 CPU cores), with where the time goes (per model, per stage)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def _sweep(preset_name: str, **overrides) -> dict:
    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Sweep, expected_runs, resolve_cohorts

    preset = load_preset(preset_name).with_overrides(**overrides)
    start = time.perf_counter()
    cohorts = resolve_cohorts("synthetic", None, preset.synthetic_patients)
    cohort_s = time.perf_counter() - start
    specs = expected_runs(preset, cohorts)
    stages: dict[str, float] = {}
    last = {"t": time.perf_counter(), "stage": "start"}

    def callback(event) -> None:
        now = time.perf_counter()
        stages[last["stage"]] = stages.get(last["stage"], 0.0) + now - last["t"]
        last.update(t=now, stage=event.stage)

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp))
        sweep_start = time.perf_counter()
        outcome = Sweep(store, cohorts, callback=callback).run(specs)
        wall = time.perf_counter() - sweep_start
        table = store.results_table()
        per_model = table.groupby(["model", "kind"])["train_seconds"].sum().round(1)
        runs = {row.run_id: {"auroc": round(row.auroc, 4), "s": row.train_seconds}
                for row in table.itertuples()}
    return {"runs": len(specs), "failed": sum(v == "failed" for v in outcome.values()),
            "cohort_load_s": round(cohort_s, 1), "sweep_wall_s": round(wall, 1),
            "seconds_by_model_kind": json.dumps({f"{m}/{k}": v for (m, k), v in per_model.items()}),
            "seconds_by_stage": json.dumps({k: round(v, 1) for k, v in stages.items()}),
            "per_run": json.dumps(runs)}


BENCHMARKS = {
    "sweep_default_bundle": lambda: _sweep("default"),
    "sweep_tiny": lambda: _sweep("tiny"),
}
