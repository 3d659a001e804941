"""The target site: eICU ``patient`` and ``diagnosis`` tables.

Why: eICU differs from the source in the ways transfer experiments care about (ICU case mix, unit
stays inside hospital stays, coarser and mixed ICD-9/ICD-10 code strings, empty codes, re-entered
diagnoses), and the real eICU reader must read the result with no special case.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hicd_core.synthetic.draws import (
    _FRAILTY_SD,
    _accumulate,
    _draw_patients,
    _draw_visit_codes,
    _visit_counts,
)
from hicd_core.synthetic.helpers import (
    _DAY_MIN,
    _as_categorical,
    _categorical,
    _choice,
    _clock,
    _fixed2,
    _logit_intercept,
    _pick,
    _rng,
    _sigmoid,
    _sorted_unique_ids,
    _take,
    _union_codes,
)
from hicd_core.synthetic.layout import Table
from hicd_core.synthetic.model import _TARGET, _model
from hicd_core.synthetic.vocab import _Vocab, _vocab

#: eICU-like system names for the first field of ``diagnosisstring``.
_SYSTEMS = {
    "I": "infectious diseases", "II": "oncology", "III": "hematology", "IV": "endocrine", "V": "neurologic",
    "VI": "neurologic", "VII": "general", "VIII": "general", "IX": "cardiovascular", "X": "pulmonary",
    "XI": "gastrointestinal", "XII": "general", "XIII": "musculoskeletal", "XIV": "renal",
    "XV": "obstetrics/gynecology", "XVI": "general", "XVII": "general", "XVIII": "general", "XIX": "trauma",
    "XX": "toxicology", "XXI": "general", "XXII": "infectious diseases",
}
#: APACHE-style admission diagnoses, picked by the chapter of the stay's first code.
_APACHE = {
    "IX": ("CHF, congestive heart failure", "Infarction, acute myocardial (MI)",
           "Rhythm disturbance (atrial, supraventricular)", "CABG alone, coronary artery bypass grafting",
           "CVA, cerebrovascular accident/stroke", "Cardiac arrest (with or without respiratory arrest)"),
    "X": ("Pneumonia, bacterial", "Emphysema/bronchitis", "Asthma", "Embolus, pulmonary",
          "Respiratory - medical, other"),
    "I": ("Sepsis, pulmonary", "Sepsis, renal/UTI (including bladder)", "Sepsis, GI", "Sepsis, unknown"),
    "XI": ("Bleeding, upper GI", "Bleeding, lower GI", "GI perforation/rupture, surgery for", "Pancreatitis"),
    "IV": ("Diabetic ketoacidosis", "Hypoglycemia"),
    "XIX": ("Overdose, other toxin, poison or drug", "Head only trauma", "Hip fracture",
            "Multiple trauma (excluding head trauma)"),
    "VI": ("Seizures (primary-no structural brain disease)", "Hemorrhage/hematoma, intracranial"),
    "XIV": ("Renal failure, acute",),
    "V": ("Overdose, street drugs (opiates, cocaine, amphetamine)",),
}
_APACHE_DEFAULT = ("Cardiovascular medical, other", "Respiratory - medical, other",
                   "Neurologic medical, other")

_ETHNICITY = {"Caucasian": 0.77, "African American": 0.107, "Hispanic": 0.037, "Asian": 0.016,
              "Native American": 0.008, "Other/Unknown": 0.05, "": 0.012}
_GENDER = {"Male": 0.54, "Female": 0.4595, "Unknown": 0.0005}
_UNIT_TYPES = {"Med-Surg ICU": 0.55, "MICU": 0.085, "CCU-CTICU": 0.076, "SICU": 0.068, "Neuro ICU": 0.07,
               "Cardiac ICU": 0.06, "CSICU": 0.05, "CTICU": 0.04}
_HOSPITAL_SOURCES = {"Emergency Department": 0.5, "Floor": 0.1, "Direct Admit": 0.08, "Operating Room": 0.12,
                     "Other Hospital": 0.06, "Recovery Room": 0.04, "Step-Down Unit (SDU)": 0.02,
                     "Acute Care/Floor": 0.02, "PACU": 0.01, "Chest Pain Center": 0.01, "": 0.04}
_LATER_UNIT_SOURCES = {"Floor": 0.45, "Step-Down Unit (SDU)": 0.2, "Other ICU": 0.15, "ICU to SDU": 0.1,
                       "Acute Care/Floor": 0.1}
_UNIT_TRANSFER = {"Floor": 0.5, "Step-Down Unit (SDU)": 0.25, "Telemetry": 0.1, "Other ICU": 0.1,
                  "Acute Care/Floor": 0.05}
_UNIT_LAST = {"Floor": 0.45, "Step-Down Unit (SDU)": 0.15, "Home": 0.12, "Telemetry": 0.08,
              "Acute Care/Floor": 0.06, "Other External": 0.03, "Skilled Nursing Facility": 0.03,
              "Other Hospital": 0.03, "Rehabilitation": 0.01, "Other": 0.02, "": 0.02}
_UNIT_DEATH = {"Death": 1.0}
_HOSPITAL_DISCHARGE = {"Home": 0.58, "Skilled Nursing Facility": 0.14, "Other External": 0.06,
                       "Rehabilitation": 0.05, "Other Hospital": 0.05, "Nursing Home": 0.03, "Other": 0.06,
                       "": 0.03}
_STAY_TYPES_LATER = {"readmit": 0.7, "transfer": 0.2, "stepdown/other": 0.1}
#: Coding granularity and code-string form at the target.
_GRANULARITY = (0.25, 0.40, 0.35)  # 3-character category, <= 4 characters, full leaf
_FORMS = {"empty": 0.22, "pair": 0.45, "icd9": 0.15, "icd10": 0.18}
_RE_ENTRY = 0.3  # a diagnosis is entered again later in the stay
_MAX_UNIT_STEPS = 40

_ICU_READMIT_RATE, _ICU_READMIT_SLOPE = 0.15, 1.0
_UNIT_DEATH_RATE, _POST_DEATH_RATE, _NEXT_HOSPITAL_RATE = 0.055, 0.035, 0.16


def _pre_icu_minutes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hospital admission to first ICU admission: mostly hours (ED), sometimes days (ward)."""
    return rng.integers(0, 300, n) + np.where(rng.random(n) < 0.35, rng.integers(300, 5000, n), 0)


