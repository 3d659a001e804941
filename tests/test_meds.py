"""MEDS in: the real MIMIC-IV demo read as CSV and as MEDS agree, the synthetic MEDS round trip, and
every bad input class (missing shards, no diagnosis codes, unknown code prefixes, mixed ICD-9/10,
timezone-aware and null times, MEDS 0.3/0.4 metadata, diagnoses without an admission)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hicd_core.cli import main
from hicd_core.cohort import CohortInputError, cohort_summary, load_cohort
from hicd_core.cohort.build import assemble_cohort
from hicd_core.cohort.meds import read_meds
from hicd_core.cohort.meds_codes import CODE_PATTERNS, DIAGNOSIS, CodePattern
from hicd_core.synthetic import write_synthetic_meds
from tests.meds_fixture import DATASET_0_3, DATASET_0_4, demo_events, events, write_root

DIAGNOSIS_PREFIXES = ("DIAGNOSIS", "ICD9CM/", "ICD10CM/")
#: Two subjects, three admissions; ICD-9 and ICD-10 in the MIMIC ETL's and the OMOP spelling.
BASE = [
    (1, None, "GENDER//F"),
    (1, "2100-01-01", "MEDS_BIRTH"),
    (1, "2150-01-01 10:00", "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", 11),
    (1, "2150-01-01 11:00", "LAB//50912//mg/dL", 11),
    (1, "2150-01-05 12:00", "HOSPITAL_DISCHARGE//HOME", 11),
    (1, "2150-01-05 12:00", "DIAGNOSIS//ICD//10//I214", 11),
    (1, "2150-01-05 12:00", "DIAGNOSIS//ICD//9//4280", 11),
    (1, "2150-01-20 08:00", "HOSPITAL_ADMISSION//URGENT//PHYSICIAN REFERRAL", 12),
    (1, "2150-01-25 08:00", "HOSPITAL_DISCHARGE//DIED", 12),
    (1, "2150-01-25 08:00", "DIAGNOSIS//ICD//10//I509", 12),
    (2, None, "GENDER//M"),
    (2, "2090-01-01", "MEDS_BIRTH"),
    (2, "2160-03-01 09:00", "HOSPITAL_ADMISSION//ELECTIVE//PHYSICIAN REFERRAL", 21),
    (2, "2160-03-03 09:00", "HOSPITAL_DISCHARGE//HOME", 21),
    (2, "2160-03-03 09:00", "ICD10CM/E11.9", 21),
    (2, "2160-03-03 09:00", "ICD9CM/250.00", 21),
]


def _load(root: Path):
    return load_cohort("meds", root, use_cache=False)


def _diagnosis_rows_read(root: Path) -> int:
    """Diagnosis-like rows in the shards, counted independently of the reader."""
    codes = pd.concat([pq.read_table(p, columns=["code"]).to_pandas()["code"]
                       for p in sorted((root / "data").rglob("*.parquet"))])
    return int(codes.astype(str).str.startswith(DIAGNOSIS_PREFIXES).sum())


def _conserved(cohort, root: Path) -> None:
    """Rows kept + rows counted = rows read, for the diagnosis rows."""
    counted = sum(v for k, v in cohort.meta["problems"].items() if k.startswith("diagnosis_rows_"))
    assert len(cohort.diagnoses) + counted == _diagnosis_rows_read(root)


# ----------------------------------------------------------------------------- the real MIMIC-IV demo

@pytest.fixture(scope="module", params=["with_hadm_id", "without_hadm_id"])
def demo_meds(request, demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo_meds") / request.param
    return write_root(root, demo_events(demo_dir, hadm_id=request.param == "with_hadm_id"))


def _keyed(cohort) -> tuple[pd.DataFrame, pd.Series, dict[str, pd.DataFrame]]:
    """Visits, code lists and task labels keyed by (subject, admit time): ids differ between readers."""
    v = cohort.visits
    key = v["source_patient_id"].astype(str) + "@" + v["start"].astype(str)
    visits = v.assign(key=key.to_numpy()).set_index("key")[
        ["start", "end", "visit_type", "emergency", "age", "died"]].astype({"visit_type": str})
    d = cohort.diagnoses.sort_values(["visit_id", "seq"])
    codes = (d["icd_version"].astype(str) + ":" + d["raw_code"].astype(str)).groupby(
        key.to_numpy()[d["visit_id"].to_numpy()]).agg(tuple)
    tasks = {t: pd.DataFrame({"key": key.to_numpy()[s["visit_id"].to_numpy()], "label": s["label"].to_numpy(),
                              "split": s["split"].astype(str).to_numpy()}).set_index("key").sort_index()
             for t, s in cohort.tasks.items()}
    return visits.sort_index(), codes.sort_index(), tasks


def test_demo_csv_and_meds_give_the_same_cohort(demo_dir: Path, demo_meds: Path) -> None:
    csv, meds = load_cohort("mimic-iv", demo_dir, use_cache=False), _load(demo_meds)
    (v1, c1, t1), (v2, c2, t2) = _keyed(csv), _keyed(meds)
    assert len(v1) == 275 and len(c1) == 275
    pd.testing.assert_frame_equal(v1, v2)
    pd.testing.assert_series_equal(c1, c2)  # same codes, same order (the converter keeps seq_num order)
    assert set(t1) == set(t2) and {"readmission_30d", "emergency_next"} <= set(t1)
    for task in t1:
        pd.testing.assert_frame_equal(t1[task], t2[task], obj=task)
    if demo_meds.name == "with_hadm_id":
        assert set(meds.visits["source_visit_id"]) == set(csv.visits["source_visit_id"])
    _conserved(meds, demo_meds)
    assert {k: v for k, v in meds.meta["problems"].items() if k.startswith(("diagnosis_rows", "admission"))
            and v} == {}


def test_demo_meds_follows_the_etl_conventions(demo_dir: Path) -> None:
    """Spot checks against the demo's own CSV rows (subject 10004235, admission 24181354)."""
    ev = demo_events(demo_dir)
    rows = ev[ev["subject_id"] == 10004235].reset_index(drop=True)
    assert rows.loc[0, "code"].startswith("GENDER//") and pd.isna(rows.loc[0, "time"])  # static rows first
    patient = pd.read_csv(demo_dir / "hosp" / "patients.csv.gz").set_index("subject_id").loc[10004235]
    birth = rows[rows["code"] == "MEDS_BIRTH"]["time"].iloc[0]
    assert birth == pd.Timestamp(year=int(patient["anchor_year"] - patient["anchor_age"]), month=1, day=1)
    stay = rows[rows["hadm_id"] == 24181354]
    admit = stay[stay["code"].str.startswith("HOSPITAL_ADMISSION//")]
    assert admit["code"].tolist() == ["HOSPITAL_ADMISSION//URGENT//TRANSFER FROM HOSPITAL"]
    assert admit["time"].tolist() == [pd.Timestamp("2196-02-24 14:38:00")]
    assert stay[stay["code"].str.startswith("HOSPITAL_DISCHARGE//")]["code"].tolist() == [
        "HOSPITAL_DISCHARGE//SKILLED NURSING FACILITY"]
    dx = stay[stay["code"].str.startswith("DIAGNOSIS//ICD//")]
    assert (dx["time"] == pd.Timestamp("2196-03-04 14:02:00")).all()  # the discharge time
    raw = pd.read_csv(demo_dir / "hosp" / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    raw = raw[raw["hadm_id"] == 24181354].sort_values("seq_num")
    expected = [f"DIAGNOSIS//ICD//{v}//{c}" for v, c in zip(raw["icd_version"], raw["icd_code"], strict=True)]
    assert dx["code"].tolist() == expected


def test_in_hospital_death_uses_the_discharge_location(demo_dir: Path, tmp_path: Path) -> None:
    """MIMIC-IV stamps some deaths after a midnight dischtime: without ``HOSPITAL_DISCHARGE//DIED`` the
    MEDS_DEATH interval rule alone misses 4 of the demo's 15 in-hospital deaths."""
    ev = demo_events(demo_dir)
    ev["code"] = ev["code"].replace("HOSPITAL_DISCHARGE//DIED", "HOSPITAL_DISCHARGE//UNK")
    cohort = _load(write_root(tmp_path / "r", ev))
    assert int(cohort.visits["died"].sum()) == 11
    assert int(_load(write_root(tmp_path / "s", demo_events(demo_dir))).visits["died"].sum()) == 15


# ------------------------------------------------------------------------------------- synthetic MEDS

@pytest.fixture(scope="module")
def synthetic_meds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same generated source as ``small_synthetic_dir`` (seed 0, 2500 patients, signal 0.9)."""
    out = tmp_path_factory.mktemp("synthetic_meds") / "meds"
    write_synthetic_meds(out, seed=0, hierarchy_signal=0.9, n_source_patients=2500, lab_ratio=5,
                         subjects_per_shard=700)
    return out


def test_synthetic_meds_matches_the_csv_source(synthetic_meds: Path, small_source_cohort) -> None:
    cohort = _load(synthetic_meds)
    meds, csv = cohort_summary(cohort), cohort_summary(small_source_cohort)
    assert set(meds) == set(csv)
    for key in ("patients", "visits", "diagnosis_rows", "distinct_codes", "icd9_share", "mapping_coverage"):
        assert meds[key] == csv[key], key
    for task, info in csv["tasks"].items():
        assert (meds["tasks"][task]["n"], meds["tasks"][task]["positive_rate"]) == (
            info["n"], info["positive_rate"]), task
    assert cohort.synthetic and meds["dataset"]["meds_version"] == "0.4.1"
    assert "source's own split" in meds["split_source"]
    assert cohort.meta["meds_scan"]["rows"] > 5 * meds["diagnosis_rows"]  # the LAB rows were skipped
    _conserved(cohort, synthetic_meds)


def test_synthetic_meds_layout_and_determinism(synthetic_meds: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_synthetic_meds(again, seed=0, hierarchy_signal=0.9, n_source_patients=2500, lab_ratio=5,
                         subjects_per_shard=700)
    files = sorted(p.relative_to(synthetic_meds) for p in synthetic_meds.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert hashlib.sha256((synthetic_meds / rel).read_bytes()).digest() == \
            hashlib.sha256((again / rel).read_bytes()).digest(), rel
    folders = {p.parent.name for p in (synthetic_meds / "data").rglob("*.parquet")}
    assert folders == {"train", "tuning", "held_out"}
    seen, n_dx, n_lab = set(), 0, 0
    for path in sorted((synthetic_meds / "data").rglob("*.parquet")):
        shard = pq.read_table(path).to_pandas()
        assert list(shard.columns[:4]) == ["subject_id", "time", "code", "numeric_value"]
        key = shard["time"].astype("int64").where(shard["time"].notna(), np.iinfo(np.int64).min)
        order = np.lexsort((key.to_numpy(), shard["subject_id"].to_numpy()))
        assert (order == np.arange(len(shard))).all(), path  # by subject, then time (static rows first)
        subjects = set(shard["subject_id"])
        assert not subjects & seen  # every subject in one shard
        seen |= subjects
        n_dx += int(shard["code"].str.startswith("DIAGNOSIS//").sum())
        n_lab += int(shard["code"].str.startswith("LAB//").sum())
    assert 4.5 < n_lab / n_dx < 5.5
    listed = set(pq.read_table(synthetic_meds / "metadata" / "codes.parquet")["code"].to_pylist())
    assert listed and not any(c.startswith("LAB//") for c in listed)  # partial, as in the real demo
    splits = pq.read_table(synthetic_meds / "metadata" / "subject_splits.parquet").to_pandas()
    assert set(splits["subject_id"]) == seen and set(splits["split"]) == {"train", "tuning", "held_out"}


def test_synthetic_meds_refuses_a_folder_that_may_be_real(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(FileExistsError, match=r"SYNTHETIC\.json"):
        write_synthetic_meds(tmp_path, n_source_patients=50)


def test_cli_synth_meds_then_cohort_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "meds"
    assert main(["synth", "--format", "meds", "--out", str(out), "--lab-ratio", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "meds"
    assert main(["cohort", "--source", "meds", "--path", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("patients", "visits", "diagnosis_rows", "icd9_share", "mapping_coverage", "tasks", "dataset",
                "split_source", "problems"):
        assert key in summary
    assert summary["source"] == "MEDS" and summary["patients"] == 12_000


# ------------------------------------------------------------------------------- small hand-made roots

def test_small_root_reads_mixed_versions_and_spellings(tmp_path: Path) -> None:
    cohort = _load(write_root(tmp_path / "r", events(BASE)))
    v = cohort.visits
    assert v["source_visit_id"].tolist() == [11, 12, 21]
    assert v["age"].tolist() == [50.0, 50.0, 70.0]
    assert v["died"].tolist() == [False, True, False]  # HOSPITAL_DISCHARGE//DIED
    assert v["emergency"].tolist() == [True, False, False]
    assert cohort.patients.set_index("source_patient_id")["sex"].astype(str).to_dict() == {"1": "F", "2": "M"}
    d = cohort.diagnoses
    assert list(zip(d["raw_code"].astype(str), d["icd_version"], strict=True)) == [
        ("I214", 10), ("4280", 9), ("I509", 10), ("E11.9", 10), ("250.00", 9)]
    assert set(d["status"].astype(str)) <= {"valid", "mapped", "approximate"}  # dotted and undotted resolve
    summary = cohort_summary(cohort)
    assert summary["icd9_share"] == pytest.approx(2 / 5) and summary["mapping_coverage"] == 1.0
    assert cohort.tasks["readmission_30d"]["label"].tolist() == [1, 0]  # 15 days later; patient 2 once
    assert summary["dataset"] == {k: DATASET_0_3[k] for k in ("dataset_name", "dataset_version",
                                                               "meds_version")}
    assert cohort.meta["meds_scan"]["rows"] == len(BASE)
    _conserved(cohort, tmp_path / "r")


def test_unknown_code_prefixes_are_counted(tmp_path: Path) -> None:
    rows = [*BASE, (1, "2150-01-05 12:00", "DIAGNOSIS//SNOMED//22298006", 11),
            (1, "2150-01-05 12:00", "DIAGNOSIS//ICD//11//BA41", 11),
            (1, "2150-01-05 13:00", "DRG//APR//123", 11)]
    root = write_root(tmp_path / "r", events(rows))
    cohort = _load(root)
    assert cohort.meta["problems"]["diagnosis_rows_unknown_code_pattern"] == 2
    assert len(cohort.diagnoses) == 5
    _conserved(cohort, root)


def test_diagnoses_without_an_admission_are_counted(tmp_path: Path) -> None:
    """With hadm_id: an unknown hadm_id. Without: no discharge at that time, two at that time, no time."""
    with_id = [*BASE, (1, "2150-01-05 12:00", "DIAGNOSIS//ICD//10//J189", 99),
               (2, "2160-03-03 09:00", "DIAGNOSIS//ICD//10//J189", 11)]  # another subject's hadm_id
    cohort = _load(root := write_root(tmp_path / "a", events(with_id)))
    assert cohort.meta["problems"]["diagnosis_rows_no_admission"] == 2
    _conserved(cohort, root)
    no_id = [r[:3] for r in BASE if not r[2].startswith(("DIAGNOSIS", "ICD"))] + [
        (1, "2150-01-05 12:00", "DIAGNOSIS//ICD//10//I214"),
        (1, "2150-01-06 12:00", "DIAGNOSIS//ICD//10//J189"), (1, None, "DIAGNOSIS//ICD//10//J189")]
    # Two admissions (with hadm_id) share a discharge time; their codes (without) cannot be told apart.
    twins = [(3, "2170-01-01 08:00", "HOSPITAL_ADMISSION//ELECTIVE//PACU", 31),
             (3, "2170-01-01 09:00", "HOSPITAL_ADMISSION//ELECTIVE//PACU", 32),
             (3, "2170-01-02 08:00", "HOSPITAL_DISCHARGE//HOME", 31),
             (3, "2170-01-02 08:00", "HOSPITAL_DISCHARGE//HOME", 32), (3, "2170-01-02 08:00", "ICD10CM/I10")]
    cohort = _load(root := write_root(tmp_path / "b", events(no_id + twins)))
    problems = cohort.meta["problems"]
    assert (problems["diagnosis_rows_no_admission"], problems["diagnosis_rows_ambiguous_admission"],
            problems["diagnosis_rows_null_time"]) == (1, 1, 1)
    assert len(cohort.diagnoses) == 1
    _conserved(cohort, root)


def test_admissions_pair_by_time_without_hadm_id(tmp_path: Path) -> None:
    """Back-to-back stays (discharge minute = next admit minute), a zero-length stay, an unpaired admit."""
    rows = [(5, "2100-01-01", "MEDS_BIRTH"),
            (5, "2150-01-01 10:00", "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM"),
            (5, "2150-01-02 10:00", "HOSPITAL_DISCHARGE//HOME"), (5, "2150-01-02 10:00", "ICD10CM/I10"),
            (5, "2150-01-02 10:00", "HOSPITAL_ADMISSION//URGENT//TRANSFER FROM HOSPITAL"),
            (5, "2150-01-03 10:00", "HOSPITAL_DISCHARGE//HOME"), (5, "2150-01-03 10:00", "ICD10CM/I50.9"),
            (5, "2150-02-01 10:00", "HOSPITAL_ADMISSION//ELECTIVE//PACU"),
            (5, "2150-02-01 10:00", "HOSPITAL_DISCHARGE//HOME"), (5, "2150-02-01 10:00", "ICD10CM/E11.9"),
            (5, "2150-03-01 10:00", "HOSPITAL_ADMISSION//ELECTIVE//PACU")]
    cohort = _load(write_root(tmp_path / "r", events(rows, hadm_id=False)))
    v = cohort.visits
    assert v["start"].astype(str).str[5:16].tolist() == ["01-01 10:00", "01-02 10:00", "02-01 10:00"]
    assert v["end"].astype(str).str[5:16].tolist() == ["01-02 10:00", "01-03 10:00", "02-01 10:00"]
    assert v["source_visit_id"].tolist() == [0, 1, 2]  # dense ids in (subject, admit) order
    assert cohort.diagnoses.groupby("visit_id")["raw_code"].agg(lambda s: list(s.astype(str))).tolist() == [
        ["I10"], ["I50.9"], ["E11.9"]]
    assert cohort.meta["problems"]["admissions_without_discharge"] == 1


def test_timezone_aware_times_are_read_as_utc(tmp_path: Path) -> None:
    naive = _load(write_root(tmp_path / "naive", events(BASE)))
    root = write_root(tmp_path / "tz", events(BASE), time_type=pa.timestamp("us", tz="America/New_York"))
    time_type = pq.read_schema(next((root / "data").rglob("*.parquet"))).field("time").type
    assert time_type.tz == "America/New_York"
    aware = _load(root)
    pd.testing.assert_frame_equal(aware.visits.drop(columns=["site"]), naive.visits.drop(columns=["site"]))
    for task in naive.tasks:
        pd.testing.assert_frame_equal(aware.tasks[task], naive.tasks[task])
    nanos = write_root(tmp_path / "ns", events(BASE), time_type=pa.timestamp("ns", tz="Europe/Paris"))
    pd.testing.assert_frame_equal(_load(nanos).visits, naive.visits)


def test_null_times_are_counted(tmp_path: Path) -> None:
    rows = [r if r[2] != "MEDS_BIRTH" or r[0] != 2 else (2, None, "MEDS_BIRTH") for r in BASE] + [
        (1, None, "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", 13),
        (1, "2150-06-01 10:00", "HOSPITAL_DISCHARGE//HOME", 13),
        (1, "2150-06-01 10:00", "DIAGNOSIS//ICD//10//J189", 13)]
    cohort = _load(root := write_root(tmp_path / "r", events(rows)))
    problems = cohort.meta["problems"]
    assert problems["admission_rows_null_time"] == 1 and problems["discharges_without_admission"] == 1
    assert problems["birth_rows_null_time"] == 1 and problems["admissions_unknown_birth"] == 1
    assert problems["diagnosis_rows_no_admission"] == 1
    assert cohort.visits["age"].isna().sum() == 1 and len(cohort.visits) == 3
    _conserved(cohort, root)


@pytest.mark.parametrize(("dataset", "text_value"), [(DATASET_0_3, False), (DATASET_0_4, True)])
def test_meds_0_3_and_0_4_datasets(tmp_path: Path, dataset: dict, text_value: bool) -> None:
    root = write_root(tmp_path / "r", events(BASE), dataset=dataset, text_value=text_value)
    summary = cohort_summary(_load(root))
    assert summary["dataset"]["meds_version"] == dataset["meds_version"]
    assert (summary["visits"], summary["diagnosis_rows"]) == (3, 5)


def test_subject_splits_are_used_and_reported(tmp_path: Path) -> None:
    extra = [(s, "2160-03-01 09:00", "HOSPITAL_ADMISSION//URGENT//PACU", s * 10 + 1) for s in (3, 4)]
    extra += [(s, "2160-03-02 09:00", "HOSPITAL_DISCHARGE//HOME", s * 10 + 1) for s in (3, 4)]
    extra += [(s, "2160-03-02 09:00", "DIAGNOSIS//ICD//10//I10", s * 10 + 1) for s in (3, 4)]
    rows = BASE + extra
    root = write_root(tmp_path / "r", events(rows), splits={1: "held_out", 2: "tuning", 3: "weird"})
    cohort = _load(root)
    split = cohort.patients.set_index("source_patient_id")["split"].astype(str)
    assert (split["1"], split["2"]) == ("test", "val")
    problems = cohort.meta["problems"]
    assert problems["subject_splits_unknown_name"] == 1 and problems["patients_without_source_split"] == 2
    assert "source's own split" in cohort_summary(cohort)["split_source"]
    seeded = _load(write_root(tmp_path / "s", events(rows)))
    assert "seeded" in cohort_summary(seeded)["split_source"]


def test_custom_code_table(tmp_path: Path) -> None:
    """Another ETL's spelling is a table, not a code change (the example in docs/meds.md)."""
    def respell(code: str) -> str:
        return code.replace("DIAGNOSIS//ICD//10//", "DX/ICD10/").replace("DIAGNOSIS//ICD//9//", "DX/ICD9/")

    rows = [(*r[:2], respell(r[2]), *r[3:]) for r in BASE if not r[2].startswith("ICD")]
    root = write_root(tmp_path / "r", events(rows))
    with pytest.raises(CohortInputError, match="no diagnosis codes"):
        _load(root)
    dx = CodePattern("DX/", r"DX/ICD(?P<version>9|10)/(?P<code>[A-Z0-9.]+)", DIAGNOSIS)
    patterns = (dx, *CODE_PATTERNS)
    raw = read_meds(root, patterns=patterns, diagnosis_like=("DX/", "DIAGNOSIS"))
    cohort = assemble_cohort("meds", raw, {"split_seed": 0}, {})
    assert cohort.diagnoses["raw_code"].astype(str).tolist() == ["I214", "4280", "I509"]
    default_root = write_root(tmp_path / "d", events(BASE))  # a table that is not the default: another digest
    assert read_meds(default_root, patterns=patterns).digest != read_meds(default_root).digest
    with pytest.raises(CohortInputError, match="lacks the named group"):
        read_meds(root, patterns=(CodePattern("DX/", r"DX/(?P<code>.+)", DIAGNOSIS),))


# ------------------------------------------------------------------------------------ bad roots

def test_missing_root_and_missing_shards(tmp_path: Path) -> None:
    with pytest.raises(CohortInputError, match="does not exist"):
        _load(tmp_path / "nowhere")
    (tmp_path / "empty" / "data" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "metadata").mkdir()
    (tmp_path / "empty" / "metadata" / "dataset.json").write_text(json.dumps(DATASET_0_4))
    with pytest.raises(CohortInputError, match=r"no data shards: expected parquet files under .*data"):
        _load(tmp_path / "empty")


def test_root_without_diagnosis_codes(tmp_path: Path) -> None:
    rows = [r for r in BASE if not r[2].startswith(("DIAGNOSIS", "ICD"))]
    with pytest.raises(CohortInputError, match=r"holds no diagnosis codes: none of the 11 rows in 2 shard"):
        _load(write_root(tmp_path / "r", events(rows)))
    with pytest.raises(CohortInputError, match=r"none of the 2 rows in 2 shard"):  # nothing kept at all
        _load(write_root(tmp_path / "labs", events([(1, "2150-01-01", "LAB//1//mg"), (2, None, "LAB//2")])))
    rows.append((1, "2150-01-05 12:00", "DIAGNOSIS//SNOMED//22298006", 11))
    with pytest.raises(CohortInputError, match=r"1 rows start with DIAGNOSIS but match no pattern"):
        _load(write_root(tmp_path / "s", events(rows)))


def test_bad_columns_name_the_shard(tmp_path: Path) -> None:
    root = write_root(tmp_path / "r", events(BASE), shards=1)
    shard = root / "data" / "train" / "0.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.rename_columns(["patient_id", *table.column_names[1:]]), shard)
    with pytest.raises(CohortInputError, match=r"0\.parquet lacks column\(s\) subject_id .*patient_id"):
        _load(root)
    pq.write_table(table.set_column(1, "time", table.column("time").cast(pa.string())), shard)
    with pytest.raises(CohortInputError, match=r"0\.parquet: column time is string"):
        _load(root)
    (root / "metadata" / "dataset.json").write_text("[1, 2]")
    pq.write_table(table, shard)
    with pytest.raises(CohortInputError, match=r"dataset\.json must hold a JSON object"):
        _load(root)
