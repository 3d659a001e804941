"""HICD-BERT tokenisation: a :class:`~hicd_core.cohort.schema.Cohort` -> flat token arrays -> batches.

Layout per sample (BEHRT conventions, paper-notes 5.2)::

    [CLS] visit1 codes [SEP] visit2 codes [SEP] ... anchor-visit codes [SEP]

* code tokens are full undotted ICD-10-CM codes (``icd10``) seen in the TRAIN split (at least
  ``min_count`` times); anything else is ``[UNK]`` -- but keeps its real G0/G1/G2 ids, which is how the
  hierarchy can help rare codes, unseen codes and another site;
* hierarchy ids come from :func:`hicd_core.hierarchy.level_ids` under the chosen scheme; the level
  vocabularies cover every id the hierarchy gives to *any* code of the source cohort (all splits).
  Under the permuted-hierarchy control (``hierarchy="permuted"``) each full code takes the ids of the
  code a seeded permutation of the source cohort's codes gives it (:mod:`hicd_core.hierarchy.levels`);
  the vocabulary stores that permutation, so every split and the target site get the same one;
  Ids a target cohort has that the source had not map to the per-level ``[UNK]`` id; special tokens
  get the null id 0, whose embedding is a fixed zero vector;
* age = integer years at the visit (clipped; unknown -> its own id), position = visit number in the
  window (``[CLS]`` = 0), segment = position % 2 (alternates across visits);
* over-long histories keep their most recent tokens, cut at a visit boundary when one fits.

Everything is vectorised: each cohort becomes ONE flat array of visit tokens (per patient, visits in
order, codes in ``seq`` order, then ``[SEP]``), and a sample is just a (start, end) slice of it,
because its input is a prefix of its patient's history. Batches gather from the flat arrays with
numpy fancy indexing; no per-sample Python loop and no per-sample copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from hicd_core.cohort.schema import TRAIN, Cohort
from hicd_core.hierarchy import LEVELS, code_set_year, level_ids
from hicd_core.hierarchy.levels import HierarchyPermutation, check_hierarchy
from hicd_core.models.bert import (
    CLS,
    LEVEL_NULL,
    LEVEL_UNK,
    MASK,
    PAD,
    SEP,
    SPECIAL_TOKENS,
    UNK,
)

LEVEL_SPECIALS = ("[NULL]", "[UNK]")
VOCAB_FORMAT = 1


@dataclass
class BertVocab:
    """Code and hierarchy vocabularies, JSON-serialisable so a target site can use the source's.

    Attributes:
        scheme: level scheme the G0/G1/G2 ids were built with.
        codes: code token strings in id order (5 specials first).
        code_counts: train-split occurrence count per code id (0 for specials).
        levels: level name -> id strings in id order (``[NULL]``, ``[UNK]`` first).
        code_levels: per code id, its (G0, G1, G2) ids (null for specials and ``[UNK]``).
        min_count: train count a code needs to get its own token.
        max_age: ages are clipped to ``0..max_age-1``; id ``max_age`` means unknown.
        code_set_year: ICD-10-CM release the hierarchy came from.
        permutation: the permuted-hierarchy control's code permutation (None: the real tree).
    """

    scheme: str
    codes: list[str]
    code_counts: list[int]
    levels: dict[str, list[str]]
    code_levels: list[list[int]]
    min_count: int = 1
    max_age: int = 120
    code_set_year: str = ""
    permutation: HierarchyPermutation | None = None
    _code_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _level_index: dict[str, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)
    _key: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        self._code_index = {code: i for i, code in enumerate(self.codes)}
        self._level_index = {name: {v: i for i, v in enumerate(ids)} for name, ids in self.levels.items()}

    @property
    def n_codes(self) -> int:
        return len(self.codes)

    @property
    def level_sizes(self) -> tuple[int, int, int]:
        return tuple(len(self.levels[name]) for name in LEVELS)  # type: ignore[return-value]

    def code_id(self, code: str | None) -> int:
        return self._code_index.get(code, UNK) if code else UNK

    def level_id(self, level: str, value: str) -> int:
        return self._level_index[level].get(value, LEVEL_UNK)

    def key(self) -> str:
        """Short content hash (cache keys); computed once, a vocabulary is not mutated after building."""
        if not self._key:
            from hicd_core.runtime import stable_hash

            self._key = stable_hash(self.to_json())
        return self._key

    def to_json(self) -> dict[str, Any]:
        out = {"format": VOCAB_FORMAT, "scheme": self.scheme, "codes": self.codes,
               "code_counts": self.code_counts, "levels": self.levels, "code_levels": self.code_levels,
               "min_count": self.min_count, "max_age": self.max_age, "code_set_year": self.code_set_year}
        if self.permutation is not None:  # only then: a real-tree vocabulary keeps its content key
            out["permutation"] = self.permutation.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BertVocab:
        if data.get("format") != VOCAB_FORMAT:
            raise ValueError(f"unsupported vocabulary format {data.get('format')!r}")
        return cls(scheme=data["scheme"], codes=list(data["codes"]), code_counts=list(data["code_counts"]),
                   levels={k: list(v) for k, v in data["levels"].items()},
                   code_levels=[list(x) for x in data["code_levels"]], min_count=int(data["min_count"]),
                   max_age=int(data["max_age"]), code_set_year=str(data.get("code_set_year", "")),
                   permutation=HierarchyPermutation.from_json(data.get("permutation")))


def _code_strings(diagnoses: pd.DataFrame) -> np.ndarray:
    """``icd10`` as an object array with None for unresolved codes."""
    icd = diagnoses["icd10"]
    return icd.astype(object).where(icd.notna(), None).to_numpy()


def code_permutation(diagnoses: pd.DataFrame, seed: int) -> HierarchyPermutation:
    """The permuted-hierarchy control over the distinct resolved codes of ``diagnoses`` (all splits):
    each full code takes the tree position of another (``hierarchy.levels.permute_hierarchy``)."""
    resolved = diagnoses.loc[diagnoses["icd10"].notna(), ["icd10", "chapter", "block", "category"]]
    table = resolved.drop_duplicates("icd10").astype(str).rename(columns={"icd10": "key"})
    return HierarchyPermutation.build(table.reset_index(drop=True), seed)


def build_vocab(cohort: Cohort, scheme: str = "ontology", min_count: int = 1,
                max_age: int = 120, hierarchy: str = "real", permutation_seed: int = 0) -> BertVocab:
    """Vocabulary from ``cohort``: code tokens from TRAIN-split occurrences only; level ids from all.

    Code tokens are sorted by train frequency (then code) so low ids are the common codes.
    ``hierarchy="permuted"`` gives level ids from a permutation of the codes seeded with
    ``permutation_seed`` (the permuted-hierarchy control); code tokens are the same either way.
    """
    diag = cohort.diagnoses
    train_patients = cohort.patients.loc[cohort.patients["split"] == TRAIN, "patient_id"].to_numpy()
    is_train = np.isin(diag["patient_id"].to_numpy(), train_patients)
    codes = _code_strings(diag)
    counts = pd.Series(codes[is_train & (codes != None)]).value_counts()  # noqa: E711 -- elementwise
    counts = counts[counts >= min_count]
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    code_list = list(SPECIAL_TOKENS) + [str(c) for c, _ in order]
    code_counts = [0] * len(SPECIAL_TOKENS) + [int(n) for _, n in order]

    permuted = check_hierarchy(hierarchy) == "permuted"
    permutation = code_permutation(diag, permutation_seed) if permuted else None
    lv = level_ids(diag, scheme, permutation)
    levels = {name: list(LEVEL_SPECIALS) + sorted(str(x) for x in lv[name].unique()) for name in LEVELS}
    vocab = BertVocab(scheme=scheme, codes=code_list, code_counts=code_counts, levels=levels, code_levels=[],
                      min_count=min_count, max_age=max_age, code_set_year=code_set_year(),
                      permutation=permutation)
    # Levels per code token (a code's levels are a function of the code under every scheme).
    real = codes != None  # noqa: E711 -- elementwise
    table = pd.DataFrame({"code": codes[real], **{name: lv[name].to_numpy()[real] for name in LEVELS}})
    table = table.drop_duplicates("code").set_index("code").reindex(code_list[len(SPECIAL_TOKENS):])
    columns = [[vocab.level_id(name, str(value)) for value in table[name]] for name in LEVELS]
    specials = [[LEVEL_NULL] * 3 for _ in SPECIAL_TOKENS]
    vocab.code_levels = specials + [list(x) for x in zip(*columns, strict=True)]
    return vocab


@dataclass
class CohortTokens:
    """One cohort as flat per-token arrays (visits of a patient contiguous, in visit order).

    Attributes:
        code, levels, age, visit_number: per token; ``levels`` is [T, 3].
        visit_offset, visit_ntok: per visit (rows of the visits table sorted by patient, visit_index).
        visit_row: visit_id -> row in those per-visit arrays.
        patient_first: per visit row, the token offset of its patient's first visit.
    """

    code: np.ndarray
    levels: np.ndarray
    age: np.ndarray
    visit_number: np.ndarray
    visit_offset: np.ndarray
    visit_ntok: np.ndarray
    visit_row: np.ndarray
    patient_first: np.ndarray
    visit_patient: np.ndarray

    @property
    def n_tokens(self) -> int:
        return len(self.code)


def cohort_tokens(cohort: Cohort, vocab: BertVocab) -> CohortTokens:
    """Flatten every visit of ``cohort`` into token arrays with ``vocab`` (vectorised)."""
    visits = cohort.visits.sort_values(["patient_id", "visit_index"], kind="stable")
    n_visits = len(visits)
    visit_ids = visits["visit_id"].to_numpy(np.int64)
    visit_row = np.full(int(visit_ids.max()) + 1 if n_visits else 1, -1, dtype=np.int64)
    visit_row[visit_ids] = np.arange(n_visits)

    diag = cohort.diagnoses
    drow = visit_row[diag["visit_id"].to_numpy(np.int64)]
    keep = drow >= 0  # diagnoses of visits that are not in the visits table cannot be placed
    order = np.lexsort((diag["seq"].to_numpy()[keep], drow[keep]))
    drow = drow[keep][order]

    # Code ids: map each distinct icd10 string once, then take.
    icd = diag["icd10"]
    icd = icd if isinstance(icd.dtype, pd.CategoricalDtype) else icd.astype("category")
    cat_to_id = np.array([vocab.code_id(str(c)) for c in icd.cat.categories] + [UNK], dtype=np.int32)
    cat_codes = icd.cat.codes.to_numpy()
    code_ids = cat_to_id[np.where(cat_codes < 0, len(cat_to_id) - 1, cat_codes)][keep][order]

    lv = level_ids(diag, vocab.scheme, vocab.permutation)
    lev_ids = np.empty((len(code_ids), 3), dtype=np.int32)
    for k, name in enumerate(LEVELS):
        col = lv[name]
        table = np.array([vocab.level_id(name, str(c)) for c in col.cat.categories] + [LEVEL_UNK], np.int32)
        cc = col.cat.codes.to_numpy()
        lev_ids[:, k] = table[np.where(cc < 0, len(table) - 1, cc)][keep][order]

    n_codes = np.bincount(drow, minlength=n_visits)
    ntok = n_codes + 1  # + [SEP]
    offset = np.zeros(n_visits, dtype=np.int64)
    offset[1:] = np.cumsum(ntok)[:-1]
    first_code = np.zeros(n_visits, dtype=np.int64)
    first_code[1:] = np.cumsum(n_codes)[:-1]
    rank = np.arange(len(drow)) - first_code[drow]
    n_tok = int(ntok.sum())

    code = np.empty(n_tok, dtype=np.int32)
    levels = np.zeros((n_tok, 3), dtype=np.int32)
    code_pos = offset[drow] + rank
    sep_pos = offset + n_codes
    code[code_pos] = code_ids
    levels[code_pos] = lev_ids
    code[sep_pos] = SEP

    token_visit = np.repeat(np.arange(n_visits), ntok)
    age_years = visits["age"].to_numpy(np.float64)
    age_ids = np.where(np.isnan(age_years), vocab.max_age,
                       np.clip(np.floor(np.nan_to_num(age_years)), 0, vocab.max_age - 1)).astype(np.int16)
    visit_index = visits["visit_index"].to_numpy(np.int64)
    patients = visits["patient_id"].to_numpy(np.int64)
    new_patient = np.ones(n_visits, dtype=bool)
    new_patient[1:] = patients[1:] != patients[:-1]
    first_row = np.maximum.accumulate(np.where(new_patient, np.arange(n_visits), 0))
    return CohortTokens(code=code, levels=levels, age=age_ids[token_visit],
                        visit_number=visit_index[token_visit].astype(np.int32), visit_offset=offset,
                        visit_ntok=ntok, visit_row=visit_row, patient_first=offset[first_row],
                        visit_patient=patients)


@dataclass
class TokenizedSamples:
    """Samples as (start, end) slices of a :class:`CohortTokens`, plus labels and splits.

    ``lengths`` include the [CLS] token. Use :meth:`batch` to materialise a padded batch.
    """

    tokens: CohortTokens
    start: np.ndarray
    end: np.ndarray
    sample_id: np.ndarray
    label: np.ndarray
    split: np.ndarray
    max_visits: int
    pad_multiple: int = 8

    def __len__(self) -> int:
        return len(self.start)

    @property
    def lengths(self) -> np.ndarray:
        return (self.end - self.start + 1).astype(np.int64)

    def indices(self, split: str | None = None) -> np.ndarray:
        return np.arange(len(self)) if split is None else np.flatnonzero(self.split == split)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Padded batch for sample indices ``idx`` (numpy gathers from the flat arrays)."""
        t = self.tokens
        starts, lens = self.start[idx], self.end[idx] - self.start[idx]
        width = int(lens.max()) if len(idx) else 0
        if self.pad_multiple > 1:  # few distinct shapes: oneDNN/cuBLAS pick kernels per shape
            width = -(-(width + 1) // self.pad_multiple) * self.pad_multiple - 1
        j = np.arange(width)
        valid = j[None, :] < lens[:, None]
        gather = np.where(valid, starts[:, None] + j[None, :], 0)
        n = len(idx)

        codes = np.full((n, width + 1), PAD, dtype=np.int64)
        codes[:, 0] = CLS
        codes[:, 1:] = np.where(valid, t.code[gather], PAD)
        levels = np.zeros((n, width + 1, 3), dtype=np.int64)
        levels[:, 1:] = np.where(valid[..., None], t.levels[gather], LEVEL_NULL)
        first_visit = t.visit_number[starts].astype(np.int64)
        pos = np.zeros((n, width + 1), dtype=np.int64)
        pos[:, 1:] = np.where(valid, np.minimum(t.visit_number[gather] - first_visit[:, None] + 1,
                                                self.max_visits - 1), 0)
        ages = np.zeros((n, width + 1), dtype=np.int64)
        ages[:, 0] = t.age[starts]  # [CLS] takes the age at the first visit of the window
        ages[:, 1:] = np.where(valid, t.age[gather], 0)
        pad_mask = np.zeros((n, width + 1), dtype=bool)
        pad_mask[:, 1:] = ~valid
        return {"codes": torch.from_numpy(codes), "ages": torch.from_numpy(ages),
                "positions": torch.from_numpy(pos), "segments": torch.from_numpy(pos % 2),
                "levels": torch.from_numpy(levels), "pad_mask": torch.from_numpy(pad_mask),
                "label": torch.from_numpy(self.label[idx].astype(np.float32))}


MODEL_INPUTS = ("codes", "ages", "positions", "segments", "levels", "pad_mask")


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The positional arguments of :meth:`HicdBert.forward`, moved to ``device``."""
    return tuple(batch[name].to(device, non_blocking=True) for name in MODEL_INPUTS)


def window_starts(tokens: CohortTokens, rows: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) token slices for samples anchored at visit ``rows``, truncated to ``max_len``.

    The window ends with the anchor visit's [SEP]. When the history is longer than ``max_len - 1``
    tokens it starts at the earliest visit boundary that fits; if even the anchor visit alone does not
    fit, the most recent ``max_len - 1`` tokens are kept (a mid-visit cut).
    """
    room = max_len - 1  # [CLS] is always first
    end = tokens.visit_offset[rows] + tokens.visit_ntok[rows]
    start = tokens.patient_first[rows].copy()
    lower = end - room
    long = lower > start
    if long.any():
        idx = np.searchsorted(tokens.visit_offset, lower[long], side="left")
        n = len(tokens.visit_offset)
        boundary = np.where(idx < n, tokens.visit_offset[np.minimum(idx, n - 1)], np.iinfo(np.int64).max)
        start[long] = np.where(boundary < end[long], boundary, lower[long])
    return start, end


def tokenize_task(tokens: CohortTokens, samples: pd.DataFrame, max_len: int,
                  max_visits: int) -> TokenizedSamples:
    """Task samples (``SAMPLE_COLUMNS``): input = the anchor visit and every earlier one."""
    rows = tokens.visit_row[samples["visit_id"].to_numpy(np.int64)]
    if (rows < 0).any():
        raise ValueError(f"{int((rows < 0).sum())} task samples point at visits missing from the cohort")
    start, end = window_starts(tokens, rows, max_len)
    return TokenizedSamples(tokens=tokens, start=start, end=end,
                            sample_id=samples["sample_id"].to_numpy(np.int64),
                            label=samples["label"].to_numpy(np.int8),
                            split=samples["split"].astype(str).to_numpy(), max_visits=max_visits)


def tokenize_histories(tokens: CohortTokens, cohort: Cohort, max_len: int,
                       max_visits: int) -> TokenizedSamples:
    """One sequence per patient (its full history, most recent ``max_len`` tokens) for MLM.

    Patients whose window holds no real code (nothing to mask) are dropped. ``sample_id`` is the
    patient id and ``label`` is 0.
    """
    patients = tokens.visit_patient
    last = np.ones(len(patients), dtype=bool)
    last[:-1] = patients[:-1] != patients[1:]
    rows = np.flatnonzero(last)
    start, end = window_starts(tokens, rows, max_len)
    split_of = cohort.patients.set_index("patient_id")["split"].astype(str)
    pid = patients[rows]
    real_cum = np.concatenate([[0], np.cumsum(tokens.code > UNK)])
    keep = (real_cum[end] - real_cum[start]) > 0
    return TokenizedSamples(tokens=tokens, start=start[keep], end=end[keep], sample_id=pid[keep],
                            label=np.zeros(int(keep.sum()), np.int8),
                            split=split_of.reindex(pid[keep]).to_numpy(dtype=object).astype(str),
                            max_visits=max_visits)


def sorted_batches(lengths: np.ndarray, batch_size: int, indices: np.ndarray | None = None,
                   max_tokens: int | None = None) -> list[np.ndarray]:
    """Deterministic evaluation batches: sorted by length; at most ``max_tokens`` padded tokens each."""
    idx = np.arange(len(lengths)) if indices is None else np.asarray(indices)
    idx = idx[np.argsort(lengths[idx], kind="stable")]
    out: list[np.ndarray] = []
    lo = 0
    while lo < len(idx):
        hi = min(lo + batch_size, len(idx))
        if max_tokens:
            while hi - lo > 1 and (hi - lo) * int(lengths[idx[hi - 1]]) > max_tokens:
                hi = lo + max(1, (hi - lo) // 2)
        out.append(idx[lo:hi])
        lo = hi
    return out


def mask_for_mlm(batch: dict[str, torch.Tensor], code_levels: torch.Tensor, n_codes: int,
                 rng: np.random.Generator, rate: float = 0.15, mask_hierarchy: bool = False
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """BERT masking of code tokens: pick ``rate`` of real-code positions; 80% [MASK], 10% random, 10% kept.

    Returns the corrupted batch, the flat indices of the picked positions and their target code ids.
    With ``mask_hierarchy`` the hierarchy ids of [MASK] positions become the null id and a random
    replacement carries its own code's ids, so no level id reveals the code to be predicted.
    """
    codes = batch["codes"]
    real = (codes > UNK).numpy()
    pick = (rng.random(real.shape) < rate) & real
    if not pick.any():  # at least one target per batch
        rows, cols = np.nonzero(real)
        k = rng.integers(len(rows))
        pick[rows[k], cols[k]] = True
    flat = np.flatnonzero(pick)
    roll = rng.random(len(flat))
    to_mask, to_random = flat[roll < 0.8], flat[(roll >= 0.8) & (roll < 0.9)]
    random_codes = rng.integers(UNK + 1, n_codes, size=len(to_random)) if n_codes > UNK + 1 else \
        np.full(len(to_random), UNK + 1)
    new_codes = codes.clone().view(-1)
    targets = new_codes[torch.from_numpy(flat)].clone()
    new_codes[torch.from_numpy(to_mask)] = MASK
    new_codes[torch.from_numpy(to_random)] = torch.from_numpy(random_codes)
    out = dict(batch)
    out["codes"] = new_codes.view_as(codes)
    if mask_hierarchy:
        levels = batch["levels"].clone().view(-1, 3)
        levels[torch.from_numpy(to_mask)] = LEVEL_NULL
        levels[torch.from_numpy(to_random)] = code_levels[torch.from_numpy(random_codes)]
        out["levels"] = levels.view_as(batch["levels"])
    return out, torch.from_numpy(flat), targets
