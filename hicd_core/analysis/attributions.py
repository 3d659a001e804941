"""Integrated-gradients explanations of one patient's prediction, for HICD-BERT and HICD-Graph.

What is attributed (target = the task logit of the one sample; the model in eval mode, fp32):

* **HICD-BERT** -- Captum ``LayerIntegratedGradients`` over every embedding table at once (one
  multi-layer call): ``code``, each ENABLED level ``G0``/``G1``/``G2``, ``age``, ``position`` and
  ``segment``. Each token's attribution per component is summed over the embedding dimension.
  **Baseline** (:data:`BERT_BASELINE`): the same sequence with every code token replaced by
  ``[PAD]`` and every hierarchy id by the null id (both fixed zero vectors), and the age, position
  and segment ids of every token set to 0, the values a padding slot holds; the ``[CLS]`` token is
  kept whole and ``[SEP]`` keeps its code, so the baseline is "the visit structure with no
  diagnoses, ages or visit order". The padding mask is computed from the REAL input and passed
  through ``additional_forward_args`` (a mask derived from the baseline masks every key: NaN,
  stack-notes 5.2).
* **HICD-Graph** -- ``IntegratedGradients`` on the patient transformer's per-token node embeddings
  (``forward_from_embeddings``): each visit's code nodes and enabled ancestor nodes, the inputs of
  the masked-mean visit pooling. **Baseline** (:data:`GRAPH_BASELINE`): all-zero embeddings, which
  is the padding node's embedding, i.e. every node token replaced by padding; token and visit masks
  come from the real input. The straight path is integrated in two pieces (:data:`GRAPH_PATH_CUTS`).

Integrated gradients are complete: the attributions of a sample add up to
``F(input) - F(baseline)`` up to Captum's convergence ``delta`` (``sum(attr) - (F(x) - F(b))``),
which shrinks as ``n_steps`` grows. Every result carries that delta.

:func:`explain_patient` runs this for one patient under every trained setting of one model
family, with an in-process cache keyed by (run, cohort, task, sample, n_steps) so the page is
instant on a repeat visit. Outputs hold de-identified indices only (``patient_id``,
``sample_id``, ``visit_index``), never source identifiers or dates.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import threading
import time
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import pandas as pd
import torch

from hicd_core.cohort.schema import TEST, Cohort
from hicd_core.experiments.runstore import RUN_FILE, RunStore
from hicd_core.hierarchy import LEVELS, Setting, chapter_titles, describe, setting_rank
from hicd_core.hierarchy.icd10 import UNKNOWN, block_titles
from hicd_core.runtime import safe_csv

#: HICD-BERT attribution components, in display order (disabled levels are left out of results).
COMPONENTS = ("code", "G0", "G1", "G2", "age", "position", "segment")
DEFAULT_STEPS = 32
#: Torch intra-op threads while attributing (0 = leave torch's setting). One thread by default: an
#: IG batch (n_steps x one short sequence, d=64) is small, and on a 2-core machine shared with other
#: busy processes (a background sweep), two spinning OpenMP threads made one patient x 8 settings
#: ~8x slower (34 s vs 4 s wall at load average 5-7), while on an idle machine two threads save only
#: ~20% (0.71 s vs 0.86 s, model loading included; benchmarks/bench_attributions.py).
THREADS_ENV = "HICD_ATTRIBUTION_THREADS"

BERT_BASELINE = ("same sequence; every code token -> [PAD] and every hierarchy id -> null (zero vectors); "
                 "age, position and segment ids -> 0 (a padding slot's values); [CLS] kept whole and "
                 "[SEP] keeps its code; padding mask from the real input")
GRAPH_BASELINE = ("every code and ancestor node token -> the padding node (a zero embedding); token and "
                  "visit masks from the real input")

SPECIAL_TITLES = {"[CLS]": "classification token (start of the sequence)", "[SEP]": "end of a visit",
                  "[UNK]": "code not in the model's vocabulary", "[PAD]": "padding", "[MASK]": "mask"}
#: Attribution tables with one row per code token (HICD-BERT's IG; the counts baseline's exact shares).
TOKEN_MODELS = ("bert", "counts")
GRAPH_KIND_LEVEL = {"code": "code", "chapter": "G0", "block": "G1", "prefix": "G2", "category": "G2"}


# ============================================================================ results
@dataclass
class Attribution:
    """One sample's attributions under one trained model.

    Attributes:
        model: ``bert`` or ``graph``. run_id / setting / task / sample_id / patient_id: what was explained.
        table: HICD-BERT: one row per sequence position (``token_index`` 0 = ``[CLS]``) with
            ``visit_index``, ``position`` (the model's visit-position id), ``token``, ``code``,
            ``title``, ``chapter``, ``block``, ``category`` and one ``attr_<component>`` column per
            ENABLED component, plus ``attr_hierarchy`` (enabled levels), ``attr_diagnosis`` (code +
            levels) and ``attr_total``. HICD-Graph: one row per (visit, node) with ``visit_index``,
            ``recency``, ``node``, ``kind``, ``level``, ``title``, ``chapter``, ``block``, ``codes``
            and ``attribution``.
        components: the attributed components present in ``table``.
        logit, baseline_logit, prob: the task logit for the input and the baseline; sigmoid(logit).
        delta: Captum's convergence delta, ``sum(attributions) - (logit - baseline_logit)``.
        threshold: the model's validation-chosen decision threshold.
    """

    model: str
    run_id: str
    setting: str
    task: str
    sample_id: int
    patient_id: int
    n_steps: int
    table: pd.DataFrame
    components: tuple[str, ...]
    logit: float
    baseline_logit: float
    prob: float
    delta: float
    threshold: float
    baseline: str
    seconds: float = 0.0

    @property
    def attr_sum(self) -> float:
        """Sum of every attribution (equals ``logit - baseline_logit + delta``)."""
        cols = [f"attr_{c}" for c in self.components] if self.model in TOKEN_MODELS else ["attribution"]
        return float(self.table[cols].to_numpy(np.float64).sum())

    @property
    def relative_delta(self) -> float:
        """|delta| as a share of |logit - baseline_logit| (how far from complete the attributions are)."""
        gap = abs(self.logit - self.baseline_logit)
        return abs(self.delta) / gap if gap > 1e-9 else (0.0 if abs(self.delta) < 1e-6 else float("inf"))

    def component_totals(self) -> pd.Series:
        """Total attribution per component (HICD-BERT, counts) or per node kind (HICD-Graph)."""
        if self.model in TOKEN_MODELS:
            return pd.Series({c: float(self.table[f"attr_{c}"].sum()) for c in self.components},
                             name=self.setting)
        totals = self.table.groupby("kind", sort=False)["attribution"].sum()
        return totals.rename(self.setting)


@dataclass
class PatientReport:
    """One patient sample explained under every trained setting of one model family."""

    model: str
    task: str
    sample_id: int
    patient_id: int
    label: int
    anchor_visit_index: int
    n_steps: int
    synthetic: bool
    cohort_label: str
    timeline: pd.DataFrame
    risks: pd.DataFrame
    attributions: dict[str, Attribution]
    seconds: float = 0.0
    cached: bool = False
    notes: list[str] = field(default_factory=list)

    def component_totals(self) -> pd.DataFrame:
        """Settings x components (NaN where a component does not exist in that setting)."""
        frame = pd.DataFrame({s: a.component_totals() for s, a in self.attributions.items()}).T
        order = [c for c in (*COMPONENTS, *GRAPH_KIND_LEVEL) if c in frame.columns]
        return frame[list(dict.fromkeys(order))]


# ============================================================================ caches
#: Captum hooks live on the modules: one integrated-gradients pass at a time per process. Held for a
#: whole pass (seconds), so the cache dicts have their own short lock: a cache hit never waits on it.
_LOCK = threading.RLock()
_CACHE_LOCK = threading.Lock()
_ATTR_CACHE: OrderedDict[tuple, Attribution] = OrderedDict()
_MODEL_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_SLICE_CACHE: OrderedDict[tuple, Cohort] = OrderedDict()
_PRED_CACHE: OrderedDict[tuple, dict[int, float]] = OrderedDict()
ATTR_CACHE_SIZE, MODEL_CACHE_SIZE, SLICE_CACHE_SIZE = 512, 24, 64


def _remember(cache: OrderedDict, key: tuple, value: Any, size: int) -> Any:
    with _CACHE_LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)
    return value


def _recall(cache: OrderedDict, key: tuple) -> Any:
    with _CACHE_LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    return None


def clear_caches() -> None:
    """Forget cached models, patient slices and attributions (e.g. after a store is rebuilt)."""
    with _CACHE_LOCK:
        _ATTR_CACHE.clear()
        _MODEL_CACHE.clear()
        _SLICE_CACHE.clear()
        _PRED_CACHE.clear()


def run_info(store: RunStore, run_id: str) -> dict:
    """``run.json`` of a finished run (raises FileNotFoundError naming the run otherwise)."""
    path = store.run_dir(run_id) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"run {run_id} is not finished in the store {store.root}")
    return json.loads(path.read_text())


def load_model(store: RunStore, run_id: str, device: str = "cpu", *, family: str | None = None) -> Any:
    """The trained model of a run, loaded once per process (keyed by its directory and mtime).

    ``family`` (``bert``/``graph``, the run spec's ``model``) saves reading ``run.json`` when the
    caller already has it; it is read only when the model is not cached yet.
    """
    from hicd_core.experiments.families import FAMILIES

    path = store.run_dir(run_id) / "model"
    stamp = (path / "config.json").stat().st_mtime_ns if (path / "config.json").exists() else 0
    key = (str(path), stamp, device)
    model = _recall(_MODEL_CACHE, key)
    if model is None:
        family = family or run_info(store, run_id)["spec"]["model"]
        loaded = FAMILIES[family].load(path, device)
        model = _remember(_MODEL_CACHE, key, loaded, MODEL_CACHE_SIZE)
    return model


def patient_slice(cohort: Cohort, patient_id: int) -> Cohort:
    """A cohort holding one patient only: tokenising it costs microseconds, not the whole cohort."""
    key = (cohort.fingerprint, id(cohort.diagnoses), int(patient_id))
    found = _recall(_SLICE_CACHE, key)
    if found is not None:
        return found
    pid = int(patient_id)
    visits = cohort.visits[cohort.visits["patient_id"].to_numpy() == pid]
    diagnoses = cohort.diagnoses[cohort.diagnoses["patient_id"].to_numpy() == pid]
    patients = cohort.patients[cohort.patients["patient_id"].to_numpy() == pid]
    if visits.empty:
        raise KeyError(f"patient {pid} is not in cohort {cohort.label}")
    tasks = {name: frame[frame["patient_id"].to_numpy() == pid] for name, frame in cohort.tasks.items()}
    sliced = Cohort(site=cohort.site, patients=patients, visits=visits, diagnoses=diagnoses, tasks=tasks,
                    fingerprint=cohort.fingerprint, meta=cohort.meta)
    return _remember(_SLICE_CACHE, key, sliced, SLICE_CACHE_SIZE)


def _sample_row(cohort: Cohort, task: str, sample_id: int) -> pd.Series:
    if task not in cohort.tasks:
        raise KeyError(f"cohort {cohort.label} has no task {task!r}; it has {sorted(cohort.tasks)}")
    frame = cohort.tasks[task]
    hit = frame[frame["sample_id"].to_numpy() == int(sample_id)]
    if hit.empty:
        raise KeyError(f"task {task!r} has no sample {sample_id}")
    return hit.iloc[0]


def _title(code: str) -> str:
    if not code or code == UNKNOWN:
        return ""
    if code.startswith("CH:"):
        return chapter_titles().get(code[3:], "")
    return describe(code) or block_titles().get(code, "")


@contextlib.contextmanager
def _torch_threads() -> Iterator[None]:
    """Run the block with ``$HICD_ATTRIBUTION_THREADS`` (default 1) torch threads, then restore."""
    try:
        want = int(os.environ.get(THREADS_ENV, "1") or 1)
    except ValueError:
        want = 1
    old = torch.get_num_threads()
    if want <= 0 or want == old:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ============================================================================ HICD-BERT
def _bert_baseline(codes: torch.Tensor, ages: torch.Tensor, positions: torch.Tensor, segments: torch.Tensor,
                   levels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:data:`BERT_BASELINE` for a batch of model inputs."""
    from hicd_core.models.bert import CLS, LEVEL_NULL, PAD, SEP

    cls = codes == CLS
    keep_code = cls | (codes == SEP)
    return (torch.where(keep_code, codes, PAD), torch.where(cls, ages, 0), torch.where(cls, positions, 0),
            torch.where(cls, segments, 0), torch.full_like(levels, LEVEL_NULL))


def bert_lig(net: torch.nn.Module, inputs: tuple[torch.Tensor, ...], pad_mask: torch.Tensor,
             n_steps: int = DEFAULT_STEPS
             ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Multi-layer LIG over every embedding table of a :class:`HicdBert` for a batch of samples.

    Returns ``({component: [B, L] attributions}, logits [B], baseline logits [B], deltas [B])``.
    """
    from captum.attr import LayerIntegratedGradients

    modules = net.embedding_modules()
    names = list(modules)
    baselines = _bert_baseline(*inputs)
    with _LOCK, _torch_threads(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Multiple layers provided")
        net.eval()
        lig = LayerIntegratedGradients(net, [modules[n] for n in names])
        attrs, delta = lig.attribute(inputs, baselines=baselines, additional_forward_args=(pad_mask,),
                                     n_steps=n_steps, return_convergence_delta=True)
        with torch.no_grad():  # input and baseline in one forward pass
            both = net(*(torch.cat([x, b]) for x, b in zip(inputs, baselines, strict=True)),
                       torch.cat([pad_mask, pad_mask])).float()
        logits, base = both[: len(pad_mask)], both[len(pad_mask):]
    attrs = [a[0] if isinstance(a, tuple | list) else a for a in attrs]  # one tensor per layer
    per = {name: a.detach().float().sum(-1).cpu().numpy() for name, a in zip(names, attrs, strict=True)}
    return per, logits.cpu().numpy(), base.cpu().numpy(), delta.detach().float().cpu().numpy().reshape(-1)


def _bert_token_frame(sliced: Cohort, vocab: Any, tokens: Any) -> pd.DataFrame:
    """The diagnosis row behind each token of the patient's flat token array (-1 for [SEP]).

    Mirrors the ordering of :func:`hicd_core.models.bert_data.cohort_tokens` (visits by
    ``visit_index``, codes by ``seq``, then ``[SEP]``), checked against the token ids.
    """
    visits = sliced.visits.sort_values(["patient_id", "visit_index"], kind="stable")
    visit_ids = visits["visit_id"].to_numpy(np.int64)
    row_of = pd.Index(visit_ids).get_indexer(sliced.diagnoses["visit_id"].to_numpy(np.int64))
    keep = np.flatnonzero(row_of >= 0)
    order = np.lexsort((sliced.diagnoses["seq"].to_numpy()[keep], row_of[keep]))
    diag_rows, drow = keep[order], row_of[keep][order]
    n_codes = np.bincount(drow, minlength=len(visit_ids))
    offset = np.zeros(len(visit_ids), np.int64)
    offset[1:] = np.cumsum(n_codes + 1)[:-1]
    first = np.zeros(len(visit_ids), np.int64)
    first[1:] = np.cumsum(n_codes)[:-1]
    code_pos = offset[drow] + np.arange(len(drow)) - first[drow]
    tok_diag = np.full(tokens.n_tokens, -1, np.int64)
    tok_diag[code_pos] = diag_rows
    diag = sliced.diagnoses
    icd = diag["icd10"].astype(object).where(diag["icd10"].notna(), None).to_numpy()
    frame = pd.DataFrame({"diag_row": tok_diag})
    has = tok_diag >= 0
    frame["code"] = ""
    frame.loc[has, "code"] = [str(c) if c is not None else "" for c in icd[tok_diag[has]]]
    for col in ("chapter", "block", "category"):
        frame[col] = ""
        frame.loc[has, col] = diag[col].astype(str).to_numpy()[tok_diag[has]]
    expected = np.array([vocab.code_id(c or None) for c in frame.loc[has, "code"]], np.int64)
    if not np.array_equal(expected, tokens.code[has].astype(np.int64)):
        raise RuntimeError("token order differs from the tokeniser's; attribution rows would be mislabelled")
    return frame


def _bert_table(trained: Any, sliced: Cohort, task: str, sample_ids: np.ndarray
                ) -> tuple[list[pd.DataFrame], dict[str, torch.Tensor]]:
    """Per-sample token tables (labels only) and the padded model inputs for ``sample_ids``."""
    from hicd_core.models.bert import SPECIAL_TOKENS
    from hicd_core.models.bert_data import cohort_tokens, tokenize_task

    vocab, config = trained.vocab, trained.config
    tokens = cohort_tokens(sliced, vocab)
    frame = sliced.tasks[task]
    frame = frame.set_index("sample_id").loc[sample_ids].reset_index()
    samples = tokenize_task(tokens, frame, config.max_len, config.max_visits)
    samples.pad_multiple = 1  # no extra padding: one row per real position
    batch = samples.batch(np.arange(len(samples)))
    token_frame = _bert_token_frame(sliced, vocab, tokens)
    level_names = list(config.setting.levels)
    tables = []
    for i in range(len(samples)):
        start, end = int(samples.start[i]), int(samples.end[i])
        n = end - start + 1
        ids = batch["codes"][i, :n].numpy()
        rows = pd.concat([pd.DataFrame({"diag_row": [-1], "code": [""], "chapter": [""], "block": [""],
                                        "category": [""]}),
                          token_frame.iloc[start:end]], ignore_index=True)
        table = pd.DataFrame({
            "token_index": np.arange(n),
            "visit_index": np.r_[-1, tokens.visit_number[start:end]].astype(np.int64),
            "position": batch["positions"][i, :n].numpy(),
            "age": batch["ages"][i, :n].numpy(),
            "token": [SPECIAL_TOKENS[t] if t < len(SPECIAL_TOKENS) else vocab.codes[t] for t in ids],
            "code": rows["code"].to_numpy(),
        })
        table["title"] = [_title(c) if c else SPECIAL_TITLES.get(t, "")
                          for c, t in zip(table["code"], table["token"], strict=True)]
        for col in ("chapter", "block", "category"):
            table[col] = rows[col].to_numpy()
        for name in level_names:
            k = LEVELS.index(name)
            lv = batch["levels"][i, :n, k].numpy()
            table[f"{name}_token"] = np.where(lv > 0, np.asarray(vocab.levels[name], dtype=object)[lv], "")
        tables.append(table)
    return tables, batch


def bert_attributions(trained: Any, cohort: Cohort, task: str, sample_ids: Iterable[int], *,
                      n_steps: int = DEFAULT_STEPS, run_id: str = "", setting: str | None = None
                      ) -> list[Attribution]:
    """HICD-BERT attributions for samples of ONE patient or several (one LIG call per patient)."""
    from hicd_core.models.bert_data import MODEL_INPUTS

    ids = np.asarray(list(sample_ids), dtype=np.int64)
    frame = cohort.tasks[task]
    owners = frame.set_index("sample_id").loc[ids, "patient_id"].to_numpy(np.int64)
    setting = setting or trained.setting.key
    net = trained.model
    comps = tuple(net.embedding_modules())
    out: dict[int, Attribution] = {}
    for pid in pd.unique(owners):
        started = time.perf_counter()
        mine = ids[owners == pid]
        tables, batch = _bert_table(trained, patient_slice(cohort, int(pid)), task, mine)
        inputs = tuple(batch[name].to(trained.device) for name in MODEL_INPUTS[:-1])
        per, logits, base, delta = bert_lig(net, inputs, batch["pad_mask"].to(trained.device), n_steps)
        seconds = (time.perf_counter() - started) / len(mine)
        for i, sid in enumerate(mine):
            table = tables[i]
            n = len(table)
            for comp in comps:
                table[f"attr_{comp}"] = per[comp][i, :n].astype(np.float64)
            levels = [c for c in comps if c in LEVELS]
            table["attr_hierarchy"] = table[[f"attr_{c}" for c in levels]].sum(1) if levels else 0.0
            table["attr_diagnosis"] = table["attr_code"] + table["attr_hierarchy"]
            table["attr_total"] = table[[f"attr_{c}" for c in comps]].sum(1)
            out[int(sid)] = Attribution(
                model="bert", run_id=run_id, setting=setting, task=task, sample_id=int(sid),
                patient_id=int(pid), n_steps=n_steps, table=table, components=comps, logit=float(logits[i]),
                baseline_logit=float(base[i]), prob=float(1 / (1 + np.exp(-logits[i]))),
                delta=float(delta[i]), threshold=float(trained.threshold), baseline=BERT_BASELINE,
                seconds=seconds)
    return [out[int(s)] for s in ids]


# ============================================================================ HICD-Graph
#: The straight-line IG path from zero is integrated in two pieces, [0, 0.05] and [0.05, 1], each with
#: half of the steps: the visit LayerNorm makes the model almost scale-invariant in a visit's
#: embeddings, so most of the change happens near zero. Same path and definition, with finer
#: quadrature where it matters. The convergence delta this reaches is measured per setting
#: (``max_abs_delta`` / ``max_relative_delta`` in benchmarks/bench_attributions.py, and the test
#: suite's delta bound); no single-pass alternative is benchmarked against it.
GRAPH_PATH_CUTS = (0.0, 0.05, 1.0)


def graph_lig(net: torch.nn.Module, tokens: torch.Tensor, token_mask: torch.Tensor, visit_mask: torch.Tensor,
              n_steps: int = DEFAULT_STEPS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integrated gradients on the per-token node embeddings [B, V, C, D], from all zeros.

    Plain IG on :meth:`PatientTransformer.forward_from_embeddings` rather than a layer hook: the
    model's ``forward`` embeds only the real visits (a flattened [n_visits, C] look-up), whose
    output has no batch dimension for Captum's layer methods to split. The zero baseline is the
    padding node's embedding, so this equals LIG with every token replaced by the padding node.
    The path is split at :data:`GRAPH_PATH_CUTS`; attributions and Captum's deltas of the pieces
    add up (the deltas telescope to ``sum(attr) - (F(x) - F(0))``).
    Returns ``(attributions [B, V, C], logits [B], baseline logits [B], deltas [B])``.
    """
    from captum.attr import IntegratedGradients

    pieces = len(GRAPH_PATH_CUTS) - 1
    steps = max(2, -(-int(n_steps) // pieces))
    with _LOCK, _torch_threads():
        net.eval()
        with torch.no_grad():
            emb = net.node_embedding(tokens).float()
        zeros = torch.zeros_like(emb)
        ig = IntegratedGradients(net.forward_from_embeddings)
        attr, delta = torch.zeros_like(emb), torch.zeros(len(tokens))
        for lo, hi in itertools.pairwise(GRAPH_PATH_CUTS):
            part, part_delta = ig.attribute(emb * hi, baselines=emb * lo,
                                            additional_forward_args=(token_mask, visit_mask), n_steps=steps,
                                            return_convergence_delta=True)
            attr += part.detach()
            delta += part_delta.detach().float().cpu().reshape(-1)
        with torch.no_grad():  # input and baseline in one forward pass
            both = net.forward_from_embeddings(torch.cat([emb, zeros]), torch.cat([token_mask, token_mask]),
                                               torch.cat([visit_mask, visit_mask])).float()
        logits, base = both[: len(tokens)], both[len(tokens):]
    return (attr.float().sum(-1).cpu().numpy(), logits.cpu().numpy(), base.cpu().numpy(), delta.numpy())


def _graph_node_info(graph: Any) -> pd.DataFrame:
    """Node name, kind, level, title, chapter and block for every graph node (cached on the graph)."""
    cached = getattr(graph, "_attribution_nodes", None)
    if cached is not None:
        return cached
    nodes = graph.nodes
    kind = nodes["kind"].astype(str).to_numpy()
    code = nodes["code"].astype(str).to_numpy()
    block = np.where(kind == "block", code, "")
    is_code = kind == "code"
    if is_code.any():
        from hicd_core.hierarchy.icd10 import code_index, tree_frame

        tree, index = tree_frame(), code_index()
        rows = [index.get(c, -1) for c in code[is_code]]
        block[is_code] = [str(tree["block"].iat[r]) if r >= 0 else "" for r in rows]
    info = pd.DataFrame({"node_id": nodes["node_id"].to_numpy(np.int64), "node": nodes["name"].astype(str),
                         "kind": kind, "level": [GRAPH_KIND_LEVEL.get(k, k) for k in kind],
                         "node_code": code, "title": nodes["title"].astype(str).to_numpy(),
                         "chapter": nodes["chapter"].astype(str).to_numpy(), "block": block})
    graph._attribution_nodes = info
    return info


def graph_attributions(trained: Any, cohort: Cohort, task: str, sample_ids: Iterable[int], *,
                       n_steps: int = DEFAULT_STEPS, run_id: str = "", setting: str | None = None
                       ) -> list[Attribution]:
    """HICD-Graph attributions over each visit's code and ancestor node embeddings."""
    from hicd_core.models.graph_build import node_key_column
    from hicd_core.models.graph_train import visit_index

    ids = np.asarray(list(sample_ids), dtype=np.int64)
    frame = cohort.tasks[task].set_index("sample_id")
    owners = frame.loc[ids, "patient_id"].to_numpy(np.int64)
    setting = setting or trained.graph.setting.key
    info = _graph_node_info(trained.graph)
    key_col = node_key_column(trained.graph.node_level)
    out: dict[int, Attribution] = {}
    for pid in pd.unique(owners):
        started = time.perf_counter()
        mine = ids[owners == pid]
        sliced = patient_slice(cohort, int(pid))
        index = visit_index(sliced, trained.graph)
        windows = index.windows(frame.loc[mine, "visit_id"].to_numpy(np.int64), trained.config.max_visits)
        tokens, token_mask, visit_mask = (torch.from_numpy(a).to(trained.device)
                                          for a in index.batch(windows))
        attr, logits, base, delta = graph_lig(trained.model, tokens, token_mask, visit_mask, n_steps)
        visit_of_row = sliced.visits.set_index("visit_id")["visit_index"].reindex(index.visit_ids).to_numpy()
        diag = sliced.diagnoses
        codes_by = (diag.assign(_key=diag[key_col].astype(str), _code=diag["icd10"].astype(str))
                    .groupby(["visit_id", "_key"])["_code"].agg(lambda s: ", ".join(dict.fromkeys(s))))
        seconds = (time.perf_counter() - started) / len(mine)
        for i, sid in enumerate(mine):
            slots, cols = np.nonzero(token_mask[i].cpu().numpy())
            node_ids = tokens[i].cpu().numpy()[slots, cols]
            rows = windows[i][slots]
            n_real = int(visit_mask[i].sum())
            table = info.iloc[node_ids].reset_index(drop=True)
            table.insert(0, "visit_index", visit_of_row[rows].astype(np.int64))
            table.insert(1, "recency", (n_real - 1 - slots).astype(np.int64))
            vids = index.visit_ids[rows]
            table["codes"] = [codes_by.get((v, c), "") if k == "code" else ""
                              for v, c, k in zip(vids, table["node_code"], table["kind"], strict=True)]
            table["attribution"] = attr[i][slots, cols].astype(np.float64)
            out[int(sid)] = Attribution(
                model="graph", run_id=run_id, setting=setting, task=task, sample_id=int(sid),
                patient_id=int(pid), n_steps=n_steps, table=table,
                components=tuple(dict.fromkeys(table["kind"])),
                logit=float(logits[i]), baseline_logit=float(base[i]),
                prob=float(1 / (1 + np.exp(-logits[i]))), delta=float(delta[i]),
                threshold=float(trained.threshold), baseline=GRAPH_BASELINE, seconds=seconds)
    return [out[int(s)] for s in ids]


def attribute(trained: Any, cohort: Cohort, task: str, sample_ids: Iterable[int], *,
              n_steps: int = DEFAULT_STEPS, run_id: str = "", setting: str | None = None
              ) -> list[Attribution]:
    """Dispatch on the model type (HICD-BERT, HICD-Graph, or the counts baseline's exact shares)."""
    if hasattr(trained, "estimator"):
        from hicd_core.analysis.counts_attributions import counts_attributions as fn
    else:
        fn = graph_attributions if hasattr(trained, "graph") else bert_attributions
    return fn(trained, cohort, task, sample_ids, n_steps=n_steps, run_id=run_id, setting=setting)


def explain_sample(store: RunStore, run_id: str, cohort: Cohort, task: str, sample_id: int,
                   n_steps: int = DEFAULT_STEPS, *, spec: Mapping[str, Any] | None = None
                   ) -> tuple[Attribution, bool]:
    """Attributions of one sample under one run, cached; returns ``(attribution, was_cached)``.

    ``spec`` is the run's ``run.json`` spec when the caller has read it already (else read here,
    on a cache miss only).
    """
    key = (run_id, cohort.fingerprint, task, int(sample_id), int(n_steps))
    hit = _recall(_ATTR_CACHE, key)
    if hit is not None:
        return hit, True
    spec = spec if spec is not None else run_info(store, run_id)["spec"]
    trained = load_model(store, run_id, family=spec["model"])
    result = attribute(trained, cohort, task, [sample_id], n_steps=n_steps, run_id=run_id,
                       setting=spec["setting"])[0]
    return _remember(_ATTR_CACHE, key, result, ATTR_CACHE_SIZE), False


# ============================================================================ patient report
def patient_timeline(cohort: Cohort, patient_id: int, up_to_visit_index: int | None = None) -> pd.DataFrame:
    """One row per diagnosis of the patient's visits (up to the anchor): de-identified, no dates.

    Columns: ``visit_index``, ``day`` (days since the patient's first visit), ``visit_type``, ``age``,
    ``seq``, ``code`` (ICD-10-CM, or the raw code when unresolved), ``title``, ``chapter``, ``block``,
    ``category``, ``status``.
    """
    sliced = patient_slice(cohort, patient_id)
    visits = sliced.visits.sort_values("visit_index")
    if up_to_visit_index is not None:
        visits = visits[visits["visit_index"] <= up_to_visit_index]
    vcols = visits[["visit_id", "visit_index"]].copy()
    vcols["day"] = (visits["start_minutes"].astype(float) / 1440.0).round(1).to_numpy()
    vcols["visit_type"] = visits["visit_type"].astype(str).to_numpy() if "visit_type" in visits else ""
    vcols["age"] = visits["age"].astype(float).round(0).to_numpy() if "age" in visits else np.nan
    diag = sliced.diagnoses[["visit_id", "seq", "raw_code", "icd10", "chapter", "block", "category",
                             "status"]]
    frame = vcols.merge(diag, on="visit_id", how="left").sort_values(["visit_index", "seq"], kind="stable")
    icd, raw = frame["icd10"].astype(object), frame["raw_code"].astype(object)
    frame["code"] = np.where(icd.notna(), icd.astype(str), np.where(raw.notna(), raw.astype(str), ""))
    frame["title"] = [_title(c) if ok else ("(unresolved code)" if c else "(no diagnosis codes)")
                      for c, ok in zip(frame["code"], icd.notna(), strict=True)]
    cols = ["visit_index", "day", "visit_type", "age", "seq", "code", "title", "chapter", "block", "category",
            "status"]
    frame = frame[cols].astype({"chapter": str, "block": str, "category": str, "status": str})
    return frame.reset_index(drop=True)


def _calibrated(store: RunStore, run_id: str, prob: float) -> float:
    """``prob`` through the run's Platt recalibration (fitted on validation, ``metrics.json``); NaN
    for runs stored before recalibration existed. The raw value stays the model's output."""
    from hicd_core.checksums import read_verified
    from hicd_core.experiments.runstore import METRICS_FILE
    from hicd_core.stats import apply_platt

    path = store.run_dir(run_id) / METRICS_FILE
    key = ("calibration", str(path), path.stat().st_mtime_ns)
    calibration = _recall(_PRED_CACHE, key)
    if calibration is None:  # read (and verified) once per run, like the stored predictions
        found = json.loads(read_verified(store.run_dir(run_id), METRICS_FILE)).get("calibration") or {}
        calibration = _remember(_PRED_CACHE, key, found, MODEL_CACHE_SIZE)
    return float(apply_platt([prob], calibration)[0]) if calibration else float("nan")


def _stored_prob(store: RunStore, run_id: str, sample_id: int) -> float:
    """The run's stored test prediction for the sample (NaN outside the test split)."""
    from hicd_core.experiments.runstore import PREDICTIONS_FILE

    path = store.run_dir(run_id) / PREDICTIONS_FILE
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return float("nan")
    probs = _recall(_PRED_CACHE, key)
    if probs is None:
        pred = store.predictions(run_id)
        table = dict(zip(pred["sample_id"].astype(int), pred["prob"].astype(float), strict=True))
        probs = _remember(_PRED_CACHE, key, table, MODEL_CACHE_SIZE)
    return float(probs.get(int(sample_id), float("nan")))


def _ordered(run_ids_by_setting: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted(run_ids_by_setting.items(), key=lambda kv: setting_rank(kv[0]))


def explain_patient(store: RunStore, run_ids_by_setting: Mapping[str, str], cohort: Cohort, task: str,
                    patient_sample_id: int, n_steps: int = DEFAULT_STEPS) -> PatientReport:
    """One patient sample under every given setting of ONE model family: risks side by side plus
    attributions, each cached in-process by (run, cohort, task, sample, n_steps); models are loaded
    once per process. ``report.cached`` says whether every setting came from that cache.
    """
    started = time.perf_counter()
    row = _sample_row(cohort, task, patient_sample_id)
    specs = {r: run_info(store, r)["spec"] for r in run_ids_by_setting.values()}  # one read per run
    families = {spec["model"] for spec in specs.values()}
    if len(families) != 1:
        raise ValueError(f"explain_patient needs runs of one model family, got {sorted(families)}")
    attributions: dict[str, Attribution] = {}
    risk_rows, all_cached = [], True
    for setting, run_id in _ordered(run_ids_by_setting):
        attr, was_cached = explain_sample(store, run_id, cohort, task, int(patient_sample_id), n_steps,
                                          spec=specs[run_id])
        all_cached &= was_cached
        attributions[setting] = attr
        risk_rows.append({"setting": setting, "setting_label": Setting(setting).label, "run_id": run_id,
                          "prob": attr.prob, "prob_calibrated": _calibrated(store, run_id, attr.prob),
                          "stored_prob": _stored_prob(store, run_id, patient_sample_id),
                          "threshold": attr.threshold, "predicted_positive": attr.prob >= attr.threshold,
                          "logit": attr.logit, "baseline_logit": attr.baseline_logit, "delta": attr.delta,
                          "relative_delta": attr.relative_delta, "seconds": attr.seconds})
    notes = []
    if cohort.synthetic:
        notes.append("SYNTHETIC cohort: generated data, not real patients.")
    return PatientReport(
        model=families.pop(), task=task, sample_id=int(patient_sample_id), patient_id=int(row["patient_id"]),
        label=int(row["label"]), anchor_visit_index=int(row["visit_index"]), n_steps=int(n_steps),
        synthetic=cohort.synthetic, cohort_label=cohort.label,
        timeline=patient_timeline(cohort, int(row["patient_id"]), int(row["visit_index"])),
        risks=pd.DataFrame(risk_rows), attributions=attributions, seconds=time.perf_counter() - started,
        cached=all_cached, notes=notes)


def attribution_samples(cohort: Cohort, task: str, n: int, seed: int = 0) -> list[int]:
    """``n`` test-split sample ids of a task, drawn with a fixed seed (the same every visit)."""
    samples = cohort.tasks[task]
    ids = samples.loc[samples["split"] == TEST, "sample_id"].to_numpy()
    if len(ids) > n:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False))
    return [int(i) for i in ids]


# ============================================================================ roll-ups
ROLLUP_ROOT = "ALL"


def _paths(attr: Attribution, value: str) -> pd.DataFrame:
    """One entry per attributed token/node: its value and its path (chapter, block, category, code)."""
    t = attr.table
    if attr.model in TOKEN_MODELS:
        col = {"diagnosis": "attr_diagnosis", "total": "attr_total"}.get(value, f"attr_{value}")
        if col not in t:
            raise KeyError(f"no attribution column {col!r} in this setting ({', '.join(attr.components)})")
        rows = t[t["code"] != ""]
        # Rows of unresolved codes: the code column is empty, but the chapter says UNK.
        unresolved = t[(t["code"] == "") & (t["chapter"] == UNKNOWN)]
        rows = pd.concat([rows, unresolved])
        return pd.DataFrame({"chapter": rows["chapter"], "block": rows["block"], "category": rows["category"],
                             "code": rows["code"], "prefix": "", "value": rows[col].astype(float)})
    kind = t["kind"].to_numpy()
    is_code = kind == "code"
    return pd.DataFrame({
        "chapter": t["chapter"].to_numpy(),
        "block": np.where(is_code | (kind == "block"), t["block"].to_numpy(), ""),
        "category": np.where(is_code, t["node_code"].to_numpy(), ""),
        "code": "", "prefix": np.where(kind == "prefix", t["node_code"].to_numpy(), ""),
        "value": t["attribution"].astype(float).to_numpy()})


def rollup_tree(attr: Attribution, value: str = "diagnosis") -> pd.DataFrame:
    """Attributions summed up the ICD tree: code -> category -> block -> chapter -> ``ALL``.

    HICD-BERT: each code token's ``value`` (``diagnosis`` = code + enabled levels, ``total``, or a
    component name). HICD-Graph: code nodes sit at their category; chapter, block and prefix nodes
    count at their own node (prefix groups hang under their chapter). Columns ``id`` (tree-page ids
    ``CH:IX``, ``BL:I20-I25``, ``CA:I21``, ``CO:I214``; ``PX:`` for prefix groups), ``parent``,
    ``level``, ``code``, ``title``, ``chapter``, ``value`` (signed sum), ``size`` (sum of |value|,
    so a sunburst with ``branchvalues='total'`` is consistent) and ``n`` (entries below).
    """
    paths = _paths(attr, value)
    records: dict[str, dict[str, Any]] = {}

    def add(node_id: str, parent: str, level: str, code: str, chapter: str, v: float) -> None:
        rec = records.get(node_id)
        if rec is None:
            rec = records[node_id] = {"id": node_id, "parent": parent, "level": level, "code": code,
                                      "chapter": chapter, "value": 0.0, "size": 0.0, "n": 0}
        rec["value"] += v
        rec["size"] += abs(v)
        rec["n"] += 1

    for chapter, block, category, code, prefix, v in paths.itertuples(index=False):
        chapter = chapter or UNKNOWN
        add(ROLLUP_ROOT, "", "root", ROLLUP_ROOT, "", v)
        add(f"CH:{chapter}", ROLLUP_ROOT, "chapter", chapter, chapter, v)
        parent = f"CH:{chapter}"
        if prefix:
            add(f"PX:{prefix}", parent, "prefix", prefix, chapter, v)
            continue
        if block and block != UNKNOWN:
            add(f"BL:{block}", parent, "block", block, chapter, v)
            parent = f"BL:{block}"
        if category and category != UNKNOWN:
            add(f"CA:{category}", parent, "category", category, chapter, v)
            parent = f"CA:{category}"
        if code and code != category:
            add(f"CO:{code}", parent, "code", code, chapter, v)
    frame = pd.DataFrame(list(records.values()), columns=["id", "parent", "level", "code", "chapter", "value",
                                                          "size", "n"])
    titles = []
    for level, code in zip(frame["level"], frame["code"], strict=True):
        if level == "root":
            titles.append("all attributed diagnoses")
        elif level == "chapter":
            titles.append(chapter_titles().get(code, ""))
        elif level == "prefix":
            titles.append(f"codes starting {code[:2]}")
        else:
            titles.append(_title(code))
    frame.insert(4, "title", titles)
    return frame


def level_totals(attr: Attribution) -> pd.Series:
    """Total attribution per tree level present in :func:`rollup_tree` (chapters sum to ``ALL``)."""
    tree = rollup_tree(attr)
    return tree.groupby("level", sort=False)["value"].sum()


def mean_attribution_by_code(store: RunStore, run_id: str, cohort: Cohort, task: str,
                             sample_ids: Iterable[int], n_steps: int = DEFAULT_STEPS) -> pd.DataFrame:
    """Mean attribution per tree node over several samples (for colouring the ICD tree).

    Every occurrence of a code (HICD-BERT: the code token's code + level attribution; HICD-Graph:
    the code node) counts once; a category / block / chapter averages every occurrence below it.
    Columns: ``id`` (tree-page node id), ``level``, ``code``, ``mean_attribution``, ``n``,
    ``n_samples``. Costs one IG pass per patient (batched over that patient's samples).
    """
    ids = list(dict.fromkeys(int(s) for s in sample_ids))
    trained = load_model(store, run_id)
    results = attribute(trained, cohort, task, ids, n_steps=n_steps, run_id=run_id)
    sums: dict[str, list[float]] = {}
    levels: dict[str, tuple[str, str]] = {}
    for attr in results:
        tree = rollup_tree(attr)
        for node_id, level, code, v, n in tree[["id", "level", "code", "value", "n"]].itertuples(index=False):
            acc = sums.setdefault(node_id, [0.0, 0, 0])
            acc[0] += v
            acc[1] += n
            acc[2] += 1
            levels[node_id] = (level, code)
    rows = [{"id": k, "level": levels[k][0], "code": levels[k][1], "mean_attribution": s / max(n, 1), "n": n,
             "n_samples": m} for k, (s, n, m) in sums.items()]
    return pd.DataFrame(rows, columns=["id", "level", "code", "mean_attribution", "n", "n_samples"])


# ============================================================================ downloads
def _report_meta(report: PatientReport) -> dict[str, Any]:
    return {"model": report.model, "task": report.task, "sample_id": report.sample_id,
            "patient_index": report.patient_id, "label": report.label,
            "anchor_visit_index": report.anchor_visit_index, "n_steps": report.n_steps,
            "synthetic": report.synthetic, "cohort": report.cohort_label,
            "baseline": next(iter(report.attributions.values())).baseline if report.attributions
            else (BERT_BASELINE if report.model == "bert" else GRAPH_BASELINE),
            "settings": {s: {"run_id": a.run_id, "prob": a.prob, "logit": a.logit,
                             "baseline_logit": a.baseline_logit, "delta": a.delta, "threshold": a.threshold,
                             "components": list(a.components)} for s, a in report.attributions.items()},
            "notes": report.notes,
            "privacy": "de-identified indices only (patient_index, sample_id, visit_index); no source ids, "
                       "no dates"}


def report_zip(report: PatientReport) -> bytes:
    """ZIP of CSVs (timeline, risks, per-setting attributions and tree roll-ups) + ``report.json`` +
    a self-contained ``report.html``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.json", json.dumps(_report_meta(report), indent=2, default=float))
        archive.writestr("timeline.csv", safe_csv(report.timeline, index=False))
        archive.writestr("risks.csv", safe_csv(report.risks, index=False))
        archive.writestr("component_totals.csv", safe_csv(report.component_totals(), index_label="setting"))
        for setting, attr in report.attributions.items():
            archive.writestr(f"attributions_{report.model}_{setting}.csv", safe_csv(attr.table, index=False))
            archive.writestr(f"tree_rollup_{report.model}_{setting}.csv",
                             safe_csv(rollup_tree(attr), index=False))
        archive.writestr("report.html", report_html(report))
    return buffer.getvalue()


def _html_table(frame: pd.DataFrame, digits: int = 4) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}g}", border=0, classes="t",
                         escape=True)


def report_html(report: PatientReport) -> str:
    """A self-contained HTML page (tables only, no scripts or external resources)."""
    title = f"Patient {report.patient_id}, sample {report.sample_id}: {report.task} ({report.model})"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table.t{border-collapse:collapse;font-size:12px}"
             "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px}.warn{color:#b00;font-weight:bold}"
             "</style></head><body>", f"<h1>{escape(title)}</h1>"]
    if report.synthetic:
        parts.append("<p class='warn'>SYNTHETIC cohort: generated data, not real patients.</p>")
    parts.append(f"<p>Cohort: {escape(report.cohort_label)}. Label: {report.label}. Anchor visit index: "
                 f"{report.anchor_visit_index}. Integrated gradients with {report.n_steps} steps.</p>")
    parts.append(f"<p>Baseline: {escape(_report_meta(report)['baseline'])}.</p>")
    parts.append("<h2>Predicted risk per hierarchy setting</h2>" + _html_table(report.risks.drop(
        columns=["seconds"], errors="ignore")))
    parts.append("<h2>Total attribution per component</h2>" + _html_table(
        report.component_totals().reset_index(names="setting")))
    parts.append("<h2>Visit timeline</h2>" + _html_table(report.timeline))
    for setting, attr in report.attributions.items():
        parts.append(f"<h2>Attributions, setting {escape(setting)} ({escape(Setting(setting).label)})</h2>")
        parts.append(f"<p>risk {attr.prob:.3f}; logit {attr.logit:.4f} vs baseline "
                     f"{attr.baseline_logit:.4f}; convergence delta {attr.delta:.2e}</p>")
        parts.append(_html_table(attr.table))
    parts.append("<p>De-identified indices only; no source identifiers or dates.</p></body></html>")
    return "\n".join(parts)
