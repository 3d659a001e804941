"""``verify``: check every file of a run store against its checksums; non-zero exit if damaged."""

from __future__ import annotations

import argparse

from hicd_core.cli.common import CliError, add_store_options, open_store, strict_json


def register(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="check a run store's files against their checksums")
    add_store_options(verify)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from hicd_core.experiments.store_status import verify_store

    store = open_store(args)
    if not store.root.is_dir():
        raise CliError(f"--store: no run store at {store.root}")
    problems = verify_store(store)
    finished = len(store.finished_runs())
    damaged = problems[problems["what"] != "results table"]
    if args.json:
        print(strict_json({"store": str(store.root), "verified_runs": finished,
                           "problems": problems.to_dict(orient="records")}))
    else:
        print(f"run store {store.root}: {finished} run(s) verify")
        for row in problems.itertuples():
            print(f"  {'WARNING' if row.what == 'results table' else 'DAMAGED'} {row.path}: {row.problem} "
                  f"-> {row.action}")
        if problems.empty:
            print("  every file matches its checksum")
    return 1 if len(damaged) else 0
