"""Cohort summary: the numbers a researcher checks before trusting anything downstream."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hicd_core.cohort.schema import SOURCE_LABELS, SPLITS, Cohort
from hicd_core.hierarchy import RESOLVED


def coverage_table(cohort: Cohort) -> pd.DataFrame:
    """Occurrences and distinct codes per source ICD version and mapping status."""
    diag = cohort.diagnoses
    frame = pd.DataFrame({"source_version": diag["icd_version"].to_numpy(),
                          "status": diag["status"].astype(str).to_numpy(),
                          "raw": diag["raw_code"].astype(str).to_numpy()})
    table = frame.groupby(["source_version", "status"]).agg(
        occurrences=("raw", "size"), distinct_codes=("raw", "nunique")).reset_index()
    table["share"] = table["occurrences"] / table.groupby("source_version")["occurrences"].transform("sum")
    return table


def cohort_summary(cohort: Cohort) -> dict:
    """Counts, mapping coverage, distributions and per-task sample counts / positive rates."""
    diag, visits = cohort.diagnoses, cohort.visits
    resolved = diag["status"].astype(str).isin(RESOLVED).to_numpy()
    is9 = diag["icd_version"].to_numpy() == 9
    codes_per_visit = visits["n_codes"].to_numpy()
    tasks = {}
    for task, samples in cohort.tasks.items():
        by_split = {}
        for split in SPLITS:
            part = samples[samples["split"] == split]
            rate = float(part["label"].mean()) if len(part) else float("nan")
            by_split[split] = {"n": len(part), "positive_rate": rate}
        tasks[task] = {"n": len(samples), "positive_rate": float(samples["label"].mean()) if len(samples)
                       else float("nan"), "by_split": by_split}
    return {
        "site": cohort.site,
        "source": SOURCE_LABELS.get(cohort.site, cohort.site),
        "visit_kind": cohort.visit_kind,
        "dataset": dict(cohort.meta.get("dataset") or {}),
        "split_source": cohort.meta.get("split_source", "seeded patient split"),
        "synthetic": cohort.synthetic,
        "fingerprint": cohort.fingerprint,
        "code_set_year": cohort.meta.get("code_set_year"),
        "patients": len(cohort.patients),
        "visits": len(visits),
        "diagnosis_rows": len(diag),
        "distinct_codes": int(diag[["icd_version", "raw_code"]].drop_duplicates().shape[0]),
        "distinct_icd10_codes": int(diag["icd10"].nunique()),
        "icd9_share": float(is9.mean()) if len(diag) else 0.0,
        "mapping_coverage": float(resolved.mean()) if len(diag) else 0.0,
        "icd9_mapping_coverage": float(resolved[is9].mean()) if is9.any() else float("nan"),
        "codes_per_visit": {"mean": float(codes_per_visit.mean()),
                            "median": float(np.median(codes_per_visit)),
                            "visits_without_codes": int((codes_per_visit == 0).sum())},
        "visits_per_patient": {"mean": float(cohort.patients["n_visits"].mean()),
                               "median": float(cohort.patients["n_visits"].median()),
                               "max": int(cohort.patients["n_visits"].max())},
        "splits": {split: int((cohort.patients["split"] == split).sum()) for split in SPLITS},
        "tasks": tasks,
        "problems": dict(cohort.meta.get("problems", {})),
        "coverage": coverage_table(cohort).to_dict(orient="records"),
    }
