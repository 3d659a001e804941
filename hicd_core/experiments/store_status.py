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
    if not root.exists():
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
    return {name: int(counts.get(name, 0)) for name in ("finished", "failed", "missing")}


def missing_summary(listing: pd.DataFrame) -> str:
    """One line naming what is not trained yet, e.g. ``bert readmission_30d: G0, G1 (+1 more)``."""
    todo = listing[listing["status"] != "finished"] if not listing.empty else listing
    if todo.empty:
        return ""
    parts = []
    for (model, task, kind), group in todo.groupby(["model", "task", "kind"], sort=True):
        labels = sorted(set(group["setting"]), key=setting_rank)
        what = f"{model} {task}" + (" transfer" if kind == "transfer" else "")
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
        fields |= {"model_preset": first["preset"], "epochs_scale": first["epochs_scale"], "schemes": schemes}
    has_transfer = any(run["spec"]["kind"] == "transfer" for run in runs)
    fields["transfer"] = bool(has_transfer and info.get("target_path"))
    if info.get("source_path"):
        fields["cohort"] = f"mimic-iv:{info['source_path']}"
        fields["target"] = f"eicu:{info['target_path']}" if info.get("target_path") else "none"
    return SweepPreset(name="app", **fields, **subset)
