"""Test-only MEDS roots: the real MIMIC-IV demo converted with the MIMIC-IV MEDS ETL's conventions,
and small hand-made roots for the bad-input tests. Built into temporary folders, never committed.

The conversion itself is :func:`hicd_core.synthetic.meds.mimic_to_meds` (the synthetic writer's),
so the demo and the synthetic MEDS data follow one set of conventions; ``test_meds`` checks those
conventions against the demo's CSV rows directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hicd_core.synthetic.meds import mimic_to_meds

#: ``dataset.json`` as written by the two MEDS versions we read (0.4 adds the extension fields).
DATASET_0_3 = {"dataset_name": "MIMIC-IV-DEMO", "dataset_version": "2.2", "etl_name": "MIMIC_IV_MEDS",
               "etl_version": "0.0.4", "meds_version": "0.3.3", "created_at": "2024-09-01T00:00:00"}
DATASET_0_4 = {**DATASET_0_3, "meds_version": "0.4.1", "license": "ODbL-1.0", "location_uri": None,
               "description_uri": None, "raw_source_id_columns": ["hadm_id"], "code_modifier_columns": [],
               "additional_value_modality_columns": [], "site_id_columns": [], "other_extension_columns": []}


def demo_events(demo: Path, *, hadm_id: bool = True) -> pd.DataFrame:
    """The demo's patients, admissions and diagnoses as MEDS rows (sorted by subject and time)."""
    hosp = demo / "hosp"
    patients = pd.read_csv(hosp / "patients.csv.gz", parse_dates=["dod"])
    admissions = pd.read_csv(hosp / "admissions.csv.gz", parse_dates=["admittime", "dischtime", "deathtime"])
    diagnoses = pd.read_csv(hosp / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    return mimic_to_meds(patients, admissions, diagnoses, hadm_id=hadm_id)


def write_root(root: Path, events: pd.DataFrame, *, dataset: dict | None = DATASET_0_3,
               splits: dict[int, str] | None = None, shards: int = 2, time_type: pa.DataType | None = None,
               text_value: bool = False) -> Path:
    """Write ``events`` as a MEDS root: ``data/train/<i>.parquet`` (subjects dealt to ``shards`` files,
    each subject in one), ``metadata/dataset.json`` and, when given, ``subject_splits.parquet``."""
    root = Path(root)
    subjects = np.sort(events["subject_id"].unique())
    shard_of = dict(zip(subjects, np.arange(len(subjects)) % shards, strict=True))
    row_shard = events["subject_id"].map(shard_of).to_numpy()
    for i in range(shards):
        part = events[row_shard == i]
        columns = {"subject_id": pa.array(part["subject_id"].to_numpy(np.int64)),
                   "time": pa.array(part["time"].to_numpy("datetime64[us]"), pa.timestamp("us")),
                   "code": pa.array(part["code"].astype(object).to_numpy(), pa.string()),
                   "numeric_value": pa.array(part["numeric_value"].to_numpy(np.float32), pa.float32(),
                                             from_pandas=True)}
        if time_type is not None:  # e.g. timezone-aware: the same instants, read as UTC
            columns["time"] = pa.array(part["time"].to_numpy("datetime64[us]"), pa.timestamp("us")) \
                .cast(pa.timestamp("us", tz="UTC")).cast(time_type)
        if text_value:
            columns["text_value"] = pa.nulls(len(part), pa.large_string())
        if "hadm_id" in part:
            columns["hadm_id"] = pa.array(part["hadm_id"], pa.int64())
        (root / "data" / "train").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), root / "data" / "train" / f"{i}.parquet")
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    if dataset is not None:
        (root / "metadata" / "dataset.json").write_text(json.dumps(dataset))
    if splits is not None:
        pq.write_table(pa.table({"subject_id": pa.array(list(splits), pa.int64()),
                                 "split": pa.array(list(splits.values()), pa.string())}),
                       root / "metadata" / "subject_splits.parquet")
    return root


def events(rows: list[tuple], *, hadm_id: bool = True) -> pd.DataFrame:
    """Hand-made MEDS rows ``(subject_id, time or None, code[, hadm_id])`` as a frame."""
    frame = pd.DataFrame({"subject_id": [r[0] for r in rows],
                          "time": pd.to_datetime([r[1] for r in rows], format="ISO8601"),
                          "code": [r[2] for r in rows], "numeric_value": np.nan})
    if hadm_id:
        frame["hadm_id"] = pd.array([r[3] if len(r) > 3 else None for r in rows], dtype="Int64")
    return frame
