"""MIMIC-IV ``hosp`` loader: ``diagnoses_icd`` + ``admissions`` + ``patients`` -> raw visit tables.

A visit is an admission (``hadm_id``). Age at a visit = ``anchor_age + year(admittime) -
anchor_year``. Problems are counted, never silently dropped: admissions with unparseable times
cannot be placed in time and are excluded (counted); admissions of unknown subjects are kept with
unknown age (counted); diagnosis rows with empty codes or unknown admissions are excluded (counted).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hicd_core.cohort.build import RawCohort
from hicd_core.cohort.io import CohortInputError, file_digest, find_table, read_table
from hicd_core.cohort.tasks import EMERGENCY_TYPES

DIAGNOSES = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
ADMISSIONS = ["subject_id", "hadm_id", "admittime", "dischtime", "admission_type"]
ADMISSIONS_OPTIONAL = ["deathtime", "hospital_expire_flag"]
PATIENTS = ["subject_id", "anchor_age", "anchor_year"]
PATIENTS_OPTIONAL = ["gender", "dod"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Years an admission time may fall in. MIMIC shifts dates into roughly 2100-2210; unshifted copies
#: lie in the 1900s-2000s; anything else (the ISO parser reads "-5" as year -5) is distrusted.
PLAUSIBLE_YEARS = (1900, 2300)


def hosp_folder(path: Path) -> Path:
    """Accept the MIMIC-IV root (with ``hosp/``) or the ``hosp`` folder itself."""
    path = Path(path)
    if not path.is_dir():
        raise CohortInputError(f"MIMIC-IV folder {path} does not exist")
    return path / "hosp" if (path / "hosp").is_dir() else path


def parse_times(values: pd.Series) -> tuple[pd.Series, int]:
    """``YYYY-MM-DD HH:MM:SS`` (or ISO) strings -> datetimes, and how many present values did not parse."""
    parsed = pd.to_datetime(values, format=TIME_FORMAT, errors="coerce")
    if parsed.isna().sum() > values.isna().sum():  # maybe date-only or ISO 'T' strings
        parsed = parsed.fillna(pd.to_datetime(values, format="ISO8601", errors="coerce"))
    bad = int((parsed.isna() & values.notna()).sum())
    return parsed, bad


def mimic_iv_files(path: Path) -> dict[str, Path]:
    """The three tables the reader reads (a clear error naming any that is missing)."""
    hosp = hosp_folder(path)
    return {name: find_table(hosp, name, cols) for name, cols in
            (("diagnoses_icd", DIAGNOSES), ("admissions", ADMISSIONS), ("patients", PATIENTS))}


def read_mimic_iv(path: Path) -> RawCohort:
    """Read the three tables into raw frames for :func:`hicd_core.cohort.build.assemble_cohort`."""
    files = mimic_iv_files(path)
    ids = {"subject_id": pa.int64(), "hadm_id": pa.int64()}
    diagnoses = read_table(files["diagnoses_icd"], DIAGNOSES,
                           types={**ids, "seq_num": pa.int32(), "icd_version": pa.int8()})
    admissions = read_table(files["admissions"], ADMISSIONS, ADMISSIONS_OPTIONAL, types=ids)
    patients = read_table(files["patients"], PATIENTS, PATIENTS_OPTIONAL,
                          types={"subject_id": pa.int64(), "anchor_age": pa.float64(),
                                 "anchor_year": pa.float64()})
    problems: dict[str, int] = {}
    patients = unique_patients(patients, ["anchor_age", "anchor_year", "gender", "dod"], problems)
    anchor = patients.set_index("subject_id")

    def age_at(admissions: pd.DataFrame, admit: pd.Series) -> pd.Series:
        subject = admissions["subject_id"]
        age = subject.map(anchor["anchor_age"]) + admit.dt.year - subject.map(anchor["anchor_year"])
        problems["admissions_negative_age"] = int((age < 0).sum())  # distrusted: kept with unknown age
        return age.where(~(age < 0))

    visits = admission_visits(admissions, patients, age_at, EMERGENCY_TYPES, problems)

    # Each dropped row is counted once, under the first reason that applies (kept + counted = read).
    code = diagnoses["icd_code"]
    drop = count_once(problems, [
        ("diagnosis_rows_empty_code", (code.isna() | (code.astype(str).str.strip() == "")).to_numpy()),
        ("diagnosis_rows_missing_hadm_id", diagnoses["hadm_id"].isna().to_numpy()),
        ("diagnosis_rows_bad_icd_version", (~diagnoses["icd_version"].isin([9, 10])).to_numpy()),
        ("diagnosis_rows_exact_duplicate", diagnoses.duplicated(keep="first").to_numpy()),
    ])
    diagnoses = diagnoses[~drop]
    raw_diagnoses = pd.DataFrame({
        "source_visit_id": diagnoses["hadm_id"].to_numpy(np.int64),
        "seq": diagnoses["seq_num"].fillna(0).to_numpy(np.int32),
        "raw_code": diagnoses["icd_code"].array,  # stays Arrow-backed: no 5M object strings
        "icd_version": diagnoses["icd_version"].to_numpy(np.int8),
    })
    if raw_diagnoses.empty:
        raise CohortInputError(f"{files['diagnoses_icd']} holds no usable diagnosis rows")
    raw_patients = patient_frame(patients)
    if "dod" in patients:  # date of death in or out of hospital: readmission_30d censoring
        death, problems["patients_unparseable_dod"] = parse_times(patients["dod"])
        raw_patients["death"] = death.to_numpy()
    return RawCohort(visits, raw_diagnoses, raw_patients, problems, file_digest(list(files.values())))


def count_once(problems: dict[str, int], reasons: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Rows to drop, each counted under the first of ``reasons`` (name, mask) that applies to it, so
    the counts add up to the rows dropped. Returns the combined mask."""
    dropped = np.zeros(len(reasons[0][1]) if reasons else 0, dtype=bool)
    for name, mask in reasons:
        new = np.asarray(mask, dtype=bool) & ~dropped
        problems[name] = problems.get(name, 0) + int(new.sum())
        dropped |= new
    return dropped


