"""Prediction tasks. Each sample is anchored at one visit; its input is that visit and every earlier
visit of the patient. ICD codes are assigned at discharge, so nothing after the anchor visit's
discharge may enter the input; every label below looks only at the *next* visit.

===========================  ==========  ========================================================
task                         visits      definition
===========================  ==========  ========================================================
readmission_30d (default)    admissions  one sample per admission that ends alive (no
                                         ``deathtime``, no ``hospital_expire_flag``); label 1 when
                                         the patient's next admission starts within 30 days (<= 30
                                         x 24 h) of this discharge. The paper's definition.
                                         **Limitation (censoring):** an admission without a next
                                         admission is a negative even when the patient died
                                         outside hospital within 30 days of discharge, or the
                                         record ends; such deaths are counted as
                                         ``readmission_30d_died_within_30d_without_readmission``.
readmission_30d_excl_deaths  admissions  the same, without the anchors whose patient died (death
                                         date from the source: MIMIC-IV ``patients.dod``) on or
                                         before the 30th day after the discharge date and was not
                                         readmitted first. Built only when the source gives death
                                         dates (else noted as ``readmission_30d_excl_deaths_not_
                                         built_no_death_dates``). The end of a patient's record
                                         cannot be told from the data and is not corrected for.
emergency_next               admissions  one sample per admission that has a next admission; label
                                         1 when the next admission is emergency-class (the
                                         visits' ``emergency`` column, set by each reader:
                                         MIMIC-IV and MEDS ``EW EMER.`` or ``DIRECT EMER.``,
                                         MIMIC-III ``EMERGENCY``). ``URGENT`` is *not* emergency:
                                         MIMIC-IV keeps it as a separate, non-emergency class.
icu_readmission (default)    icu_stays   one sample per ICU unit stay that ends alive
                                         (``unitdischargestatus`` not ``Expired``); label 1 when the
                                         next unit stay (``unitvisitnumber`` order) of the *same*
                                         hospital stay (``patienthealthsystemstayid``) exists,
                                         whatever its ``unitstaytype``. The paper's definition.
icu_readmission_readmit      icu_stays   the same samples; label 1 only when that next unit stay's
                                         ``unitstaytype`` is ``readmit`` (a step-down or transfer
                                         is not a readmission). Anchors whose next unit stay has
                                         no ``unitstaytype`` are excluded. Built only when the
                                         source has the column (else noted as ``icu_readmission_
                                         readmit_not_built_no_unitstaytype``).
===========================  ==========  ========================================================

eICU order (:mod:`hicd_core.cohort.eicu`): hospital stays of a patient are ordered by discharge
year, unit stays within one by ``unitvisitnumber``, and the unit stays of one hospital stay are
contiguous, so the ICU labels depend only on the anchor's own hospital stay. Two hospital stays with
the same discharge year cannot be ordered: the one placed second (by ``patienthealthsystemstayid``)
has ``ambiguous_history`` and no task takes a sample anchored in it (counted as
``<task>_excluded_ambiguous_history``), so no input holds a hospital stay of unknown order. eICU
diagnoses charted after their unit stay ended are left out of every input (counted by the reader).

Admissions come from MIMIC-IV, MIMIC-III and MEDS datasets (hospital admissions), ICU stays from
eICU: the same task means the same thing whatever the container. Samples whose input holds no
diagnosis code at all are excluded and counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hicd_core.cohort.schema import ADMISSIONS, ICU_STAYS, VISIT_KIND

#: MIMIC-IV's emergency-class admission types (the MEDS ETL keeps MIMIC-IV's spelling).
EMERGENCY_TYPES = frozenset({"EW EMER.", "DIRECT EMER."})
READMISSION_WINDOW_MINUTES = 30 * 24 * 60
DEATH_WINDOW = pd.Timedelta(days=30)
#: Every task a visit kind can have; the variants (second half) only when their input exists.
KIND_TASKS = {ADMISSIONS: ("readmission_30d", "emergency_next", "readmission_30d_excl_deaths"),
              ICU_STAYS: ("icu_readmission", "icu_readmission_readmit")}


def _next_visit(visits: pd.DataFrame, column: str) -> pd.Series:
    same_patient = visits["patient_id"].shift(-1) == visits["patient_id"]
    return visits[column].shift(-1).where(same_patient)


def label_frames(visits: pd.DataFrame, kind: str, death: pd.Series | None = None
                 ) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Per task: (eligible mask, label) over the visits table (sorted by patient, time).

    ``death`` (admissions): the patient's date of death per visit (NaT unknown); given, the
    ``readmission_30d_excl_deaths`` variant is built. An eICU ``stay_type`` column builds
    ``icu_readmission_readmit``.

    >>> v = pd.DataFrame({"patient_id": [0, 0, 0, 1, 2], "start_minutes": [0, 10_000, 54_000, 0, 0],
    ...     "end_minutes": [1_000, 10_000, 55_000, 100, 50], "died": [False, False, False, True, False],
    ...     "emergency": [False, True, False, True, False],
    ...     "end": pd.to_datetime(["2150-01-01", "2150-01-07", "2150-02-07", "2150-01-01", "2150-01-01"])})
    >>> eligible, label = label_frames(v, "admissions")["readmission_30d"]
    >>> label[eligible].tolist()   # day 6.25 -> yes; 30.6 days later -> no; last -> no; 1 died
    [1, 0, 0, 0]
    >>> label_frames(v, "admissions")["emergency_next"][1][[0, 1]].tolist()   # next EW EMER., URGENT
    [1, 0]
    >>> death = pd.Series(pd.to_datetime(["2150-03-01"] * 3 + ["NaT", "2150-01-31"]))
    >>> eligible, _ = label_frames(v, "admissions", death)["readmission_30d_excl_deaths"]
    >>> eligible.tolist()   # visit 2: died day 22 without readmission; 4: died day 30
    [True, True, False, False, False]
    """
    has_next = (visits["patient_id"].shift(-1) == visits["patient_id"]).to_numpy()
    alive = ~visits["died"].astype(bool)
    out = {}
    if kind == ADMISSIONS:
        gap = _next_visit(visits, "start_minutes") - visits["end_minutes"]
        readmitted = (gap <= READMISSION_WINDOW_MINUTES).fillna(False).astype(np.int8)
        out["readmission_30d"] = (alive, readmitted)
        emergency = _next_visit(visits, "emergency").fillna(False).astype(bool).astype(np.int8)
        out["emergency_next"] = (pd.Series(has_next, index=visits.index), emergency)
        if death is not None:  # dates, not times: MIMIC-IV's dod is a date, MEDS_DEATH a timestamp
            died_soon = (pd.Series(pd.to_datetime(death).to_numpy(), index=visits.index).dt.normalize()
                         <= pd.to_datetime(visits["end"]).dt.normalize() + DEATH_WINDOW)
            out["readmission_30d_excl_deaths"] = (alive & ~(died_soon & (readmitted == 0)), readmitted)
    elif kind == ICU_STAYS:
        same_stay = (_next_visit(visits, "group_id") == visits["group_id"]).fillna(False).astype(bool)
        out["icu_readmission"] = (alive, same_stay.astype(np.int8))
        if "stay_type" in visits:
            next_type = _next_visit(visits, "stay_type").fillna("")
            unknown = same_stay & (next_type == "")
            out["icu_readmission_readmit"] = (alive & ~unknown,
                                              (same_stay & (next_type == "readmit")).astype(np.int8))
    else:
        raise ValueError(f"unknown visit kind {kind!r}")
    return out


