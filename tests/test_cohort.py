"""Cohort loaders on the real MIMIC-IV demo, eICU layout fixtures, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core.cohort import CohortInputError, cohort_summary, load_cohort, read_cohort, save_cohort

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _copy_demo(demo_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the demo in a temp dir (never inside the repo), for corruption tests."""
    hosp = tmp_path / "hosp"
    hosp.mkdir()
    for name in ("diagnoses_icd", "admissions", "patients"):
        shutil.copy(demo_dir / "hosp" / f"{name}.csv.gz", hosp / f"{name}.csv.gz")
    return tmp_path


def _rewrite(path: Path, edit) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = edit(frame)
    with gzip.open(path, "wt", newline="") as handle:
        frame.to_csv(handle, index=False)


def test_demo_end_to_end(demo_cohort) -> None:
    c = demo_cohort
    assert (len(c.patients), len(c.visits), len(c.diagnoses)) == (100, 275, 4506)
    assert not c.synthetic
    summary = cohort_summary(c)
    assert summary["distinct_codes"] == 734 + 740
    assert 0.45 < summary["icd9_share"] < 0.52
    assert summary["icd9_mapping_coverage"] >= 0.95
    assert set(c.patients["split"]) == {"train", "val", "test"}
    # Visits are in time order within each patient.
    starts = c.visits.groupby("patient_id")["start"].apply(lambda s: s.is_monotonic_increasing)
    assert starts.all()
    # Codes within a visit keep seq_num order.
    assert c.diagnoses.groupby("visit_id")["seq"].apply(lambda s: s.is_monotonic_increasing).all()


def test_demo_age_formula(demo_dir, demo_cohort) -> None:
    patients = pd.read_csv(demo_dir / "hosp" / "patients.csv.gz")
    admissions = pd.read_csv(demo_dir / "hosp" / "admissions.csv.gz", parse_dates=["admittime"])
    merged = admissions.merge(patients, on="subject_id")
    expected = merged["anchor_age"] + merged["admittime"].dt.year - merged["anchor_year"]
    got = demo_cohort.visits.set_index("source_visit_id")["age"]
    assert np.allclose(got.loc[merged["hadm_id"]].to_numpy(), expected.to_numpy())


def test_demo_readmission_labels_match_independent_computation(demo_dir, demo_cohort) -> None:
    adm = pd.read_csv(demo_dir / "hosp" / "admissions.csv.gz", parse_dates=["admittime", "dischtime"])
    adm = adm.sort_values(["subject_id", "admittime"])
    adm["next_admit"] = adm.groupby("subject_id")["admittime"].shift(-1)
    adm["next_type"] = adm.groupby("subject_id")["admission_type"].shift(-1)
    alive = (adm["hospital_expire_flag"] == 0) & adm["deathtime"].isna()
    expected = ((adm["next_admit"] - adm["dischtime"]) <= pd.Timedelta(days=30))[alive]
    samples = demo_cohort.tasks["readmission_30d"]
    visit_source = demo_cohort.visits.set_index("visit_id")["source_visit_id"]
    got = pd.Series(samples["label"].to_numpy(), index=visit_source.loc[samples["visit_id"]].to_numpy())
    assert len(got) == alive.sum()
    assert (got.loc[adm.loc[alive, "hadm_id"]].to_numpy() == expected.to_numpy().astype(int)).all()
    emergency = demo_cohort.tasks["emergency_next"]
    has_next = adm["next_type"].notna()
    assert len(emergency) == has_next.sum()
    positives = adm.loc[has_next, "next_type"].isin(["EW EMER.", "DIRECT EMER."]).sum()
    assert emergency["label"].sum() == positives


def test_tasks_never_see_the_future(demo_cohort) -> None:
    for samples in demo_cohort.tasks.values():
        anchor = demo_cohort.visits.set_index("visit_id").loc[samples["visit_id"]]
        assert (anchor["visit_index"].to_numpy() == samples["visit_index"].to_numpy()).all()


def test_split_is_patient_level_deterministic_and_shared(demo_dir, demo_cohort) -> None:
    again = load_cohort("mimic-iv", demo_dir, use_cache=False)
    assert (again.patients["split"] == demo_cohort.patients["split"]).all()
    for samples in demo_cohort.tasks.values():
        patient_split = demo_cohort.patients.set_index("patient_id")["split"]
        assert (patient_split.loc[samples["patient_id"]].to_numpy() == samples["split"].to_numpy()).all()
    other = load_cohort("mimic-iv", demo_dir, split_seed=1, use_cache=False)
    assert (other.patients["split"] != demo_cohort.patients["split"]).any()
    assert other.fingerprint != demo_cohort.fingerprint


def test_parquet_round_trip(demo_cohort, tmp_path: Path) -> None:
    save_cohort(demo_cohort, tmp_path / "c")
    back = read_cohort(tmp_path / "c")
    assert back.fingerprint == demo_cohort.fingerprint
    pd.testing.assert_frame_equal(back.diagnoses, demo_cohort.diagnoses)
    pd.testing.assert_frame_equal(back.tasks["readmission_30d"], demo_cohort.tasks["readmission_30d"])


