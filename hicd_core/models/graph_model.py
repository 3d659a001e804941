"""HICD-Graph, the model: a GCN over the code graph, whose node embeddings seed a patient transformer.

Two stages (paper §6, defaults §12 #13-14):

1. **GCN link prediction** (the "pretraining"). A 2-layer GCN (Kipf & Welling 2017) maps learnable
   random-normal node inputs ``X`` to embeddings ``Z``::

       H = ReLU( A_hat X W1 )        Z = A_hat H W2        A_hat = D^-1/2 (A + I) D^-1/2

   where ``A`` holds the [0, 1] edge weights (:mod:`graph_build`) and ``D`` the weighted degrees
   (``GCNConv`` with ``edge_weight``, self-loops of weight 1). Edges are scored by ``z_u . z_v`` and
   trained with ``BCEWithLogitsLoss`` against an equal number of random non-edges drawn afresh
   each epoch (paper Eq. 4)::

       L_graph = - sum_{(u,v) in E} log s(z_u . z_v) - sum_{(u,v-) not in E} log(1 - s(z_u . z_v-))

2. **Patient transformer**. Each visit is the masked mean of the embeddings of its code nodes
   together with their enabled ancestor nodes (deduplicated per visit), read from an
   ``nn.Embedding`` table initialised with ``Z`` and trained further. Visit vectors are
   layer-normalised (the dot-product loss leaves GCN norms unconstrained), learnable visit-position
   embeddings are added (position = recency, 0 = the anchor visit; at most the 10 most recent
   visits), a 2-layer encoder runs over them, and attention pooling over visits gives the patient
   vector that a linear head scores.

The visit pooling is an ordinary differentiable function of the per-token embeddings, so
attributions over a visit's code and ancestor embeddings work either through
``LayerIntegratedGradients(model, model.node_embedding)`` on :meth:`PatientTransformer.forward`
or with plain IG on :meth:`PatientTransformer.forward_from_embeddings`.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor


@dataclass
class GraphConfig:
    """Hyperparameters of both stages. Paper values are from its Tables 8 and 9 unless noted."""

    # --- GCN link prediction (paper Table 8) ---
    in_dim: int = 64  # learnable random-normal node inputs (the graph has no node features)
    hidden_dim: int = 128
    out_dim: int = 128  # = d_model, so the GCN output can seed the transformer's embedding table as is
    gcn_lr: float = 0.005  # Adam
    # Paper: 400. Learning curves on the default synthetic cohort (benchmarks/bench_graph.py,
    # 'gcn_learning_curve' and 'gcn_epochs_downstream'): held-out link AUC of the flat graph is flat
    # from ~50-100 epochs (0.733 @50, 0.738 @100, 0.738 @400); with all levels it keeps creeping up
    # (0.753 @50, 0.769 @100, 0.784 @200, 0.81 @400), yet the fine-tuned validation AUROC
    # (readmission) does not follow GCN length (0 / 100 / 400 epochs: flat 0.666 / 0.657 / 0.674,
    # all levels 0.676 / 0.673 / 0.667: no trend, all within one standard error (~0.015) of the
    # 1.8k-sample validation set).
    # 100 keeps the 8-setting sweep near 3 minutes on 2 cores; the 'paper' preset (PRESETS below)
    # uses 400, which is what the embedding analyses of the GCN vectors should use.
    gcn_epochs: int = 100
    negative_ratio: float = 1.0  # random non-edges per positive edge, resampled each epoch (paper: unknown)
    link_holdout: float = 0.1  # share of edges held out of training to measure link-prediction AUC
    # Decoder scores in bfloat16 for the training loss (embeddings, GCN layers and the link AUC stay
    # fp32): halves the GCN epoch on a CPU with AMX; ignored on CPUs without bf16 units, where emulated
    # bf16 is ~11x slower (models.common.use_bf16); False gives the all-fp32 run everywhere.
    gcn_bf16_scores: bool = True
    gcn_eval_every: int = 10  # learning-curve resolution (epochs between held-out AUC evaluations)

    # --- patient transformer (paper Table 9 and §6.3) ---
    d_model: int = 128  # inferred from the GCN output size
    n_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 256
    dropout: float = 0.3
    max_visits: int = 10  # the 10 MOST RECENT visits up to and including the anchor
    batch_size: int = 64
    # Paper: 2e-5 for 15 epochs on full MIMIC-IV (~10^5-10^6 samples). On the default cohort
    # (~14k training samples, all levels, readmission) 1e-3 peaks at epoch 1-3 (0.667) and then
    # overfits, 1e-4 is still rising at epoch 7 (0.671), so 2e-5 would need many more epochs;
    # 3e-4 reaches 0.671 by epoch 2-4. The 'paper' preset (PRESETS below) uses 2e-5.
    lr: float = 3e-4
    weight_decay: float = 1e-5
    max_epochs: int = 15
    # Early stopping on validation AUROC; None: none, every epoch runs and the best-validation-AUROC
    # weights are kept (the paper's selection). 2 here stops in the same epoch as the first LR halving.
    patience: int | None = 2
    min_delta: float = 1e-4
    lr_patience: int = 2  # ReduceLROnPlateau(mode='max') on validation AUROC
    lr_factor: float = 0.5
    grad_clip: float = 1.0
    # 'both' (paper: WeightedRandomSampler AND pos_weight = N_neg/N_pos), 'sampler', 'pos_weight', 'none'.
    class_balance: str = "both"
    amp: bool = True  # bf16 autocast for the transformer on CUDA only (CPU stays fp32: exact round trips)
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.out_dim != self.d_model:
            raise ValueError(f"out_dim ({self.out_dim}) must equal d_model ({self.d_model}): "
                             "the GCN embeddings initialise the transformer's embedding table")
        if self.class_balance not in ("both", "sampler", "pos_weight", "none"):
            raise ValueError(f"class_balance must be both, sampler, pos_weight or none, "
                             f"got {self.class_balance!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")


#: HICD-Graph's presets, keyed like HICD-BERT's (:data:`hicd_core.models.bert.PRESETS`).
#: ``cpu`` is :class:`GraphConfig`'s defaults (chosen for 2 CPU cores, see the notes above).
#: ``paper`` sets every value the paper's Table 8 (GCN) and Table 9 (patient transformer) give that
#: :class:`GraphConfig` has (paper-notes §6.2-6.3); Table 9's "FP16 mixed precision on CUDA" is
#: ``amp`` (bf16 autocast on CUDA, the default anyway). Use :func:`graph_config`, which hands out
#: a copy (a ``GraphConfig`` is mutable).
PRESETS: dict[str, GraphConfig] = {
    "cpu": GraphConfig(),
    "paper": replace(GraphConfig(), **{
        # Table 8: GCN link prediction.
        "in_dim": 64, "hidden_dim": 128, "out_dim": 128, "gcn_lr": 0.005, "gcn_epochs": 400,
        # Table 9: patient transformer.
        "batch_size": 64, "max_epochs": 15, "lr": 2e-5, "weight_decay": 1e-5, "lr_patience": 2,
        "lr_factor": 0.5, "grad_clip": 1.0, "class_balance": "both", "amp": True,
        # The paper trains its 15 epochs and keeps the best-validation-AUROC weights: no early stop
        # (patience 2 would stop together with the first LR halving, after as few as 3 epochs).
        "patience": None,
    }),
}


def graph_config(preset: str) -> GraphConfig:
    """A fresh :class:`GraphConfig` of one of :data:`PRESETS`.

    >>> graph_config("paper").gcn_epochs, graph_config("cpu") == GraphConfig()
    (400, True)
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown HICD-Graph preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[preset])


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a sparse CSR ``A`` with ``A^T = A``; the backward reuses ``A`` (no transpose).

    torch's own CSR backward transposes ``A`` on every step (~1.5 s per GCN step here), and PyG's
    edge-list path materialises an [E, d] message tensor per layer (memory-bound, ~4x slower than
    this on 2 CPU cores), so the symmetric SpMM is what makes full-batch training cheap.
    """

    @staticmethod
    def forward(ctx: Any, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, ctx.adj @ grad


class SymmetricGCNConv(GCNConv):
    """``GCNConv`` fed a precomputed normalised adjacency (see :func:`normalized_adjacency`).

    Same parameters and output as ``GCNConv(normalize=True)`` with ``edge_weight``; only the sparse
    aggregation kernel differs (valid because an undirected graph's ``A_hat`` is symmetric).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, normalize=False)
        _remove_generated_sources(type(self))


def _remove_generated_sources(cls: type) -> None:
    """Delete the ``propagate`` source file PyG renders into the system temp folder the first time a
    conv class is built in a process (``torch_geometric.template`` writes it with ``delete=False``, so
    every process left one ``*.py`` file behind). The module is already compiled and imported, so the
    file is not needed; tracebacks inside it merely lose their source lines."""
    import sys
    import tempfile

    prefix = f"{cls.__module__}_{cls.__name__}_"
    temp = Path(tempfile.gettempdir()).resolve()
    for name in (f"{prefix}propagate", f"{prefix}edge_updater"):
        source = getattr(sys.modules.get(name), "__file__", None)
        if source and Path(source).resolve().parent == temp:
            with contextlib.suppress(OSError):
                Path(source).unlink()

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return _SymmetricSpMM.apply(adj_t, x)


def normalized_adjacency(edge_index: Tensor, edge_weight: Tensor, n_nodes: int) -> Tensor:
    """``A_hat = D^-1/2 (A + I) D^-1/2`` as a sparse CSR tensor, from a SYMMETRIC weighted edge list.

    Uses PyG's ``gcn_norm`` (self-loops of weight 1 added where missing, weighted degrees), so it is
    exactly what ``GCNConv`` computes internally from ``edge_index`` + ``edge_weight``.
    """
    index, weight = gcn_norm(edge_index, edge_weight.float(), n_nodes, add_self_loops=True)
    with warnings.catch_warnings():  # torch's "CSR support is in beta" notice; CSR @ dense is stable
        warnings.simplefilter("ignore", UserWarning)
        return to_torch_csr_tensor(index.flip(0), weight, size=(n_nodes, n_nodes))  # rows = targets


class GCNEncoder(nn.Module):
    """Two GCN layers (64 -> 128 -> 128, ReLU) over learnable random-normal node inputs."""

    def __init__(self, n_nodes: int, config: GraphConfig) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.randn(n_nodes, config.in_dim))
        self.conv1 = SymmetricGCNConv(config.in_dim, config.hidden_dim)
        self.conv2 = SymmetricGCNConv(config.hidden_dim, config.out_dim)

    def forward(self, adj: Tensor) -> Tensor:
        """Node embeddings [n, out_dim] given ``adj`` from :func:`normalized_adjacency`."""
        h = torch.relu(self.conv1(self.x, adj))
        return self.conv2(h, adj)


