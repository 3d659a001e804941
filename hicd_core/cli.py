"""Command line: ``python -m hicd_core {codes,synth,cohort,sweep,report} ...``.

Bad arguments and bad input give a one-line error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


class CliError(Exception):
    """An error to print as one line."""


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


@command("codes")
def run_codes(args: argparse.Namespace) -> int:
    from hicd_core.hierarchy import describe as title_of
    from hicd_core.hierarchy import icd9, icd10, normalize_codes

    codes = list(args.code)
    if args.from_file:
        path = Path(args.from_file)
        if not path.is_file():
            raise CliError(f"--from-file: {path} does not exist")
        codes += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not codes:
        raise CliError("give at least one code (or --from-file F)")
    version = 9 if args.icd9 else 10
    frame = normalize_codes(codes, version)
    chapters, blocks = icd10.chapter_titles(), icd10.block_titles()
    rows = []
    for raw, row in zip(codes, frame.itertuples(index=False), strict=True):
        resolved = None if row.icd10 is None or row.icd10 != row.icd10 else str(row.icd10)
        rows.append({
            "input": raw, "icd_version": version, "icd10": icd10.dotted(resolved) if resolved else None,
            "status": str(row.status), "rule": str(row.rule),
            "chapter": str(row.chapter), "chapter_title": chapters.get(str(row.chapter), ""),
            "block": str(row.block), "block_title": blocks.get(str(row.block), ""),
            "category": str(row.category), "category_title": title_of(str(row.category)),
            "description": title_of(resolved) if resolved else "",
            "valid": bool(row.billable),
            "mapping": icd9.gem_targets(icd10.clean(raw)) if version == 9 else None,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if r["icd10"] is None:
            print(f"{r['input']:<12} UNKNOWN ({r['status']})")
            continue
        via = f"  [ICD-9 via {r['rule']}: {', '.join(r['mapping'] or [])}]" if version == 9 else ""
        print(f"{r['input']:<12} {r['icd10']:<9} {'billable' if r['valid'] else 'non-billable':<12} "
              f"ch {r['chapter']:<5} {r['block']:<9} {r['category']:<4} {r['description']}{via}")
    return 0


@command("synth")
def run_synth(args: argparse.Namespace) -> int:
    from hicd_core.cohort.synthetic import write_synthetic

    if not 0.0 <= args.hierarchy_signal <= 1.0:
        raise CliError(f"--hierarchy-signal must be within [0, 1], got {args.hierarchy_signal}")
    summary = write_synthetic(Path(args.out), seed=args.seed, scale=args.scale,
                              hierarchy_signal=args.hierarchy_signal)
    print(json.dumps(summary, indent=2, default=str))
    return 0


@command("cohort")
def run_cohort(args: argparse.Namespace) -> int:
    from hicd_core.cohort import cohort_summary, load_cohort

    cohort = load_cohort(args.source, Path(args.path), split_seed=args.split_seed)
    summary = cohort_summary(cohort)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    label = "SYNTHETIC " if summary["synthetic"] else ""
    print(f"{label}{summary['site']} cohort  "
          f"(fingerprint {summary['fingerprint']}, {summary['code_set_year']})")
    for key in ("patients", "visits", "diagnosis_rows", "distinct_codes", "distinct_icd10_codes"):
        print(f"  {key:<22} {summary[key]:>12,}")
    print(f"  {'icd9_share':<22} {summary['icd9_share']:>12.3f}")
    print(f"  {'mapping_coverage':<22} {summary['mapping_coverage']:>12.3f}")
    print(f"  codes/visit mean {summary['codes_per_visit']['mean']:.2f}, "
          f"visits/patient mean {summary['visits_per_patient']['mean']:.2f}")
    for task, info in summary["tasks"].items():
        print(f"  task {task:<18} n={info['n']:>9,}  positive rate {info['positive_rate']:.3f}")
    problems = {k: v for k, v in summary["problems"].items() if v}
    if problems:
        print("  counted problems / exclusions:")
        for key, value in problems.items():
            print(f"    {key:<48} {value:>10,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hicd_core",
                                     description="HICD Explorer engine: ICD hierarchy, cohorts, models.")
    sub = parser.add_subparsers(dest="command", required=True)

    codes = sub.add_parser("codes", help="look up ICD-10-CM (or ICD-9-CM with --icd9) codes")
    codes.add_argument("code", nargs="*", help="codes, dotted (I21.4) or undotted (I214)")
    codes.add_argument("--from-file", help="read more codes from a file, one per line")
    codes.add_argument("--icd9", action="store_true", help="inputs are ICD-9-CM; map them through the GEMs")
    codes.add_argument("--json", action="store_true", help="one JSON object per code")

    synth = sub.add_parser("synth", help="write the synthetic two-site data (MIMIC-IV + eICU layouts)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", choices=["default", "full"], default="default")
    synth.add_argument("--hierarchy-signal", type=float, default=0.7,
                       help="share of outcome risk carried by the hierarchy, in [0, 1]")

    cohort = sub.add_parser("cohort", help="load a MIMIC-IV or eICU folder and print its summary")
    cohort.add_argument("--source", required=True, choices=["mimic-iv", "eicu"])
    cohort.add_argument("--path", required=True, help="MIMIC-IV root or hosp/ folder, or eICU folder")
    cohort.add_argument("--split-seed", type=int, default=0)
    cohort.add_argument("--json", action="store_true")

    for extend in EXTENSIONS:
        extend(sub)
    return parser


#: Later layers (experiments) register their sub-commands here.
EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: list[str] | None = None) -> int:
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _load_extensions() -> None:
    with contextlib.suppress(ImportError):
        from hicd_core.experiments import cli as experiments_cli  # noqa: F401  (registers commands)