def unique_patients(patients: pd.DataFrame, fields: list[str], problems: dict[str, int]) -> pd.DataFrame:
    """One row per ``subject_id`` (the first); rows without an id and repeated ids are counted, and so
    are repeats that disagree on any of ``fields`` (the first row's values are kept)."""
    missing = patients["subject_id"].isna()
    problems["patients_missing_subject_id"] = int(missing.sum())
    patients = patients[~missing]
    repeated = patients["subject_id"].duplicated(keep=False)
    problems["patients_duplicate_subject_id"] = int(patients["subject_id"].duplicated(keep="first").sum())
    present = [f for f in fields if f in patients]
    if repeated.any() and present:
        groups = patients[repeated].astype(dict.fromkeys(present, "string")).groupby("subject_id")[present]
        conflicting = (groups.nunique(dropna=False) > 1).any(axis=1)
        problems["patients_duplicate_conflicting"] = int(conflicting.sum())
    return patients.drop_duplicates("subject_id", keep="first")


def patient_frame(patients: pd.DataFrame) -> pd.DataFrame:
    """``source_patient_id`` and ``sex`` (``gender``, '' when absent) of a MIMIC ``patients`` table."""
    return pd.DataFrame({"source_patient_id": patients["subject_id"].astype(str).to_numpy(),
                         "sex": patients.get("gender", pd.Series("", index=patients.index))
                         .fillna("").to_numpy()})


def admission_visits(admissions: pd.DataFrame, patients: pd.DataFrame,
                     age_at: Callable[[pd.DataFrame, pd.Series], pd.Series],
                     emergency_types: Collection[str], problems: dict[str, int]) -> pd.DataFrame:
    """MIMIC ``admissions`` rows -> the :class:`RawCohort` visits frame (shared by MIMIC-IV and MIMIC-III).

    Admissions with unparseable times or a repeated ``hadm_id`` are excluded and counted; rows without
    ``hadm_id``/``subject_id`` are excluded too (a caller that must count them drops them first, as
    MIMIC-III does); admissions of subjects absent from ``patients`` are kept and counted.
    ``age_at(kept admissions, admit times)`` gives the age in years; ``emergency_types`` are the
    ``admission_type`` values counted as emergency; ``died`` = ``hospital_expire_flag`` or a ``deathtime``.
    """
    admit, bad_admit = parse_times(admissions["admittime"])
    disch, bad_disch = parse_times(admissions["dischtime"])
    death = (parse_times(admissions["deathtime"])[0] if "deathtime" in admissions
             else pd.Series(pd.NaT, index=admissions.index))
    problems["admissions_unparseable_admittime"] = bad_admit
    problems["admissions_unparseable_dischtime"] = bad_disch
    lowest, highest = PLAUSIBLE_YEARS
    years = ((admit.dt.year.between(lowest, highest) | admit.isna())
             & (disch.dt.year.between(lowest, highest) | disch.isna()))
    # Each excluded admission is counted once, under the first reason that applies.
    drop = count_once(problems, [
        ("admissions_missing_hadm_id", admissions["hadm_id"].isna().to_numpy()),
        ("admissions_missing_subject_id", admissions["subject_id"].isna().to_numpy()),
        ("admissions_unparseable_time", (admit.isna() | disch.isna()).to_numpy()),
        ("admissions_time_out_of_range", (~years).to_numpy()),
        ("admissions_discharge_before_admit", (disch < admit).to_numpy()),
        ("admissions_duplicate_hadm_id", (admissions["hadm_id"].duplicated(keep="first")
                                          & admissions["hadm_id"].notna()).to_numpy()),
    ])
    keep = ~drop
    admissions, admit, disch, death = admissions[keep], admit[keep], disch[keep], death[keep]
    admissions = admissions.astype({"subject_id": np.int64, "hadm_id": np.int64})  # float if a null was read

    known = admissions["subject_id"].isin(patients["subject_id"])
    problems["admissions_unknown_subject_id"] = int((~known).sum())
    age = age_at(admissions, admit).astype("float32")

    expire = (pd.to_numeric(admissions["hospital_expire_flag"], errors="coerce").fillna(0).to_numpy() == 1
              if "hospital_expire_flag" in admissions else np.zeros(len(admissions), bool))
    died = expire | death.notna().to_numpy()
    first_start = admit.groupby(admissions["subject_id"]).transform("min")
    visits = pd.DataFrame({
        "source_patient_id": admissions["subject_id"].astype(str).to_numpy(),
        "source_visit_id": admissions["hadm_id"].to_numpy(np.int64),
        "group_id": admissions["hadm_id"].astype(str).to_numpy(),
        "start": admit.to_numpy(), "end": disch.to_numpy(),
        "start_minutes": ((admit - first_start).dt.total_seconds() / 60).to_numpy(),
        "end_minutes": ((disch - first_start).dt.total_seconds() / 60).to_numpy(),
        "visit_type": admissions["admission_type"].fillna("UNKNOWN").astype(str).to_numpy(),
        "emergency": admissions["admission_type"].isin(emergency_types).to_numpy(),
        "age": age.to_numpy(), "died": died,
    })
    return visits
