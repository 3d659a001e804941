"""Results out as MEDS: a run store's task labels and test predictions in the files MEDS tools read.

``python -m hicd_core export-meds --store S [--run RUN] --out DIR`` writes::

    DIR/labels/<task>.parquet               every sample of the task (all splits): MEDS LabelSchema
                                            (subject_id int64, prediction_time timestamp[us],
                                            boolean_value bool), in the task's sample order
    DIR/predictions/<run_id>.parquet        the run's test predictions in the meds-evaluation schema:
                                            the three label columns + predicted_boolean_value (bool,
                                            probability >= the run's validation-chosen threshold) +
                                            predicted_boolean_probability (float32), no other column
    DIR/metadata/subject_splits.parquet     the source cohort's patient split as MEDS names it
                                            (train / tuning / held_out), so MEDS-DEV style tools use the
                                            same held-out patients as our test split
    DIR/export.json                         manifest: store, cohort fingerprints, code version, library
                                            versions, ICD code-set year, row counts, skipped runs, problems

Labels are written for every task of the store's finished runs; predictions for every finished run,
or only ``--run RUN``. The folder is written as a whole (a temporary sibling renamed in one step);
an existing ``--out`` is replaced only when it is empty or a previous export (has ``export.json``).

* ``subject_id`` is the source's own subject id (``patients.source_patient_id``: MIMIC-IV / MIMIC-III /
  MEDS ``subject_id``), so the files join to the source's MEDS data.
* ``prediction_time`` is the discharge time of the anchor admission. Its codes (which the MEDS ETL
  timestamps at that discharge) are inputs; MEDS reads "data up to and including prediction_time".
  Timezone-aware times are written as naive UTC. An anchor with no discharge time cannot be placed
  and is left out, counted in the manifest's ``problems`` (rows kept + counted = rows read).
* **eICU-target runs (transfer probes) and eICU tasks are refused**, listed in the manifest's
  ``skipped`` with :data:`EICU_REFUSAL`: eICU has no absolute times (minute offsets within a hospital
  stay plus a discharge year) and no integer patient id (``uniquepid`` is a string such as
  "002-34851"). MEDS joins labels and predictions to the data on (subject_id, prediction_time); a
  timeline made up here (year + offset) would be ours alone and silently mismatch an eICU MEDS
  dataset's (whose ETL builds its own synthetic times, with the hospital stay as subject), so a file
  that looks interoperable and is not is worse than none. ``--run`` of such a run is an error.
* The cohorts are reloaded from ``store.json``'s recorded source and must have the recorded
  fingerprint; changed or missing files are an error (sample ids only mean something in the cohort
  the runs were trained on). A run trained on another cohort than ``store.json`` names is skipped.

Privacy: these files carry the source's real subject ids and (shifted) times, exactly like the source
data they come from. They are for the credentialed environment that holds that data, not for sharing.
Nothing patient-level is logged or put in an error message.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hicd_core import CODE_VERSION
from hicd_core.cohort import EICU, TEST, TRAIN, VALIDATION, Cohort, CohortInputError, load_cohort
from hicd_core.experiments.runstore import RunStore
from hicd_core.runtime import atomic_directory, library_versions

MANIFEST = "export.json"
LABEL_SCHEMA = pa.schema([pa.field("subject_id", pa.int64(), nullable=False),
                          pa.field("prediction_time", pa.timestamp("us"), nullable=False),
                          pa.field("boolean_value", pa.bool_(), nullable=False)])
PREDICTION_SCHEMA = pa.schema([*LABEL_SCHEMA,
                               pa.field("predicted_boolean_value", pa.bool_(), nullable=False),
                               pa.field("predicted_boolean_probability", pa.float32(), nullable=False)])
SPLIT_SCHEMA = pa.schema([pa.field("subject_id", pa.int64(), nullable=False),
                          pa.field("split", pa.string(), nullable=False)])
#: Our split names -> MEDS split names.
MEDS_SPLITS = {TRAIN: "train", VALIDATION: "tuning", TEST: "held_out"}
NO_DISCHARGE = "anchor_without_discharge_time"
EICU_REFUSAL = ("eICU has no absolute times and no integer patient id (uniquepid is a string), so its "
                "labels cannot be placed on a MEDS timeline that joins to an eICU MEDS dataset; "
                "eICU tasks and eICU-target transfer runs are not exported")
PRIVACY = ("These files carry the source's own subject ids and times: keep them in the credentialed "
           "environment that holds the source data; do not share them.")


class ExportError(ValueError):
    """The store, a run or a cohort cannot be exported (the message names which and why)."""


@dataclass
class _Plan:
    """What one export writes: runs by cohort key ('source'/'target') and task, and what it skips."""

    runs: list[dict]
    tasks: dict[str, str]                        # task -> cohort key
    skipped_runs: dict[str, str] = field(default_factory=dict)
    skipped_tasks: dict[str, str] = field(default_factory=dict)


def _cohort_key(run: dict) -> tuple[str, str]:
    """(cohort key, task) a run's predictions belong to: transfer probes are on the target's task."""
    spec = run["spec"]
    if spec.get("kind", "task") == "transfer":
        return "target", spec["target_task"]
    return "source", spec["task"]


def _refusal(info: dict, key: str, run: dict | None = None) -> str | None:
    """Why a cohort (and a run on it) cannot be exported, else None."""
    if info.get(f"{key}_site") == EICU:
        return EICU_REFUSAL
    if run is not None and run.get(f"{key}_fingerprint") != info.get(f"{key}_fingerprint"):
        return (f"trained on another {key} cohort (fingerprint {run.get(f'{key}_fingerprint')}) than "
                f"store.json names ({info.get(f'{key}_fingerprint')})")
    return None


def _plan(store: RunStore, info: dict, run_id: str | None) -> _Plan:
    finished = store.finished_runs()
    if not finished:
        raise ExportError(f"no finished runs in {store.root}; run `python -m hicd_core sweep` first")
    tasks: dict[str, str] = {}
    skipped_tasks: dict[str, str] = {}
    for run in finished:
        key, task = _cohort_key(run)
        reason = _refusal(info, key)
        if reason:
            skipped_tasks[task] = reason
        else:
            tasks.setdefault(task, key)
    chosen = finished
    if run_id is not None:
        chosen = [run for run in finished if run["run_id"] == run_id]
        if not chosen:
            failure = store.failure(run_id)
            detail = f" (it failed: {failure['error']})" if failure else ""
            raise ExportError(f"--run {run_id}: no finished run with that id in {store.root}{detail}")
    plan = _Plan(runs=[], tasks=tasks, skipped_tasks=skipped_tasks)
    for run in chosen:
        reason = _refusal(info, _cohort_key(run)[0], run)
        if reason and run_id is not None:
            raise ExportError(f"--run {run_id} cannot be exported: {reason}")
        if reason:
            plan.skipped_runs[run["run_id"]] = reason
        else:
            plan.runs.append(run)
    if not plan.runs and not plan.tasks:
        reason = next(iter(plan.skipped_runs.values()))
        raise ExportError(f"nothing in {store.root} can be exported: {reason}")
    return plan


def store_cohort(store: RunStore, info: dict, key: str) -> Cohort:
    """The ``source`` or ``target`` cohort ``store.json`` records, checked against its fingerprint."""
    site, path, expected = (info.get(f"{key}_{name}") for name in ("site", "path", "fingerprint"))
    if not site or not path:
        raise ExportError(f"{store.root / 'store.json'} does not say where its {key} cohort came from "
                          f"({key}_site / {key}_path); rerun the sweep with this version")
    try:
        cohort = load_cohort(site, path, split_seed=int(info.get(f"{key}_split_seed") or 0))
    except (CohortInputError, OSError) as exc:
        raise ExportError(f"the {key} cohort of {store.root} ({site} at {path}) cannot be read: {exc}"
                          ) from exc
    if cohort.fingerprint != expected:
        raise ExportError(f"the {key} cohort at {path} changed since the runs of {store.root} were made "
                          f"(fingerprint {cohort.fingerprint}, store.json has {expected}); restore the files "
                          "or rerun the sweep")
    return cohort


def subject_ids(cohort: Cohort) -> pd.Series:
    """Dense ``patient_id`` -> the source's integer subject id (MIMIC / MEDS ``subject_id``)."""
    raw = cohort.patients["source_patient_id"].astype(str)
    bad = int((~raw.str.fullmatch(r"-?\d{1,18}")).sum())
    if bad:
        raise ExportError(f"{cohort.meta.get('source_path')}: {bad} of {len(raw)} subject ids "
                          "(patients.source_patient_id) are not integers; MEDS needs an int64 subject_id")
    return pd.Series(raw.to_numpy().astype(np.int64), index=cohort.patients["patient_id"].to_numpy())


