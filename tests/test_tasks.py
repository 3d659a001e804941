"""Task fidelity on awkward real-shaped data: eICU stay order, eICU diagnoses charted after the unit
stay ended, the ``unitstaytype`` readmission variant, and censoring by death in ``readmission_30d``.

Fixtures: ``tests/fixtures/eicu-order`` (official eICU column names: two hospital stays of one
patient in the same year, several unit stays per hospital stay, step-downs vs readmits, blank ids,
ICD-9/ICD-10 pairs) and ``tests/fixtures/mimic-iv-deaths`` (deaths on day 15, day 30 and day 31
after discharge, a death after a readmission, an unparseable ``dod``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from hicd_core.cohort import cohort_summary, load_cohort, read_cohort
from hicd_core.experiments.spec import PRESETS, SOURCE_TASKS, parse_list

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EICU = FIXTURES / "eicu-order"
DEATHS = FIXTURES / "mimic-iv-deaths"


def _labels(cohort, task: str) -> dict[int, int]:
    """Source visit id -> label of ``task``'s samples."""
    source = cohort.visits.set_index("visit_id")["source_visit_id"]
    samples = cohort.tasks[task]
    return dict(zip(source.loc[samples["visit_id"]].astype(int), samples["label"].astype(int), strict=True))


@pytest.fixture(scope="module")
def eicu():
    return load_cohort("eicu", EICU, use_cache=False)


def test_eicu_label_follows_the_hospital_stay_not_the_interleaved_order(eicu) -> None:
    # 7051/7052 (hospital stay 705) and 7101/7102 (710) share 2015: by offset alone they interleave as
    # 7051, 7101, 7052, 7102 and 7051 would lose its later unit stay (7052) of the same hospital stay.
    labels = _labels(eicu, "icu_readmission")
    assert labels == {7001: 1, 7002: 1, 7003: 0, 7051: 1, 7052: 0, 7201: 1,
                      8001: 1, 8002: 0, 9002: 0, 9511: 0, 9611: 1, 9612: 0}


def test_eicu_unit_stays_of_a_hospital_stay_are_contiguous_in_unitvisitnumber_order(eicu) -> None:
    raw = pd.read_csv(EICU / "patient.csv").set_index("patientunitstayid")
    visits = eicu.visits.sort_values("visit_id")
    for _, stay in visits.groupby(["patient_id", "group_id"]):
        index = stay["visit_index"].to_numpy()
        assert (index == range(index[0], index[0] + len(index))).all()
        number = raw.loc[stay["source_visit_id"], "unitvisitnumber"]
        assert number.fillna(float("inf")).is_monotonic_increasing  # a blank number goes last
    # 8002 is unit visit 2 although it started 20 minutes before 8001: unitvisitnumber decides.
    assert eicu.visits.set_index("source_visit_id").loc[[8001, 8002], "visit_index"].tolist() == [0, 1]


def test_eicu_history_never_holds_a_hospital_stay_of_unknown_order(eicu) -> None:
    """Independent check from the raw file: every other hospital stay in a sample's input
    (visit_index <= the anchor's) was discharged in an earlier, known year."""
    raw = pd.read_csv(EICU / "patient.csv").set_index("patientunitstayid")
    visits = eicu.visits.set_index("visit_id")
    for task, samples in eicu.tasks.items():
        for anchor_id in samples["visit_id"]:
            anchor = visits.loc[anchor_id]
            history = visits[(visits["patient_id"] == anchor["patient_id"])
                             & (visits["visit_index"] <= anchor["visit_index"])]
            own = raw.loc[anchor["source_visit_id"]]
            for unit in history["source_visit_id"]:
                other = raw.loc[unit]
                if other["patienthealthsystemstayid"] != own["patienthealthsystemstayid"]:
                    assert other["hospitaldischargeyear"] < own["hospitaldischargeyear"], (task, unit)


