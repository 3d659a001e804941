"""Cohort parquet persistence and the cached loader every caller goes through."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from hicd_core import CODE_VERSION
from hicd_core.cohort.build import RawCohort, assemble_cohort
from hicd_core.cohort.eicu import read_eicu
from hicd_core.cohort.io import CohortInputError, file_digest
from hicd_core.cohort.meds import read_meds
from hicd_core.cohort.mimic import read_mimic_iv
from hicd_core.cohort.mimic3 import CACHE_PATTERNS as MIMIC_III_FILES
from hicd_core.cohort.mimic3 import read_mimic_iii
from hicd_core.cohort.schema import EICU, MEDS, MIMIC_III, MIMIC_IV, SOURCES, Cohort
from hicd_core.runtime import atomic_directory, cache_dir, stable_hash

#: source kind -> (reader, glob patterns of the files whose bytes key the parsed-cohort cache).
READERS: dict[str, tuple[Callable[[Path], RawCohort], tuple[str, ...]]] = {
    MIMIC_IV: (read_mimic_iv, ("*.csv*",)),
    MIMIC_III: (read_mimic_iii, MIMIC_III_FILES),  # only its three tables, in any letter case
    EICU: (read_eicu, ("*.csv*",)),
    MEDS: (read_meds, ("*.parquet", "*.json")),
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
    return Path(folder)


def read_cohort(folder: Path) -> Cohort:
    """Load a cohort written by :func:`save_cohort`."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise CohortInputError(f"{folder} is not a saved cohort (no meta.json)")
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
    read, patterns = READERS[source]
    path = Path(path)
    params = {"split_seed": split_seed}
    marker = _synthetic_marker(path)
    if use_cache and path.is_dir():
        files = sorted({p for pattern in patterns for p in path.rglob(pattern) if p.is_file()})
        key = stable_hash(source, file_digest(files), params, CODE_VERSION)
        cached = cache_dir() / "cohorts" / key
        if (cached / "meta.json").is_file():
            cohort = read_cohort(cached)
            cohort.meta["cache_folder"] = str(cached)
            return cohort
    raw = read(path)
    meta = {"source_path": str(path), "synthetic": marker is not None, "synthetic_params": marker}
    cohort = assemble_cohort(source, raw, params, meta)
    if use_cache and path.is_dir():
        save_cohort(cohort, cached)
        cohort.meta["cache_folder"] = str(cached)
    return cohort
