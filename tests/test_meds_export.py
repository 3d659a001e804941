"""``export-meds``: the files pass the ``meds`` package's schemas, read back to exactly the store's
predictions and the cohort's labels, eICU-target runs are refused, and bad stores give one-line errors."""

# No ``from __future__ import annotations``: flexible_schema reads the schema's annotations as objects.
import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flexible_schema import Optional
from meds import LabelSchema, SubjectSplitSchema

from hicd_core.cli import main
from hicd_core.experiments.meds_export import ExportError, anchor_rows, subject_ids

LABEL_COLUMNS = ["subject_id", "prediction_time", "boolean_value"]
PREDICTION_COLUMNS = [*LABEL_COLUMNS, "predicted_boolean_value", "predicted_boolean_probability"]


class PredictionSchema(LabelSchema):
    """meds-evaluation 0.0.6's prediction schema: MEDS labels plus the two predicted columns."""

    predicted_boolean_value: Optional(pa.bool_())
    predicted_boolean_probability: Optional(pa.float32())


def _runs(store, kind: str) -> list[str]:
    return [run["run_id"] for run in store.finished_runs() if run["spec"]["kind"] == kind]


def _export(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["export-meds", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected(cohort, frame: pd.DataFrame) -> pd.DataFrame:
    """Subject id and anchor discharge time of each row of ``frame`` (by joins, not the exporter's path)."""
    merged = frame.merge(cohort.patients[["patient_id", "source_patient_id"]], on="patient_id", how="left") \
                  .merge(cohort.visits[["visit_id", "end"]], on="visit_id", how="left")
    return pd.DataFrame({"subject_id": merged["source_patient_id"].astype("int64"),
                         "prediction_time": merged["end"].astype("datetime64[us]")})


@pytest.fixture(scope="module")
def exported(tiny_store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("meds_export") / "all"
    assert main(["export-meds", "--store", str(tiny_store.root), "--out", str(out)]) == 0
    return out


def test_export_writes_files_valid_under_the_meds_schemas(exported: Path, tiny_store) -> None:
    manifest = json.loads((exported / "export.json").read_text())
    info = tiny_store.store_info()
    assert set(manifest["labels"]) == {"readmission_30d"}
    assert set(manifest["predictions"]) == set(_runs(tiny_store, "task"))
    # eICU-target transfer probes and the eICU task are refused, each with the reason.
    assert set(manifest["skipped_runs"]) == set(_runs(tiny_store, "transfer")) != set()
    assert all("eICU" in reason for reason in manifest["skipped_runs"].values())
    assert "eICU" in manifest["skipped_tasks"]["icu_readmission"]
    assert manifest["cohorts"]["source"]["fingerprint"] == info["source_fingerprint"]
    assert manifest["code_set_year"] == info["code_set_year"] and manifest["code_version"]
    assert manifest["library_versions"]["pyarrow"] != "missing" and manifest["store"] == str(tiny_store.root)
    assert sorted(p.name for p in (exported / "predictions").iterdir()) == sorted(
        f"{run_id}.parquet" for run_id in _runs(tiny_store, "task"))
    labels = pq.read_table(exported / "labels" / "readmission_30d.parquet")
    assert labels.schema.names == LABEL_COLUMNS
    LabelSchema.validate(labels)
    for run_id in manifest["predictions"]:
        table = pq.read_table(exported / "predictions" / f"{run_id}.parquet")
        assert table.schema.names == PREDICTION_COLUMNS
        PredictionSchema.validate(table)
    splits = pq.read_table(exported / "metadata" / "subject_splits.parquet")
    SubjectSplitSchema.validate(splits)
    assert set(splits.column("split").to_pylist()) == {"train", "tuning", "held_out"}


def test_labels_read_back_to_the_cohorts(exported: Path, small_source_cohort) -> None:
    samples = small_source_cohort.tasks["readmission_30d"]
    back = pd.read_parquet(exported / "labels" / "readmission_30d.parquet")
    expected = _expected(small_source_cohort, samples)
    assert len(back) == len(samples) and expected["prediction_time"].notna().all()
    np.testing.assert_array_equal(back["subject_id"].to_numpy(), expected["subject_id"].to_numpy())
    np.testing.assert_array_equal(back["prediction_time"].to_numpy(), expected["prediction_time"].to_numpy())
    np.testing.assert_array_equal(back["boolean_value"].to_numpy(), samples["label"].to_numpy() == 1)


def test_predictions_read_back_to_the_store(exported: Path, tiny_store, small_source_cohort) -> None:
    thresholds = tiny_store.results_table().set_index("run_id")["threshold"]
    samples = small_source_cohort.tasks["readmission_30d"]
    both_classes = []
    for run_id in _runs(tiny_store, "task"):
        stored = tiny_store.predictions(run_id)
        back = pd.read_parquet(exported / "predictions" / f"{run_id}.parquet")
        assert len(back) == len(stored) > 0
        expected = _expected(small_source_cohort, stored[["sample_id"]].merge(samples, on="sample_id"))
        np.testing.assert_array_equal(back["subject_id"].to_numpy(), expected["subject_id"].to_numpy())
        np.testing.assert_array_equal(back["prediction_time"].to_numpy(),
                                      expected["prediction_time"].to_numpy())
        np.testing.assert_array_equal(back["boolean_value"].to_numpy(), stored["label"].to_numpy() == 1)
        assert back["predicted_boolean_probability"].dtype == np.float32
        np.testing.assert_array_equal(back["predicted_boolean_probability"].to_numpy(),
                                      stored["prob"].to_numpy().astype(np.float32))
        predicted = stored["prob"].to_numpy() >= thresholds[run_id]
        np.testing.assert_array_equal(back["predicted_boolean_value"].to_numpy(), predicted)
        both_classes.append(0 < predicted.sum() < len(predicted))
    assert any(both_classes)  # the threshold check is not vacuous


def test_subject_splits_follow_the_patient_split(exported: Path, small_source_cohort) -> None:
    splits = pd.read_parquet(exported / "metadata" / "subject_splits.parquet")
    patients = small_source_cohort.patients
    test_ids = set(patients.loc[patients["split"].astype(str) == "test", "source_patient_id"].astype(int))
    assert set(splits.loc[splits["split"] == "held_out", "subject_id"]) == test_ids
    assert len(splits) == len(patients)


def test_one_run_and_a_repeat_export_replace_the_folder(tiny_store, tmp_path: Path, capsys) -> None:
    first, second = _runs(tiny_store, "task")[:2]
    out = tmp_path / "one"
    for run_id in (first, second):
        code, stdout, err = _export(capsys, "--store", str(tiny_store.root), "--run", run_id,
                                    "--out", str(out))
        assert code == 0, err
        assert [p.name for p in (out / "predictions").iterdir()] == [f"{run_id}.parquet"]
        manifest = json.loads((out / "export.json").read_text())
        assert manifest["run"] == run_id and set(manifest["predictions"]) == {run_id}
        assert (out / "labels" / "readmission_30d.parquet").is_file() and "1 prediction file" in stdout


def test_transfer_run_to_eicu_is_refused(tiny_store, tmp_path: Path, capsys) -> None:
    run_id = _runs(tiny_store, "transfer")[0]
    code, _, err = _export(capsys, "--store", str(tiny_store.root), "--run", run_id,
                           "--out", str(tmp_path / "x"))
    assert code != 0 and "eICU" in err and run_id in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_bad_run_empty_store_and_foreign_out_folder(tiny_store, tmp_path: Path, capsys) -> None:
    code, _, err = _export(capsys, "--store", str(tiny_store.root), "--run", "nope-123", "--out",
                           str(tmp_path / "a"))
    assert code != 0 and "nope-123" in err and "no finished run" in err and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _export(capsys, "--store", str(empty), "--out", str(tmp_path / "b"))
    assert code != 0 and "no finished runs" in err and err.count("\n") == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, err = _export(capsys, "--store", str(tiny_store.root), "--out", str(foreign))
    assert code != 0 and "--out" in err and (foreign / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _store_copy(tiny_store, source: Path, root: Path) -> Path:
    """A one-run store whose store.json names ``source`` as its source cohort folder."""
    run_id = _runs(tiny_store, "task")[0]
    shutil.copytree(tiny_store.run_dir(run_id), root / "runs" / run_id)
    info = {**tiny_store.store_info(), "source_path": str(source)}
    (root / "store.json").write_text(json.dumps(info))
    return root


def test_changed_or_missing_cohort_files_are_refused(tiny_store, small_synthetic_dir: Path, tmp_path: Path,
                                                     capsys) -> None:
    source = tmp_path / "data" / "mimic-iv"
    shutil.copytree(small_synthetic_dir / "mimic-iv", source)
    store = _store_copy(tiny_store, source, tmp_path / "store")
    code, _, err = _export(capsys, "--store", str(store), "--out", str(tmp_path / "ok"))
    assert code == 0, err  # the same bytes elsewhere are the same cohort
    diagnoses = source / "hosp" / "diagnoses_icd.csv.gz"
    lines = gzip.decompress(diagnoses.read_bytes()).splitlines(keepends=True)
    diagnoses.write_bytes(gzip.compress(b"".join(lines[:-1])))  # one diagnosis row fewer
    code, _, err = _export(capsys, "--store", str(store), "--out", str(tmp_path / "changed"))
    assert code != 0 and "changed" in err and str(source) in err and err.count("\n") == 1
    shutil.rmtree(source)
    code, _, err = _export(capsys, "--store", str(store), "--out", str(tmp_path / "gone"))
    assert code != 0 and "cannot be read" in err and str(source) in err and err.count("\n") == 1
    assert not (tmp_path / "changed").exists() and not (tmp_path / "gone").exists()


def test_anchor_without_discharge_time_is_counted_and_times_are_utc(small_source_cohort) -> None:
    cohort = small_source_cohort
    samples = cohort.tasks["readmission_30d"]
    visits = cohort.visits.copy()
    visits.loc[visits["visit_id"] == samples["visit_id"].iloc[0], "end"] = pd.NaT
    rows, dropped = anchor_rows(samples, dataclasses.replace(cohort, visits=visits), subject_ids(cohort))
    assert dropped == 1 and len(rows) + dropped == len(samples)
    aware = cohort.visits.assign(end=cohort.visits["end"].dt.tz_localize("Etc/GMT+5"))  # UTC-5, no DST
    rows, dropped = anchor_rows(samples, dataclasses.replace(cohort, visits=aware), subject_ids(cohort))
    utc = _expected(cohort, samples)["prediction_time"] + pd.Timedelta(hours=5)
    assert dropped == 0
    np.testing.assert_array_equal(rows["prediction_time"].to_numpy(), utc.to_numpy())


def test_non_integer_subject_ids_are_an_error(small_target_cohort) -> None:
    with pytest.raises(ExportError, match="not integers"):
        subject_ids(small_target_cohort)


def test_help_names_the_layout(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export-meds", "--help"])
    assert exc.value.code == 0 and "--out" in capsys.readouterr().out
