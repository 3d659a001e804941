"""The one cohort representation every model and page reads (typed tables, documented fields).

A :class:`Cohort` comes from a MIMIC-IV ``hosp`` folder, a MIMIC-III folder, a MEDS dataset, an eICU
folder, or the synthetic default (which is written in those same layouts and read by the same
loaders). Whatever the container, a source's visits are either hospital admissions (MIMIC-IV,
MIMIC-III, MEDS) or ICU unit stays (eICU), and the tasks follow from that (:data:`VISIT_KIND`). Tables are
pandas frames with categorical string columns; ids are dense int64 indices assigned by the loader,
so nothing downstream ever sees a raw source identifier (``source_patient_id`` stays in the patients
table for joins and is never shown by the app).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Split names (patient-level, 80/10/10, seeded, identical for every model and setting).
TRAIN, VALIDATION, TEST = "train", "val", "test"
SPLITS = (TRAIN, VALIDATION, TEST)

#: Source kinds (what ``load_cohort`` reads; a cohort's ``site``).
MIMIC_IV, MIMIC_III, MEDS, EICU = "mimic-iv", "mimic-iii", "meds", "eicu"
SOURCES = (MIMIC_IV, MIMIC_III, MEDS, EICU)
SOURCE_LABELS = {MIMIC_IV: "MIMIC-IV", MIMIC_III: "MIMIC-III", MEDS: "MEDS", EICU: "eICU"}

#: What a source's visits are: hospital admissions or ICU unit stays. The tasks follow from it.
ADMISSIONS, ICU_STAYS = "admissions", "icu_stays"
VISIT_KIND = {MIMIC_IV: ADMISSIONS, MIMIC_III: ADMISSIONS, MEDS: ADMISSIONS, EICU: ICU_STAYS}

PATIENT_COLUMNS = {
    "patient_id": "int64 -- dense de-identified index 0..P-1 (what views show)",
    "source_patient_id": "string -- subject_id (MIMIC-IV/III, MEDS), uniquepid (eICU); never displayed",
    "split": "category -- train / val / test",
    "sex": "category -- as recorded (M/F/...), '' when absent",
    "n_visits": "int32",
}
VISIT_COLUMNS = {
    "visit_id": "int64 -- dense index, ordered by (patient_id, start)",
    "patient_id": "int64",
    "visit_index": "int32 -- 0-based order of the visit within its patient",
    "source_visit_id": "string -- hadm_id (MIMIC-IV) or patientunitstayid (eICU); never displayed",
    "start": "datetime64[ns] (MIMIC-IV) -- eICU has offsets only, see `start_minutes`",
    "end": "datetime64[ns]",
    "start_minutes": "float64 -- minutes since the patient's first visit start (both sources)",
    "end_minutes": "float64",
    "visit_type": "category -- admission_type (MIMIC-IV/III, MEDS) or unit type (eICU)",
    "emergency": "bool -- an emergency-class admission (each reader's documented rule); False for eICU",
    "age": "float32 -- years at the visit (NaN when unknown; eICU '> 89' -> 90)",
    "died": "bool -- died during the visit (hospital_expire_flag / unit discharge status)",
    "site": "category -- the source kind: mimic-iv / mimic-iii / meds / eicu",
    "group_id": "string -- eICU patienthealthsystemstayid (hospital stay); hadm_id for MIMIC-IV",
    "ambiguous_history": "bool -- eICU: an earlier hospital stay of the patient has an unknown order "
                         "relative to this one (same discharge year); no task anchors a sample here",
    "stay_type": "string -- eICU unitstaytype (admit / readmit / stepdown/other / transfer), '' elsewhere",
}
DIAGNOSIS_COLUMNS = {
    "visit_id": "int64",
    "patient_id": "int64",
    "seq": "int32 -- order within the visit (MIMIC seq_num; eICU priority then offset)",
    "raw_code": "category -- the original string",
    "icd_version": "int8 -- 9 or 10",
    "icd10": "category -- normalised undotted ICD-10-CM code (NaN when unresolved)",
    "chapter": "category -- G0 id, roman numeral or UNK",
    "block": "category -- block range or UNK",
    "category": "category -- 3-character category or UNK",
    "status": "category -- valid / approximate / mapped / unmapped / looks_icd9 / invalid / empty",
}
SAMPLE_COLUMNS = {
    "sample_id": "int64",
    "patient_id": "int64",
    "visit_id": "int64 -- the anchor visit: input = this visit and every earlier one",
    "visit_index": "int32 -- anchor's visit_index",
    "label": "int8 -- 0/1",
    "split": "category",
}


@dataclass
class Cohort:
    """Patients, their visits in time order, diagnosis codes per visit, and task samples.

    Attributes:
        site: the source kind, one of :data:`SOURCES`.
        patients, visits, diagnoses: see ``*_COLUMNS`` above for every field.
        tasks: task name -> samples frame (``SAMPLE_COLUMNS``).
        fingerprint: hash of the source files' content + load parameters + code version. Every
            downstream cache and run key includes it.
        meta: provenance (paths, parameters, ``synthetic`` flag, ``code_set_year``, problem counts).
    """

    site: str
    patients: pd.DataFrame
    visits: pd.DataFrame
    diagnoses: pd.DataFrame
    tasks: dict[str, pd.DataFrame]
    fingerprint: str
    meta: dict = field(default_factory=dict)

    @property
    def visit_kind(self) -> str:
        """``admissions`` or ``icu_stays`` (:data:`VISIT_KIND`): which tasks the cohort has."""
        return VISIT_KIND[self.site]

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    @property
    def label(self) -> str:
        """Human label used on every page: says 'synthetic' when it is."""
        kind = "SYNTHETIC " if self.synthetic else ""
        return f"{kind}{self.site} ({len(self.patients):,} patients)"
