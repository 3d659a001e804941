"""Source-independent cohort assembly: code normalisation, dense ids, splits, tasks, fingerprint.

Both loaders reduce their source to three raw frames (visits, diagnoses, patients keyed by the
source ids) and hand them here, so MIMIC-IV, eICU and the synthetic default flow through one path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hicd_core import CODE_VERSION
from hicd_core.cohort.io import CohortInputError
from hicd_core.cohort.schema import SPLITS, TEST, TRAIN, VALIDATION, Cohort
from hicd_core.cohort.tasks import build_tasks
from hicd_core.hierarchy import code_set_year, normalize_codes
from hicd_core.runtime import stable_hash

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def assign_splits(source_patient_ids: pd.Series, seed: int = 0) -> pd.Categorical:
    """Patient-level 80/10/10 split that depends only on the set of ids and the seed.

    Ids are sorted before a seeded permutation, so row order in the files never changes the split,
    and every model and hierarchy setting sees the same split.

    >>> list(assign_splits(pd.Series([f"p{i}" for i in range(10)]), seed=0))
    ['train', 'test', 'train', 'train', 'train', 'train', 'train', 'train', 'val', 'train']
    """
    ids = source_patient_ids.astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")
    rng = np.random.default_rng(seed)
    shuffled = order[rng.permutation(len(order))]
    n = len(ids)
    n_train = round(SPLIT_FRACTIONS[0] * n)
    n_val = round(SPLIT_FRACTIONS[1] * n)
    codes = np.empty(n, dtype=np.int8)
    codes[shuffled[:n_train]] = 0
    codes[shuffled[n_train:n_train + n_val]] = 1
    codes[shuffled[n_train + n_val:]] = 2
    return pd.Categorical.from_codes(codes, categories=[TRAIN, VALIDATION, TEST])


def assemble_cohort(site: str, visits: pd.DataFrame, diagnoses: pd.DataFrame, patients: pd.DataFrame,
                    problems: dict[str, int], source_digest: str, params: dict, meta: dict) -> Cohort:
    """Turn raw per-source frames into a :class:`Cohort`.

    ``visits`` columns: source_patient_id, source_visit_id, group_id, start, end, start_minutes,
    end_minutes, visit_type, age, died. ``diagnoses``: source_visit_id, seq, raw_code, icd_version.
    ``patients``: source_patient_id, sex.
    """
    visits = visits.sort_values(["source_patient_id", "start_minutes", "source_visit_id"], kind="stable")
    visits = visits.reset_index(drop=True)
    if visits.empty:
        raise CohortInputError(f"no usable visits in the {site} source: the cohort would be empty")
    patient_codes, patient_uniques = pd.factorize(visits["source_patient_id"], sort=False)
    visits.insert(0, "visit_id", np.arange(len(visits), dtype=np.int64))
    visits.insert(1, "patient_id", patient_codes.astype(np.int64))
    visits["visit_index"] = visits.groupby("patient_id", sort=False).cumcount().astype(np.int32)
    visits["site"] = pd.Categorical([site] * len(visits))
    visits["visit_type"] = visits["visit_type"].astype("category")

    visit_lookup = pd.Series(visits["visit_id"].to_numpy(), index=visits["source_visit_id"].to_numpy())
    diag_visit = visit_lookup.reindex(diagnoses["source_visit_id"].to_numpy()).to_numpy()
    unknown_visit = np.isnan(diag_visit) if diag_visit.dtype.kind == "f" else pd.isna(diag_visit)
    problems["diagnosis_rows_unknown_visit"] = problems.get("diagnosis_rows_unknown_visit", 0) + int(
        unknown_visit.sum())
    diagnoses = diagnoses.loc[~unknown_visit].reset_index(drop=True)
    diag_visit = diag_visit[~unknown_visit].astype(np.int64)

    normalized = normalize_codes(diagnoses["raw_code"], diagnoses["icd_version"].to_numpy())
    diag = pd.DataFrame({
        "visit_id": diag_visit,
        "patient_id": visits["patient_id"].to_numpy()[diag_visit],
        "seq": diagnoses["seq"].to_numpy(np.int32),
        "raw_code": diagnoses["raw_code"].astype("category"),
        "icd_version": diagnoses["icd_version"].to_numpy(np.int8),
    })
    for column in ("icd10", "chapter", "block", "category", "status"):
        diag[column] = normalized[column].array  # keep the categorical: no per-row string copies
    # One int64 key (visit, seq) and a stable argsort: much cheaper than a two-column lexsort.
    order = np.argsort((diag["visit_id"].to_numpy() << 20) + diag["seq"].to_numpy().clip(0, (1 << 20) - 1),
                       kind="stable")
    diag = diag.take(order).reset_index(drop=True)

    patient_frame = pd.DataFrame({"source_patient_id": patient_uniques.astype(str)})
    sex = patients.drop_duplicates("source_patient_id").set_index("source_patient_id")["sex"]
    patient_frame["sex"] = patient_frame["source_patient_id"].map(sex).fillna("").astype("category")
    patient_frame.insert(0, "patient_id", np.arange(len(patient_frame), dtype=np.int64))
    split_seed = int(params.get("split_seed", 0))
    patient_frame["split"] = assign_splits(patient_frame["source_patient_id"], split_seed)
    patient_frame["n_visits"] = visits.groupby("patient_id").size().to_numpy(np.int32)

    codes_per_visit = np.bincount(diag["visit_id"].to_numpy(), minlength=len(visits))
    visits["n_codes"] = codes_per_visit.astype(np.int32)
    tasks = build_tasks(site, visits, patient_frame, problems)

    fingerprint = stable_hash(site, source_digest, params, CODE_VERSION)
    full_meta = {**meta, "site": site, "params": params, "problems": problems,
                 "code_set_year": code_set_year(), "code_version": CODE_VERSION, "fingerprint": fingerprint,
                 "source_digest": source_digest, "splits": list(SPLITS)}
    return Cohort(site=site, patients=patient_frame, visits=visits, diagnoses=diag, tasks=tasks,
                  fingerprint=fingerprint, meta=full_meta)
