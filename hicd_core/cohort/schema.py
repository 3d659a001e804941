"""The one cohort representation every model and page reads (typed tables, documented fields).

A :class:`Cohort` comes from a MIMIC-IV ``hosp`` folder, an eICU folder, or the synthetic default
(which is written in those same layouts and read by the same loaders). Tables are pandas frames
with categorical string columns; ids are dense int64 indices assigned by the loader, so nothing
downstream ever sees a raw source identifier (``source_patient_id`` stays in the patients table
for joins and is never shown by the app).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Split names (patient-level, 80/10/10, seeded, identical for every model and setting).
TRAIN, VALIDATION, TEST = "train", "val", "test"
SPLITS = (TRAIN, VALIDATION, TEST)

#: Sites.
MIMIC_IV, EICU = "mimic-iv", "eicu"
SOURCES = (MIMIC_IV, EICU)

#: Tasks and the site each belongs to.
TASK_SITES = {"readmission_30d": MIMIC_IV, "emergency_next": MIMIC_IV, "icu_readmission": EICU}

PATIENT_COLUMNS = {
    "patient_id": "int64 -- dense de-identified index 0..P-1 (what views show)",
    "source_patient_id": "string -- subject_id (MIMIC-IV) or uniquepid (eICU); never displayed",
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
    "visit_type": "category -- admission_type (MIMIC-IV) or unit type (eICU)",
    "age": "float32 -- years at the visit (NaN when unknown; eICU '> 89' -> 90)",
    "died": "bool -- died during the visit (hospital_expire_flag / unit discharge status)",
    "site": "category -- mimic-iv / eicu",
    "group_id": "string -- eICU patienthealthsystemstayid (hospital stay); hadm_id for MIMIC-IV",
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
        site: ``mimic-iv`` or ``eicu``.
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
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    @property
    def label(self) -> str:
        """Human label used on every page: says 'synthetic' when it is."""
        kind = "SYNTHETIC " if self.synthetic else ""
        return f"{kind}{self.site} ({len(self.patients):,} patients)"
