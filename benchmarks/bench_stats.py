"""Benchmark of the evaluation-statistics layer at the paper's scale.

One (model, task, seed) has a flat ``'000'`` run and 7 hierarchy settings scored on the same test
split. At n = 20,000 test predictions we time: threshold choice, DeLong for the 7 comparisons, the
1000-resample paired bootstrap per metric for the 7 comparisons, the whole ``compare_to_flat`` table,
and (for scale) a naive sklearn loop over 100 AUPRC resamples of one comparison.

``run()`` returns a flat dict of figures (wall seconds unless the key says otherwise; ``*_cpu_s``
is process CPU time, steadier on a shared machine); run this file to print it as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # executed as a script from a checkout that is not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import Clock  # noqa: E402
from hicd_core import stats  # noqa: E402
from hicd_core.hierarchy import SETTINGS  # noqa: E402

N = 20_000
N_RESAMPLES = 1000
SEED = 0


def _predictions(n: int = N, seed: int = SEED) -> pd.DataFrame:
    """Synthetic test predictions for the 8 settings: correlated scores, 20% positives, some ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int8)
    shared = rng.normal(size=n)
    frames = []
    for k, setting in enumerate(SETTINGS):
        logit = (0.9 + 0.03 * k) * y + shared + 0.6 * rng.normal(size=n) - 1.0
        prob = np.round(1 / (1 + np.exp(-logit)), 4)
        frames.append(pd.DataFrame({"setting": setting, "sample_id": np.arange(n), "label": y,
                                    "prob": prob, "threshold": stats.choose_threshold(y, prob)}))
    return pd.concat(frames, ignore_index=True)


_CPU: dict[str, float] = {}


def _timed(fn, repeat: int = 1, key: str = "") -> tuple[float, Any]:
    """Best wall time over ``repeat`` runs; the CPU time of that run goes to ``_CPU[key]``.

    CPU time is reported too because a loaded shared machine inflates wall time.
    """
    best, out = float("inf"), None
    for _ in range(repeat):
        with Clock() as took:
            out = fn()
        if took.wall < best:
            best = took.wall
            if key:
                _CPU[key] = took.cpu
    return best, out


def run() -> dict[str, float | int | str]:
    """Time the statistics layer on n = 20,000 predictions x 8 settings (7 comparisons to flat)."""
    frame = _predictions()
    by = {s: g.sort_values("sample_id") for s, g in frame.groupby("setting")}
    y = by["000"]["label"].to_numpy()
    flat = by["000"]["prob"].to_numpy()
    t_flat = float(by["000"]["threshold"].iloc[0])
    others = [s for s in SETTINGS if not s.is_flat]
    probs = {s: by[s]["prob"].to_numpy() for s in others}
    thr = {s: float(by[s]["threshold"].iloc[0]) for s in others}
    fig: dict[str, float | int | str] = {
        "n": N, "n_resamples": N_RESAMPLES, "n_comparisons": len(others), "prevalence": float(y.mean()),
        "cpu_count": os.cpu_count() or 0, "python": platform.python_version(), "numpy": np.__version__,
    }

    fig["choose_threshold_8_settings_s"], _ = _timed(
        lambda: [stats.choose_threshold(y, p) for p in [flat, *probs.values()]], repeat=3)
    fig["binary_metrics_8_settings_s"], _ = _timed(
        lambda: [stats.binary_metrics(y, p, 0.5) for p in [flat, *probs.values()]], repeat=3)
    fig["delong_7_comparisons_s"], _ = _timed(
        lambda: [stats.delong_test(y, probs[s], flat) for s in others], repeat=3,
        key="delong_7_comparisons_cpu_s")

    boot_total = 0.0
    for metric in stats.BOOTSTRAP_METRICS:
        secs, _ = _timed(lambda m=metric: [
            stats.paired_bootstrap(y, probs[s], flat, m, n_resamples=N_RESAMPLES, seed=SEED,
                                   threshold_a=thr[s], threshold_b=t_flat) for s in others],
            key=f"bootstrap_{metric}_7_comparisons_cpu_s")
        fig[f"bootstrap_{metric}_7_comparisons_s"] = secs
        boot_total += secs
    fig["delong_plus_bootstrap_all_metrics_7_comparisons_s"] = fig["delong_7_comparisons_s"] + boot_total

    fig["compare_to_flat_table_s"], table = _timed(
        lambda: stats.compare_to_flat(frame, n_resamples=N_RESAMPLES, seed=SEED),
        key="compare_to_flat_table_cpu_s")
    fig["compare_to_flat_rows"] = len(table)

    # Reference: the obvious per-resample sklearn loop, 100 resamples of one comparison.
    idx = stats.bootstrap_indices(N, 100, seed=SEED)
    a = probs["111"]

    def naive() -> list[float]:
        return [average_precision_score(y[r], a[r]) - average_precision_score(y[r], flat[r]) for r in idx]

    fig["naive_sklearn_auprc_bootstrap_100_resamples_1_comparison_s"], _ = _timed(naive)
    fig["naive_sklearn_auprc_extrapolated_1000x7_s"] = (
        fig["naive_sklearn_auprc_bootstrap_100_resamples_1_comparison_s"] * 10 * len(others))

    fig |= _CPU
    tracemalloc.start()
    stats.paired_bootstrap(y, a, flat, "auprc", n_resamples=N_RESAMPLES, seed=SEED)
    fig["bootstrap_auprc_1_comparison_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in fig.items()}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
