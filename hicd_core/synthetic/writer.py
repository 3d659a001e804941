"""``write_synthetic``: generate both sites and write them atomically with the ``SYNTHETIC.json`` marker.

Why: the one entry point callers use. It validates the arguments, refuses to overwrite a folder
that may hold real data, and moves a complete set into place with the marker last, so a reader
never sees a half-written data set.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from hicd_core.hierarchy import icd10
from hicd_core.synthetic.csv_out import _write_csv_gz
from hicd_core.synthetic.eicu import _generate_target
from hicd_core.synthetic.helpers import _check_seed, _check_signal
from hicd_core.synthetic.layout import (
    EICU_FILES,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    MARKER,
    MIMIC_FILES,
    SCALES,
)
from hicd_core.synthetic.mimic import _d_icd_diagnoses, _generate_source


@functools.cache
def _code_set_label() -> str:
    """``ICD-10-CM FY2026``, read off the installed file list.

    ``icd10.code_set_year()`` would import ``simple_icd_10_cm``, whose import parses the whole XML
    (~6 s); the generator only needs the tree the parquet cache already holds.
    """
    from importlib import metadata

    for entry in metadata.files("simple-icd-10-cm") or []:
        match = icd10._TABULAR_RE.fullmatch(Path(str(entry)).name)
        if match:
            return f"ICD-10-CM FY{match.group(3)}"
    return f"ICD-10-CM (simple-icd-10-cm=={icd10.package_version()})"


def read_marker(out_dir: Path | str) -> dict | None:
    """The ``SYNTHETIC.json`` marker of a data folder, or ``None`` when the folder is not synthetic."""
    path = Path(out_dir) / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _relative_paths() -> list[str]:
    return ([f"mimic-iv/hosp/{name}.csv.gz" for name in MIMIC_FILES]
            + [f"eicu/{name}.csv.gz" for name in EICU_FILES])


#: The generator's default share of outcome risk in the hierarchy (docs/synthetic.md, "the one knob").
DEFAULT_HIERARCHY_SIGNAL = 0.7


def write_synthetic(out_dir: Path | str, seed: int = 0, scale: str = "default",
                    hierarchy_signal: float = DEFAULT_HIERARCHY_SIGNAL,
                    *, n_source_patients: int | None = None, n_target_patients: int | None = None,
                    compresslevel: int = 4) -> dict:
    """Write the two synthetic sites under ``out_dir`` and return a small summary.

    Layout (what the real loaders read)::

        out_dir/mimic-iv/hosp/{patients,admissions,diagnoses_icd,d_icd_diagnoses}.csv.gz
        out_dir/eicu/{patient,diagnosis}.csv.gz
        out_dir/SYNTHETIC.json      marker: synthetic=true, seed, scale, signal, version, checksums

    ``scale`` picks the patient counts (``default`` 12,000 + 6,000, ``full`` 300,000 + 140,000);
    ``n_source_patients`` / ``n_target_patients`` override them (small values keep tests fast).
    The same arguments always give byte-identical files. Files are written to a temporary sibling
    folder and moved into place, the marker last, so a reader never sees a half-written set. A
    folder that holds these file names but no marker is refused (it may be real data).
    """
    seed = _check_seed(seed)
    signal = _check_signal(hierarchy_signal)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    n_source, n_target = SCALES[scale]
    n_source = n_source if n_source_patients is None else int(n_source_patients)
    n_target = n_target if n_target_patients is None else int(n_target_patients)
    if n_source < 1 or n_target < 1:
        raise ValueError("n_source_patients and n_target_patients must be positive")
    if not 1 <= int(compresslevel) <= 9:
        raise ValueError(f"compresslevel must be in 1..9, got {compresslevel!r}")
    out_dir = Path(out_dir)
    relative = _relative_paths()
    if out_dir.exists() and read_marker(out_dir) is None and any((out_dir / r).exists() for r in relative):
        raise FileExistsError(f"{out_dir} holds data files but no {MARKER}; refusing to overwrite what "
                              "may be real data")

    source, source_stats = _generate_source(seed, signal, n_source)
    source["d_icd_diagnoses"] = _d_icd_diagnoses()
    target, target_stats = _generate_target(seed, signal, n_target)
    tables = {f"mimic-iv/hosp/{name}.csv.gz": source[name] for name in MIMIC_FILES}
    tables.update({f"eicu/{name}.csv.gz": target[name] for name in EICU_FILES})

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".tmp-{out_dir.name}-*"):
        # Left by a crashed run; a fresh one may belong to a concurrent writer, so leave it alone.
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".tmp-{out_dir.name}-"))
    try:
        files = {}
        for rel, table in tables.items():
            rows = len(next(iter(table.values())))
            files[rel] = {"rows": rows, "sha256": _write_csv_gz(table, tmp / rel, int(compresslevel))}
        marker = {
            "synthetic": True, "generator": GENERATOR_NAME, "generator_version": GENERATOR_VERSION,
            "seed": seed, "scale": scale, "hierarchy_signal": signal, "n_source_patients": n_source,
            "n_target_patients": n_target, "code_set": _code_set_label(),
            "sites": {"mimic-iv": "mimic-iv/hosp", "eicu": "eicu"}, "files": files,
            "summary": {"source": source_stats, "target": target_stats},
            "note": "SYNTHETIC data from a documented generative model (docs/synthetic.md); "
                    "no real patients.",
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        if not out_dir.exists():
            os.replace(tmp, out_dir)
        else:
            (out_dir / MARKER).unlink(missing_ok=True)  # the set is incomplete until the marker returns
            for rel in relative:
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, out_dir / rel)
            os.replace(tmp / MARKER, out_dir / MARKER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "synthetic": True, "out_dir": str(out_dir), "seed": seed, "scale": scale, "hierarchy_signal": signal,
        "generator_version": GENERATOR_VERSION, "source": source_stats, "target": target_stats,
        "files": {rel: info["rows"] for rel, info in files.items()},
    }


def default_root(patients: int | None = None, seed: int = 0, hierarchy_signal: float | None = None) -> Path:
    """Where the synthetic default lives in the data dir (it may not be written yet). Another
    ``hierarchy_signal`` than the default gets its own folder (``seed0-signal0``); the default's path
    is the same with or without naming it, so existing caches stay valid."""
    from hicd_core.runtime import data_dir

    name = f"seed{seed}" + (f"-n{patients}" if patients else "")
    if hierarchy_signal is not None and _check_signal(hierarchy_signal) != DEFAULT_HIERARCHY_SIGNAL:
        name += f"-signal{float(hierarchy_signal):g}"
    return data_dir() / "synthetic" / name


def ensure_default(patients: int | None = None, seed: int = 0, hierarchy_signal: float | None = None) -> Path:
    """The synthetic default in the data dir, written on first use (``patients`` source patients and
    half as many at the target; None: the default scale; ``hierarchy_signal`` None: the default)."""
    out = default_root(patients, seed, hierarchy_signal)
    if read_marker(out) is None:
        kwargs = {"n_source_patients": patients, "n_target_patients": patients // 2} if patients else {}
        signal = DEFAULT_HIERARCHY_SIGNAL if hierarchy_signal is None else hierarchy_signal
        write_synthetic(out, seed=seed, hierarchy_signal=signal, **kwargs)
    return out