def _not_built(kind: str, visits: pd.DataFrame, patients: pd.DataFrame, tasks: dict[str, pd.DataFrame]
               ) -> dict[str, int]:
    """Variants a source cannot support, noted with the rows they would have covered."""
    if kind == ADMISSIONS and "death" not in patients:
        return {"readmission_30d_excl_deaths_not_built_no_death_dates": len(tasks["readmission_30d"])}
    if kind == ICU_STAYS and "stay_type" not in visits:
        return {"icu_readmission_readmit_not_built_no_unitstaytype": len(visits)}
    return {}


def build_tasks(site: str, visits: pd.DataFrame, patients: pd.DataFrame, problems: dict[str, int]
                ) -> dict[str, pd.DataFrame]:
    """Sample tables for the site's tasks; exclusions are counted into ``problems``."""
    codes_so_far = visits.groupby("patient_id", sort=False)["n_codes"].cumsum().to_numpy()
    split = patients["split"].to_numpy()[visits["patient_id"].to_numpy()]
    ambiguous = visits["ambiguous_history"].to_numpy(bool) if "ambiguous_history" in visits \
        else np.zeros(len(visits), bool)
    death = None
    if "death" in patients:
        death = pd.Series(pd.to_datetime(patients["death"]).to_numpy()[visits["patient_id"].to_numpy()])
    kind = VISIT_KIND[site]
    tasks = {}
    for task, (eligible, label) in label_frames(visits, kind, death).items():
        eligible = eligible.to_numpy(bool)
        no_codes = eligible & ~ambiguous & (codes_so_far == 0)
        problems[f"{task}_excluded_ineligible_anchor"] = int((~eligible).sum())
        problems[f"{task}_excluded_ambiguous_history"] = int((eligible & ambiguous).sum())
        problems[f"{task}_excluded_no_codes"] = int(no_codes.sum())
        keep = eligible & ~ambiguous & ~no_codes
        frame = pd.DataFrame({
            "patient_id": visits["patient_id"].to_numpy()[keep],
            "visit_id": visits["visit_id"].to_numpy()[keep],
            "visit_index": visits["visit_index"].to_numpy()[keep],
            "label": label.to_numpy(np.int8)[keep],
            "split": pd.Categorical(split[keep], categories=patients["split"].cat.categories),
        })
        frame.insert(0, "sample_id", np.arange(len(frame), dtype=np.int64))
        tasks[task] = frame
    if "readmission_30d_excl_deaths" in tasks:
        problems["readmission_30d_died_within_30d_without_readmission"] = (
            len(tasks["readmission_30d"]) - len(tasks["readmission_30d_excl_deaths"]))
    problems.update(_not_built(kind, visits, patients, tasks))
    return tasks
