"""Benchmark harness: ``python -m benchmarks [NAME ...] [--list] [--json OUT]``.

Each benchmark runs in its own subprocess, so peak RSS (``ru_maxrss`` of the child) and import
costs are measured per benchmark rather than accumulated in the harness. Figures are printed as a
table; ``--json`` also writes them to a file. Benchmarks are not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def discover() -> dict[str, str]:
    """Benchmark name -> module, from every ``benchmarks/bench_*.py``."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        for name in getattr(module, "BENCHMARKS", {}):
            found[name] = f"benchmarks.{info.name}"
    return found


def run_one(name: str, module: str) -> dict:
    """Run one benchmark in a child process; return its figures plus wall time and peak RSS."""
    code = (f"import json, resource, sys; from {module} import BENCHMARKS; r = BENCHMARKS[{name!r}](); "
            "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
            "r['peak_rss_mb'] = r.get('peak_rss_mb', rss); "
            "sys.stdout.write('\\n@@RESULT@@' + json.dumps(r, default=str))")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0], "process_wall_s": round(wall, 2)}
    result = json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1])
    result["process_wall_s"] = round(wall, 2)
    return result


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list benchmark names and exit")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    available = discover()
    if args.list:
        for name, module in sorted(available.items()):
            print(f"{name:<32} {module}")
        return 0
    unknown = [n for n in args.names if n not in available]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    results = {}
    for name in args.names or sorted(available):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, available[name])
        figures = "  ".join(f"{k}={format_value(v)}" for k, v in results[name].items())
        print(f"{name:<30} {figures}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0 if all("error" not in r for r in results.values()) else 1