def test_fingerprint_follows_file_content(demo_dir, demo_cohort, tmp_path: Path) -> None:
    root = _copy_demo(demo_dir, tmp_path)
    assert load_cohort("mimic-iv", root).fingerprint == demo_cohort.fingerprint
    _rewrite(root / "hosp" / "diagnoses_icd.csv.gz", lambda f: f.iloc[:-1])
    assert load_cohort("mimic-iv", root).fingerprint != demo_cohort.fingerprint


def test_eicu_fixture() -> None:
    c = load_cohort("eicu", FIXTURES / "eicu-small", use_cache=False)
    assert len(c.patients) == 4 and len(c.visits) == 6
    problems = c.meta["problems"]
    assert problems["diagnosis_rows_icd9code_empty"] == 2
    assert problems["diagnosis_rows_icd9code_pair"] == 6
    assert problems["diagnosis_rows_icd9code_icd9"] == 4
    assert problems["diagnosis_rows_icd9code_icd10"] == 2
    assert problems["diagnosis_rows_repeated_in_stay"] == 1
    visits = c.visits.set_index("source_visit_id")
    # 1001 (unit start 120 min into hospital stay 501) precedes 1002 (4000 min) and 1003 (next year).
    assert visits.loc[[1001, 1002, 1003], "visit_index"].tolist() == [0, 1, 2]
    assert visits.loc[2001, "age"] == 90 and np.isnan(visits.loc[3001, "age"])
    diag = c.diagnoses.merge(c.visits[["visit_id", "source_visit_id"]], on="visit_id")
    first = diag[diag["source_visit_id"] == 1001].sort_values("seq")
    assert first["icd10"].astype(str).tolist() == ["I509", "N179"]  # pair -> ICD-10 kept
    codes_3001 = diag[diag["source_visit_id"] == 3001]
    assert codes_3001["icd_version"].tolist() == [10, 9, 9]  # S72.001A, E888.9, V45.81
    samples = c.tasks["icu_readmission"].merge(c.visits[["visit_id", "source_visit_id"]], on="visit_id")
    labels = dict(zip(samples["source_visit_id"], samples["label"], strict=True))
    assert labels == {1001: 1, 1002: 0, 2001: 0, 3001: 0, 4001: 0}  # 1003 died in the unit


def test_missing_file_names_file_and_columns(tmp_path: Path) -> None:
    (tmp_path / "hosp").mkdir()
    with pytest.raises(CohortInputError, match=r"diagnoses_icd.*subject_id, hadm_id, seq_num, icd_code"):
        load_cohort("mimic-iv", tmp_path)
    with pytest.raises(CohortInputError, match="does not exist"):
        load_cohort("mimic-iv", tmp_path / "nowhere")


def test_missing_column_names_it(demo_dir, tmp_path: Path) -> None:
    root = _copy_demo(demo_dir, tmp_path)
    _rewrite(root / "hosp" / "admissions.csv.gz", lambda f: f.drop(columns=["dischtime"]))
    with pytest.raises(CohortInputError, match=r"admissions\.csv\.gz lacks column\(s\) dischtime"):
        load_cohort("mimic-iv", root)


def test_bad_rows_are_counted_not_fatal(demo_dir, tmp_path: Path) -> None:
    root = _copy_demo(demo_dir, tmp_path)

    def break_admissions(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[0, "admittime"] = "not a date"
        frame.loc[1, "subject_id"] = "99999999"
        return frame

    def break_diagnoses(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[[0, 1, 2], "icd_code"] = ""
        return frame

    _rewrite(root / "hosp" / "admissions.csv.gz", break_admissions)
    _rewrite(root / "hosp" / "diagnoses_icd.csv.gz", break_diagnoses)
    cohort = load_cohort("mimic-iv", root)
    problems = cohort.meta["problems"]
    assert problems["admissions_unparseable_admittime"] == 1
    assert problems["admissions_unknown_subject_id"] == 1
    assert problems["diagnosis_rows_empty_code"] == 3
    # Rows of the unplaceable admission are counted, not silently lost.
    assert problems["diagnosis_rows_unknown_visit"] > 0
    assert len(cohort.visits) == 274
    assert cohort.visits["age"].isna().sum() == 1


def test_empty_result_is_a_clear_error(demo_dir, tmp_path: Path) -> None:
    root = _copy_demo(demo_dir, tmp_path)
    _rewrite(root / "hosp" / "diagnoses_icd.csv.gz", lambda f: f.iloc[0:0])
    with pytest.raises(CohortInputError, match="no usable diagnosis rows"):
        load_cohort("mimic-iv", root)


def test_cli_cohort_json(demo_dir) -> None:
    out = subprocess.run([sys.executable, "-m", "hicd_core", "cohort", "--source", "mimic-iv", "--path",
                          str(demo_dir), "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout)
    for key in ("patients", "visits", "diagnosis_rows", "distinct_codes", "icd9_share", "mapping_coverage"):
        assert key in summary
    assert {"n", "positive_rate"} <= set(summary["tasks"]["readmission_30d"])


def test_cli_cohort_bad_input_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "hicd_core", "cohort", "--source", "eicu", "--path",
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "patient" in out.stderr
