"""``report``: the results table of a run store with statistics against the flat model."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from hicd_core.cli.common import CliError, add_store_options, open_store, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="print the results table with statistics against flat")
    add_store_options(rep)
    rep.add_argument("--resamples", type=positive_int("--resamples"), default=1000,
                     help="paired-bootstrap resamples (at least 1)")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=run_report)


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
    compared = report.comparisons(store, n_resamples=args.resamples)
    summaries = report.seed_summaries(table)
    try:
        info = store.store_info()
    except StoreFileError as exc:
        print(f"DAMAGED {exc}", file=sys.stderr)
        info = {}
    if args.json:
        print(json.dumps({"store": str(store.root), "info": info,
                          "damaged": [asdict(item) for item in damaged],
                          "runs": table.to_dict(orient="records"),
                          "comparisons": compared.to_dict(orient="records"),
                          "seed_summaries": summaries.to_dict(orient="records")}, indent=2, default=str))
        return 0
    synthetic = " (SYNTHETIC data)" if info.get("synthetic") else ""
    print(f"run store {store.root}{synthetic}\nsource: {info.get('source')}  target: {info.get('target')}")
    for (model, evaluation), group in table.groupby(["model", "evaluation"], sort=False):
        print(f"\n{model} / {evaluation}")
        merged = group.merge(compared, on=["model", "evaluation", "seed", "setting"], how="left",
                             suffixes=("", "_cmp")) if not compared.empty else group
        for row in merged.itertuples():
            line = (f"  s{row.seed} {row.setting_label:<12} AUROC {row.auroc:.4f}  AUPRC {row.auprc:.4f} "
                    f"(pos {row.positive_rate:.3f})  F1m {row.macro_f1:.4f}  Brier {row.brier:.4f} "
                    f"ECE {row.ece:.4f}")
            delta = getattr(row, "delta_auroc", float("nan"))
            if delta == delta:
                line += (f"  dAUROC {delta:+.4f} p {row.p_auroc:.3g} (Holm {row.p_auroc_holm:.3g})"
                         f"  dF1m {row.delta_macro_f1:+.4f} p {row.p_macro_f1:.3g}"
                         f" (Holm {row.p_macro_f1_holm:.3g})")
            print(line)
    return 0
