"""MIMIC-III 1.4 loader: ``DIAGNOSES_ICD`` + ``ADMISSIONS`` + ``PATIENTS`` -> raw visit tables.

The official layout: one folder with upper-case file names (``ADMISSIONS.csv`` or ``.csv.gz``; any
letter case is accepted) and upper-case headers (``SUBJECT_ID,HADM_ID,...``; the MIMIC-III demo ships
lower-case ones: both work). Only the needed columns are read (``ROW_ID`` and the rest are ignored).
A visit is an admission (``HADM_ID``); visits are built by the same step as MIMIC-IV's
(:func:`hicd_core.cohort.mimic.admission_visits`), so times, ``died`` (``HOSPITAL_EXPIRE_FLAG`` or a
``DEATHTIME``) and the minute offsets mean the same thing. Rules specific to MIMIC-III:

* **Codes.** ``ICD9_CODE`` only; every row is ICD-9 (``icd_version`` 9) and goes through the GEM
  policy of :mod:`hicd_core.hierarchy.icd9`, so the coverage report shows it.
* **Emergency.** ``ADMISSION_TYPE`` is ``EMERGENCY``/``URGENT``/``ELECTIVE``/``NEWBORN``; only
  ``EMERGENCY`` counts for ``emergency_next``. ``URGENT`` is not counted, as for MIMIC-IV (where it is a
  separate, non-emergency acuity class). Other values are kept and counted.
* **Age** in completed years from ``DOB`` at ``ADMITTIME`` (calendar arithmetic: the shifted dates
  below span ~300 years, beyond what a nanosecond time difference can hold). MIMIC-III shifts the
  ``DOB`` of patients older than 89 so they appear about 300 years old; every age >= 90 is set to 90
  (as eICU's ``> 89``) and counted (``admissions_age_over_89``). A ``DOB`` after the admission gives
  an unknown age (counted).
* **Death.** ``PATIENTS.DOD`` becomes the patients' ``death`` (out-of-hospital deaths included).

Problems are counted, never silently dropped. Excluded and counted: admissions or patients without an
id, repeated ids, admissions with unparseable times; diagnosis rows without ``HADM_ID``, with an empty
code, or whose ``SUBJECT_ID`` disagrees with their admission's (rows of unknown admissions are counted
by the assembly step). Kept and counted: admissions of unknown subjects or of an unknown type, ages
set to 90, unparseable ``DOB``/``DOD``, diagnosis rows without ``SEQ_NUM`` (placed first, as MIMIC-IV).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hicd_core.cohort.build import RawCohort
from hicd_core.cohort.io import CohortInputError, file_digest, find_table, read_table
from hicd_core.cohort.mimic import (
    ADMISSIONS,
    ADMISSIONS_OPTIONAL,
    admission_visits,
    parse_times,
    patient_frame,
)

DIAGNOSES = ["subject_id", "hadm_id", "seq_num", "icd9_code"]
PATIENTS = ["subject_id", "dob"]
PATIENTS_OPTIONAL = ["gender", "dod"]
TABLES = {"DIAGNOSES_ICD": DIAGNOSES, "ADMISSIONS": ADMISSIONS, "PATIENTS": PATIENTS}
ADMISSION_TYPES = frozenset({"EMERGENCY", "URGENT", "ELECTIVE", "NEWBORN"})
EMERGENCY_TYPES = frozenset({"EMERGENCY"})
AGE_CAP = 90


def age_in_years(admit: pd.Series, dob: pd.Series) -> pd.Series:
    """Completed years from ``dob`` to ``admit`` by calendar arithmetic (NaN where either is NaT).

    >>> t = pd.to_datetime(pd.Series(["2150-06-01", "2150-06-01", "2150-06-01"]))
    >>> age_in_years(t, pd.to_datetime(pd.Series(["2100-06-01", "2100-06-02", "1850-01-01"]))).tolist()
    [50.0, 49.0, 300.0]
    """
    before_birthday = (admit.dt.month * 100 + admit.dt.day) < (dob.dt.month * 100 + dob.dt.day)
    return (admit.dt.year - dob.dt.year - before_birthday.astype(float)).astype(float)


def _count_and_drop(frame: pd.DataFrame, bad: pd.Series, name: str, problems: dict[str, int]) -> pd.DataFrame:
    problems[name] = int(bad.sum())
    return frame[~bad.to_numpy()]


def _patients(patients: pd.DataFrame, problems: dict[str, int]) -> tuple[pd.DataFrame, pd.Series]:
    """Patients with an id, once each, and their parsed ``dob`` (indexed by subject id)."""
    missing = patients["subject_id"].isna()
    patients = _count_and_drop(patients, missing, "patients_missing_subject_id", problems)
    patients = patients.astype({"subject_id": np.int64})  # a null read it as float: '12.0' ids
    patients = _count_and_drop(patients, patients["subject_id"].duplicated(keep="first"),
                               "patients_duplicate_subject_id", problems)
    dob, problems["patients_unparseable_dob"] = parse_times(patients["dob"])
    if "dod" in patients:
        death, problems["patients_unparseable_dod"] = parse_times(patients["dod"])
    else:
        death = pd.Series(pd.NaT, index=patients.index, dtype="datetime64[ns]")
    patients = patients.assign(death=death)
    return patients, pd.Series(dob.to_numpy(), index=patients["subject_id"].to_numpy())


def _diagnoses(diagnoses: pd.DataFrame, admissions: pd.DataFrame, problems: dict[str, int]) -> pd.DataFrame:
    """Exclude (and count) rows without an admission, with an empty code, or of another subject."""
    diagnoses = _count_and_drop(diagnoses, diagnoses["hadm_id"].isna(), "diagnosis_rows_missing_hadm_id",
                                problems)
    code = diagnoses["icd9_code"]
    empty = code.isna() | (code.astype(str).str.strip() == "")
    diagnoses = _count_and_drop(diagnoses, empty, "diagnosis_rows_empty_code", problems)
    owner = admissions.drop_duplicates("hadm_id").set_index("hadm_id")["subject_id"]
    subject = diagnoses["hadm_id"].map(owner)
    mismatch = subject.notna() & diagnoses["subject_id"].notna() & (subject != diagnoses["subject_id"])
    diagnoses = _count_and_drop(diagnoses, mismatch, "diagnosis_rows_subject_mismatch", problems)
    problems["diagnosis_rows_missing_seq_num"] = int(diagnoses["seq_num"].isna().sum())
    return pd.DataFrame({
        "source_visit_id": diagnoses["hadm_id"].to_numpy(np.int64),
        "seq": diagnoses["seq_num"].fillna(0).to_numpy(np.int32),
        "raw_code": diagnoses["icd9_code"].array,  # stays Arrow-backed
        "icd_version": np.full(len(diagnoses), 9, dtype=np.int8),
    })


def mimic_iii_files(path: Path) -> dict[str, Path]:
    """The three tables the reader reads, in any letter case (a clear error naming a missing one)."""
    folder = Path(path)
    if not folder.is_dir():
        raise CohortInputError(f"MIMIC-III folder {folder} does not exist")
    return {name: find_table(folder, name, [c.upper() for c in columns], any_case=True)
            for name, columns in TABLES.items()}


def read_mimic_iii(path: Path) -> RawCohort:
    """Read the three tables into a :class:`RawCohort` for :func:`hicd_core.cohort.build.assemble_cohort`."""
    files = mimic_iii_files(path)
    ids = {"subject_id": pa.int64(), "hadm_id": pa.int64()}
    diagnoses = read_table(files["DIAGNOSES_ICD"], DIAGNOSES, types={**ids, "seq_num": pa.int32()},
                           any_case=True)
    admissions = read_table(files["ADMISSIONS"], ADMISSIONS, ADMISSIONS_OPTIONAL, types=ids, any_case=True)
    patients = read_table(files["PATIENTS"], PATIENTS, PATIENTS_OPTIONAL, types={"subject_id": pa.int64()},
                          any_case=True)
    problems: dict[str, int] = {}
    patients, dob = _patients(patients, problems)
    missing_id = admissions["hadm_id"].isna() | admissions["subject_id"].isna()
    admissions = _count_and_drop(admissions, missing_id, "admissions_missing_id", problems)
    problems["admissions_unknown_admission_type"] = int((~admissions["admission_type"].isin(ADMISSION_TYPES))
                                                        .sum())

    def age_at(kept: pd.DataFrame, admit: pd.Series) -> pd.Series:
        years = age_in_years(admit, pd.Series(dob.reindex(kept["subject_id"].to_numpy()).to_numpy(),
                                              index=kept.index))
        problems["admissions_age_over_89"] = int((years >= AGE_CAP).sum())
        problems["admissions_age_negative"] = int((years < 0).sum())
        return years.clip(upper=AGE_CAP).where(years >= 0)

    visits = admission_visits(admissions, patients, age_at, EMERGENCY_TYPES, problems)
    raw_diagnoses = _diagnoses(diagnoses, admissions, problems)
    if raw_diagnoses.empty:
        raise CohortInputError(f"{files['DIAGNOSES_ICD']} holds no usable diagnosis rows")
    raw_patients = patient_frame(patients).assign(death=patients["death"].to_numpy())
    return RawCohort(visits, raw_diagnoses, raw_patients, problems, file_digest(list(files.values())))