def test_eicu_order_problems_are_counted(eicu) -> None:
    problems = eicu.meta["problems"]
    assert problems["stays_missing_ids"] == 1  # 9901: blank uniquepid
    assert problems["stays_missing_hospital_stay_id"] == 1  # 9001
    # 9601 says 2014, 9602 2015: their hospital stay 960 has no known year (nor has 950: 9501).
    assert problems["stays_hospital_stay_year_conflict"] == 2
    assert problems["stays_unknown_discharge_year"] == 3
    assert problems["stays_unit_start_out_of_unitvisitnumber_order"] == 1  # 8002
    assert problems["stays_missing_unitvisitnumber"] == 1  # 9612: placed last in its hospital stay
    # 7101/7102 (710 after 705, both 2015), 9501 (unknown year, after 951) and 9601/9602 (after 961).
    assert problems["stays_after_hospital_stay_of_unknown_order"] == 5
    assert problems["icu_readmission_excluded_ambiguous_history"] == 5
    assert len(eicu.visits) == 20 - 2  # rows read = kept + counted
    summary = cohort_summary(eicu)
    assert summary["problems"]["icu_readmission_excluded_ambiguous_history"] == 5


def test_eicu_diagnoses_charted_after_the_unit_stay_are_left_out(eicu) -> None:
    # 7001 ended at 1000 min: rows at 1200 (J18.9, nowhere else) and 1500 (I50.9, also at 30);
    # 7052 ended at 400 min: its row at 450 (I48.91).
    diag = eicu.diagnoses.merge(eicu.visits[["visit_id", "source_visit_id"]], on="visit_id")
    codes = diag.groupby("source_visit_id")["icd10"].apply(lambda s: sorted(s.astype(str)))
    assert codes.loc[7001] == ["I509", "N179"]  # 584.9 -> N17.9; J18.9 (late) left out
    assert codes.loc[7052] == ["I214"]
    problems = eicu.meta["problems"]
    assert problems["diagnosis_rows_after_unit_discharge"] == 3
    assert problems["diagnosis_rows_repeated_in_stay"] == 0  # the late I50.9 is late, not a repeat
    read = len(pd.read_csv(EICU / "diagnosis.csv"))
    reasons = ("icd9code_empty", "after_unit_discharge", "repeated_in_stay", "unknown_visit",
               "missing_patientunitstayid")
    counted = sum(problems[f"diagnosis_rows_{reason}"] for reason in reasons)
    assert len(eicu.diagnoses) + counted == read


def test_eicu_readmit_variant_counts_only_unitstaytype_readmit(eicu) -> None:
    labels = _labels(eicu, "icu_readmission_readmit")
    # 7001 -> 7002 is a step-down, 7051 -> 7052 a transfer, 7201 -> 7202 a step-down: not readmissions.
    # 8001's next unit stay has no unitstaytype: excluded, not guessed.
    assert labels == {7001: 0, 7002: 1, 7003: 0, 7051: 0, 7052: 0, 7201: 0,
                      8002: 0, 9002: 0, 9511: 0, 9611: 1, 9612: 0}
    assert eicu.meta["problems"]["stays_unknown_unitstaytype"] == 1


def test_eicu_without_unitstaytype_has_no_readmit_variant_and_says_so(tmp_path: Path) -> None:
    patient = pd.read_csv(EICU / "patient.csv", dtype=str, keep_default_na=False)
    patient.drop(columns="unitstaytype").to_csv(tmp_path / "patient.csv", index=False)
    shutil.copy(EICU / "diagnosis.csv", tmp_path / "diagnosis.csv")
    cohort = load_cohort("eicu", tmp_path, use_cache=False)
    assert set(cohort.tasks) == {"icu_readmission"}
    assert cohort.meta["problems"]["icu_readmission_readmit_not_built_no_unitstaytype"] == len(cohort.visits)


# ------------------------------------------------------------------------ readmission_30d censoring
@pytest.fixture(scope="module")
def deaths():
    return load_cohort("mimic-iv", DEATHS, use_cache=False)


def test_mimic_reads_dod_as_death(deaths) -> None:
    death = deaths.patients.set_index("source_patient_id")["death"]
    assert death.loc["1"] == pd.Timestamp("2150-01-25") and pd.isna(death.loc["5"])
    assert pd.isna(death.loc["7"]) and deaths.meta["problems"]["patients_unparseable_dod"] == 1


