"""Small seeded-draw and column helpers shared by every part of the generator.

Why: the vocabulary, the model and both site writers draw from named random streams and build
columns the same way (categoricals, MIMIC date-times, eICU clocks, fixed-point numbers); keeping
those primitives here keeps each site module about its site. Names keep their leading underscore:
they are internal to the ``hicd_core.synthetic`` package, whose public API is its ``__init__``.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Times are minutes since ``_BASE`` (MIMIC-style dates shifted into the 22nd century).
_MINUTE = np.timedelta64(1, "m")
_BASE = np.datetime64("2100-01-01T00:00", "m")
_YEAR_MIN = 525_960  # minutes in 365.25 days
_DAY_MIN = 1_440


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
    """0-based position of each row inside its run of equal ``group`` values (rows grouped).

    >>> _position_in_group(np.array([7, 7, 3, 3, 3, 9])).tolist()
    [0, 1, 0, 1, 2, 0]
    """
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



def _take(values: pd.Categorical, index: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(values.codes[index], dtype=values.dtype)


def _categorical(values: np.ndarray, index: np.ndarray) -> pd.Categorical:
    """``values[index]`` as a categorical without materialising one string per row."""
    codes, uniques = pd.factorize(values)
    return pd.Categorical.from_codes(codes[index], categories=pd.Index(uniques, dtype=object))
