"""``synth`` and ``cohort``: write the synthetic two-site data, and summarise a cohort folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from hicd_core.cli.common import CliError, strict_json
from hicd_core.cohort.schema import SOURCES


def register(sub: argparse._SubParsersAction) -> None:
    synth = sub.add_parser("synth", help="write the synthetic two-site data (MIMIC-IV + eICU layouts)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", choices=["default", "full"], default="default")
    synth.add_argument("--hierarchy-signal", type=float, default=0.7,
                       help="share of outcome risk carried by the hierarchy, in [0, 1]")
    synth.add_argument("--format", choices=["csv", "meds"], default="csv",
                       help="csv: both sites in the official CSV layouts; meds: the source site as a "
                            "MEDS root")
    synth.add_argument("--lab-ratio", type=float, default=20.0,
                       help="meds only: LAB rows per diagnosis row (the volume a reader must skip)")
    synth.set_defaults(func=run_synth)

    cohort = sub.add_parser("cohort", help="load a MIMIC-IV or eICU folder and print its summary")
    cohort.add_argument("--source", required=True, choices=list(SOURCES))
    cohort.add_argument("--path", required=True,
                        help="MIMIC-IV root or hosp/ folder, MIMIC-III folder, MEDS root, or eICU folder")
    cohort.add_argument("--split-seed", type=int, default=0)
    cohort.add_argument("--json", action="store_true")
    cohort.set_defaults(func=run_cohort)


def run_synth(args: argparse.Namespace) -> int:
    from hicd_core.synthetic import write_synthetic, write_synthetic_meds

    if not 0.0 <= args.hierarchy_signal <= 1.0:
        raise CliError(f"--hierarchy-signal must be within [0, 1], got {args.hierarchy_signal}")
    if args.format == "meds":
        if args.lab_ratio < 0:
            raise CliError(f"--lab-ratio must be >= 0, got {args.lab_ratio}")
        summary = write_synthetic_meds(Path(args.out), seed=args.seed, scale=args.scale,
                                       hierarchy_signal=args.hierarchy_signal, lab_ratio=args.lab_ratio)
    else:
        summary = write_synthetic(Path(args.out), seed=args.seed, scale=args.scale,
                                  hierarchy_signal=args.hierarchy_signal)
    print(strict_json(summary))
    return 0


def run_cohort(args: argparse.Namespace) -> int:
    from hicd_core.cohort import cohort_summary, load_cohort

    if not args.path.strip():
        raise CliError("--path is empty: name the folder that holds the tables")
    cohort = load_cohort(args.source, args.path, split_seed=args.split_seed)
    summary = cohort_summary(cohort)
    if args.json:
        print(strict_json(summary))
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
