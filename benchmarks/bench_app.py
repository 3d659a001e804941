"""Benchmark of the app's pages: wall time of each page script through AppTest, cold and warm.

The store is ``$HICD_STORE`` when set, else a tiny bundle (4 settings x both models x
readmission_30d + transfer, short training) built once under ``$HICD_DATA_DIR/bench`` and reused
by later runs (the sweep skips finished runs). Each page is opened once to fill the caches (the
"cold" figure, which includes imports on the first page), then rerun ``REPEATS`` times; the median
of those is the "warm" figure, the one the 2 s target is about.

Run one page with ``python -m benchmarks app_level_ablation`` or all with ``python -m benchmarks
app_pages``; run this file directly to print the figures as JSON.

Measured 2026-11-27 on the default bundle (``HICD_STORE=.../runs/default``, 2 cores): entry point's
first run (imports, cohorts, overview) 3.5 s; warm page scripts overview 0.05 s, ICD tree 0.05 s
(cold 0.98 s), level ablation 0.06 s, embeddings 0.09 s (cold 0.34 s), transfer 0.05 s (cold 0.47 s),
patient 0.11 s (cold 2.1 s, with the attributions of one patient under all 8 settings).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAGES = tuple(f"hicd_app/views/{name}.py" for name in ("overview", "icd_tree", "level_ablation", "embeddings",
                                                      "transfer", "patient"))
REPEATS = 3
TARGET_S = 2.0


def tiny_store() -> Path:
    """``$HICD_STORE``, or the tiny bench bundle (built on first use; minutes on 2 CPU cores)."""
    if os.environ.get("HICD_STORE"):
        return Path(os.environ["HICD_STORE"])
    from hicd_core.cohort import load_cohort
    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs
    from hicd_core.runtime import data_dir
    from hicd_core.synthetic import write_synthetic

    base = data_dir() / "bench"
    synthetic = base / "synthetic"
    if not (synthetic / "SYNTHETIC.json").is_file():
        write_synthetic(synthetic, seed=0, hierarchy_signal=0.9, n_source_patients=2500,
                        n_target_patients=1200)
    cohorts = Cohorts(load_cohort("mimic-iv", synthetic / "mimic-iv"),
                      load_cohort("eicu", synthetic / "eicu"))
    store = RunStore(base / "tiny_store")
    preset = load_preset("tiny").with_overrides(settings=("000", "001", "011", "111"))
    specs = expected_runs(preset, cohorts, "cpu")
    if not all(store.is_finished(run_id) for run_id in specs):
        Sweep(store, cohorts, device="cpu").run(specs, workers="auto")
    return store.root


def time_pages(pages: tuple[str, ...] = PAGES, repeats: int = REPEATS) -> dict[str, Any]:
    """Cold and warm (median of ``repeats``) seconds per page, plus whether warm meets the target."""
    from streamlit.testing.v1 import AppTest

    os.environ["HICD_STORE"] = str(tiny_store())
    os.environ["HICD_NO_AUTOTRAIN"] = "1"
    figures: dict[str, Any] = {"store": os.environ["HICD_STORE"], "repeats": repeats, "target_s": TARGET_S}
    start = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    figures["entry_first_run_s"] = round(time.perf_counter() - start, 3)
    for page in pages:
        name = Path(page).stem
        start = time.perf_counter()
        at.switch_page(page).run()
        figures[f"{name}_cold_s"] = round(time.perf_counter() - start, 3)
        if at.exception:
            figures[f"{name}_error"] = str(at.exception[0].value)[:200]
            continue
        warm = []
        for _ in range(repeats):
            start = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - start)
        figures[f"{name}_warm_s"] = round(statistics.median(warm), 3)
        figures[f"{name}_meets_target"] = statistics.median(warm) < TARGET_S
    return figures


def _page_benchmark(page: str):
    return lambda: time_pages((page,))


BENCHMARKS = {"app_pages": time_pages,
              **{f"app_{Path(page).stem}": _page_benchmark(page) for page in PAGES}}


if __name__ == "__main__":
    print(json.dumps(time_pages(), indent=2))
