"""HICD-BERT: a BEHRT encoder whose token embedding also adds the enabled ICD hierarchy levels.

One file, nanoGPT style. The input embedding of token ``i`` is (paper Eq. 1)::

    h_i = e_code(c_i) + e_age(a_i) + e_pos(p_i) + e_seg(s_i)
          + 1[G0] e_G0(g0_i) + 1[G1] e_G1(g1_i) + 1[G2] e_G2(g2_i)

followed by LayerNorm and dropout, then a post-norm Transformer encoder (BERT/BEHRT are post-norm,
and the paper says the hierarchy embedding is the *only* change to BEHRT). Every summand is its own
``nn.Embedding`` so Captum's ``LayerIntegratedGradients`` can attribute to each component separately
(:meth:`HicdBert.embedding_modules`). A disabled level has *no module at all*: the flat ``(0,0,0)``
model is exactly BEHRT, with no hierarchy parameters that could be trained or leak.

``forward`` takes the padding mask as its own argument. Captum runs the model on baselines (e.g. all
``[PAD]``); a mask re-derived from those ids would mask every key and give NaN (stack-notes 5.2), so
the caller computes it once from the real input and passes it through ``additional_forward_args``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from hicd_core.hierarchy import LEVELS, Setting

#: Special code tokens (ids fixed so every vocabulary agrees on them). Hierarchy level vocabularies
#: reserve id 0 for "no hierarchy" (special tokens, masked positions) and 1 for "unknown level id".
PAD, CLS, SEP, MASK, UNK = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
LEVEL_NULL, LEVEL_UNK = 0, 1


@dataclass
class BertConfig:
    """Model shape. Vocabulary sizes are filled in from the tokeniser (:mod:`bert_data`)."""

    code_vocab_size: int = 0  # 5 specials + train-split codes; set from the vocabulary
    level_vocab_sizes: tuple[int, int, int] = (2, 2, 2)  # null + unk + ids per level; from the vocabulary
    d_model: int = 512  # paper Table 4
    n_layers: int = 6  # paper Table 4
    n_heads: int = 8  # paper Table 4
    d_ff: int = 2048  # paper Table 4
    dropout: float = 0.1  # paper Table 4; embeddings, residual branches, FFN and task head
    attn_dropout: float = 0.1  # on attention probabilities (BERT's attention_probs_dropout_prob)
    max_len: int = 256  # tokens incl. [CLS]; longer histories keep their most recent tokens
    max_age: int = 120  # ages are clipped to 0..max_age-1 years; id max_age means "unknown age"
    max_visits: int = 256  # position = visit number in the window; max_len bounds it (>= 1 token/visit)
    n_segments: int = 2  # BEHRT alternates A/B across visits
    setting: Setting = Setting.FLAT  # which of (G0, G1, G2) are added to every token
    scheme: str = "ontology"  # how G0/G1/G2 ids are derived (hicd_core.hierarchy.SCHEMES)
    init_std: float = 0.02  # BERT initialisation

    def __post_init__(self) -> None:
        self.level_vocab_sizes = tuple(int(n) for n in self.level_vocab_sizes)  # type: ignore[assignment]
        if not isinstance(self.setting, Setting):
            raise TypeError(f"BertConfig.setting must be a Setting, got {self.setting!r}")
        if len(self.level_vocab_sizes) != 3:
            raise ValueError("level_vocab_sizes must have one entry per level (G0, G1, G2)")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    @property
    def enabled_levels(self) -> tuple[str, ...]:
        return self.setting.levels

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # config.json keeps the setting as a [G0, G1, G2] list, as every stored artifact has it.
        out["setting"], out["level_vocab_sizes"] = list(self.setting.bits), list(self.level_vocab_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # __post_init__ makes lists tuples
        if "setting" in values:
            values["setting"] = Setting.from_bits(values["setting"])
        return cls(**values)


@dataclass(frozen=True)
class TrainPreset:
    """Model shape plus the optimisation recipe that goes with it."""

    model: dict[str, Any]
    pretrain_epochs: int
    pretrain_batch: int
    pretrain_lr: float
    pretrain_min_lr: float
    finetune_epochs: int
    finetune_batch: int
    finetune_lr: float
    finetune_patience: int
    weight_decay: float = 0.01
    warmup_frac: float = 0.0  # linear warm-up share of the MLM steps before the cosine decay
    eval_batch: int = 256
    # bf16 autocast; on an AMX CPU measured 1.2x (cpu) and 1.8x (paper) fp32 tokens/s. Used only where
    # the hardware has bf16 (models.common.use_bf16): emulated, it was 6x slower than fp32.
    bf16: bool = True
    notes: str = ""


PRESETS: dict[str, TrainPreset] = {
    # The paper's Tables 4-6. Meant for a GPU: ~19M encoder parameters, 100 MLM epochs.
    "paper": TrainPreset(
        model={"d_model": 512, "n_layers": 6, "n_heads": 8, "d_ff": 2048, "dropout": 0.1, "max_len": 256,
               "max_visits": 256},
        pretrain_epochs=100, pretrain_batch=256, pretrain_lr=1e-4, pretrain_min_lr=1e-6,
        finetune_epochs=64, finetune_batch=128, finetune_lr=1e-5, finetune_patience=8, eval_batch=256,
        notes="paper Tables 4-6"),
    # Two CPU cores: pretrain once per setting, fine-tune both tasks, ~1 CPU-minute per setting on
    # the default synthetic cohort (12k patients). Chosen from learning curves on that cohort
    # (benchmarks/bench_bert.py, setting 111 unless noted; val AUROC SE is ~0.015 / ~0.025):
    # * fine-tuning peaks in val AUROC at epoch 2-3 and then overfits, for lr 1e-4..1e-3, dropout
    #   0/0.1, d_model 64/128 and 0, 3 or 10 MLM epochs; no curve recovered after two worse epochs
    #   -> at most 6 epochs, patience 1. lr 1e-4 peaks later and not higher; 1e-3 no better.
    # * d_model 128 and dropout 0.1 cost 1.5x / 1.4x the CPU time for val AUROC within +-0.005.
    # * MLM lr 3e-3 reaches in 3 epochs the val loss lr 1e-3 needs 10 for (2.8 vs 2.4 at 10).
    #   A 3x longer schedule (9 MLM epochs, val loss 1.7) changed val AUROC by -0.006
    #   (readmission) and +0.010 (emergency): within noise, at 2.4x the cost.
    "cpu": TrainPreset(
        model={"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 256, "dropout": 0.0, "attn_dropout": 0.0,
               "max_len": 128, "max_visits": 128},
        pretrain_epochs=3, pretrain_batch=128, pretrain_lr=3e-3, pretrain_min_lr=1e-5, warmup_frac=0.05,
        finetune_epochs=6, finetune_batch=64, finetune_lr=3e-4, finetune_patience=1, eval_batch=512,
        notes="small model for 2 CPU cores; see benchmarks/bench_bert.py"),
}


def default_preset(device: torch.device | str) -> str:
    """The paper's shape on CUDA; the small preset on CPU, where the paper's would take hours."""
    return "paper" if torch.device(device).type == "cuda" else "cpu"


def make_config(preset: str, setting: Setting, scheme: str, code_vocab_size: int,
                level_vocab_sizes: tuple[int, int, int], **overrides: Any) -> BertConfig:
    """A :class:`BertConfig` for ``preset`` with the vocabulary sizes of a tokeniser."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = BertConfig(code_vocab_size=code_vocab_size, level_vocab_sizes=level_vocab_sizes,
                      setting=setting, scheme=scheme, **PRESETS[preset].model)
    return replace(base, **overrides) if overrides else base