def _generate_target(seed: int, signal: float, n: int) -> tuple[dict[str, Table], dict]:
    model = _model(seed, signal)
    vocab = _vocab()
    site, params = model.target, _TARGET
    rng = _rng(seed, "target")
    people = _draw_patients(rng, model, site, params, n)
    age_now = np.clip(rng.normal(63, 17, n), 16, 99)
    risk_sum, risk_n = np.zeros(n), np.zeros(n, dtype=np.int64)
    a_readmit = _logit_intercept(_ICU_READMIT_RATE, math.sqrt(_ICU_READMIT_SLOPE**2 + _FRAILTY_SD**2))
    a_death = _logit_intercept(_UNIT_DEATH_RATE, 0.7)
    hospital_stay = np.zeros(n, dtype=np.int64)
    unit_number = np.ones(n, dtype=np.int64)
    elapsed = _pre_icu_minutes(rng, n)
    year = np.where(rng.random(n) < 0.5, 2014, 2015)
    active = np.ones(n, dtype=bool)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "patient", "stay", "unit", "elapsed", "los", "died", "closes", "post", "post_death", "year", "age",
        "dx_unit", "dx_leaf")}
    mu = sd = 0.0
    offset = 0
    for k in range(_MAX_UNIT_STEPS):
        patient = np.flatnonzero(active)
        m = len(patient)
        if m == 0:
            break
        age = age_now[patient]
        counts = _visit_counts(rng, np.full(m, params.codes_mean) * (1 + 0.1 * (age - 63) / 17), cap=60)
        visit, leaf, _origin = _draw_visit_codes(rng, model, site, params, people, patient, counts)
        cum = _accumulate(risk_sum, risk_n, patient, visit, leaf, model.risk, m)
        if k == 0:
            mu, sd = float(cum.mean()), float(cum.std()) or 1.0
        score = (cum - mu) / sd
        los_days = np.exp(rng.normal(math.log(1.7), 0.85, m) + 0.15 * score)
        los = np.maximum((los_days * _DAY_MIN).astype(np.int64), 30)
        died = rng.random(m) < _sigmoid(a_death + 0.7 * score + 0.5 * (age - 63) / 17)
        frail = _FRAILTY_SD * people.frailty[patient]
        readmit = ~died & (rng.random(m) < _sigmoid(a_readmit + _ICU_READMIT_SLOPE * score + frail))
        closes = ~readmit
        post = np.where(closes & ~died, rng.integers(6 * 60, 7 * _DAY_MIN, m), 0)
        post_death = closes & ~died & (rng.random(m) < _POST_DEATH_RATE)
        new_stay = closes & ~died & ~post_death & (rng.random(m) < _NEXT_HOSPITAL_RATE)
        for key, value in (("patient", patient), ("stay", hospital_stay[patient]),
                           ("unit", unit_number[patient]), ("elapsed", elapsed[patient]), ("los", los),
                           ("died", died), ("closes", closes), ("post", post), ("post_death", post_death),
                           ("year", year[patient]), ("age", age),
                           ("dx_unit", offset + visit), ("dx_leaf", leaf)):
            parts[key].append(value)
        offset += m
        gap = rng.integers(12 * 60, 6 * _DAY_MIN, m)
        elapsed[patient] = np.where(readmit, elapsed[patient] + los + gap, _pre_icu_minutes(rng, m))
        unit_number[patient] = np.where(readmit, unit_number[patient] + 1, 1)
        hospital_stay[patient] += new_stay
        year[patient] = np.minimum(year[patient] + (new_stay & (rng.random(m) < 0.4)), 2015)
        age_now[patient] += np.where(new_stay, rng.uniform(0.05, 0.6, m), 0.0)
        active[patient] = readmit | new_stay
    cols = {key: np.concatenate(value) for key, value in parts.items()}
    return _eicu_tables(rng, vocab, cols, n)


