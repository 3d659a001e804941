"""MIMIC-III 1.4 reader on a small hand-made fixture in the official layout, and its bad inputs.

The fixture (tests/fixtures/mimic-iii-small): ADMISSIONS.csv.gz, DIAGNOSES_ICD.csv (quoted headers and
codes, as MIMIC-III ships them) and PATIENTS.csv. Patient 101 has four admissions in 2150 (ELECTIVE,
EMERGENCY 16.9 days later, URGENT 74 days later, EMERGENCY 25 days later); 102 has a shifted >89 DOB
(1850), an ELECTIVE admission and an EMERGENCY one 11 days later in which he dies; 103 is a NEWBORN
with a later ELECTIVE admission (57 days), a duplicated admission row and one with an unparseable
ADMITTIME; 104 dies (DOD) 13 days after an EMERGENCY discharge; subject 999 is not in PATIENTS.
"""

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

from hicd_core.cohort import Cohort, CohortInputError, cohort_summary, load_cohort
from hicd_core.cohort.mimic import admission_visits

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mimic-iii-small"


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return load_cohort("mimic-iii", FIXTURE, use_cache=False)


def _labels(cohort: Cohort, task: str) -> dict[int, int]:
    samples = cohort.tasks[task].merge(cohort.visits[["visit_id", "source_visit_id"]], on="visit_id")
    return dict(zip(samples["source_visit_id"].tolist(), samples["label"].tolist(), strict=True))


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "mimic-iii"
    shutil.copytree(FIXTURE, folder)
    return folder


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _write(frame: pd.DataFrame, path: Path) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as handle:
        frame.to_csv(handle, index=False)


def test_labels_checked_by_hand(cohort: Cohort) -> None:
    # 1001 -> 1002 after 16.9 days (EMERGENCY); 1002 -> 1003 after 74 days (URGENT: not emergency);
    # 1003 -> 1004 after 25 days; 1006 -> 1005 after 11 days; 1005 died in hospital (no sample);
    # 1007 (NEWBORN) -> 1008 after 57 days (ELECTIVE); 1009's patient died outside hospital: negative.
    assert _labels(cohort, "readmission_30d") == {1001: 1, 1002: 0, 1003: 1, 1004: 0, 1006: 1, 1007: 0,
                                                  1008: 0, 1009: 0, 1010: 0}
    assert _labels(cohort, "emergency_next") == {1001: 1, 1002: 0, 1003: 1, 1006: 1, 1007: 0}


def test_visits_types_ages_and_deaths(cohort: Cohort) -> None:
    visits = cohort.visits.set_index("source_visit_id")
    ages = visits["age"]
    assert ages.loc[[1001, 1002, 1003, 1004]].tolist() == [49, 49, 50, 50]  # DOB 2100-03-15
    assert ages.loc[[1006, 1005]].tolist() == [90, 90]  # DOB shifted ~300 years back
    assert ages.loc[[1007, 1008]].tolist() == [0, 0] and ages.loc[1009] == 51
    assert np.isnan(ages.loc[1010])  # subject 999 is not in PATIENTS
    assert visits.index[visits["emergency"]].sort_values().tolist() == [1002, 1004, 1005, 1009]
    assert visits.loc[1003, "visit_type"] == "URGENT" and visits.loc[1007, "visit_type"] == "NEWBORN"
    assert visits.index[visits["died"]].tolist() == [1005]
    assert visits.loc[1002, "start_minutes"] == (pd.Timestamp("2150-02-01 10:00") -
                                                 pd.Timestamp("2150-01-10 08:00")).total_seconds() / 60
    patients = cohort.patients.set_index("source_patient_id")
    assert patients.loc["104", "death"] == pd.Timestamp("2131-03-10")
    assert patients.loc["102", "death"] == pd.Timestamp("2150-07-03")
    assert pd.isna(patients.loc["101", "death"])
    assert patients.loc["101", "sex"] == "F" and patients.loc["999", "sex"] == ""
    assert cohort.meta["problems"]["admissions_age_over_89"] == 2


def test_every_problem_row_is_counted(cohort: Cohort) -> None:
    problems = cohort.meta["problems"]
    diagnosis_rows = len(_read(FIXTURE / "DIAGNOSES_ICD.csv"))
    dropped = {name: problems[name] for name in (
        "diagnosis_rows_missing_hadm_id", "diagnosis_rows_empty_code", "diagnosis_rows_subject_mismatch",
        "diagnosis_rows_unknown_visit")}
    assert dropped == {"diagnosis_rows_missing_hadm_id": 1, "diagnosis_rows_empty_code": 2,
                       "diagnosis_rows_subject_mismatch": 1, "diagnosis_rows_unknown_visit": 2}
    assert len(cohort.diagnoses) + sum(dropped.values()) == diagnosis_rows == 23
    admission_rows = len(_read(FIXTURE / "ADMISSIONS.csv.gz"))
    excluded = (problems["admissions_unparseable_time"] + problems["admissions_duplicate_hadm_id"]
                + problems["admissions_missing_id"])
    assert (problems["admissions_unparseable_admittime"], problems["admissions_duplicate_hadm_id"]) == (1, 1)
    assert len(cohort.visits) + excluded == admission_rows == 12
    assert problems["admissions_unknown_subject_id"] == 1


def test_codes_are_icd9_through_the_gem(cohort: Cohort) -> None:
    diag = cohort.diagnoses
    assert (diag["icd_version"] == 9).all()
    e_code = diag[diag["raw_code"] == "E9342"].iloc[0]  # NoDx in the forward GEM
    assert (e_code["status"], e_code["chapter"], e_code["category"]) == ("approximate", "XIX", "T45")
    summary = cohort_summary(cohort)
    assert summary["icd9_share"] == 1.0
    assert summary["icd9_mapping_coverage"] == pytest.approx(16 / 17)  # E8700 has no ICD-10-CM twin
    statuses = {r["status"]: r["occurrences"] for r in summary["coverage"] if r["source_version"] == 9}
    assert statuses == {"mapped": 15, "approximate": 1, "unmapped": 1}


