"""What a run store holds against what it should hold: the expected runs (a preset's, or the full
8-setting grid of every group the store has a run of), status counts, a one-line summary of what is
missing, the preset that trains exactly the missing runs, and cheap checks of a store folder."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from hicd_core.experiments import background
from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.spec import PRESETS, RunSpec, SweepPreset
from hicd_core.hierarchy import SETTINGS, Setting, setting_rank


def store_problem(root: Path, *, launch_default: bool) -> tuple[str, str] | None:
    """``(level, message)`` when ``root`` cannot be read as a run store, else None.

    The launch default may not exist yet (first launch: the sweep creates it); a folder the user
    names must exist, be a folder, and either look like a store or be empty (a new store).
    """
    try:
        exists = root.exists()
    except (OSError, ValueError) as exc:  # a name too long for the file system, an embedded NUL
        return "error", f"{str(root)[:120]} cannot be used as a folder ({type(exc).__name__}: {exc})."
    if not exists:
        if launch_default:
            return None
        return "error", f"No folder at {root}. Name an existing run store directory (it holds runs/)."
    if not root.is_dir():
        return "error", f"{root} is a file, not a run store directory."
    markers = ("runs", "store.json", "results.parquet", background.STATUS_FILE)
    if any((root / name).exists() for name in markers):
        return None
    if any(root.iterdir()):
        return "error", (f"{root} is not a run store: it has no runs/, store.json or results.parquet. "
                         "Point at the folder a sweep wrote (python -m hicd_core sweep --store ...).")
    return None


def store_version(root: Path) -> str:
    """A cheap version of a store's content: changes whenever a run finishes or fails (not when one
    starts: the sweep's ``.tmp-*`` folders are not counted)."""
    parts = []
    for name in ("failed", "results.parquet", "store.json"):
        try:
            parts.append(str((root / name).stat().st_mtime_ns))
        except OSError:
            parts.append("-")
    try:
        parts.append(str(sum(not name.startswith(".") for name in os.listdir(root / "runs"))))
    except OSError:
        parts.append("-")
    return ":".join(parts)


@dataclass
class _Fingerprinted:
    """Only what ``expected_runs`` reads of a cohort: its fingerprint (no need to load the data)."""

    fingerprint: str


def default_expected_runs(info: dict) -> dict[str, RunSpec]:
    """Runs of the ``default`` preset for the store's cohorts (empty before the first sweep)."""
    if not info.get("source_fingerprint"):
        return {}
    return dict(_default_expected(info["source_fingerprint"], info.get("target_fingerprint")))


@functools.lru_cache(maxsize=16)
def _default_expected(source: str, target: str | None) -> tuple[tuple[str, RunSpec], ...]:
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, expected_runs

    cohorts = Cohorts(_Fingerprinted(source),  # type: ignore[arg-type]
                      _Fingerprinted(target) if target else None)  # type: ignore[arg-type]
    return tuple(expected_runs(load_preset("default"), cohorts).items())


