"""MIMIC-IV ``hosp`` loader: ``diagnoses_icd`` + ``admissions`` + ``patients`` -> raw visit tables.

A visit is an admission (``hadm_id``). Age at a visit = ``anchor_age + year(admittime) -
anchor_year``. Problems are counted, never silently dropped: admissions with unparseable times
cannot be placed in time and are excluded (counted); admissions of unknown subjects are kept with
unknown age (counted); diagnosis rows with empty codes or unknown admissions are excluded (counted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hicd_core.cohort.io import CohortInputError, file_digest, find_table, read_table

DIAGNOSES = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
ADMISSIONS = ["subject_id", "hadm_id", "admittime", "dischtime", "admission_type"]
ADMISSIONS_OPTIONAL = ["deathtime", "hospital_expire_flag"]
PATIENTS = ["subject_id", "anchor_age", "anchor_year"]
PATIENTS_OPTIONAL = ["gender", "dod"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def hosp_folder(path: Path) -> Path:
    """Accept the MIMIC-IV root (with ``hosp/``) or the ``hosp`` folder itself."""
    path = Path(path)
    if not path.is_dir():
        raise CohortInputError(f"MIMIC-IV folder {path} does not exist")
    return path / "hosp" if (path / "hosp").is_dir() else path


def _parse_times(values: pd.Series) -> tuple[pd.Series, int]:
    parsed = pd.to_datetime(values, format=TIME_FORMAT, errors="coerce")
    if parsed.isna().sum() > values.isna().sum():  # maybe date-only or ISO 'T' strings
        parsed = parsed.fillna(pd.to_datetime(values, format="ISO8601", errors="coerce"))
    bad = int((parsed.isna() & values.notna()).sum())
    return parsed, bad


def read_mimic_iv(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int], str]:
    """Read the three tables into raw frames for :func:`hicd_core.cohort.build.assemble_cohort`."""
    hosp = hosp_folder(path)
    files = {name: find_table(hosp, name, cols) for name, cols in
             (("diagnoses_icd", DIAGNOSES), ("admissions", ADMISSIONS), ("patients", PATIENTS))}
    ids = {"subject_id": pa.int64(), "hadm_id": pa.int64()}
    diagnoses = read_table(files["diagnoses_icd"], DIAGNOSES,
                           types={**ids, "seq_num": pa.int32(), "icd_version": pa.int8()})
    admissions = read_table(files["admissions"], ADMISSIONS, ADMISSIONS_OPTIONAL, types=ids)
    patients = read_table(files["patients"], PATIENTS, PATIENTS_OPTIONAL,
                          types={"subject_id": pa.int64(), "anchor_age": pa.float64(),
                                 "anchor_year": pa.float64()})
    problems: dict[str, int] = {}

    admit, bad_admit = _parse_times(admissions["admittime"])
    disch, bad_disch = _parse_times(admissions["dischtime"])
    death = (_parse_times(admissions["deathtime"])[0] if "deathtime" in admissions
             else pd.Series(pd.NaT, index=admissions.index))
    unplaceable = admit.isna() | disch.isna()
    problems["admissions_unparseable_time"] = int(unplaceable.sum())
    problems["admissions_unparseable_admittime"] = bad_admit
    problems["admissions_unparseable_dischtime"] = bad_disch
    duplicated = admissions["hadm_id"].duplicated(keep="first")
    problems["admissions_duplicate_hadm_id"] = int(duplicated.sum())
    keep = ~unplaceable & ~duplicated & admissions["hadm_id"].notna() & admissions["subject_id"].notna()
    admissions, admit, disch, death = admissions[keep], admit[keep], disch[keep], death[keep]

    patients = patients.drop_duplicates("subject_id")
    known = admissions["subject_id"].isin(patients["subject_id"])
    problems["admissions_unknown_subject_id"] = int((~known).sum())
    anchor = patients.set_index("subject_id")
    anchor_age = admissions["subject_id"].map(anchor["anchor_age"])
    anchor_year = admissions["subject_id"].map(anchor["anchor_year"])
    age = (anchor_age + admit.dt.year - anchor_year).astype("float32")

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
        "age": age.to_numpy(), "died": died,
    })

    code = diagnoses["icd_code"]
    empty = code.isna() | (code.astype(str).str.strip() == "")
    problems["diagnosis_rows_empty_code"] = int(empty.sum())
    no_visit = diagnoses["hadm_id"].isna()
    version = diagnoses["icd_version"]
    bad_version = ~version.isin([9, 10])
    problems["diagnosis_rows_bad_icd_version"] = int((bad_version & ~empty).sum())
    diagnoses = diagnoses[~empty & ~no_visit & ~bad_version]
    raw_diagnoses = pd.DataFrame({
        "source_visit_id": diagnoses["hadm_id"].to_numpy(np.int64),
        "seq": diagnoses["seq_num"].fillna(0).to_numpy(np.int32),
        "raw_code": diagnoses["icd_code"].array,  # stays Arrow-backed: no 5M object strings
        "icd_version": diagnoses["icd_version"].to_numpy(np.int8),
    })
    raw_patients = pd.DataFrame({"source_patient_id": patients["subject_id"].astype(str).to_numpy(),
                                 "sex": patients.get("gender", pd.Series("", index=patients.index))
                                 .fillna("").to_numpy()})
    if raw_diagnoses.empty:
        raise CohortInputError(f"{files['diagnoses_icd']} holds no usable diagnosis rows")
    return visits, raw_diagnoses, raw_patients, problems, file_digest(list(files.values()))
