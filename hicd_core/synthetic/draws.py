"""Code draws shared by both sites: patients' latent families and chronic codes, visits' codes.

Why: the MIMIC-IV source and the eICU target use one patient/visit process (with per-site
parameters), so a site module only adds what its files look like and what its outcomes are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hicd_core.synthetic.helpers import _choice, _draw_alias, _first_occurrence
from hicd_core.synthetic.model import (
    _BACKGROUND,
    _C_MAX,
    _CHRONIC,
    _F_MAX,
    _FAMILY,
    _Model,
    _Site,
    _SiteParams,
)

#: Standard deviation of a patient's frailty on the outcome logit scale (both sites).
_FRAILTY_SD = 0.6


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
