"""Cohort load targets: full MIMIC-IV scale (~300k patients, ~430k admissions, ~4.8M diagnosis rows)
into a cohort plus task samples in <= 60 s and <= 4 GB peak RSS on 2 cores. The synthetic files of
that size are written once (not timed) and reused from the data directory.

``cohort_load_mimic_iii``: a MIMIC-III 1.4-sized dataset in the official layout (46,520 patients,
58,976 admissions, 651,047 ``DIAGNOSES_ICD`` rows; upper-case names and headers, ``.csv.gz``), drawn
vectorised from 7,000 real ICD-9 codes of the GEM (NoDx E-codes included) with Zipf frequencies,
written once under the data dir by a child process. Measured with ``.venv/bin/python -m benchmarks
cohort_load_mimic_iii`` on the 2-core development machine (shared with other jobs), two runs:
``load_cohort("mimic-iii", path, use_cache=False)`` in a fresh process 4.85 / 5.41 s wall (134k / 120k
diagnosis rows/s; includes loading both GEMs and the ICD-10-CM tree), the same load again 2.39 /
3.06 s; peak RSS 439 / 447 MB (374 MB of it before the load: imports). ``samples`` counts every
task's samples (readmission_30d, its variant, emergency_next).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hicd_core.runtime import cache_dir


def _synthetic(scale: str) -> Path:
    """Write the files once, in a child process, so their generation never counts in this RSS."""
    out = cache_dir() / f"bench-synthetic-{scale}"
    if not (out / "SYNTHETIC.json").is_file():
        subprocess.run([sys.executable, "-m", "hicd_core", "synth", "--out", str(out), "--scale", scale],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def _load(scale: str, source: str) -> dict:
    return _measure(source, _synthetic(scale) / ("mimic-iv" if source == "mimic-iv" else "eicu"))


def _measure(source: str, folder: Path) -> dict:
    from hicd_core.cohort import cohort_summary, load_cohort

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    cohort = load_cohort(source, folder, use_cache=False)
    wall = time.perf_counter() - start
    summary = cohort_summary(cohort)
    return {"wall_s": round(wall, 2), "patients": summary["patients"], "visits": summary["visits"],
            "diagnosis_rows": summary["diagnosis_rows"],
            "rows_per_s": round(summary["diagnosis_rows"] / wall),
            "samples": sum(t["n"] for t in summary["tasks"].values()),
            "rss_before_load_mb": round(rss_before),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


MIMIC_III_SIZE = (46_520, 58_976, 651_047)  # patients, admissions, diagnosis rows of MIMIC-III 1.4
#: Admission types with weights close to MIMIC-III's (NEWBORN goes to the first stay of newborns).
MIMIC_III_TYPES = {"EMERGENCY": 42_071, "ELECTIVE": 7_706, "URGENT": 1_336}
MIMIC_III_NEWBORNS = 7_863


def _stamp(values: np.ndarray) -> np.ndarray:
    """datetime64[s] -> 'YYYY-MM-DD HH:MM:SS' (MIMIC-III's spelling), vectorised."""
    return np.char.replace(np.datetime_as_string(values, unit="s"), "T", " ")


def write_mimic_iii_layout(out: Path, seed: int = 0) -> None:
    """Write ADMISSIONS / DIAGNOSES_ICD / PATIENTS (``.csv.gz``) of MIMIC-III 1.4's size into ``out``.

    Seconds-resolution datetimes throughout: the shifted >89 birth dates lie ~300 years before the
    admissions, beyond a nanosecond time difference.
    """
    import pandas as pd

    from hicd_core.hierarchy.icd9 import gem_table
    from hicd_core.runtime import atomic_directory

    rng = np.random.default_rng(seed)
    n_patients, n_admissions, n_rows = MIMIC_III_SIZE
    owner = np.sort(np.concatenate([np.arange(n_patients), rng.choice(
        n_patients, n_admissions - n_patients, p=_zipf(n_patients, 1.0, rng))]))
    first = np.searchsorted(owner, owner)
    gap_days = np.where(np.arange(n_admissions) == first, 0.0, rng.exponential(150, n_admissions))
    total = np.cumsum(gap_days)
    base = np.datetime64("2100-01-01T00:00:00") + (rng.uniform(0, 95 * 365, n_patients) * 86400).astype(
        "timedelta64[s]")
    admit = base[owner] + ((total - total[first]) * 86400).astype("timedelta64[s]")
    disch = admit + (rng.lognormal(np.log(4), 0.8, n_admissions) * 86400).astype("timedelta64[s]")
    newborn = np.zeros(n_patients, bool)
    newborn[rng.choice(n_patients, MIMIC_III_NEWBORNS, replace=False)] = True
    types = np.array(list(MIMIC_III_TYPES))
    weights = np.array(list(MIMIC_III_TYPES.values()), float)
    kind = types[rng.choice(len(types), n_admissions, p=weights / weights.sum())]
    kind = np.where(newborn[owner] & (np.arange(n_admissions) == first), "NEWBORN", kind)
    last = np.r_[owner[1:] != owner[:-1], True]
    expired = last & (rng.random(n_admissions) < 0.12)
    age_days = np.where(newborn, 0, np.where(rng.random(n_patients) < 0.05, 300 * 365.25,
                                             rng.uniform(18, 90, n_patients) * 365.25))
    first_admit = admit[np.unique(first)]
    dob = (first_admit - (age_days * 86400).astype("timedelta64[s]")).astype("datetime64[D]")
    dies_later = rng.random(n_patients) < 0.2
    dod = np.full(n_patients, np.datetime64("NaT"), "datetime64[s]")
    dod[owner[expired]] = disch[expired]
    later = dies_later & np.isnat(dod)
    dod[later] = disch[last][later] + (rng.exponential(400, later.sum()) * 86400).astype("timedelta64[s]")

    per_admission = 1 + rng.multinomial(n_rows - n_admissions, np.full(n_admissions, 1 / n_admissions))
    hadm = np.repeat(np.arange(n_admissions), per_admission)
    vocabulary = rng.choice(gem_table()["icd9cm"].unique(), 7_000, replace=False)
    codes = vocabulary[rng.choice(len(vocabulary), n_rows, p=_zipf(len(vocabulary), 1.1, rng))]
    tables = {
        "PATIENTS": {"ROW_ID": np.arange(1, n_patients + 1), "SUBJECT_ID": np.arange(n_patients) + 2,
                     "GENDER": rng.choice(["M", "F"], n_patients), "DOB": _stamp(dob.astype("datetime64[s]")),
                     "DOD": np.where(np.isnat(dod), "", _stamp(dod)),
                     "EXPIRE_FLAG": (~np.isnat(dod)).astype(int)},
        "ADMISSIONS": {"ROW_ID": np.arange(1, n_admissions + 1), "SUBJECT_ID": owner + 2,
                       "HADM_ID": np.arange(n_admissions) + 100_001, "ADMITTIME": _stamp(admit),
                       "DISCHTIME": _stamp(disch), "DEATHTIME": np.where(expired, _stamp(disch), ""),
                       "ADMISSION_TYPE": kind, "HOSPITAL_EXPIRE_FLAG": expired.astype(int)},
        "DIAGNOSES_ICD": {"ROW_ID": np.arange(1, n_rows + 1), "SUBJECT_ID": owner[hadm] + 2,
                          "HADM_ID": hadm + 100_001,
                          "SEQ_NUM": np.arange(n_rows) - np.repeat(np.cumsum(per_admission) - per_admission,
                                                                   per_admission) + 1,
                          "ICD9_CODE": codes},
    }
    with atomic_directory(out) as tmp:
        for name, columns in tables.items():
            pd.DataFrame(columns).to_csv(tmp / f"{name}.csv.gz", index=False,
                                         compression={"method": "gzip", "compresslevel": 1})


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = 1 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def _load_mimic_iii() -> dict:
    """Write the MIMIC-III-layout files once (child process: not in this RSS), then time the load."""
    out = cache_dir() / "bench-mimic-iii"
    if not (out / "DIAGNOSES_ICD.csv.gz").is_file():
        code = ("from pathlib import Path; from benchmarks.bench_cohort import write_mimic_iii_layout; "
                f"write_mimic_iii_layout(Path({str(out)!r}))")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
    figures = _measure("mimic-iii", out)  # a fresh process: the GEM and ICD-10-CM tables load first
    from hicd_core.cohort import load_cohort

    start = time.perf_counter()
    load_cohort("mimic-iii", out, use_cache=False)
    figures["warm_wall_s"] = round(time.perf_counter() - start, 2)  # the same load again, tables loaded
    return figures


BENCHMARKS = {
    "cohort_load_default": lambda: _load("default", "mimic-iv"),
    "cohort_load_full": lambda: _load("full", "mimic-iv"),
    "cohort_load_full_eicu": lambda: _load("full", "eicu"),
    "cohort_load_mimic_iii": _load_mimic_iii,
}