def grid_expected_runs(store: RunStore, info: dict) -> dict[str, RunSpec]:
    """All 8 settings of every (model, task, seed, ...) the store holds a run of (finished or failed).

    A store copied from elsewhere carries no preset name, so its expected grid is inferred: a
    setting missing from a group is a run still to train.
    """
    specs = [RunSpec(**run["spec"]) for run in store.finished_runs()]
    failed_dir = store.root / "failed"
    if failed_dir.is_dir():
        for path in sorted(failed_dir.glob("*.json")):
            try:
                specs.append(RunSpec(**json.loads(path.read_text())["spec"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    source, target = info.get("source_fingerprint"), info.get("target_fingerprint")
    if not source:
        return {}
    expected: dict[str, RunSpec] = {}
    for spec in specs:
        for setting in SETTINGS:
            variant = replace(spec, setting=setting)
            if variant.kind == "transfer" and not target:
                continue
            expected[variant.run_id(source, target)] = variant
    return expected


def expected_for(store: RunStore, info: dict, default_bundle: bool) -> dict[str, RunSpec]:
    expected = grid_expected_runs(store, info)
    if default_bundle:
        expected = {**default_expected_runs(info), **expected}
    return expected


def listing_counts(listing: pd.DataFrame) -> dict[str, int]:
    counts = listing["status"].value_counts() if not listing.empty else pd.Series(dtype=int)
    return {name: int(counts.get(name, 0)) for name in ("finished", "damaged", "failed", "missing")}


def missing_summary(listing: pd.DataFrame) -> str:
    """One line naming what is not trained yet, e.g. ``bert readmission_30d: G0, G1 (+1 more)``."""
    todo = listing[listing["status"] != "finished"] if not listing.empty else listing
    if todo.empty:
        return ""
    parts = []
    tree = (todo["hierarchy"].fillna("real") if "hierarchy" in todo else pd.Series("real", index=todo.index))
    for (model, task, kind, hierarchy), group in todo.assign(_tree=tree).groupby(
            ["model", "task", "kind", "_tree"], sort=True):
        labels = sorted(set(group["setting"]), key=setting_rank)
        what = (f"{model} {task}" + (" transfer" if kind == "transfer" else "")
                + (" (permuted hierarchy)" if hierarchy == "permuted" else ""))
        parts.append(f"{what}: {', '.join(Setting(s).label for s in labels)}")
    return "; ".join(parts[:6]) + (f" (+{len(parts) - 6} more groups)" if len(parts) > 6 else "")


def extension_preset(store: RunStore, info: dict, default_bundle: bool, *, models: list[str],
                     tasks: list[str], settings: list[Setting], seeds: list[int]) -> SweepPreset:
    """The preset that trains exactly these runs into this store (what the app's training panel hands
    to :func:`background.start_sweep`).

    The default bundle uses the ``default`` preset; any other store gets the model sizes of its
    existing runs (so the new runs are comparable) and its cohorts' recorded source folders.
    """
    subset = {"models": tuple(models), "tasks": tuple(tasks), "settings": tuple(settings),
              "seeds": tuple(seeds)}
    if default_bundle:
        return PRESETS["default"].with_overrides(**subset)
    runs = store.finished_runs()
    specs = [run["spec"] for run in runs if run["spec"]["kind"] == "task"]
    fields: dict[str, Any] = {"description": "written by the app to extend this store"}
    if specs:
        first = specs[0]
        schemes = {spec["model"]: spec["scheme"] for spec in specs}
        fields |= {"model_preset": first["preset"], "epochs_scale": first["epochs_scale"], "schemes": schemes,
                   "mask_hierarchy": any(spec.get("mask_hierarchy", False) for spec in specs)}
    has_transfer = any(run["spec"]["kind"] == "transfer" for run in runs)
    fields["transfer"] = bool(has_transfer and info.get("target_path"))
    if info.get("source_path"):
        fields["cohort"] = f"{info.get('source_site') or 'mimic-iv'}:{info['source_path']}"
        fields["target"] = f"eicu:{info['target_path']}" if info.get("target_path") else "none"
    return SweepPreset(name="app", **fields, **subset)


def verify_store(store: RunStore) -> pd.DataFrame:
    """Every file a result depends on, checked: one row per problem (``what``, ``path``, ``problem``,
    ``action``); empty when the whole store verifies. Used by ``python -m hicd_core verify`` and the
    Overview page. ``results.parquet`` is derived (``report`` rebuilds it from the runs), so a stale one
    is reported but nothing reads it."""
    from hicd_core.checksums import verify_folder
    from hicd_core.experiments.runstore import REDO_HINT, StoreFileError

    rows = []
    try:
        store.store_info()
    except StoreFileError as exc:
        rows.append(("store", "store.json", str(exc), "run a sweep on this store to rewrite it"))
    finished, damaged = store.scan()
    rows += [("run", f"runs/{item.run_id}/{item.file}", item.reason, REDO_HINT) for item in damaged]
    shared = store.root / "shared"
    for folder in sorted(p for p in shared.iterdir() if p.is_dir()) if shared.is_dir() else []:
        rows += [("shared pretraining", f"shared/{folder.name}/{problem.file}", problem.reason,
                  "nothing to do: the next sweep that needs it retrains it")
                 for problem in verify_folder(folder)[:1]]
    failed = store.root / "failed"
    for path in sorted(failed.glob("*.json")) if failed.is_dir() else []:
        try:
            json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            rows.append(("failure record", f"failed/{path.name}", f"unreadable ({exc})",
                         "delete it, or re-run the run with sweep"))
    table = store.root / "results.parquet"
    if table.is_file():
        try:
            listed = set(pd.read_parquet(table, columns=["run_id"])["run_id"])
            stale = listed ^ {run["run_id"] for run in finished}
            if stale:
                rows.append(("results table", "results.parquet",
                             f"{len(stale)} run(s) differ from the verified runs (stale)",
                             "nothing reads it: `report` rebuilds the table from the runs"))
        except (OSError, ValueError) as exc:
            rows.append(("results table", "results.parquet", f"unreadable ({type(exc).__name__})",
                         "nothing reads it: `report` rebuilds the table from the runs"))
    return pd.DataFrame(rows, columns=["what", "path", "problem", "action"])