def _eicu_tables(rng: np.random.Generator, vocab: _Vocab, cols: dict[str, np.ndarray], n: int
                 ) -> tuple[dict[str, Table], dict]:
    order = np.lexsort((cols["unit"], cols["stay"], cols["patient"]))
    n_units = len(order)
    rank = np.empty(n_units, dtype=np.int64)
    rank[order] = np.arange(n_units)
    u = {key: value[order] for key, value in cols.items() if not key.startswith("dx_")}
    patient, elapsed, los, died, closes = u["patient"], u["elapsed"], u["los"], u["died"], u["closes"]
    stay_index = np.cumsum(np.r_[True, (patient[1:] != patient[:-1]) | (u["stay"][1:] != u["stay"][:-1])]) - 1
    n_stays = int(stay_index[-1]) + 1 if n_units else 0
    unit_ids = _sorted_unique_ids(rng, n_units, 141_000, 3_300_000)
    stay_ids = _sorted_unique_ids(rng, n_stays, 128_000, 3_200_000)

    # Hospital-stay level: discharge = last unit's admission + its length + time on the ward after.
    stay_disch = np.zeros(n_stays, dtype=np.int64)
    stay_disch[stay_index[closes]] = (elapsed + los + u["post"])[closes]
    stay_died = np.zeros(n_stays, dtype=bool)
    stay_died[stay_index[closes]] = (died | u["post_death"])[closes]
    stay_clock = rng.integers(0, _DAY_MIN, n_stays)
    stay_source = _pick(rng, n_stays, _HOSPITAL_SOURCES)
    stay_location = _union_codes([_HOSPITAL_DISCHARGE, _UNIT_DEATH],
                                 stay_died.astype(np.int64), rng)
    stay_status = np.where(stay_died, 1, np.where(np.asarray(stay_location.isna()), -1, 0))
    stay_height = np.where(rng.random(n_stays) < 0.05, np.nan, np.round(rng.normal(169, 10, n_stays), 1))
    stay_hospital = rng.integers(56, 460, n_stays)
    stay_ward = stay_hospital * 2 + rng.integers(0, 3, n_stays) + 30

    unit_no = u["unit"]
    age = u["age"]
    age_code = np.where(age >= 90, 90, np.floor(age).astype(np.int64))
    age_code = np.where(rng.random(n_units) < 0.0005, -1, age_code)
    age_values = [str(a) for a in range(90)] + ["> 89"]
    sex, ethnicity = _pick(rng, n, _GENDER), _pick(rng, n, _ETHNICITY)
    pid_numbers = rng.permutation(_sorted_unique_ids(rng, n, 1000, 2_000_000))
    prefix = pc.utf8_lpad(pa.array(rng.integers(2, 36, n)).cast(pa.string()), width=3, padding="0")
    uniquepid = pc.binary_join_element_wise(prefix, pa.array(pid_numbers).cast(pa.string()), "-")
    first = unit_no == 1
    later_source = _pick(rng, n_units, _LATER_UNIT_SOURCES)
    unit_source = np.where(first, np.asarray(stay_source)[stay_index], np.asarray(later_source))
    unit_location = _union_codes([_UNIT_TRANSFER, _UNIT_LAST, _UNIT_DEATH],
                                 np.where(died, 2, np.where(closes, 1, 0)), rng)
    weight = np.round(np.clip(rng.normal(84, 24, n_units), 30, 250), 1)
    weight = np.where(rng.random(n_units) < 0.03, np.nan, weight)
    discharge_weight = np.where(rng.random(n_units) < 0.35, np.nan,
                                np.round(weight + rng.normal(0, 2, n_units), 1))
    stay_type = np.where(first, 0, 1 + _choice(rng, n_units, list(_STAY_TYPES_LATER.values())))

    # Diagnosis rows in unit order; the first code's chapter picks an APACHE-style admission diagnosis.
    dx_rank = rank[cols["dx_unit"]]
    dx_order = np.argsort(dx_rank, kind="stable")
    dx_rank, leaf = dx_rank[dx_order], cols["dx_leaf"][dx_order]
    first_code = np.r_[True, dx_rank[1:] != dx_rank[:-1]] if len(dx_rank) else np.zeros(0, dtype=bool)
    primary_chapter = np.full(n_units, -1, dtype=np.int64)
    primary_chapter[dx_rank[first_code]] = vocab.chapter[leaf[first_code]]
    apache_values = list(dict.fromkeys([*_APACHE_DEFAULT, *(v for vs in _APACHE.values() for v in vs)]))
    apache = np.full(n_units, -1, dtype=np.int64)
    for chapter_id in np.unique(primary_chapter[primary_chapter >= 0]):
        rows = np.flatnonzero(primary_chapter == chapter_id)
        choices = _APACHE.get(vocab.chapters[chapter_id], _APACHE_DEFAULT)
        options = np.array([apache_values.index(v) for v in choices])
        apache[rows] = options[rng.integers(0, len(options), len(rows))]
    apache = np.where(rng.random(n_units) < 0.08, -1, apache)

    patient_table: Table = {
        "patientunitstayid": unit_ids, "patienthealthsystemstayid": stay_ids[stay_index],
        "gender": _take(sex, patient), "age": _as_categorical(age_code, age_values),
        "ethnicity": _take(ethnicity, patient), "hospitalid": stay_hospital[stay_index],
        "wardid": stay_ward[stay_index], "apacheadmissiondx": _as_categorical(apache, apache_values),
        "admissionheight": _fixed2(stay_height[stay_index]),
        "hospitaladmittime24": _clock(stay_clock[stay_index]), "hospitaladmitoffset": -elapsed,
        "hospitaladmitsource": _take(stay_source, stay_index), "hospitaldischargeyear": u["year"],
        "hospitaldischargetime24": _clock(stay_clock[stay_index] + stay_disch[stay_index]),
        "hospitaldischargeoffset": stay_disch[stay_index] - elapsed,
        "hospitaldischargelocation": _take(stay_location, stay_index),
        "hospitaldischargestatus": _as_categorical(stay_status[stay_index], ["Alive", "Expired"]),
        "unittype": _pick(rng, n_units, _UNIT_TYPES),
        "unitadmittime24": _clock(stay_clock[stay_index] + elapsed), "unitadmitsource": unit_source,
        "unitvisitnumber": unit_no, "unitstaytype": _as_categorical(stay_type, ["admit", *_STAY_TYPES_LATER]),
        "admissionweight": _fixed2(weight), "dischargeweight": _fixed2(discharge_weight),
        "unitdischargetime24": _clock(stay_clock[stay_index] + elapsed + los),
        "unitdischargeoffset": los, "unitdischargelocation": unit_location,
        "unitdischargestatus": _as_categorical(died.astype(np.int64), ["Alive", "Expired"]),
        "uniquepid": uniquepid.take(pa.array(patient)),
    }
    diagnosis, dx_stats = _eicu_diagnoses(rng, vocab, dx_rank, leaf, first_code, unit_ids, los)
    later_unit = np.r_[stay_index[1:] == stay_index[:-1], False]
    stats = {
        "patients": n, "hospital_stays": n_stays, "unit_stays": n_units,
        "icu_readmission_rate": round(float(later_unit.mean()), 4),
        "unit_death_rate": round(float(died.mean()), 4), **dx_stats,
    }
    return {"patient": patient_table, "diagnosis": diagnosis}, stats


