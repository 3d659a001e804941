"""HICD-Graph training: build the graph, pretrain the GCN by link prediction, fine-tune the transformer.

Entry points (each seeds once with :func:`hicd_core.runtime.seed_everything`)::

    graph = build_graph(cohort, Setting.G0_G1)                     # train admissions only
    gcn = train_gcn(graph, seed=0, device="auto")                  # emb, history, link_auc = gcn
    model = train_graph_model(cohort, "readmission_30d", Setting.G0_G1, gcn=gcn)  # reuse across tasks
    model.predict(cohort, "readmission_30d", split="test")         # sample_id, prob
    model.save(path); load_graph_model(path, expect={"setting": "110"})

Fine-tuning follows the paper's Table 9: BCEWithLogits with ``pos_weight = N_neg / N_pos``, AdamW,
ReduceLROnPlateau on validation AUROC, gradient clipping at 1.0, best-validation-AUROC weights and
a decision threshold picked on validation for macro-F1 and stored with the model (the per-epoch
and final bookkeeping is :class:`~hicd_core.models.common.FinetuneTail`, shared with HICD-BERT;
the metric keys are listed in :mod:`hicd_core.models.common`).

Class balance (``GraphConfig.class_balance``): the paper uses a ``WeightedRandomSampler`` AND
``pos_weight`` at once (``'both'``, the default). The sampler draws each epoch's ``N_train`` samples
with replacement with probability proportional to ``1 / N_class``, so batches are balanced in
expectation; ``pos_weight`` then multiplies the positive term of the loss by ``N_neg / N_pos`` on top.
The effective positive : negative loss weight is therefore ``N_neg / N_pos : 1`` (not 1 : 1): the
model is pushed towards positives and its probabilities are inflated. Ranking (AUROC) is what
early stopping watches, and the validation-tuned threshold absorbs the shift for F1.

Inputs: each sample is its anchor visit plus up to 9 earlier visits of the same patient (visits
with ``visit_index`` <= the anchor's, most recent kept), as padded int tensors [B, V, C] of graph
node ids built with numpy from a per-visit CSR token list (:class:`VisitIndex`). Batches group
samples of similar window length (:func:`hicd_core.models.common.bucketed_batches`), which cuts
padding ~3x (most windows hold 1-2 visits, a few hold 10).

CPU notes (2 cores, measured): a sweep of small models runs fastest single-threaded when the
machine is shared -- OpenMP spin-waiting made 2 threads up to 10x slower than 1 -- so the
benchmarks and tests pin ``torch.set_num_threads(1)``; training itself leaves threads alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from hicd_core.cohort.schema import TEST, TRAIN, VALIDATION, Cohort
from hicd_core.hierarchy import Setting, code_set_year
from hicd_core.hierarchy.levels import check_hierarchy
from hicd_core.models.common import (
    ArtifactError,
    FinetuneTail,
    ProgressCallback,
    ProgressEvent,
    autocast,
    bucketed_batches,
    load_artifact,
    load_weights,
    no_progress,
    pick_device,
    recalled_predictions,
    save_artifact,
    state_dict_cpu,
    use_bf16,
)
from hicd_core.models.graph_build import CodeGraph, build_code_graph, node_permutation
from hicd_core.models.graph_model import (
    GRAM_MAX_NODES,
    GCNEncoder,
    GraphConfig,
    PatientTransformer,
    link_logits,
    normalized_adjacency,
)
from hicd_core.runtime import seed_everything
from hicd_core.stats import auroc

MODEL_NAME = "hicd-graph"
GRAPH_FILE = "graph.json"


# ============================================================================ graph
def _rows_in_split(cohort: Cohort, visit_ids: np.ndarray, split: str) -> np.ndarray:
    """Boolean mask: which rows of ``visit_ids`` belong to a patient of ``split`` (integer look-ups)."""
    patients, visits = cohort.patients, cohort.visits
    in_split = (patients["split"].astype(str) == split).to_numpy()
    patient_pos = pd.Index(patients["patient_id"].to_numpy()).get_indexer(visits["patient_id"].to_numpy())
    visit_in = np.append(np.where(patient_pos >= 0, in_split[patient_pos], False), False)
    ids = visits["visit_id"].to_numpy()
    if len(ids) and np.array_equal(ids, np.arange(len(ids))):  # dense ids: position = id
        pos = np.where((visit_ids >= 0) & (visit_ids < len(ids)), visit_ids, -1)
    else:
        pos = pd.Index(ids).get_indexer(visit_ids)
    return visit_in[pos]


def build_graph(cohort: Cohort, setting: Setting, *, node_level: str = "category",
                percentile: float = 52.0, epsilon: float = 0.0, min_count: int = 1,
                hierarchy: str = "real", permutation_seed: int = 0) -> CodeGraph:
    """The co-occurrence + hierarchy graph from the cohort's TRAIN admissions (no val/test leakage).

    ``hierarchy="permuted"``: the permuted-hierarchy control, a permutation of the cohort's code-node
    keys (all splits, so every row has one; no labels are read) seeded with ``permutation_seed``.
    """
    diagnoses = cohort.diagnoses
    train = diagnoses.loc[_rows_in_split(cohort, diagnoses["visit_id"].to_numpy(), TRAIN),
                          ["visit_id", "icd10", "chapter", "block", "category"]]
    permutation = (node_permutation(diagnoses, node_level, permutation_seed)
                   if check_hierarchy(hierarchy) == "permuted" else None)
    graph = build_code_graph(train, setting, node_level=node_level, percentile=percentile, epsilon=epsilon,
                             min_count=min_count, cohort_fingerprint=cohort.fingerprint,
                             permutation=permutation)
    graph.meta["site"] = cohort.site
    return graph


# ============================================================================ GCN
@dataclass
class GCNResult:
    """A trained GCN. Unpacks as ``embeddings, history, link_auc = train_gcn(...)``.

    Attributes:
        embeddings: [n_nodes, out_dim] float32 node embeddings (message passing over ALL edges).
        history: ``[{"epoch", "train_loss", "link_auc"?}]``; held-out AUC every ``gcn_eval_every``
            epochs (the fine-tuned model's ``pretrain_history``).
        link_auc: final held-out link-prediction AUROC (held-out edges vs as many non-edges).
        state: the GCN's weights (CPU), saved inside the model artifact.
        graph: the graph it was trained on.
        config, seed, seconds: how it was trained and how long it took.
    """

    embeddings: np.ndarray
    history: list[dict[str, float]]
    link_auc: float
    state: dict[str, torch.Tensor]
    graph: CodeGraph
    config: GraphConfig
    seed: int
    seconds: float = 0.0

    def __iter__(self) -> Iterator[Any]:
        yield from (self.embeddings, self.history, self.link_auc)


def _pair_keys(pairs: torch.Tensor, n: int) -> torch.Tensor:
    lo, hi = torch.minimum(pairs[0], pairs[1]), torch.maximum(pairs[0], pairs[1])
    return lo * n + hi


class PairSet:
    """Membership test for undirected node pairs: a dense ``n * n`` bitmap up to ``GRAM_MAX_NODES``
    nodes (one look-up per pair), else sorted ``min * n + max`` keys and a binary search."""

    def __init__(self, pairs: torch.Tensor, n_nodes: int) -> None:
        self.n = n_nodes
        keys = _pair_keys(pairs, n_nodes)
        self.dense: torch.Tensor | None = None
        self.sorted: torch.Tensor | None = None
        if n_nodes <= GRAM_MAX_NODES:
            self.dense = torch.zeros(n_nodes * n_nodes, dtype=torch.bool)
            self.dense[keys] = True
        else:
            self.sorted = torch.sort(keys).values

    def contains(self, pairs: torch.Tensor) -> torch.Tensor:
        keys = _pair_keys(pairs, self.n)
        if self.dense is not None:
            return self.dense[keys]
        assert self.sorted is not None
        if len(self.sorted) == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        slot = torch.searchsorted(self.sorted, keys).clamp(max=len(self.sorted) - 1)
        return self.sorted[slot] == keys


def sample_negatives(n_nodes: int, count: int, forbidden: PairSet, generator: torch.Generator,
                     tries: int = 8) -> torch.Tensor:
    """``count`` uniformly random node pairs [2, count] that are neither self-pairs nor ``forbidden``.

    Vectorised rejection sampling (oversample, drop forbidden, trim). On very dense tiny graphs it
    may return fewer pairs than asked.
    """
    found: list[torch.Tensor] = []
    have = 0
    for _ in range(tries):
        draw = int((count - have) * 1.3) + 16
        pairs = torch.randint(0, n_nodes, (2, draw), generator=generator)
        pairs = pairs[:, (pairs[0] != pairs[1]) & ~forbidden.contains(pairs)][:, : count - have]
        found.append(pairs)
        have += pairs.shape[1]
        if have >= count:
            break
    return torch.cat(found, dim=1) if found else torch.zeros(2, 0, dtype=torch.long)


def train_gcn(graph: CodeGraph, *, seed: int = 0, device: str | torch.device = "auto",
              epochs: int | None = None, progress: ProgressCallback | None = None,
              config: GraphConfig | None = None) -> GCNResult:
    """Full-batch link-prediction training of the 2-layer GCN (formulas in :mod:`graph_model`).

    ``link_holdout`` of the undirected edges are held out of both the loss and message passing and
    scored against as many fixed random non-edges for the AUC; negatives for training are resampled
    every epoch (1:1) among pairs that are not training edges. The returned embeddings come from
    one final pass over ALL edges (the downstream model sees the whole graph).
    """
    start = time.perf_counter()
    config = config or GraphConfig()
    epochs = config.gcn_epochs if epochs is None else int(epochs)
    progress = progress or no_progress
    dev = pick_device(device)
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    n = graph.n_nodes
    if n == 0:
        raise ValueError("the graph has no nodes: no train admission holds a resolved ICD-10-CM code")
    edge_index_np, _ = graph.edge_arrays(symmetric=False)
    weight_np = graph.edges["weight"].to_numpy(np.float32)
    undirected = torch.from_numpy(edge_index_np)
    weights = torch.from_numpy(weight_np)
    n_edges = undirected.shape[1]
    n_holdout = round(config.link_holdout * n_edges) if n_edges >= 10 else 0
    perm = torch.randperm(n_edges, generator=generator)
    held, kept = perm[:n_holdout], perm[n_holdout:]
    train_pairs, train_w = undirected[:, kept], weights[kept]

    def adjacency(pairs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        both = torch.cat([pairs, pairs.flip(0)], 1)
        return normalized_adjacency(both, torch.cat([w, w]), n).to(dev)

    train_adj = adjacency(train_pairs, train_w)  # message passing without the held-out edges
    train_set = PairSet(train_pairs, n)
    eval_pos = undirected[:, held]
    eval_neg = sample_negatives(n, eval_pos.shape[1], PairSet(undirected, n), generator)
    eval_pairs = torch.cat([eval_pos, eval_neg], 1).to(dev)
    eval_y = np.r_[np.ones(eval_pos.shape[1]), np.zeros(eval_neg.shape[1])]

    model = GCNEncoder(n, config).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.gcn_lr)
    loss_fn = nn.BCEWithLogitsLoss()
    pos_dev = train_pairs.to(dev)
    n_neg = round(config.negative_ratio * train_pairs.shape[1])
    history: list[dict[str, float]] = []
    scores_bf16 = use_bf16(dev, config.gcn_bf16_scores)  # emulated bf16 is ~11x slower (use_bf16)
    if train_pairs.shape[1] == 0:  # an edgeless graph: nothing to learn, keep the random init
        epochs = 0

    def evaluate() -> float:
        if eval_pos.shape[1] == 0:
            return float("nan")
        model.eval()
        with torch.no_grad():
            z = model(train_adj)
            scores = link_logits(z, eval_pairs).float().cpu().numpy()
        model.train()
        return auroc(eval_y, scores)

    for epoch in range(1, epochs + 1):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        z = model(train_adj)
        neg = sample_negatives(n, n_neg, train_set, generator).to(dev)
        logits = link_logits(z, torch.cat([pos_dev, neg], 1), bf16=scores_bf16)
        target = torch.cat([torch.ones(pos_dev.shape[1], device=dev), torch.zeros(neg.shape[1], device=dev)])
        loss = loss_fn(logits, target)
        loss.backward()
        optimizer.step()
        point: dict[str, float] = {"epoch": epoch, "train_loss": float(loss.detach())}
        if epoch % config.gcn_eval_every == 0 or epoch == epochs:
            point["link_auc"] = evaluate()
        history.append(point)
        progress(ProgressEvent(stage="gcn", step=epoch, total=epochs, metrics=point,
                               message=f"GCN epoch {epoch}/{epochs}"))
    link_auc = evaluate() if epochs == 0 else history[-1]["link_auc"]
    model.eval()
    with torch.no_grad():
        embeddings = model(adjacency(undirected, weights)).float().cpu().numpy()
    return GCNResult(embeddings=embeddings, history=history, link_auc=float(link_auc),
                     state=state_dict_cpu(model), graph=graph, config=config, seed=seed,
                     seconds=time.perf_counter() - start)


# ============================================================================ visit tensors
@dataclass
class VisitIndex:
    """A cohort's visits as graph-node token lists (CSR) and its samples as windows of visit rows.

    ``indptr``/``tokens``: node ids of visit row ``r`` are ``tokens[indptr[r]:indptr[r + 1]]``: the
    code nodes in ``seq`` order, then ancestor nodes, each node once per visit. Visit rows follow
    ``(patient_id, visit_index)`` order.
    """

    visit_ids: np.ndarray
    rank: np.ndarray  # position of each visit row within its patient (0 = first visit)
    indptr: np.ndarray
    tokens: np.ndarray
    pad: int

    def windows(self, anchor_visit_ids: np.ndarray, max_visits: int) -> np.ndarray:
        """[N, max_visits] visit rows (time order, left-aligned, -1 padded): the anchor and up to
        ``max_visits - 1`` visits before it."""
        rows = pd.Index(self.visit_ids).get_indexer(anchor_visit_ids)
        if (rows < 0).any():
            raise ValueError(f"{int((rows < 0).sum())} sample anchor visits are not in the visits table")
        length = np.minimum(self.rank[rows] + 1, max_visits)
        slots = np.arange(max_visits)[None, :]
        out = rows[:, None] - length[:, None] + 1 + slots
        return np.where(slots < length[:, None], out, -1)

    def batch(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded ``tokens`` [B, V, C], ``token_mask``, ``visit_mask``; V and C are trimmed to the
        longest window and the longest visit in the batch (padding costs compute, not meaning)."""
        windows = windows[:, : max(int((windows >= 0).sum(1).max(initial=1)), 1)]
        b, v = windows.shape
        flat = windows.ravel()
        real = flat >= 0
        safe = np.where(real, flat, 0)
        lengths = np.where(real, self.indptr[safe + 1] - self.indptr[safe], 0)
        width = max(int(lengths.max(initial=0)), 1)
        out = np.full((b * v, width), self.pad, np.int64)
        total = int(lengths.sum())
        if total:
            owner = np.repeat(np.arange(b * v), lengths)
            within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            out[owner, within] = self.tokens[np.repeat(self.indptr[safe], lengths) + within]
        tokens = out.reshape(b, v, width)
        return tokens, tokens != self.pad, real.reshape(b, v)


def visit_index(cohort: Cohort, graph: CodeGraph) -> VisitIndex:
    """Map every diagnosis row of ``cohort`` (any site) to graph nodes and group them per visit.

    A row contributes its code node (when the code was seen in training) and its enabled ancestor
    nodes present in the graph, so codes unseen in training, or another site's codes, still reach
    the model through the hierarchy. Vectorised: one factorisation, one lexsort, one unique.
    """
    visits = cohort.visits.sort_values(["patient_id", "visit_index"], kind="stable")
    visit_ids = visits["visit_id"].to_numpy(np.int64)
    rank = visits.groupby("patient_id", sort=False).cumcount().to_numpy(np.int64)
    n_visits = len(visit_ids)
    diag = cohort.diagnoses
    code_ids, ancestors = graph.map_frame(diag)
    row_of = pd.Index(visit_ids).get_indexer(diag["visit_id"].to_numpy())
    seq = diag["seq"].to_numpy(np.int64) if "seq" in diag else np.arange(len(diag))
    node = np.concatenate([code_ids, ancestors[:, 0], ancestors[:, 1], ancestors[:, 2]])
    kind = np.repeat(np.arange(4), len(diag))
    rows = np.tile(row_of, 4)
    seqs = np.tile(seq, 4)
    ok = (node >= 0) & (rows >= 0)
    node, kind, rows, seqs = node[ok], kind[ok], rows[ok], seqs[ok]
    order = np.lexsort((seqs, kind, rows))
    _, first = np.unique(rows[order] * np.int64(graph.n_nodes + 1) + node[order], return_index=True)
    keep = order[np.sort(first)]
    tokens, token_rows = node[keep], rows[keep]
    indptr = np.zeros(n_visits + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(token_rows, minlength=n_visits))
    return VisitIndex(visit_ids=visit_ids, rank=rank, indptr=indptr, tokens=tokens.astype(np.int64),
                      pad=graph.n_nodes)


def _samples(cohort: Cohort, task: str, split: str | None) -> pd.DataFrame:
    if task not in cohort.tasks:
        raise KeyError(f"task {task!r} is not in this cohort (has: {', '.join(sorted(cohort.tasks))})")
    samples = cohort.tasks[task]
    if split is not None:
        samples = samples[samples["split"].astype(str) == split]
    return samples


def _to_device(arrays: tuple[np.ndarray, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def _by_length(windows: np.ndarray) -> np.ndarray:
    """Sample order by window length (number of visits), so batches carry little padding."""
    return np.argsort((windows >= 0).sum(1), kind="stable")


def _run_eval(model: PatientTransformer, index: VisitIndex, windows: np.ndarray, device: torch.device,
              batch_size: int, amp: bool, encode: bool = False) -> np.ndarray:
    model.eval()
    order = _by_length(windows)
    out = np.zeros((len(windows), model.head.in_features) if encode else len(windows), np.float32)
    for lo in range(0, len(windows), batch_size):
        rows = order[lo: lo + batch_size]
        tokens, token_mask, visit_mask = _to_device(index.batch(windows[rows]), device)
        with torch.no_grad(), autocast(device, enabled=amp and device.type == "cuda"):
            result = (model.encode(tokens, token_mask, visit_mask) if encode
                      else torch.sigmoid(model(tokens, token_mask, visit_mask)))
        out[rows] = result.float().cpu().numpy()
    return out


# ============================================================================ trained model
@dataclass
class TrainedGraph:
    """A fine-tuned HICD-Graph: graph + GCN + patient transformer + validation-chosen threshold."""

    graph: CodeGraph
    config: GraphConfig
    gcn: GCNEncoder
    model: PatientTransformer
    embeddings: np.ndarray
    threshold: float
    metrics: dict[str, Any]
    info: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self._cache: tuple[str, int, VisitIndex] | None = None

    @property
    def setting(self) -> Setting:
        return self.graph.setting

    def _remember_index(self, cohort: Cohort, index: VisitIndex) -> None:
        """Cache ``index`` (built with this model's graph) as the visit index of ``cohort``."""
        self._cache = (cohort.fingerprint, id(cohort), index)

    def _index(self, cohort: Cohort) -> VisitIndex:
        if self._cache is None or self._cache[:2] != (cohort.fingerprint, id(cohort)):
            self._remember_index(cohort, visit_index(cohort, self.graph))
        assert self._cache is not None
        return self._cache[2]

    def _windows(self, cohort: Cohort, task: str, split: str | None) -> tuple[pd.DataFrame, VisitIndex,
                                                                              np.ndarray]:
        samples = _samples(cohort, task, split)
        index = self._index(cohort)
        return samples, index, index.windows(samples["visit_id"].to_numpy(), self.config.max_visits)

    def predict(self, cohort: Cohort, task: str, split: str | None = None) -> pd.DataFrame:
        """``sample_id``, ``prob`` for the task's samples (one split, or all when ``split`` is None)."""
        kept = recalled_predictions(self, cohort, task, split)
        if kept is not None:
            return kept
        samples, index, windows = self._windows(cohort, task, split)
        probs = _run_eval(self.model, index, windows, self.device, self.config.eval_batch_size,
                          self.config.amp)
        return pd.DataFrame({"sample_id": samples["sample_id"].to_numpy(), "prob": probs.astype(np.float64)})

    def encode(self, cohort: Cohort, task: str, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frozen pooled patient vectors [N, d_model] (the transfer probe's features) and sample ids.

        Works on another site's cohort: its codes reach the graph through :meth:`CodeGraph.map_frame`.
        """
        samples, index, windows = self._windows(cohort, task, split)
        vectors = _run_eval(self.model, index, windows, self.device, self.config.eval_batch_size,
                            self.config.amp, encode=True)
        return samples["sample_id"].to_numpy(), vectors

    def batch(self, cohort: Cohort, task: str, split: str | None = None
              ) -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples and their padded model inputs (``tokens``, ``token_mask``, ``visit_mask``), for
        attribution code that calls ``self.model`` directly."""
        samples, index, windows = self._windows(cohort, task, split)
        tokens, token_mask, visit_mask = _to_device(index.batch(windows), self.device)
        return samples, tokens, token_mask, visit_mask

    def node_embeddings(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The GCN node embeddings (before fine-tuning) with the node table, for embedding analysis."""
        return self.graph.nodes.copy(), self.embeddings.copy()

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (GCN and transformer) + ``metrics.json`` +
        ``graph.json`` (node and edge tables) atomically; no pickle anywhere."""
        tensors = {f"gcn.{k}": v for k, v in state_dict_cpu(self.gcn).items()}
        tensors.update({f"transformer.{k}": v for k, v in state_dict_cpu(self.model).items()})
        tensors["gcn_embeddings"] = torch.from_numpy(np.ascontiguousarray(self.embeddings, np.float32))
        config = {"model": MODEL_NAME, "setting": self.graph.setting.key, "scheme": self.graph.scheme,
                  "node_level": self.graph.node_level, "n_nodes": self.graph.n_nodes,
                  "graph_config": asdict(self.config), "threshold": self.threshold,
                  "code_set_year": code_set_year(), "graph_key": self.graph.key, **self.info}
        return save_artifact(Path(path), config, tensors, metrics=self.metrics,
                             extra_json={GRAPH_FILE: self.graph.to_dict()})


def load_graph_model(path: str | Path, expect: dict[str, Any] | None = None,
                     device: str | torch.device = "cpu") -> TrainedGraph:
    """Load a directory written by :meth:`TrainedGraph.save`; raises ``ArtifactError`` on any problem.

    ``expect`` maps config keys to required values, e.g. ``{"setting": "110", "task": "readmission_30d"}``
    (a setting may also be given as a tuple).
    """
    path = Path(path)
    config, tensors, metrics = load_artifact(path, {"model": MODEL_NAME, **(expect or {})})
    try:
        graph = CodeGraph.from_dict(json.loads((path / GRAPH_FILE).read_text()))
        graph_config = GraphConfig(**config["graph_config"])
        threshold = float(config["threshold"])
        n_nodes = int(config["n_nodes"])
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path / GRAPH_FILE} is missing: {path} is not a complete HICD-Graph "
                            "model") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: graph tables or config are unreadable "
                            f"({type(exc).__name__}: {exc})") from exc
    if graph.n_nodes != n_nodes or graph.setting.key != config.get("setting"):
        raise ArtifactError(f"{path / GRAPH_FILE} does not match {path / 'config.json'} "
                            f"({graph.n_nodes} nodes / setting {graph.setting.key} vs {n_nodes} / "
                            f"{config.get('setting')})")
    embeddings = tensors.pop("gcn_embeddings", None)
    if embeddings is None or tuple(embeddings.shape) != (n_nodes, graph_config.out_dim):
        raise ArtifactError(f"{path}: gcn_embeddings missing or of the wrong shape")
    gcn = GCNEncoder(n_nodes, graph_config)
    model = PatientTransformer(n_nodes, graph_config)
    load_weights(gcn, {k[4:]: v for k, v in tensors.items() if k.startswith("gcn.")}, path)
    load_weights(model, {k[12:]: v for k, v in tensors.items() if k.startswith("transformer.")}, path)
    dev = pick_device(device)
    gcn.eval()
    model.to(dev).eval()
    info = {k: config.get(k) for k in ("task", "seed", "cohort_fingerprint", "site", "percentile")}
    return TrainedGraph(graph=graph, config=graph_config, gcn=gcn, model=model,
                        embeddings=embeddings.numpy(), threshold=threshold, metrics=metrics, info=info,
                        device=dev)


# ============================================================================ fine-tuning
def train_graph_model(cohort: Cohort, task: str, setting: Setting, *, seed: int = 0,
                      device: str | torch.device = "auto", gcn: GCNResult | None = None,
                      progress: ProgressCallback | None = None, config: GraphConfig | None = None,
                      node_level: str = "category", percentile: float = 52.0) -> TrainedGraph:
    """Train HICD-Graph for one task and hierarchy setting (the paper's recipe, module docstring).

    ``gcn``: a :class:`GCNResult` from :func:`train_gcn` on this cohort's graph for the same setting,
    reused instead of retraining (the graph does not depend on the task). Everything after the GCN is
    reseeded, so a reused GCN gives exactly the model a fresh one would.
    """
    started = time.perf_counter()
    progress = progress or no_progress
    dev = pick_device(device)
    if gcn is not None:
        config = config or gcn.config
        graph = gcn.graph
        shape = ("in_dim", "hidden_dim", "out_dim")
        if any(getattr(config, k) != getattr(gcn.config, k) for k in shape):
            raise ValueError(f"config and the GCN passed in disagree on {shape}")
        expected = {"setting": setting.key, "cohort_fingerprint": cohort.fingerprint}
        actual = {"setting": graph.setting.key, "cohort_fingerprint": graph.meta.get("cohort_fingerprint")}
        if actual != expected:
            raise ValueError(f"the GCN passed in was trained on another graph ({actual}, need {expected})")
    else:
        config = config or GraphConfig()
        seed_everything(seed)
        graph = build_graph(cohort, setting, node_level=node_level, percentile=percentile)
        gcn = train_gcn(graph, seed=seed, device=dev, progress=progress, config=config)
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    batch_rng = np.random.default_rng(seed)

    index = visit_index(cohort, graph)
    train = _samples(cohort, task, TRAIN)
    val = _samples(cohort, task, VALIDATION)
    test = _samples(cohort, task, TEST)
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"task {task!r} needs train and val samples (got {len(train)} / {len(val)})")
    train_windows = index.windows(train["visit_id"].to_numpy(), config.max_visits)
    val_windows = index.windows(val["visit_id"].to_numpy(), config.max_visits)
    test_windows = index.windows(test["visit_id"].to_numpy(), config.max_visits)
    train_lengths = (train_windows >= 0).sum(1)  # visits per window, for length-bucketed batches
    y_train = train["label"].to_numpy(np.float32)
    y_val = val["label"].to_numpy(np.int64)
    y_test = test["label"].to_numpy(np.int64)
    n_pos = float(y_train.sum())
    n_neg = float(len(y_train) - n_pos)

    model = PatientTransformer(graph.n_nodes, config, torch.from_numpy(gcn.embeddings)).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=dev.type in ("cpu", "cuda"))  # one kernel per step, not per tensor
    use_pos_weight = config.class_balance in ("both", "pos_weight") and n_pos > 0
    pos_weight = torch.tensor(n_neg / n_pos if use_pos_weight else 1.0, device=dev)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    use_sampler = config.class_balance in ("both", "sampler") and 0 < n_pos < len(y_train)
    sample_weight = torch.from_numpy(np.where(y_train == 1, 1.0 / max(n_pos, 1), 1.0 / max(n_neg, 1)))
    amp = config.amp and dev.type == "cuda"
    patience = config.max_epochs if config.patience is None else config.patience  # None: never stops early
    tail = FinetuneTail(model, optimizer, patience=patience, min_delta=config.min_delta,
                        lr_patience=config.lr_patience, lr_factor=config.lr_factor, total=config.max_epochs,
                        stage="transformer", label="transformer", progress=progress)
    targets = torch.from_numpy(y_train)

    def evaluate(windows: np.ndarray) -> np.ndarray:
        return _run_eval(model, index, windows, dev, config.eval_batch_size, config.amp)

    for epoch in range(1, config.max_epochs + 1):
        tail.start_epoch()
        draw = (torch.multinomial(sample_weight, len(y_train), replacement=True, generator=generator)
                if use_sampler else torch.randperm(len(y_train), generator=generator)).numpy()
        for picked in bucketed_batches(draw, train_lengths, config.batch_size, batch_rng):
            tokens, token_mask, visit_mask = _to_device(index.batch(train_windows[picked]), dev)
            target = targets[picked].to(dev)
            with autocast(dev, enabled=amp):
                logits = model(tokens, token_mask, visit_mask)
            loss = loss_fn(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            tail.add_loss(loss, len(picked))
        if tail.end_epoch(epoch, y_val, evaluate(val_windows)):
            break

    metrics = tail.finish(y_val, lambda: evaluate(val_windows), y_test, lambda: evaluate(test_windows))
    threshold = metrics["threshold"]
    metrics.update({
        "task": task, "setting": graph.setting.key, "pos_weight": float(pos_weight),
        "seconds": time.perf_counter() - started, "pretrain_history": gcn.history,
        "pretrain_seconds": gcn.seconds, "link_auc": gcn.link_auc, "class_balance": config.class_balance,
        "graph": graph.summary(),
    })
    gcn_module = GCNEncoder(graph.n_nodes, gcn.config)
    gcn_module.load_state_dict(gcn.state)
    gcn_module.eval()
    info = {"task": task, "seed": seed, "cohort_fingerprint": cohort.fingerprint, "site": cohort.site,
            "percentile": graph.meta.get("percentile")}
    trained = TrainedGraph(graph=graph, config=config, gcn=gcn_module, model=model, embeddings=gcn.embeddings,
                           threshold=threshold, metrics=metrics, info=info, device=dev)
    trained._remember_index(cohort, index)  # the first predict/encode on this cohort reuses it
    tail.remember(trained, cohort, task, {VALIDATION: val["sample_id"].to_numpy(),
                                          TEST: test["sample_id"].to_numpy()}, dtype=np.float64)
    return trained