class BertEmbeddings(nn.Module):
    """Sum of separate embedding tables (one per component), then LayerNorm and dropout.

    Level tables exist only for enabled levels, named ``g0``/``g1``/``g2``; id 0 of the code and level
    tables is a padding index (a fixed zero vector), so ``[PAD]`` and "no hierarchy" add nothing.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        d = config.d_model
        self.code = nn.Embedding(config.code_vocab_size, d, padding_idx=PAD)
        self.age = nn.Embedding(config.max_age + 1, d)
        self.position = nn.Embedding(config.max_visits, d)
        self.segment = nn.Embedding(config.n_segments, d)
        self.levels = nn.ModuleDict({
            name.lower(): nn.Embedding(size, d, padding_idx=LEVEL_NULL)
            for name, size, on in zip(LEVELS, config.level_vocab_sizes, config.setting.bits, strict=True)
            if on})
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.level_index = [LEVELS.index(name.upper()) for name in self.levels]

    def forward(self, codes: torch.Tensor, ages: torch.Tensor, positions: torch.Tensor,
                segments: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        h = self.code(codes) + self.age(ages) + self.position(positions) + self.segment(segments)
        for k, table in zip(self.level_index, self.levels.values(), strict=True):
            h = h + table(levels[..., k])
        return self.dropout(self.norm(h))


class MlmHead(nn.Module):
    """Linear -> GELU -> LayerNorm -> decoder whose weight is the code embedding (paper Table 4)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(config.d_model)
        self.bias = nn.Parameter(torch.zeros(config.code_vocab_size))

    def forward(self, hidden: torch.Tensor, code_weight: torch.Tensor) -> torch.Tensor:
        # The decoder weight is passed in rather than registered here, so the state dict holds the
        # tied table once (safetensors refuses aliased tensors) and loading cannot untie it.
        x = self.norm(self.act(self.dense(hidden)))
        return nn.functional.linear(x, code_weight, self.bias)


