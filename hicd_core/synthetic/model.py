"""The seeded model: leaf popularity, the hierarchy-signal risk, disease families and site mixes.

Why: this is the part of the generator the experiments reason about (``hierarchy_signal`` moves
risk between the tree and single codes), and the public tables that expose it
(``leaf_risk_table``, ``family_table``, ...) must give the same numbers as the files written from
it. Calibration targets and the reasoning behind them: ``docs/synthetic.md``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hicd_core.synthetic.helpers import (
    _alias,
    _check_seed,
    _check_signal,
    _normalise_within,
    _rank_within,
    _rng,
)
from hicd_core.synthetic.vocab import _vocab

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
    """The chapter mix a site's codes are calibrated to (``mimic-iv`` or ``eicu``).

    >>> mix = site_chapter_mix("eicu")
    >>> round(sum(mix.values()), 9), mix["IX"] > site_chapter_mix("mimic-iv")["IX"]
    (1.0, True)
    """
    if site == "mimic-iv":
        mix = dict(SOURCE_CHAPTER_MIX)
    elif site == "eicu":
        mix = {c: w * TARGET_CHAPTER_FACTOR.get(c, 1.0) for c, w in SOURCE_CHAPTER_MIX.items()}
    else:
        raise ValueError(f"site must be 'mimic-iv' or 'eicu', got {site!r}")
    total = sum(mix.values())
    return {c: w / total for c, w in mix.items()}
