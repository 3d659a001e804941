"""Cohorts: MIMIC-IV / MIMIC-III / MEDS / eICU loaders, tasks, splits and summaries."""

from hicd_core.cohort.build import RawCohort
from hicd_core.cohort.io import CohortInputError
from hicd_core.cohort.schema import (
    ADMISSIONS,
    EICU,
    ICU_STAYS,
    MEDS,
    MIMIC_III,
    MIMIC_IV,
    SOURCE_LABELS,
    SOURCES,
    SPLITS,
    TEST,
    TRAIN,
    VALIDATION,
    VISIT_KIND,
    Cohort,
)
from hicd_core.cohort.store import load_cohort, read_cohort, save_cohort
from hicd_core.cohort.summary import cohort_summary, coverage_table

__all__ = ["ADMISSIONS", "EICU", "ICU_STAYS", "MEDS", "MIMIC_III", "MIMIC_IV", "SOURCES", "SOURCE_LABELS",
           "SPLITS", "TEST", "TRAIN", "VALIDATION", "VISIT_KIND", "Cohort", "CohortInputError", "RawCohort",
           "cohort_summary", "coverage_table", "load_cohort", "read_cohort", "save_cohort"]
