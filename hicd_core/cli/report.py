"""``report``: the results of a run store against the flat model -- across seeds first (the headline),
then every run with its per-seed tests (the detail)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from hicd_core.cli.common import CliError, add_store_options, open_store, positive_int, strict_json


def register(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="print the results with statistics against flat (across seeds first)")
    add_store_options(rep)
    rep.add_argument("--resamples", type=positive_int("--resamples"), default=1000,
                     help="paired-bootstrap resamples (at least 1)")
    rep.add_argument("--cluster-bootstrap", action=argparse.BooleanOptionalAction, default=True,
                     help="resample whole patients in the bootstrap (default; one patient's admissions are "
                          "correlated); --no-cluster-bootstrap resamples admissions, as the paper does")
    rep.add_argument("--json", action="store_true", help="strict JSON (missing values are null)")
    rep.set_defaults(func=run_report)


def _fmt(value: float, spec: str) -> str:
    return "n/a" if value != value else format(value, spec)


def _print_across_seeds(across, cluster: bool) -> None:
    from hicd_core.experiments.report import seed_note

    unit = "patients" if cluster else "admissions (the paper's bootstrap)"
    print(f"\nACROSS SEEDS (headline): setting minus flat, mean over training seeds, 95% CI, Holm over the "
          f"settings; macro-F1/AUPRC bootstrap resamples {unit}")
    for (model, evaluation), group in across.groupby(["model", "evaluation"], sort=False):
        print(f"\n{model} / {evaluation}: {seed_note(int(group['n_seeds'].max()))}")
        for row in group.itertuples():
            star = "*" if row.significant_auroc else " "
            f1_star = "*" if row.significant_macro_f1 else " "
            print(f"  {row.setting_label:<12} dAUROC {_fmt(row.delta_auroc, '+.4f')}{star} "
                  f"[{_fmt(row.delta_auroc_ci_low, '+.4f')}, {_fmt(row.delta_auroc_ci_high, '+.4f')}] "
                  f"p {_fmt(row.p_auroc, '.3g')} (Holm {_fmt(row.p_auroc_holm, '.3g')})  "
                  f"dF1m {_fmt(row.delta_macro_f1, '+.4f')}{f1_star} "
                  f"(Holm {_fmt(row.p_macro_f1_holm, '.3g')})  "
                  f"seeds {row.n_seeds} [{row.method_auroc}]")
            if row.note:
                print(f"    {row.note}")


def run_report(args: argparse.Namespace) -> int:
    from hicd_core.experiments import report
    from hicd_core.experiments.runstore import StoreFileError

    store = open_store(args)
    damaged = store.damaged_runs()
    for item in damaged:  # listed, never used: a damaged run is left out of every number below
        print(f"DAMAGED {item.message}", file=sys.stderr)
    table = report.results(store)
    if table.empty:
        raise CliError(f"no finished runs in {store.root}"
                       + (f" ({len(damaged)} damaged, see above)" if damaged else "")
                       + "; run `python -m hicd_core sweep` first")
    compared = report.comparisons(store, n_resamples=args.resamples, cluster=args.cluster_bootstrap)
    across = report.across_seeds(compared)
    summaries = report.seed_summaries(table)
    try:
        info = store.store_info()
    except StoreFileError as exc:
        print(f"DAMAGED {exc}", file=sys.stderr)
        info = {}
    if args.json:
        print(strict_json({"store": str(store.root), "info": info,
                           "damaged": [asdict(item) for item in damaged],
                           "methods": {"across_seeds": "Obuchowski-Rockette over training seeds with Hillis "
                                                       "df (seed = unit); one seed: per-seed "
                                                       "DeLong/bootstrap",
                                       "per_seed": "DeLong (AUROC), paired bootstrap (macro-F1, AUPRC)",
                                       "bootstrap_unit": "patient" if args.cluster_bootstrap else "sample",
                                       "calibrated": "Platt scaling fitted on validation (brier_calibrated, "
                                                     "ece_calibrated); brier/ece are uncalibrated"},
                           "headline": report.headline(compared).to_dict(orient="records"),
                           "across_seeds": across.to_dict(orient="records"),
                           "runs": table.to_dict(orient="records"),
                           "comparisons": compared.to_dict(orient="records"),
                           "seed_summaries": summaries.to_dict(orient="records")}))
        return 0
    synthetic = " (SYNTHETIC data)" if info.get("synthetic") else ""
    print(f"run store {store.root}{synthetic}\nsource: {info.get('source')}  target: {info.get('target')}")
    if not across.empty:
        _print_across_seeds(across, args.cluster_bootstrap)
    print("\nPER RUN (detail): test metrics; Brier/ECE calibrated (Platt on validation), uncalibrated in "
          "brackets (the paper recipe's raw probabilities); per-seed DeLong / paired bootstrap against flat")
    for (model, evaluation), group in table.groupby(["model", "evaluation"], sort=False):
        print(f"\n{model} / {evaluation}")
        merged = group.merge(compared, on=["model", "evaluation", "seed", "setting"], how="left",
                             suffixes=("", "_cmp")) if not compared.empty else group
        for row in merged.itertuples():
            line = (f"  s{row.seed} {row.setting_label:<12} AUROC {row.auroc:.4f}  AUPRC {row.auprc:.4f} "
                    f"(pos {row.positive_rate:.3f})  F1m {row.macro_f1:.4f}  "
                    f"Brier {_fmt(row.brier_calibrated, '.4f')} ECE {_fmt(row.ece_calibrated, '.4f')} "
                    f"[uncalibrated {row.brier:.4f} / {row.ece:.4f}]")
            delta = getattr(row, "delta_auroc", float("nan"))
            if delta == delta:
                line += (f"  dAUROC {delta:+.4f} p {row.p_auroc:.3g} (Holm {row.p_auroc_holm:.3g})"
                         f"  dF1m {row.delta_macro_f1:+.4f} p {row.p_macro_f1:.3g}"
                         f" (Holm {row.p_macro_f1_holm:.3g})")
            if row.degenerate_threshold:
                line += "  DEGENERATE threshold (predicts one class on test; its macro-F1 is not starred)"
            print(line)
    return 0
