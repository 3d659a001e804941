"""Cohort load targets: full MIMIC-IV scale (~300k patients, ~430k admissions, ~4.8M diagnosis rows)
into a cohort plus task samples in <= 60 s and <= 4 GB peak RSS on 2 cores. The synthetic files of
that size are written once (not timed) and reused from the data directory."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from hicd_core.runtime import cache_dir


def _synthetic(scale: str) -> Path:
    """Write the files once, in a child process, so their generation never counts in this RSS."""
    out = cache_dir() / f"bench-synthetic-{scale}"
    if not (out / "SYNTHETIC.json").is_file():
        subprocess.run([sys.executable, "-m", "hicd_core", "synth", "--out", str(out), "--scale", scale],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def _load(scale: str, source: str) -> dict:
    from hicd_core.cohort import cohort_summary, load_cohort

    folder = _synthetic(scale) / ("mimic-iv" if source == "mimic-iv" else "eicu")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    cohort = load_cohort(source, folder, use_cache=False)
    wall = time.perf_counter() - start
    summary = cohort_summary(cohort)
    return {"wall_s": round(wall, 2), "patients": summary["patients"], "visits": summary["visits"],
            "diagnosis_rows": summary["diagnosis_rows"],
            "rows_per_s": round(summary["diagnosis_rows"] / wall),
            "samples": sum(t["n"] for t in summary["tasks"].values()),
            "rss_before_load_mb": round(rss_before),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


BENCHMARKS = {
    "cohort_load_default": lambda: _load("default", "mimic-iv"),
    "cohort_load_full": lambda: _load("full", "mimic-iv"),
    "cohort_load_full_eicu": lambda: _load("full", "eicu"),
}