def test_readmission_30d_keeps_the_paper_definition_and_counts_deaths(deaths) -> None:
    assert _labels(deaths, "readmission_30d") == {101: 0, 201: 0, 301: 0, 401: 1, 402: 0, 501: 0, 502: 0,
                                                  701: 0}
    # Died within 30 days of discharge without a readmission: 101 (day 15), 201 (day 30), 402 (day 7);
    # not 301 (day 31), not 401 (readmitted first), not 601 (died in hospital: no sample).
    assert deaths.meta["problems"]["readmission_30d_died_within_30d_without_readmission"] == 3
    assert _labels(deaths, "readmission_30d_excl_deaths") == {301: 0, 401: 1, 501: 0, 502: 0, 701: 0}


def test_readmission_variant_needs_death_dates(tmp_path: Path) -> None:
    shutil.copytree(DEATHS, tmp_path, dirs_exist_ok=True)
    patients = pd.read_csv(tmp_path / "hosp" / "patients.csv", dtype=str)
    patients.drop(columns="dod").to_csv(tmp_path / "hosp" / "patients.csv", index=False)
    cohort = load_cohort("mimic-iv", tmp_path, use_cache=False)
    assert set(cohort.tasks) == {"readmission_30d", "emergency_next"}
    problems = cohort.meta["problems"]
    noted = problems["readmission_30d_excl_deaths_not_built_no_death_dates"]
    assert noted == len(cohort.tasks["readmission_30d"])


def test_demo_deaths_within_30_days_match_an_independent_count(demo_dir, demo_cohort) -> None:
    hosp = demo_dir / "hosp"
    adm = pd.read_csv(hosp / "admissions.csv.gz", parse_dates=["admittime", "dischtime"])
    dod = pd.read_csv(hosp / "patients.csv.gz", parse_dates=["dod"]).set_index("subject_id")["dod"]
    adm = adm.sort_values(["subject_id", "admittime"])
    adm["next_admit"] = adm.groupby("subject_id")["admittime"].shift(-1)
    alive = (adm["hospital_expire_flag"] == 0) & adm["deathtime"].isna()
    readmitted = (adm["next_admit"] - adm["dischtime"]) <= pd.Timedelta(days=30)
    died = adm["subject_id"].map(dod) <= adm["dischtime"].dt.normalize() + pd.Timedelta(days=30)
    expected = int((alive & ~readmitted & died).sum())
    problems = demo_cohort.meta["problems"]
    assert problems["readmission_30d_died_within_30d_without_readmission"] == expected
    variant, default = demo_cohort.tasks["readmission_30d_excl_deaths"], demo_cohort.tasks["readmission_30d"]
    assert len(variant) == len(default) - expected


def test_variants_reach_the_summary_and_the_cohort_cache(tmp_path: Path) -> None:
    shutil.copytree(DEATHS, tmp_path / "m")
    first = load_cohort("mimic-iv", tmp_path / "m")
    cached = read_cohort(Path(first.meta["cache_folder"]))
    assert "readmission_30d_excl_deaths" in cached.tasks
    pd.testing.assert_frame_equal(cached.tasks["readmission_30d_excl_deaths"],
                                  first.tasks["readmission_30d_excl_deaths"])
    assert cohort_summary(cached)["tasks"]["readmission_30d_excl_deaths"]["n"] == 5
    eicu = load_cohort("eicu", EICU, use_cache=False)
    assert cohort_summary(eicu)["tasks"]["icu_readmission_readmit"]["n"] == 11


def test_sweep_accepts_the_variant_but_the_default_bundle_does_not_grow() -> None:
    assert parse_list("readmission_30d_excl_deaths", SOURCE_TASKS, "task") == ("readmission_30d_excl_deaths",)
    assert PRESETS["default"].tasks == ("readmission_30d", "emergency_next")
    assert PRESETS["paper"].tasks == ("readmission_30d", "emergency_next")