class TaskHead(nn.Module):
    """3-layer MLP on the [CLS] vector: d -> d -> d/2 -> 1 logit (paper default 512 -> 512 -> 256 -> 1)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        d = config.d_model
        self.net = nn.Sequential(
            nn.Linear(d, d), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(d, d // 2), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(d // 2, 1))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.net(cls).squeeze(-1)


class HicdBert(nn.Module):
    """Embeddings -> post-norm Transformer encoder, with an MLM head and a binary task head."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, config.d_ff, config.dropout, activation="gelu",
            batch_first=True, norm_first=False)
        # The layer applies one dropout everywhere; the attention-probability rate is separate in
        # BERT, and on CPU it is the expensive one (a mask over B x heads x L x L).
        layer.self_attn.dropout = config.attn_dropout
        # No nested-tensor fast path: train, eval and Captum then run the same arithmetic.
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.mlm_head = MlmHead(config)
        self.task_head = TaskHead(config)
        self.apply(self._init_weights)
        with torch.no_grad():  # a level id the source never had (another site) adds nothing, not noise
            for table in self.embeddings.levels.values():
                table.weight[LEVEL_UNK].zero_()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def reset_task_head(self) -> None:
        """Fresh task head (fine-tuning starts from the MLM encoder, never from a stale head)."""
        self.task_head.apply(self._init_weights)

    def embedding_modules(self) -> dict[str, nn.Embedding]:
        """Component name -> embedding table, for per-component Captum attributions."""
        emb = self.embeddings
        out = {"code": emb.code}
        out.update({name.upper(): table for name, table in emb.levels.items()})
        out.update({"age": emb.age, "position": emb.position, "segment": emb.segment})
        return out

    def encode(self, codes: torch.Tensor, ages: torch.Tensor, positions: torch.Tensor,
               segments: torch.Tensor, levels: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, d]. ``pad_mask`` is True at padding, computed from the *real* input."""
        h = self.embeddings(codes, ages, positions, segments, levels)
        return self.encoder(h, src_key_padding_mask=pad_mask)

    def forward(self, codes: torch.Tensor, ages: torch.Tensor, positions: torch.Tensor,
                segments: torch.Tensor, levels: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Task logit per sequence [B] (the quantity Captum attributes)."""
        hidden = self.encode(codes, ages, positions, segments, levels, pad_mask)
        return self.classify(hidden[:, 0])

    def classify(self, cls: torch.Tensor) -> torch.Tensor:
        """Task head in fp32 even under bf16 autocast: bf16 logits (3 significant digits) would tie
        many probabilities and blur AUROC and the threshold sweep. The head is tiny, so it is free."""
        with torch.autocast(device_type=cls.device.type, enabled=False):
            return self.task_head(cls.float())

    def mlm_logits(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Code logits at the selected (flattened) positions only: the decoder is the big matmul."""
        return self.mlm_head(hidden.reshape(-1, hidden.shape[-1])[positions], self.embeddings.code.weight)

    def n_params(self, trainable_only: bool = True) -> int:
        # The tied decoder shares the code table, so parameters() already counts it once.
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def flops_per_token(self, seq_len: int, mlm_fraction: float = 0.0) -> float:
        """Training FLOPs per token (forward + backward = 3x forward), PaLM-style accounting.

        Counts the encoder matmuls (QKV, output projection, FFN), attention scores and values, the
        task head on [CLS] amortised over the sequence, and the MLM decoder on ``mlm_fraction`` of
        tokens. Embedding look-ups and element-wise work are not counted.
        """
        c = self.config
        d, ff, n = c.d_model, c.d_ff, c.n_layers
        per_layer = 2 * (4 * d * d + 2 * d * ff) + 2 * 2 * seq_len * d
        mlm = mlm_fraction * 2 * (d * d + d * c.code_vocab_size)
        head = 2 * (d * d + d * (d // 2) + d // 2) / max(seq_len, 1)
        return 3.0 * (n * per_layer + mlm + head)
