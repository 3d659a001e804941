"""``codes``: look up ICD-10-CM codes, or map ICD-9-CM codes through the GEMs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hicd_core.cli.common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    codes = sub.add_parser("codes", help="look up ICD-10-CM (or ICD-9-CM with --icd9) codes")
    codes.add_argument("code", nargs="*", help="codes, dotted (I21.4) or undotted (I214)")
    codes.add_argument("--from-file", help="read more codes from a file, one per line")
    codes.add_argument("--icd9", action="store_true", help="inputs are ICD-9-CM; map them through the GEMs")
    codes.add_argument("--json", action="store_true", help="one JSON object per code")
    codes.set_defaults(func=run_codes)


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
