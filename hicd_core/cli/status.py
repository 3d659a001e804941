"""``status``: finished / running / pending / failed runs of a store, with their Slurm job ids."""

from __future__ import annotations

import argparse

from hicd_core.cli.common import CliError, add_store_options, open_store, strict_json


def run_status(args: argparse.Namespace) -> int:
    from hicd_core.experiments.cluster_status import counts, log_folder, store_status

    store = open_store(args)
    if not store.root.is_dir():
        raise CliError(f"--store {store.root}: no such run store")
    table, note = store_status(store)
    summary = counts(table)
    if args.json:
        print(strict_json({"store": str(store.root), "counts": summary, "note": note,
                           "runs": table.to_dict(orient="records")}))
        return 0
    print(f"store: {store.root}")
    print(", ".join(f"{state} {count}" for state, count in summary.items()))
    jobs = sorted({job.split("_")[0] for job in table["job"] if job})
    if jobs:
        print(f"Slurm jobs: {', '.join(jobs)}; logs under {log_folder(store.root)}/<job>_<task>/")
    if note:
        print(f"note: {note}")
    todo = table[table["status"] != "finished"]
    for row in todo.itertuples():
        job = f" [{row.job}]" if row.job else ""
        print(f"  {row.status:8} {row.run_id}{job}" + (f": {row.detail}" if row.detail else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="finished / running / pending / failed runs of a store (with "
                                           "Slurm job ids)")
    add_store_options(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=run_status)
