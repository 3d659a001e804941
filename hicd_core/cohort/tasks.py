"""Prediction tasks. Each sample is anchored at one visit; its input is that visit and every earlier
visit of the patient. ICD codes are assigned at discharge, so nothing after the anchor visit's
discharge may enter the input; every label below looks only at the *next* visit.

=================  ========  ====================================================================
task               site      definition
=================  ========  ====================================================================
readmission_30d    MIMIC-IV  one sample per admission that ends alive (no ``deathtime``, no
                             ``hospital_expire_flag``); label 1 when the patient's next admission
                             starts within 30 days (<= 30 x 24 h) of this discharge. Admissions
                             without a next admission are negatives (a death after discharge is
                             not a readmission).
emergency_next     MIMIC-IV  one sample per admission that has a next admission; label 1 when the
                             next admission's ``admission_type`` is emergency-class: ``EW EMER.``
                             or ``DIRECT EMER.``. ``URGENT`` is *not* counted as emergency: MIMIC-IV
                             keeps it as a separate, non-emergency acuity class.
icu_readmission    eICU      one sample per ICU unit stay that ends alive (``unitdischargestatus``
                             not ``Expired``); label 1 when a later unit stay of the same hospital
                             stay (``patienthealthsystemstayid``) exists.
=================  ========  ====================================================================

Samples whose input holds no diagnosis code at all are excluded and counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hicd_core.cohort.schema import EICU, MIMIC_IV

EMERGENCY_TYPES = frozenset({"EW EMER.", "DIRECT EMER."})
READMISSION_WINDOW_MINUTES = 30 * 24 * 60
SITE_TASKS = {MIMIC_IV: ("readmission_30d", "emergency_next"), EICU: ("icu_readmission",)}


def _next_visit(visits: pd.DataFrame, column: str) -> pd.Series:
    same_patient = visits["patient_id"].shift(-1) == visits["patient_id"]
    return visits[column].shift(-1).where(same_patient)


def label_frames(visits: pd.DataFrame, site: str) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Per task: (eligible mask, label) over the visits table (sorted by patient, time).

    >>> v = pd.DataFrame({"patient_id": [0, 0, 0, 1, 2], "start_minutes": [0, 10_000, 54_000, 0, 0],
    ...     "end_minutes": [1_000, 10_000, 55_000, 100, 50], "died": [False, False, False, True, False],
    ...     "visit_type": ["ELECTIVE", "EW EMER.", "URGENT", "EW EMER.", "ELECTIVE"]})
    >>> eligible, label = label_frames(v, "mimic-iv")["readmission_30d"]
    >>> label[eligible].tolist()   # day 6.25 -> yes; 30.6 days later -> no; last -> no; 1 died
    [1, 0, 0, 0]
    >>> label_frames(v, "mimic-iv")["emergency_next"][1][[0, 1]].tolist()   # next EW EMER., URGENT
    [1, 0]
    """
    has_next = (visits["patient_id"].shift(-1) == visits["patient_id"]).to_numpy()
    out = {}
    if site == MIMIC_IV:
        gap = _next_visit(visits, "start_minutes") - visits["end_minutes"]
        readmitted = (gap <= READMISSION_WINDOW_MINUTES).fillna(False).astype(np.int8)
        out["readmission_30d"] = (~visits["died"].astype(bool), readmitted)
        next_type = _next_visit(visits, "visit_type").astype(object)
        emergency = next_type.isin(EMERGENCY_TYPES).astype(np.int8)
        out["emergency_next"] = (pd.Series(has_next, index=visits.index), emergency)
    elif site == EICU:
        same_stay = (_next_visit(visits, "group_id") == visits["group_id"]).fillna(False).astype(np.int8)
        out["icu_readmission"] = (~visits["died"].astype(bool), same_stay)
    else:
        raise ValueError(f"unknown site {site!r}")
    return out


def build_tasks(site: str, visits: pd.DataFrame, patients: pd.DataFrame, problems: dict[str, int]
                ) -> dict[str, pd.DataFrame]:
    """Sample tables for the site's tasks; exclusions are counted into ``problems``."""
    codes_so_far = visits.groupby("patient_id", sort=False)["n_codes"].cumsum().to_numpy()
    split = patients["split"].to_numpy()[visits["patient_id"].to_numpy()]
    tasks = {}
    for task, (eligible, label) in label_frames(visits, site).items():
        eligible = eligible.to_numpy(bool)
        no_codes = eligible & (codes_so_far == 0)
        problems[f"{task}_excluded_ineligible_anchor"] = int((~eligible).sum())
        problems[f"{task}_excluded_no_codes"] = int(no_codes.sum())
        keep = eligible & ~no_codes
        frame = pd.DataFrame({
            "patient_id": visits["patient_id"].to_numpy()[keep],
            "visit_id": visits["visit_id"].to_numpy()[keep],
            "visit_index": visits["visit_index"].to_numpy()[keep],
            "label": label.to_numpy(np.int8)[keep],
            "split": pd.Categorical(split[keep], categories=patients["split"].cat.categories),
        })
        frame.insert(0, "sample_id", np.arange(len(frame), dtype=np.int64))
        tasks[task] = frame
    return tasks
