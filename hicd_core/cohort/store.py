"""Cohort parquet persistence and the cached loader every caller goes through."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from hicd_core import CODE_VERSION
from hicd_core.checksums import DamagedArtifactError, verify_or_raise, write_manifest
from hicd_core.cohort.build import RawCohort, assemble_cohort
from hicd_core.cohort.eicu import eicu_files, read_eicu
from hicd_core.cohort.io import CohortInputError, file_digest
from hicd_core.cohort.meds import meds_files, read_meds
from hicd_core.cohort.mimic import mimic_iv_files, read_mimic_iv
from hicd_core.cohort.mimic3 import mimic_iii_files, read_mimic_iii
from hicd_core.cohort.schema import EICU, MEDS, MIMIC_III, MIMIC_IV, SOURCE_LABELS, SOURCES, Cohort
from hicd_core.runtime import atomic_directory, cache_dir, stable_hash

#: source kind -> (reader, the files it reads): only those files' bytes key the parsed-cohort cache,
#: and they are located (missing tables named) before anything is hashed.
READERS: dict[str, tuple[Callable[[Path], RawCohort], Callable[[Path], Any]]] = {
    MIMIC_IV: (read_mimic_iv, mimic_iv_files),
    MIMIC_III: (read_mimic_iii, mimic_iii_files),
    EICU: (read_eicu, eicu_files),
    MEDS: (read_meds, meds_files),
}
SYNTHETIC_MARKER = "SYNTHETIC.json"


def _synthetic_marker(path: Path) -> dict | None:
    for candidate in (path, path.parent, path.parent.parent):
        marker = candidate / SYNTHETIC_MARKER
        if marker.is_file():
            return json.loads(marker.read_text())
    return None


def save_cohort(cohort: Cohort, folder: Path) -> Path:
    """Write ``patients/visits/diagnoses/task_*.parquet`` + ``meta.json`` atomically."""
    with atomic_directory(Path(folder)) as tmp:
        cohort.patients.to_parquet(tmp / "patients.parquet", index=False)
        cohort.visits.to_parquet(tmp / "visits.parquet", index=False)
        cohort.diagnoses.to_parquet(tmp / "diagnoses.parquet", index=False)
        for task, frame in cohort.tasks.items():
            frame.to_parquet(tmp / f"task_{task}.parquet", index=False)
        meta = {**{k: v for k, v in cohort.meta.items() if k != "cache_folder"},
                "tasks": sorted(cohort.tasks), "fingerprint": cohort.fingerprint}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        write_manifest(tmp)
    return Path(folder)


def read_cohort(folder: Path) -> Cohort:
    """Load a cohort written by :func:`save_cohort`, after checking every file against its manifest
    (:class:`DamagedArtifactError` names a damaged one)."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise CohortInputError(f"{folder} is not a saved cohort (no meta.json)")
    verify_or_raise(folder, required=("meta.json", "visits.parquet", "diagnoses.parquet", "patients.parquet"))
    meta = json.loads(meta_path.read_text())
    tasks = {task: pd.read_parquet(folder / f"task_{task}.parquet") for task in meta["tasks"]}
    return Cohort(site=meta["site"], patients=pd.read_parquet(folder / "patients.parquet"),
                  visits=pd.read_parquet(folder / "visits.parquet"),
                  diagnoses=pd.read_parquet(folder / "diagnoses.parquet"), tasks=tasks,
                  fingerprint=meta["fingerprint"], meta=meta)


def load_cohort(source: str, path: Path | str, *, split_seed: int = 0, use_cache: bool = True) -> Cohort:
    """Load a source (MIMIC-IV ``hosp`` folder, MIMIC-III folder, MEDS root, eICU folder; real or
    synthetic) into a :class:`Cohort`.

    The parsed cohort is cached as parquet under ``$HICD_DATA_DIR/cache/cohorts`` keyed by the
    source files' content hash, the parameters and the code version, so a second load is fast and a
    changed file is never served stale. ``meta["cache_folder"]`` (in memory only) names that cache,
    so another process can read the same cohort with :func:`read_cohort` without hashing the source
    files again.
    """
    if source not in SOURCES:
        raise CohortInputError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source not in READERS:
        raise CohortInputError(f"the {source} reader is not available in this version")
    read, source_files = READERS[source]
    if not str(path).strip():
        raise CohortInputError("the source path is empty: name the folder that holds the tables")
    path = Path(path).expanduser()
    if not path.is_dir():
        label = SOURCE_LABELS[source]
        raise CohortInputError(f"{path} is not a folder: name the folder that holds the {label} tables"
                               if path.exists() else f"{label} folder {path} does not exist")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise CohortInputError(f"--split-seed must be a non-negative integer, got {split_seed!r}")
    params = {"split_seed": split_seed}
    marker = _synthetic_marker(path)
    files = source_files(path)  # names a missing table before anything is hashed
    files = sorted(files.values() if isinstance(files, dict) else files)
    cached = None
    if use_cache:
        key = stable_hash(source, file_digest(files), params, CODE_VERSION)
        with contextlib.suppress(OSError):  # no writable data directory: no cache
            cached = cache_dir() / "cohorts" / key
        if cached is not None and (cached / "meta.json").is_file():
            try:
                cohort = read_cohort(cached)
                cohort.meta["cache_folder"] = str(cached)
                return cohort
            except (CohortInputError, DamagedArtifactError, OSError, ValueError, KeyError):
                pass  # a damaged cache entry is rebuilt below
    raw = read(path)
    meta = {"source_path": str(path), "synthetic": marker is not None, "synthetic_params": marker}
    cohort = assemble_cohort(source, raw, params, meta)
    if cached is not None:
        with contextlib.suppress(OSError):
            save_cohort(cohort, cached)
            cohort.meta["cache_folder"] = str(cached)
    return cohort