def _eicu_diagnoses(rng: np.random.Generator, vocab: _Vocab, dx_rank: np.ndarray, leaf: np.ndarray,
                    first_code: np.ndarray, unit_ids: np.ndarray, los: np.ndarray) -> tuple[Table, dict]:
    """eICU diagnosis rows: coarser codes, ICD-9/ICD-10 pairs and empties, re-entries later in the stay."""
    r = len(leaf)
    granularity = _choice(rng, r, _GRANULARITY)
    form = _choice(rng, r, list(_FORMS.values()))  # 0 empty, 1 pair, 2 ICD-9 only, 3 ICD-10 only
    # A bare ICD-9 V/E code reads like an ICD-10 code; such codes are written in pairs instead.
    letter_icd9 = np.array([c[0] in "VE" for c in vocab.icd9_dotted])[vocab.icd9[leaf]]
    form = np.where((form == 2) & letter_icd9, 1, form)
    combo = (leaf * 3 + granularity) * 4 + form
    used, compact = np.unique(combo, return_inverse=True)
    u_leaf, u_gran, u_form = used // 12, (used // 4) % 3, used % 4
    ten = np.where(u_gran == 0, vocab.coarse3[u_leaf],
                   np.where(u_gran == 1, vocab.coarse4[u_leaf], vocab.full_dotted[u_leaf]))
    nine = vocab.icd9_dotted[vocab.icd9[u_leaf]]
    pair = np.array([f"{a}, {b}" for a, b in zip(nine, ten, strict=True)], dtype=object)
    text = np.where(u_form == 1, pair, np.where(u_form == 2, nine, np.where(u_form == 3, ten, "")))
    system = np.array([_SYSTEMS[c] for c in vocab.chapters], dtype=object)[vocab.chapter[u_leaf]]
    category = np.array([t.lower() for t in vocab.category_title[vocab.category[u_leaf]]], dtype=object)
    leaf_title = np.array([t.lower() for t in vocab.description[u_leaf]], dtype=object)
    described = system + "|" + category
    strings = np.where((u_gran == 2) & (u_form != 0), described + "|" + leaf_title, described)

    stay_los = los[dx_rank]
    early = rng.random(r) < 0.7
    offset = np.where(early, rng.integers(-60, 1, r) + (0.3 * stay_los * rng.random(r)).astype(np.int64),
                      (stay_los * rng.random(r)).astype(np.int64))
    priority = np.where(first_code, 0, np.where(rng.random(r) < 0.45, 1, 2))
    again = np.flatnonzero(rng.random(r) < _RE_ENTRY)
    room = np.maximum(stay_los[again] - offset[again], 0)
    re_offset = offset[again] + (room * rng.random(len(again))).astype(np.int64)
    row_of = np.r_[np.arange(r), again]
    offsets = np.r_[offset, re_offset]
    is_last = np.ones(len(row_of), dtype=bool)
    is_last[again] = False
    active = is_last & (rng.random(len(row_of)) < 0.55)
    stay = dx_rank[row_of]
    order = np.lexsort((offsets, stay))
    row_of, offsets, active, stay = row_of[order], offsets[order], active[order], stay[order]
    table: Table = {
        "diagnosisid": _sorted_unique_ids(rng, len(row_of), 4_000_000, 50_000_000),
        "patientunitstayid": unit_ids[stay],
        "activeupondischarge": _as_categorical(active.astype(np.int64), ["False", "True"]),
        "diagnosisoffset": offsets, "diagnosisstring": _categorical(strings, compact[row_of]),
        "icd9code": _categorical(text, compact[row_of]),
        "diagnosispriority": _as_categorical(priority[row_of], ["Primary", "Major", "Other"]),
    }
    row_form = form[row_of]
    stats = {
        "diagnoses": len(row_of), "rows_per_stay": round(len(row_of) / max(len(unit_ids), 1), 3),
        "code_forms": {name: round(float((row_form == i).mean()), 4) for i, name in enumerate(_FORMS)},
    }
    return table, stats
