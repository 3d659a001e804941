"""Benchmark: write the FULL-scale synthetic two-site data set (MIMIC-IV layout + eICU layout).

Why a child process: peak RSS must be the generator's own, not whatever the calling harness held
before, so the write runs in a fresh interpreter that reports its own ``ru_maxrss``.
Budget (issue): under 2 minutes on the 2-core development machine.

Run directly with ``python benchmarks/bench_synthetic.py [scale]``; a harness calls :func:`run`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from hicd_core.synthetic import write_synthetic
t1 = time.perf_counter()
summary = write_synthetic(Path(sys.argv[1]), seed=int(sys.argv[2]), scale=sys.argv[3])
t2 = time.perf_counter()
summary["import_s"] = round(t1 - t0, 3)
summary["generate_and_write_s"] = round(t2 - t1, 3)
summary["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps(summary))
"""


def run(scale: str = "full", seed: int = 0) -> dict:
    """Write ``scale`` once in a fresh interpreter; return wall time, peak RSS and throughput."""
    workdir = Path(tempfile.mkdtemp(prefix="hicd-bench-synthetic-"))
    out = workdir / "synthetic"
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    try:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(seed), scale], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"synthetic generation failed:\n{done.stderr[-4000:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        peak_kb = summary["peak_rss_kb"]
        rows = sum(summary["files"].values())
        size = sum(p.stat().st_size for p in out.rglob("*.gz"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "synthetic_write", "scale": scale, "seed": seed, "synthetic": True,
        "wall_s": round(wall, 2), "generate_and_write_s": summary["generate_and_write_s"],
        "import_s": summary["import_s"], "peak_rss_mb": round(peak_kb / 1024, 1),
        "rows_written": rows, "rows_per_s": round(rows / wall), "gz_mb": round(size / 2**20, 1),
        "source_patients": summary["source"]["patients"],
        "source_admissions": summary["source"]["admissions"],
        "source_diagnoses": summary["source"]["diagnoses"],
        "target_patients": summary["target"]["patients"],
        "target_unit_stays": summary["target"]["unit_stays"],
        "target_diagnoses": summary["target"]["diagnoses"], "budget_s": 120.0, "within_budget": wall < 120.0,
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    print(json.dumps(run(*(sys.argv[1:2] or ["full"])), indent=2))
