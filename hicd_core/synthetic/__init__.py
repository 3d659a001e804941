"""Seeded synthetic two-site data: a MIMIC-IV ``hosp`` source and an eICU target.

Why: the app and the tests must run end to end without credentialed data, and the experiments need
a data set where we *know* how much of the outcome risk lives in the ICD-10-CM hierarchy. The files
are written in the official layouts (exact columns, undotted MIMIC codes, dotted eICU code pairs,
MIMIC-style shifted dates), so the real loaders read them with no special case; everything produced
from them is flagged synthetic through the ``SYNTHETIC.json`` marker.

Model (full description and calibration targets in ``docs/synthetic.md``):

* every billable ICD-10-CM leaf gets a popularity (chapter mix x Zipf over blocks, categories and
  leaves, plus a head of common real codes) and a risk
  ``sqrt(s) * (chapter + block + category effect) / sqrt(3) + sqrt(1 - s) * leaf effect`` where
  ``s = hierarchy_signal`` -- the one knob that moves outcome risk between the tree and single codes;
* patients carry latent disease families (real categories/blocks) and a few chronic codes that
  recur across visits; each visit's codes mix family, chronic and background draws;
* the probability of the outcome after a visit (30-day readmission and emergency next admission at
  the source, ICU readmission at the target) is logistic in the mean risk of every code the patient
  has accumulated so far, so a model reading codes can predict it.

Public API::

    write_synthetic(out_dir, seed=0, scale="default", hierarchy_signal=0.7) -> summary dict
    write_synthetic_meds(out_dir, seed=0, ..., lab_ratio=20) -> the source site as a MEDS root
    mimic_to_meds(patients, admissions, diagnoses) -> MEDS rows (the MIMIC-IV MEDS ETL's conventions)
    leaf_risk_table(seed=0, hierarchy_signal=0.7)  -> per-leaf effects and risk
    family_table(seed=0, hierarchy_signal=0.7)     -> the latent disease families
    risk_variance_shares(table)                    -> share of leaf-risk variance between groups
    site_chapter_mix(site)                         -> the chapter mix a site is calibrated to
    read_marker(out_dir)                           -> the SYNTHETIC.json content (None if absent)
    default_root(), ensure_default()               -> the synthetic default in the data dir (per
                                                      patients, seed and hierarchy_signal)

All randomness comes from ``numpy.random.default_rng`` streams derived from ``seed``; nothing is
seeded at import time.

Package layout (one module per stage; the underscore names they share are internal to the package,
this module is the public API)::

    layout     identity (GENERATOR_VERSION, MARKER, SCALES) and the official file columns
    helpers    seeded streams, vectorised draws, column builders
    vocab      the seed-independent leaf vocabulary (disk-cached)
    model      popularity, hierarchy-signal risk, families, site code mixes
    draws      patients and per-visit codes, shared by both sites
    mimic      the MIMIC-IV ``hosp`` source
    eicu       the eICU target
    csv_out    deterministic gzipped CSV
    meds       the source site as a MEDS dataset (plus LAB volume)
    writer     write_synthetic / read_marker
"""

from hicd_core.synthetic.layout import (
    ADMISSION_TYPES,
    ADMISSIONS_COLUMNS,
    D_ICD_COLUMNS,
    DIAGNOSES_COLUMNS,
    EICU_DIAGNOSIS_COLUMNS,
    EICU_FILES,
    EICU_PATIENT_COLUMNS,
    EMERGENCY_TYPES,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    MARKER,
    MIMIC_FILES,
    OTHER_TYPES,
    PATIENTS_COLUMNS,
    SCALES,
)
from hicd_core.synthetic.meds import mimic_to_meds, write_synthetic_meds
from hicd_core.synthetic.model import (
    COMMON_CODES,
    FAMILIES,
    SOURCE_CHAPTER_MIX,
    TARGET_CHAPTER_FACTOR,
    family_table,
    leaf_risk_table,
    risk_variance_shares,
    site_chapter_mix,
)
from hicd_core.synthetic.writer import (
    DEFAULT_HIERARCHY_SIGNAL,
    default_root,
    ensure_default,
    read_marker,
    write_synthetic,
)

__all__ = [
    "ADMISSIONS_COLUMNS",
    "ADMISSION_TYPES",
    "COMMON_CODES",
    "DEFAULT_HIERARCHY_SIGNAL",
    "DIAGNOSES_COLUMNS",
    "D_ICD_COLUMNS",
    "EICU_DIAGNOSIS_COLUMNS",
    "EICU_FILES",
    "EICU_PATIENT_COLUMNS",
    "EMERGENCY_TYPES",
    "FAMILIES",
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "MARKER",
    "MIMIC_FILES",
    "OTHER_TYPES",
    "PATIENTS_COLUMNS",
    "SCALES",
    "SOURCE_CHAPTER_MIX",
    "TARGET_CHAPTER_FACTOR",
    "default_root",
    "ensure_default",
    "family_table",
    "leaf_risk_table",
    "mimic_to_meds",
    "read_marker",
    "risk_variance_shares",
    "site_chapter_mix",
    "write_synthetic",
    "write_synthetic_meds",
]