#: Up to this many nodes the decoder scores pairs through the dense Gram matrix (n^2 floats).
GRAM_MAX_NODES = 4096


def link_logits(z: Tensor, pairs: Tensor, bf16: bool = False) -> Tensor:
    """Dot-product decoder: ``z_u . z_v`` for each column ``(u, v)`` of ``pairs`` [2, P].

    For graphs up to ``GRAM_MAX_NODES`` nodes the scores are read off ``Z Z^T``: the same values,
    but the backward is two dense matmuls instead of a scatter of two [P, d] gathers (~7x faster on
    2 CPU cores with P ~ 10^5 pairs). ``bf16`` computes that Gram matrix in bfloat16 (fp32
    accumulation; ~10x faster matmuls on CPUs with AMX) -- used for the training loss only.
    """
    n = z.shape[0]
    if n <= GRAM_MAX_NODES:
        zz = z.to(torch.bfloat16) if bf16 else z
        return (zz @ zz.T).reshape(-1)[pairs[0] * n + pairs[1]].float()
    return (z[pairs[0]] * z[pairs[1]]).sum(-1)


class AttentionPool(nn.Module):
    """Additive attention over visits: ``a = softmax(w^T tanh(W h))`` over real visits, ``sum a h``."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
        self.score = nn.Linear(d_model, 1, bias=False)

    def forward(self, h: Tensor, visit_mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        scores = scores.masked_fill(~visit_mask, float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(h.dtype)
        return (weights.unsqueeze(-1) * h).sum(1), weights


class PatientTransformer(nn.Module):
    """Visits (masked means of node embeddings) -> 2-layer encoder -> attention pooling -> logit.

    Inputs are padded per batch: ``tokens`` [B, V, C] node ids (pad = ``n_nodes``), ``token_mask``
    [B, V, C] real tokens, ``visit_mask`` [B, V] real visits, visits in time order and left-aligned
    (the last real visit is the anchor). Pass ``token_mask`` explicitly (not derived from ``tokens``)
    so attribution baselines made of pad ids keep the real input's masks.
    """

    def __init__(self, n_nodes: int, config: GraphConfig, init_embeddings: Tensor | None = None) -> None:
        super().__init__()
        d = config.d_model
        self.n_nodes, self.max_visits = n_nodes, config.max_visits
        self.node_embedding = nn.Embedding(n_nodes + 1, d, padding_idx=n_nodes)
        if init_embeddings is not None:
            if tuple(init_embeddings.shape) != (n_nodes, d):
                raise ValueError(f"init embeddings {tuple(init_embeddings.shape)} != ({n_nodes}, {d})")
            with torch.no_grad():
                self.node_embedding.weight[:n_nodes].copy_(init_embeddings)
        # GCN output norms are unconstrained (the dot-product loss inflates them): normalise visits.
        self.visit_norm = nn.LayerNorm(d)
        self.position = nn.Embedding(config.max_visits, d)
        layer = nn.TransformerEncoderLayer(d, config.n_heads, config.ff_dim, config.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.pool = AttentionPool(d)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(d, 1)

    @staticmethod
    def visit_vectors(token_embeddings: Tensor, token_mask: Tensor) -> Tensor:
        """Masked mean over each visit's tokens: [..., C, D] -> [..., D] (empty visits -> 0)."""
        mask = token_mask.unsqueeze(-1).to(token_embeddings.dtype)
        total = (token_embeddings * mask).sum(-2)
        return total / mask.sum(-2).clamp(min=1.0)

    def positions(self, visit_mask: Tensor) -> Tensor:
        """Recency of each slot: 0 for the anchor (last real) visit, 1 for the one before, ..."""
        n_real = visit_mask.sum(1, keepdim=True)
        slots = torch.arange(visit_mask.shape[1], device=visit_mask.device).unsqueeze(0)
        return (n_real - 1 - slots).clamp(min=0, max=self.max_visits - 1)

    def _pool_visits(self, visits: Tensor, visit_mask: Tensor) -> Tensor:
        """Visit vectors [B, V, D] -> pooled patient vector [B, D]."""
        h = self.visit_norm(visits) + self.position(self.positions(visit_mask))
        h = self.encoder(h, src_key_padding_mask=~visit_mask)
        pooled, _ = self.pool(h, visit_mask)
        return pooled

    def encode_from_embeddings(self, token_embeddings: Tensor, token_mask: Tensor,
                               visit_mask: Tensor) -> Tensor:
        """Pooled patient vector [B, D] from per-token embeddings [B, V, C, D] (differentiable)."""
        return self._pool_visits(self.visit_vectors(token_embeddings, token_mask), visit_mask)

    def forward_from_embeddings(self, token_embeddings: Tensor, token_mask: Tensor,
                                visit_mask: Tensor) -> Tensor:
        """Logits [B] from per-token embeddings (entry point for attribution on embeddings)."""
        pooled = self.encode_from_embeddings(token_embeddings, token_mask, visit_mask)
        return self.head(self.dropout(pooled)).squeeze(-1)

    def encode(self, tokens: Tensor, token_mask: Tensor, visit_mask: Tensor) -> Tensor:
        """Pooled patient vector [B, D] (what the transfer probe reads).

        Same result as :meth:`encode_from_embeddings` on ``node_embedding(tokens)``, but only the
        real visits are embedded (most of a [B, 10] window is padding), which is ~3x cheaper.
        """
        real = self.visit_vectors(self.node_embedding(tokens[visit_mask]), token_mask[visit_mask])
        visits = real.new_zeros((*visit_mask.shape, real.shape[-1]))
        visits[visit_mask] = real
        return self._pool_visits(visits, visit_mask)

    def forward(self, tokens: Tensor, token_mask: Tensor, visit_mask: Tensor) -> Tensor:
        """Logits [B] from node-id tokens [B, V, C]."""
        return self.head(self.dropout(self.encode(tokens, token_mask, visit_mask))).squeeze(-1)


