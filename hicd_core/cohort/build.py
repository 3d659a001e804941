"""Source-independent cohort assembly: code normalisation, dense ids, splits, tasks, fingerprint.

Every reader reduces its source to a :class:`RawCohort` (visits, diagnoses and patients keyed by the
source ids, plus counted problems) and hands it here, so MIMIC-IV, MIMIC-III, MEDS, eICU and the
synthetic default flow through one path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hicd_core import CODE_VERSION
from hicd_core.cohort.io import CohortInputError
from hicd_core.cohort.schema import SPLITS, TEST, TRAIN, VALIDATION, Cohort
from hicd_core.cohort.tasks import EMERGENCY_TYPES, build_tasks
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


@dataclass
class RawCohort:
    """What a reader hands to :func:`assemble_cohort`.

    Attributes:
        visits: one row per visit: ``source_patient_id``, ``source_visit_id``, ``group_id``,
            ``start``, ``end`` (datetimes, NaT when the source has none), ``start_minutes``,
            ``end_minutes`` (minutes since the patient's first visit), ``visit_type``, ``emergency``
            (bool, the reader's documented rule), ``age`` (years), ``died`` (during the visit).
        diagnoses: ``source_visit_id``, ``seq`` (order within the visit), ``raw_code``,
            ``icd_version`` (9 or 10).
        patients: ``source_patient_id``, ``sex``; optionally ``split`` (train/val/test from the
            source, e.g. MEDS ``subject_splits``; empty where the source gives none) and ``death``
            (datetime of death, NaT when unknown).
        problems: counted exclusions and oddities, ``name -> rows``.
        digest: hash of the source files' bytes (part of the fingerprint).
        meta: source provenance for the summary (e.g. a MEDS dataset's name and version).
    """

    visits: pd.DataFrame
    diagnoses: pd.DataFrame
    patients: pd.DataFrame
    problems: dict[str, int]
    digest: str
    meta: dict = field(default_factory=dict)


def _splits(patient_frame: pd.DataFrame, patients: pd.DataFrame, seed: int,
            problems: dict[str, int]) -> tuple[pd.Categorical, str]:
    """The source's own split where it gives one (MEDS ``subject_splits``), else the seeded split."""
    seeded = assign_splits(patient_frame["source_patient_id"], seed)
    if "split" not in patients:
        return seeded, f"seeded patient split (seed {seed}, 80/10/10)"
    given = patients.drop_duplicates("source_patient_id").set_index("source_patient_id")["split"]
    split = patient_frame["source_patient_id"].map(given).astype(object)
    missing = ~split.isin(SPLITS)
    problems["patients_without_source_split"] = int(missing.sum())
    values = np.where(missing, np.asarray(seeded, dtype=object), split.to_numpy(object))
    return pd.Categorical(values, categories=list(SPLITS)), "the source's own split (seeded for the rest)"


def assemble_cohort(site: str, raw: RawCohort, params: dict, meta: dict) -> Cohort:
    """Turn a reader's :class:`RawCohort` into a :class:`Cohort`."""
    visits, diagnoses, patients, problems = raw.visits, raw.diagnoses, raw.patients, raw.problems
    if "emergency" not in visits:  # frames built by hand: MIMIC-IV's admission types
        visits = visits.assign(emergency=visits["visit_type"].isin(EMERGENCY_TYPES).to_numpy())
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
    patient_frame["split"], split_source = _splits(patient_frame, patients, split_seed, problems)
    if "death" in patients:
        death = patients.drop_duplicates("source_patient_id").set_index("source_patient_id")["death"]
        patient_frame["death"] = pd.to_datetime(patient_frame["source_patient_id"].map(death))
    patient_frame["n_visits"] = visits.groupby("patient_id").size().to_numpy(np.int32)

    codes_per_visit = np.bincount(diag["visit_id"].to_numpy(), minlength=len(visits))
    visits["n_codes"] = codes_per_visit.astype(np.int32)
    tasks = build_tasks(site, visits, patient_frame, problems)

    fingerprint = stable_hash(site, raw.digest, params, CODE_VERSION)
    full_meta = {**raw.meta, **meta, "site": site, "params": params, "problems": problems,
                 "code_set_year": code_set_year(), "code_version": CODE_VERSION, "fingerprint": fingerprint,
                 "source_digest": raw.digest, "splits": list(SPLITS), "split_source": split_source}
    return Cohort(site=site, patients=patient_frame, visits=visits, diagnoses=diag, tasks=tasks,
                  fingerprint=fingerprint, meta=full_meta)
