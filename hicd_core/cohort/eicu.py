"""eICU loader: ``patient`` + ``diagnosis`` -> raw visit tables. A visit is an ICU unit stay.

Ordering: eICU has no absolute times, only the discharge year and minute offsets. Unit stays are
ordered within a patient (``uniquepid``) by hospital discharge year, then hospital stay id, then
the unit's admission offset inside its hospital stay (``-hospitaladmitoffset``), then
``unitvisitnumber``. ``start_minutes`` is therefore exact within a hospital stay and approximate
(year resolution) across hospital stays, which only the ICU-readmission task (same hospital stay)
relies on.

``diagnosis.icd9code`` is a comma-separated string holding an ICD-9 code, an ICD-10 code, both
(``"428.0, I50.9"``), or nothing. Rule: keep the ICD-10 code where present, otherwise the ICD-9
code; empties are counted and excluded. Version by shape: digits-first codes and E-codes with four
characters before the dot are ICD-9; a V-code is ICD-9 when it is the first element of a pair or
when the GEM lists it, ICD-10 otherwise.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hicd_core.cohort.io import CohortInputError, file_digest, find_table, read_table
from hicd_core.hierarchy import icd9

PATIENT = ["patientunitstayid", "patienthealthsystemstayid", "uniquepid", "unitvisitnumber",
           "hospitaladmitoffset", "hospitaldischargeyear", "age", "unitdischargestatus"]
PATIENT_OPTIONAL = ["gender", "unittype", "unitdischargeoffset", "hospitaldischargestatus"]
DIAGNOSIS = ["diagnosisid", "patientunitstayid", "diagnosisoffset", "icd9code", "diagnosispriority"]
PRIORITY_ORDER = {"Primary": 0, "Major": 1, "Other": 2}
_ICD10_SHAPE = re.compile(r"[A-Z][0-9A-Z][0-9A-Z](\.[0-9A-Z]{1,4})?")


def _version_of(token: str, position: int, n_tokens: int) -> int | None:
    token = token.strip().upper()
    if not token:
        return None
    if token[0].isdigit():
        return 9
    head = token.split(".")[0]
    if token[0] == "E" and len(head) == 4:
        return 9
    if token[0] == "V" and ((n_tokens > 1 and position == 0) or icd9.gem_targets(token.replace(".", ""))):
        return 9
    return 10 if _ICD10_SHAPE.fullmatch(token) else 9


@functools.lru_cache(maxsize=500_000)
def parse_icd9code(value: str | None) -> tuple[str | None, int, str]:
    """``(code, version, kind)`` chosen from one ``icd9code`` cell; kind in empty/icd9/icd10/pair.

    >>> parse_icd9code("428.0, I50.9")
    ('I50.9', 10, 'pair')
    >>> parse_icd9code("414.00")
    ('414.00', 9, 'icd9')
    >>> parse_icd9code(None)
    (None, 0, 'empty')
    """
    if not isinstance(value, str):
        return None, 0, "empty"
    tokens = [t.strip() for t in value.split(",") if t.strip()]
    if not tokens:
        return None, 0, "empty"
    versions = [_version_of(t, i, len(tokens)) for i, t in enumerate(tokens)]
    tens = [t for t, v in zip(tokens, versions, strict=True) if v == 10]
    nines = [t for t, v in zip(tokens, versions, strict=True) if v == 9]
    kind = "pair" if tens and nines else ("icd10" if tens else "icd9")
    return (tens[0], 10, kind) if tens else (nines[0], 9, kind)


def read_eicu(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int], str]:
    """Read ``patient`` and ``diagnosis`` into raw frames for ``assemble_cohort``."""
    folder = Path(path)
    if not folder.is_dir():
        raise CohortInputError(f"eICU folder {folder} does not exist")
    files = {"patient": find_table(folder, "patient", PATIENT),
             "diagnosis": find_table(folder, "diagnosis", DIAGNOSIS)}
    stays = read_table(files["patient"], PATIENT, PATIENT_OPTIONAL, types={
        "patientunitstayid": pa.int64(), "patienthealthsystemstayid": pa.int64(),
        "unitvisitnumber": pa.int32(),
        "hospitaladmitoffset": pa.float64(),
        "hospitaldischargeyear": pa.float64(),
        "unitdischargeoffset": pa.float64()})
    diagnosis = read_table(files["diagnosis"], DIAGNOSIS, types={
        "diagnosisid": pa.int64(), "patientunitstayid": pa.int64(), "diagnosisoffset": pa.float64()})
    problems: dict[str, int] = {}

    missing_pid = stays["uniquepid"].isna() | stays["patientunitstayid"].isna()
    problems["stays_missing_ids"] = int(missing_pid.sum())
    duplicated = stays["patientunitstayid"].duplicated()
    problems["stays_duplicate_patientunitstayid"] = int(duplicated.sum())
    stays = stays[~missing_pid & ~duplicated]

    age_text = stays["age"].fillna("").astype(str).str.strip()
    age = pd.to_numeric(age_text.str.replace(">", "", regex=False), errors="coerce")
    age = age.where(~age_text.str.startswith(">"), 90.0)  # '> 89' is eICU's top-coded age
    problems["stays_unknown_age"] = int(age.isna().sum())
    year = stays["hospitaldischargeyear"].fillna(stays["hospitaldischargeyear"].median())
    unit_start = -stays["hospitaladmitoffset"].fillna(0.0)  # minutes after hospital admission
    start_minutes = (year - year.min()) * 525_600 + unit_start
    duration = stays["unitdischargeoffset"].fillna(0.0) if "unitdischargeoffset" in stays else 0.0
    visits = pd.DataFrame({
        "source_patient_id": stays["uniquepid"].astype(str).to_numpy(),
        "source_visit_id": stays["patientunitstayid"].to_numpy(np.int64),
        "group_id": stays["patienthealthsystemstayid"].astype(str).to_numpy(),
        "start": pd.NaT, "end": pd.NaT,
        "start_minutes": start_minutes.to_numpy(float),
        "end_minutes": (start_minutes + duration).to_numpy(float),
        "visit_type": (stays["unittype"] if "unittype" in stays else pd.Series("ICU", index=stays.index))
        .fillna("UNKNOWN").astype(str).to_numpy(),
        "age": age.to_numpy(np.float32),
        "died": (stays["unitdischargestatus"].fillna("").astype(str) == "Expired").to_numpy(),
        "_order": stays["unitvisitnumber"].fillna(0).to_numpy(),
    })
    # Ties within a hospital stay are broken by unitvisitnumber via a tiny offset.
    visits["start_minutes"] += visits.pop("_order") * 1e-3

    cells = diagnosis["icd9code"]
    inverse, distinct = pd.factorize(cells.fillna(""))  # hashing, not sorting: ~10x np.unique
    parsed = [parse_icd9code(value or None) for value in distinct]
    codes = np.array([p[0] for p in parsed], dtype=object)[inverse]
    versions = np.array([p[1] for p in parsed], dtype=np.int8)[inverse]
    kinds = pd.Series(np.array([p[2] for p in parsed], dtype=object)[inverse])
    for kind in ("empty", "icd9", "icd10", "pair"):
        problems[f"diagnosis_rows_icd9code_{kind}"] = int((kinds == kind).sum())
    priority = diagnosis["diagnosispriority"].map(PRIORITY_ORDER).fillna(3)
    frame = pd.DataFrame({"source_visit_id": diagnosis["patientunitstayid"].to_numpy(),
                          "raw_code": codes, "icd_version": versions, "priority": priority.to_numpy(),
                          "offset": diagnosis["diagnosisoffset"].to_numpy(), "id": diagnosis["diagnosisid"]})
    frame = frame[kinds.to_numpy() != "empty"].dropna(subset=["source_visit_id"])
    frame = frame.sort_values(["source_visit_id", "priority", "offset", "id"], kind="stable")
    # eICU re-charts a diagnosis over the stay; one occurrence per code per stay is kept (counted).
    code_ids, _ = pd.factorize(frame["raw_code"])
    repeated = pd.Series(frame["source_visit_id"].to_numpy() * (len(frame) + 1) + code_ids).duplicated()
    problems["diagnosis_rows_repeated_in_stay"] = int(repeated.sum())
    frame = frame[~repeated.to_numpy()]
    frame["seq"] = frame.groupby("source_visit_id").cumcount().astype(np.int32) + 1
    raw_diagnoses = frame[["source_visit_id", "seq", "raw_code", "icd_version"]].reset_index(drop=True)
    raw_diagnoses["source_visit_id"] = raw_diagnoses["source_visit_id"].astype(np.int64)
    sex = stays["gender"] if "gender" in stays else pd.Series("", index=stays.index)
    raw_patients = pd.DataFrame({"source_patient_id": stays["uniquepid"].astype(str).to_numpy(),
                                 "sex": sex.fillna("").astype(str).to_numpy()})
    if raw_diagnoses.empty:
        raise CohortInputError(f"{files['diagnosis']} holds no usable diagnosis codes (icd9code all empty?)")
    return visits, raw_diagnoses, raw_patients, problems, file_digest(list(files.values()))