# --------------------------------------------------------------------------------- FLOP accounting
# The counterpart of HicdBert.flops_per_token, for cost models (benchmarks/bench_wall_time.py): matmul
# FLOPs only (2 per multiply-add), training = 3x forward; look-ups and element-wise work not counted.


def gcn_flops_per_epoch(config: GraphConfig, n_nodes: int, n_edges: int, n_pairs: int) -> float:
    """Training FLOPs of one GCN link-prediction epoch: both layers' dense transforms and sparse
    aggregations over ``n_edges`` stored (directed) entries plus self-loops, then the decoder on
    ``n_pairs`` scored pairs (the dense Gram matrix ``Z Z^T`` up to :data:`GRAM_MAX_NODES` nodes,
    per-pair dot products above).

    >>> gcn_flops_per_epoch(GraphConfig(), 10, 0, 20) == 3 * (2 * 10 * (64 * 128 + 128 * 128)
    ...     + 2 * 10 * (128 + 128) + 2 * 10 * 10 * 128)
    True
    """
    c = config
    dense = 2 * n_nodes * (c.in_dim * c.hidden_dim + c.hidden_dim * c.out_dim)
    sparse = 2 * (n_edges + n_nodes) * (c.hidden_dim + c.out_dim)
    decoder = 2 * n_nodes * n_nodes * c.out_dim if n_nodes <= GRAM_MAX_NODES else 2 * n_pairs * c.out_dim
    return 3.0 * (dense + sparse + decoder)


def transformer_flops_per_sample(config: GraphConfig, n_visits: float) -> float:
    """Training FLOPs of one patient-transformer sample with ``n_visits`` real visits: per visit the
    encoder layers (QKV, output projection, FFN, attention over the visits) and the attention-pool
    projection; the linear head once. Visit pooling (a masked mean of look-ups) is not counted.

    >>> round(transformer_flops_per_sample(GraphConfig(), 1) / 1e6, 3)
    1.675
    """
    c = config
    d = c.d_model
    per_layer = 2 * (4 * d * d + 2 * d * c.ff_dim) + 2 * 2 * n_visits * d
    per_visit = c.n_layers * per_layer + 2 * d * d
    return 3.0 * (n_visits * per_visit + 2 * d)