def anchor_rows(samples: pd.DataFrame, cohort: Cohort, subjects: pd.Series) -> tuple[pd.DataFrame, int]:
    """``samples`` (``patient_id``, ``visit_id``, ...) with ``subject_id`` and ``prediction_time`` (the
    anchor visit's end, naive UTC) added; rows whose anchor has no end are dropped and counted."""
    end = cohort.visits.set_index("visit_id")["end"]
    times = pd.to_datetime(end.reindex(samples["visit_id"].to_numpy()))
    if getattr(times.dtype, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    rows = samples.assign(subject_id=subjects.reindex(samples["patient_id"].to_numpy()).to_numpy(),
                          prediction_time=times.to_numpy().astype("datetime64[us]"))
    keep = rows["prediction_time"].notna().to_numpy()
    return rows[keep], int((~keep).sum())


def _table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _label_table(rows: pd.DataFrame, schema: pa.Schema = LABEL_SCHEMA) -> pa.Table:
    return _table(rows.assign(boolean_value=rows["label"].to_numpy() == 1), schema)


def prediction_table(predictions: pd.DataFrame, samples: pd.DataFrame, cohort: Cohort, subjects: pd.Series,
                     threshold: float, run_id: str) -> tuple[pa.Table, int]:
    """A run's stored predictions (``sample_id``, ``label``, ``prob``) as meds-evaluation rows.

    The predicted value is taken on the stored float64 probability (as the run's metrics were), the
    probability is then written as float32. Returns (table, rows dropped for want of a discharge time).
    """
    merged = predictions[["sample_id", "label", "prob"]].merge(
        samples[["sample_id", "patient_id", "visit_id", "label"]], on="sample_id", how="left",
        suffixes=("", "_cohort"), validate="one_to_one")
    unknown = int(merged["visit_id"].isna().sum())
    if unknown:
        raise ExportError(f"run {run_id}: {unknown} stored predictions name samples its cohort's task lacks")
    differ = int((merged["label"].to_numpy() != merged["label_cohort"].to_numpy()).sum())
    if differ:
        raise ExportError(f"run {run_id}: {differ} stored labels differ from the cohort's; the store and "
                          "the cohort do not belong together")
    merged["visit_id"] = merged["visit_id"].astype(np.int64)
    rows, dropped = anchor_rows(merged, cohort, subjects)
    prob = rows["prob"].to_numpy(np.float64)
    rows = rows.assign(predicted_boolean_value=prob >= threshold,
                       predicted_boolean_probability=prob.astype(np.float32))
    return _label_table(rows, PREDICTION_SCHEMA), dropped


def _threshold(run: dict) -> float:
    value = run.get("metrics", {}).get("threshold")
    if value is None or not math.isfinite(float(value)):
        raise ExportError(f"run {run['run_id']}: metrics.json holds no decision threshold")
    return float(value)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ExportError(f"--out {out} exists and is neither empty nor a previous export (no {MANIFEST}); "
                          "choose a new folder")


def export_meds(store: RunStore, out: Path | str, run_id: str | None = None) -> dict[str, Any]:
    """Write labels, predictions, subject splits and the manifest to ``out``; returns the manifest."""
    out = Path(out)
    _check_out(out)
    info = store.store_info()
    plan = _plan(store, info, run_id)
    keys = sorted(set(plan.tasks.values()) | {_cohort_key(run)[0] for run in plan.runs})
    cohorts = {key: store_cohort(store, info, key) for key in keys}
    subjects = {key: subject_ids(cohort) for key, cohort in cohorts.items()}
    manifest: dict[str, Any] = {
        "format": "MEDS label files (meds 0.4 LabelSchema) and meds-evaluation predictions",
        "store": str(store.root), "run": run_id, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code_version": CODE_VERSION, "library_versions": library_versions(),
        "code_set_year": info.get("code_set_year"), "synthetic": info.get("synthetic"),
        "cohorts": {key: {"site": c.site, "path": info.get(f"{key}_path"), "fingerprint": c.fingerprint}
                    for key, c in cohorts.items()},
        "subject_id": "the source's own subject id (patients.source_patient_id)",
        "prediction_time": "discharge time of the anchor admission (its codes are inputs)",
        "labels": {}, "predictions": {}, "subject_splits": None,
        "skipped_tasks": plan.skipped_tasks, "skipped_runs": plan.skipped_runs, "privacy": PRIVACY}
    with atomic_directory(out) as tmp:
        for task, key in sorted(plan.tasks.items()):
            rows, dropped = anchor_rows(cohorts[key].tasks[task], cohorts[key], subjects[key])
            manifest["labels"][task] = _write(tmp, f"labels/{task}.parquet", _label_table(rows),
                                              problems={NO_DISCHARGE: dropped}, cohort=key,
                                              positives=int(rows["label"].sum()))
        for run in plan.runs:
            key, task = _cohort_key(run)
            threshold = _threshold(run)
            table, dropped = prediction_table(store.predictions(run["run_id"]), cohorts[key].tasks[task],
                                              cohorts[key], subjects[key], threshold, run["run_id"])
            spec = run["spec"]
            manifest["predictions"][run["run_id"]] = _write(
                tmp, f"predictions/{run['run_id']}.parquet", table, problems={NO_DISCHARGE: dropped},
                task=task, kind=spec.get("kind", "task"), model=spec["model"], setting=str(spec["setting"]),
                seed=spec["seed"], threshold=threshold)
        if "source" in cohorts:
            manifest["subject_splits"] = _write(tmp, "metadata/subject_splits.parquet",
                                                _split_table(cohorts["source"], subjects["source"]))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest


def _write(tmp: Path, name: str, table: pa.Table, **details: Any) -> dict[str, Any]:
    """Write one parquet file under the export's temporary folder; its manifest entry (``rows`` written
    plus ``problems``, rows left out by reason: written + left out = the rows read)."""
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return {"file": name, "rows": table.num_rows, **details}


def _split_table(cohort: Cohort, subjects: pd.Series) -> pa.Table:
    patients = cohort.patients
    frame = pd.DataFrame({"subject_id": subjects.reindex(patients["patient_id"].to_numpy()).to_numpy(),
                          "split": patients["split"].astype(str).map(MEDS_SPLITS).to_numpy()})
    return _table(frame, SPLIT_SCHEMA)
