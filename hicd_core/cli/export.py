"""``export-meds``: a run store's task labels and test predictions as MEDS files.

The layout, the subject-id and prediction-time rules, why eICU-target runs are not exported, and the
privacy note are in :mod:`hicd_core.experiments.meds_export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hicd_core.cli.common import add_store_options, open_store


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export-meds", help="write task labels and test predictions as MEDS parquet files",
                         description="Writes DIR/labels/<task>.parquet (MEDS LabelSchema), "
                                     "DIR/predictions/<run_id>.parquet (meds-evaluation schema), "
                                     "DIR/metadata/subject_splits.parquet and DIR/export.json. The files "
                                     "carry the source's subject ids and times: do not share them.")
    add_store_options(exp)
    exp.add_argument("--run", help="export only this finished run's predictions (labels: every task)")
    exp.add_argument("--out", required=True,
                     help="output folder: new, empty or a previous export (replaced as a whole)")
    exp.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from hicd_core.experiments.meds_export import export_meds

    store = open_store(args)
    manifest = export_meds(store, Path(args.out), run_id=args.run)
    print(f"wrote {len(manifest['labels'])} label file(s), {len(manifest['predictions'])} prediction "
          f"file(s) and the manifest to {args.out}")
    for what, skipped in (("task", manifest["skipped_tasks"]), ("run", manifest["skipped_runs"])):
        for reason in sorted(set(skipped.values())):
            count = sum(1 for value in skipped.values() if value == reason)
            print(f"skipped {count} {what}(s): {reason}")
    return 0
