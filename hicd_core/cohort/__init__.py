"""Cohorts: MIMIC-IV / eICU loaders, the synthetic two-site default, tasks, splits and summaries."""

from hicd_core.cohort.io import CohortInputError
from hicd_core.cohort.schema import EICU, MIMIC_IV, SPLITS, TASK_SITES, TEST, TRAIN, VALIDATION, Cohort
from hicd_core.cohort.store import load_cohort, read_cohort, save_cohort
from hicd_core.cohort.summary import cohort_summary, coverage_table

__all__ = ["EICU", "MIMIC_IV", "SPLITS", "TASK_SITES", "TEST", "TRAIN", "VALIDATION", "Cohort",
           "CohortInputError", "cohort_summary", "coverage_table", "load_cohort", "read_cohort",
           "save_cohort"]
