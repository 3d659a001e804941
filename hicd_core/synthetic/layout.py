"""What the generator writes: its identity (version, marker) and the official file layouts.

Why a module of its own: these names are the contract with the cohort readers and with callers that
check a data folder (``MARKER``, ``SCALES``, the exact column lists), and most other modules of the
generator need some of them, so they sit below the rest.
"""

from __future__ import annotations

#: Bumped whenever the same (seed, scale, signal) would produce different files.
GENERATOR_VERSION = "1"
MARKER = "SYNTHETIC.json"
#: scale -> (source patients, target patients).
SCALES = {"default": (12_000, 6_000), "full": (300_000, 146_000)}
#: The ``generator`` field of the marker. It names the module the generator lived in when version 1
#: of its output was recorded (before it became the ``hicd_core.synthetic`` package), so the same
#: arguments still give a byte-identical ``SYNTHETIC.json``. Change it only with ``GENERATOR_VERSION``.
GENERATOR_NAME = "hicd_core.cohort.synthetic"

MIMIC_FILES = ("patients", "admissions", "diagnoses_icd", "d_icd_diagnoses")
EICU_FILES = ("patient", "diagnosis")

PATIENTS_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSIONS_COLUMNS = [
    "subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
    "admission_location", "discharge_location", "insurance", "language", "marital_status", "race",
    "edregtime", "edouttime", "hospital_expire_flag",
]
DIAGNOSES_COLUMNS = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
D_ICD_COLUMNS = ["icd_code", "icd_version", "long_title"]
EICU_PATIENT_COLUMNS = [
    "patientunitstayid", "patienthealthsystemstayid", "gender", "age", "ethnicity", "hospitalid", "wardid",
    "apacheadmissiondx", "admissionheight", "hospitaladmittime24", "hospitaladmitoffset",
    "hospitaladmitsource", "hospitaldischargeyear", "hospitaldischargetime24", "hospitaldischargeoffset",
    "hospitaldischargelocation", "hospitaldischargestatus", "unittype", "unitadmittime24", "unitadmitsource",
    "unitvisitnumber", "unitstaytype", "admissionweight", "dischargeweight", "unitdischargetime24",
    "unitdischargeoffset", "unitdischargelocation", "unitdischargestatus", "uniquepid",
]
EICU_DIAGNOSIS_COLUMNS = [
    "diagnosisid", "patientunitstayid", "activeupondischarge", "diagnosisoffset", "diagnosisstring",
    "icd9code", "diagnosispriority",
]

#: The real MIMIC-IV admission_type vocabulary; the first two are the emergency class.
EMERGENCY_TYPES = ("EW EMER.", "DIRECT EMER.")
OTHER_TYPES = ("EU OBSERVATION", "OBSERVATION ADMIT", "URGENT", "SURGICAL SAME DAY ADMISSION",
               "DIRECT OBSERVATION", "ELECTIVE", "AMBULATORY OBSERVATION")
ADMISSION_TYPES = EMERGENCY_TYPES + OTHER_TYPES

#: A table to write: official column name -> int array, Categorical, pyarrow string array, or
#: object array of str/None (None is written as an empty field, as in the real files).
Table = dict[str, object]