def test_lower_case_names_and_headers(cohort: Cohort, tmp_path: Path) -> None:
    """The MIMIC-III demo's spelling: lower-case headers; here also lower-case, uncompressed files."""
    folder = tmp_path / "lower"
    folder.mkdir()
    for source in FIXTURE.iterdir():
        frame = _read(source)
        frame.columns = [column.lower() for column in frame.columns]
        _write(frame, folder / source.name.lower().removesuffix(".gz"))
    again = load_cohort("mimic-iii", folder, use_cache=False)
    columns = ["source_visit_id", "start", "end", "visit_type", "emergency", "age", "died"]
    pd.testing.assert_frame_equal(again.visits[columns], cohort.visits[columns])
    assert again.diagnoses["raw_code"].tolist() == cohort.diagnoses["raw_code"].tolist()
    for task in cohort.tasks:
        assert _labels(again, task) == _labels(cohort, task)


def test_bad_admission_rows_are_counted(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    admissions = _read(folder / "ADMISSIONS.csv.gz")
    extra = admissions.iloc[[0, 0]].copy()
    extra["HADM_ID"] = ["", "1012"]
    extra["SUBJECT_ID"] = ["101", ""]  # a blank id must not turn '101' into '101.0'
    odd = admissions.iloc[[0]].assign(HADM_ID="1013", ADMISSION_TYPE="UNKNOWN",
                                      ADMITTIME="2151-01-01 00:00:00", DISCHTIME="2151-01-02 00:00:00")
    _write(pd.concat([admissions, extra, odd]), folder / "ADMISSIONS.csv.gz")
    cohort = load_cohort("mimic-iii", folder, use_cache=False)
    problems = cohort.meta["problems"]
    assert problems["admissions_missing_id"] == 2 and problems["admissions_unknown_admission_type"] == 1
    assert "101" in set(cohort.patients["source_patient_id"])
    assert cohort.patients.set_index("source_patient_id").loc["101", "sex"] == "F"


def test_shared_admissions_step_keeps_integer_ids() -> None:
    """A blank id makes pyarrow hand the column over as float; ids must still read '101', not '101.0'."""
    admissions = pd.DataFrame({"subject_id": [101.0, np.nan], "hadm_id": [1001.0, 1002.0],
                               "admittime": ["2150-01-10 08:00:00"] * 2,
                               "dischtime": ["2150-01-15 12:00:00"] * 2, "admission_type": ["EMERGENCY"] * 2})
    visits = admission_visits(admissions, pd.DataFrame({"subject_id": [101]}),
                              lambda kept, admit: pd.Series(50.0, index=kept.index), {"EMERGENCY"}, {})
    assert visits[["source_patient_id", "group_id"]].values.tolist() == [["101", "1001"]]


def test_missing_table_names_the_file(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "PATIENTS.csv").unlink()
    expected = r"missing table 'PATIENTS'.*PATIENTS\.csv\.gz.*SUBJECT_ID, DOB"
    with pytest.raises(CohortInputError, match=expected):
        load_cohort("mimic-iii", folder, use_cache=False)
    with pytest.raises(CohortInputError, match=r"MIMIC-III folder .* does not exist"):
        load_cohort("mimic-iii", tmp_path / "nowhere", use_cache=False)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _write(_read(folder / "DIAGNOSES_ICD.csv").drop(columns=["ICD9_CODE"]), folder / "DIAGNOSES_ICD.csv")
    with pytest.raises(CohortInputError, match=r"DIAGNOSES_ICD\.csv lacks column\(s\) icd9_code"):
        load_cohort("mimic-iii", folder, use_cache=False)


def test_cache_keys_on_the_three_tables_only(tmp_path: Path) -> None:
    """A full MIMIC-III folder holds ~6 GB of other tables: they must not be hashed on every load."""
    folder = _copy(tmp_path)
    first = load_cohort("mimic-iii", folder).meta["cache_folder"]
    _write(pd.DataFrame({"ROW_ID": [1]}), folder / "NOTEEVENTS.csv.gz")
    assert load_cohort("mimic-iii", folder).meta["cache_folder"] == first
    _write(_read(folder / "PATIENTS.csv").iloc[:-1], folder / "PATIENTS.csv")
    assert load_cohort("mimic-iii", folder).meta["cache_folder"] != first


def test_cli_json_has_the_mimic_iv_keys(demo_dir) -> None:
    def summary(source: str, path: Path) -> dict:
        out = subprocess.run([sys.executable, "-m", "hicd_core", "cohort", "--source", source, "--path",
                              str(path), "--json"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    mimic3, mimic4 = summary("mimic-iii", FIXTURE), summary("mimic-iv", demo_dir)
    assert set(mimic3) == set(mimic4)
    assert {"readmission_30d", "emergency_next"} <= set(mimic4["tasks"]) <= set(mimic3["tasks"])
    assert (mimic3["source"], mimic3["visit_kind"]) == ("MIMIC-III", "admissions")
    assert mimic3["diagnosis_rows"] == 17


def test_sweep_resolves_a_mimic_iii_cohort() -> None:
    from hicd_core.experiments.sweep import resolve_cohorts

    cohorts = resolve_cohorts(f"mimic-iii:{FIXTURE}", "none")
    assert cohorts.source.site == "mimic-iii" and cohorts.target is None
    assert len(cohorts.source.visits) == 10
