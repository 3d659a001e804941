"""eICU loader: ``patient`` + ``diagnosis`` -> raw visit tables. A visit is an ICU unit stay.

Ordering: eICU has no absolute times, only a hospital stay's discharge year and minute offsets
inside that hospital stay (``patienthealthsystemstayid``), so two hospital stays of one patient in
the same year cannot be ordered. Rules (:func:`place_unit_stays`):

1. Unit stays with a blank ``patientunitstayid``, ``uniquepid`` or ``patienthealthsystemstayid``
   are dropped (counted). A hospital stay's year is its ``hospitaldischargeyear``; a blank year, or
   unit stays of one hospital stay that disagree on it, make the year unknown (counted), and an
   unknown year sorts after the patient's known years.
2. Within a patient, hospital stays are ordered by (year, ``patienthealthsystemstayid``); within a
   hospital stay, unit stays by (``unitvisitnumber``, blank last and counted; unit admission offset;
   ``patientunitstayid``). The unit stays of one hospital stay are therefore contiguous.
3. A hospital stay placed after another of the patient's hospital stays with the same year (or
   with an unknown year) has an unknown order relative to it: its unit stays get
   ``ambiguous_history`` = True (counted) and no task takes a sample anchored there (see
   :mod:`hicd_core.cohort.tasks`), so no sample's input holds a hospital stay of unknown order.
4. ``start_minutes`` = (year - the patient's first year) x 525,600 + the spans of the patient's
   earlier hospital stays + the unit's admission offset inside its hospital stay: exact within a
   hospital stay, year resolution across hospital stays.

Diagnoses: rows charted after their unit stay ended (``diagnosisoffset > unitdischargeoffset``)
are left out (counted): they are not known at the unit's discharge, where a sample's input ends.
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

from hicd_core.cohort.build import RawCohort
from hicd_core.cohort.io import CohortInputError, file_digest, find_table, read_table
from hicd_core.hierarchy import icd9

PATIENT = ["patientunitstayid", "patienthealthsystemstayid", "uniquepid", "unitvisitnumber",
           "hospitaladmitoffset", "hospitaldischargeyear", "age", "unitdischargestatus"]
PATIENT_OPTIONAL = ["gender", "unittype", "unitdischargeoffset", "unitstaytype", "hospitaldischargestatus"]
DIAGNOSIS = ["diagnosisid", "patientunitstayid", "diagnosisoffset", "icd9code", "diagnosispriority"]
PRIORITY_ORDER = {"Primary": 0, "Major": 1, "Other": 2}
MINUTES_PER_YEAR = 525_600
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


def place_unit_stays(stays: pd.DataFrame, problems: dict[str, int]) -> pd.DataFrame:
    """``stays`` in visit order (module docstring, rules 1-4) with ``start_minutes``,
    ``end_minutes`` and ``ambiguous_history``; the ids must be present (rule 1's drop is the caller's).

    >>> stays = pd.DataFrame({"uniquepid": ["p"] * 4, "patienthealthsystemstayid": [2, 1, 2, 1],
    ...     "unitvisitnumber": [1, 1, 2, 2], "hospitaladmitoffset": [-50.0, -100, -3000, -5000],
    ...     "hospitaldischargeyear": [2015.0] * 4, "unitdischargeoffset": [60.0] * 4,
    ...     "patientunitstayid": [21, 11, 22, 12]})
    >>> placed = place_unit_stays(stays, {})
    >>> placed["patientunitstayid"].tolist(), placed["ambiguous_history"].tolist()
    ([11, 12, 21, 22], [False, False, True, True])
    """
    patient, hospital = stays["uniquepid"].astype(str), stays["patienthealthsystemstayid"]
    raw_year = stays["hospitaldischargeyear"]
    by_stay = raw_year.groupby([patient, hospital])
    year, latest = by_stay.transform("min"), by_stay.transform("max")
    conflict = year.notna() & (year != latest)
    year = year.where(~conflict)  # a hospital stay claiming two years has no known year
    problems["stays_hospital_stay_year_conflict"] = int(conflict.sum())
    problems["stays_unknown_discharge_year"] = int(year.isna().sum())
    problems["stays_missing_unitvisitnumber"] = int(stays["unitvisitnumber"].isna().sum())
    duration = stays["unitdischargeoffset"] if "unitdischargeoffset" in stays else pd.Series(0.0, stays.index)
    frame = stays.assign(_patient=patient, _year=year, _start=(-stays["hospitaladmitoffset"]).clip(lower=0),
                         _duration=duration.clip(lower=0).fillna(0.0))
    frame["_start"] = frame["_start"].fillna(0.0)
    frame = frame.sort_values(["_patient", "_year", "patienthealthsystemstayid", "unitvisitnumber", "_start",
                               "patientunitstayid"], na_position="last", kind="stable").reset_index(drop=True)

    ids, hospital_ids = frame["_patient"].to_numpy(), frame["patienthealthsystemstayid"].to_numpy()
    new_patient = np.r_[True, ids[1:] != ids[:-1]]
    new_stay = new_patient | np.r_[True, hospital_ids[1:] != hospital_ids[:-1]]
    stay_no = np.cumsum(new_stay) - 1
    start = frame.groupby(stay_no)["_start"].cummax()  # unitvisitnumber decides; offsets follow it
    problems["stays_unit_start_out_of_unitvisitnumber_order"] = int((frame["_start"] < start).sum())

    first = np.flatnonzero(new_stay)  # one row per hospital stay, in order
    stay_year = frame["_year"].to_numpy()[first]
    stay_patient = np.cumsum(new_patient)[first]
    same_year = np.r_[False, (stay_year[1:] == stay_year[:-1]) | np.isnan(stay_year[1:])]
    ambiguous = same_year & ~new_patient[first]
    known = pd.Series(stay_year).groupby(stay_patient)
    filled = np.where(np.isnan(stay_year), known.transform("max").fillna(0.0), stay_year)
    since_first = filled - pd.Series(filled).groupby(stay_patient).transform("min").to_numpy()
    span = (start + frame["_duration"]).groupby(stay_no).max().to_numpy() + 1.0
    earlier = pd.Series(span).groupby(stay_patient).cumsum().to_numpy() - span
    offset = since_first * MINUTES_PER_YEAR + earlier
    problems["stays_after_hospital_stay_of_unknown_order"] = int(ambiguous[stay_no].sum())
    within = frame.groupby(stay_no).cumcount().to_numpy() * 1e-3  # ties: unitvisitnumber order
    frame["start_minutes"] = offset[stay_no] + start.to_numpy() + within
    frame["end_minutes"] = frame["start_minutes"] + frame["_duration"]
    frame["ambiguous_history"] = ambiguous[stay_no]
    return frame.drop(columns=["_patient", "_year", "_start", "_duration"])


def _diagnosis_rows(diagnosis: pd.DataFrame, stays: pd.DataFrame, problems: dict[str, int]) -> pd.DataFrame:
    """One row per (unit stay, code) in ``seq`` order; empty, late, id-less and repeated rows counted."""
    cells = diagnosis["icd9code"]
    inverse, distinct = pd.factorize(cells.fillna(""))  # hashing, not sorting: ~10x np.unique
    parsed = [parse_icd9code(value or None) for value in distinct]
    codes = np.array([p[0] for p in parsed], dtype=object)[inverse]
    versions = np.array([p[1] for p in parsed], dtype=np.int8)[inverse]
    kinds = np.array([p[2] for p in parsed], dtype=object)[inverse]
    for kind in ("empty", "icd9", "icd10", "pair"):
        problems[f"diagnosis_rows_icd9code_{kind}"] = int((kinds == kind).sum())
    coded = kinds != "empty"
    no_stay = coded & diagnosis["patientunitstayid"].isna().to_numpy()
    problems["diagnosis_rows_missing_patientunitstayid"] = int(no_stay.sum())
    ended = stays.set_index("patientunitstayid")["unitdischargeoffset"] if "unitdischargeoffset" in stays \
        else pd.Series(dtype=float)
    late = diagnosis["diagnosisoffset"].to_numpy() > ended.reindex(diagnosis["patientunitstayid"]).to_numpy()
    problems["diagnosis_rows_after_unit_discharge"] = int((coded & ~no_stay & late).sum())
    priority = diagnosis["diagnosispriority"].map(PRIORITY_ORDER).fillna(3)
    frame = pd.DataFrame({"source_visit_id": diagnosis["patientunitstayid"].to_numpy(),
                          "raw_code": codes, "icd_version": versions, "priority": priority.to_numpy(),
                          "offset": diagnosis["diagnosisoffset"].to_numpy(), "id": diagnosis["diagnosisid"]})
    frame = frame[coded & ~no_stay & ~late]
    frame = frame.sort_values(["source_visit_id", "priority", "offset", "id"], kind="stable")
    # eICU re-charts a diagnosis over the stay; one occurrence per code per stay is kept (counted).
    code_ids, _ = pd.factorize(frame["raw_code"])
    repeated = pd.Series(frame["source_visit_id"].to_numpy() * (len(frame) + 1) + code_ids).duplicated()
    problems["diagnosis_rows_repeated_in_stay"] = int(repeated.sum())
    frame = frame[~repeated.to_numpy()]
    frame["seq"] = frame.groupby("source_visit_id").cumcount().astype(np.int32) + 1
    raw = frame[["source_visit_id", "seq", "raw_code", "icd_version"]].reset_index(drop=True)
    raw["source_visit_id"] = raw["source_visit_id"].astype(np.int64)
    return raw


def eicu_files(path: Path) -> dict[str, Path]:
    """The two tables the reader reads (a clear error naming any that is missing)."""
    folder = Path(path)
    if not folder.is_dir():
        raise CohortInputError(f"eICU folder {folder} does not exist")
    return {"patient": find_table(folder, "patient", PATIENT),
            "diagnosis": find_table(folder, "diagnosis", DIAGNOSIS)}


def read_eicu(path: Path) -> RawCohort:
    """Read ``patient`` and ``diagnosis`` into raw frames for ``assemble_cohort``."""
    files = eicu_files(path)
    stays = read_table(files["patient"], PATIENT, PATIENT_OPTIONAL, types={
        "patientunitstayid": pa.int64(), "patienthealthsystemstayid": pa.int64(),
        "unitvisitnumber": pa.float64(),
        "hospitaladmitoffset": pa.float64(),
        "hospitaldischargeyear": pa.float64(),
        "unitdischargeoffset": pa.float64()})
    diagnosis = read_table(files["diagnosis"], DIAGNOSIS, types={
        "diagnosisid": pa.int64(), "patientunitstayid": pa.int64(), "diagnosisoffset": pa.float64()})
    problems: dict[str, int] = {}

    missing_pid = stays["uniquepid"].isna() | stays["patientunitstayid"].isna()
    problems["stays_missing_ids"] = int(missing_pid.sum())
    missing_hospital = ~missing_pid & stays["patienthealthsystemstayid"].isna()
    problems["stays_missing_hospital_stay_id"] = int(missing_hospital.sum())
    stays = stays[~missing_pid & ~missing_hospital]
    duplicated = stays["patientunitstayid"].duplicated()
    problems["stays_duplicate_patientunitstayid"] = int(duplicated.sum())
    stays = place_unit_stays(stays[~duplicated], problems)

    age_text = stays["age"].fillna("").astype(str).str.strip()
    age = pd.to_numeric(age_text.str.replace(">", "", regex=False), errors="coerce")
    age = age.where(~age_text.str.startswith(">"), 90.0)  # '> 89' is eICU's top-coded age
    problems["stays_unknown_age"] = int(age.isna().sum())
    visits = pd.DataFrame({
        "source_patient_id": stays["uniquepid"].astype(str).to_numpy(),
        "source_visit_id": stays["patientunitstayid"].to_numpy(np.int64),
        "group_id": stays["patienthealthsystemstayid"].astype(np.int64).astype(str).to_numpy(),
        "start": pd.NaT, "end": pd.NaT,
        "start_minutes": stays["start_minutes"].to_numpy(float),
        "end_minutes": stays["end_minutes"].to_numpy(float),
        "visit_type": (stays["unittype"] if "unittype" in stays else pd.Series("ICU", index=stays.index))
        .fillna("UNKNOWN").astype(str).to_numpy(),
        "age": age.to_numpy(np.float32),
        "died": (stays["unitdischargestatus"].fillna("").astype(str) == "Expired").to_numpy(),
        "ambiguous_history": stays["ambiguous_history"].to_numpy(bool),
    })
    if "unitstaytype" in stays:  # 'admit', 'readmit', 'stepdown/other', 'transfer'; '' = unknown
        visits["stay_type"] = stays["unitstaytype"].fillna("").astype(str).str.strip().str.lower().to_numpy()
        problems["stays_unknown_unitstaytype"] = int((visits["stay_type"] == "").sum())

    raw_diagnoses = _diagnosis_rows(diagnosis, stays, problems)
    sex = stays["gender"] if "gender" in stays else pd.Series("", index=stays.index)
    raw_patients = pd.DataFrame({"source_patient_id": stays["uniquepid"].astype(str).to_numpy(),
                                 "sex": sex.fillna("").astype(str).to_numpy()})
    if raw_diagnoses.empty:
        raise CohortInputError(f"{files['diagnosis']} holds no usable diagnosis codes (icd9code all empty?)")
    return RawCohort(visits, raw_diagnoses, raw_patients, problems, file_digest(list(files.values())))
