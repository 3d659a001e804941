"""HICD-BERT training: MLM pretraining, task fine-tuning, prediction, [CLS] encoding, artifacts.

Typical use (one pretraining per hierarchy setting, both tasks fine-tuned from it)::

    pre = pretrain_mlm(cohort, Setting.G1_G2, preset="cpu", seed=0)
    for task in ("readmission_30d", "emergency_next"):
        run = finetune(pre, cohort, task, seed=0)
        run.save(runs / f"bert-011-{task}-0")
        run.predict(cohort, task, split="test")        # DataFrame[sample_id, prob]
    load_bert(runs / "bert-011-readmission_30d-0", expect={"setting": "011"})

Paper recipe (notes 5.3-5.4): MLM with AdamW lr 1e-4, wd 0.01, cosine to 1e-6, best checkpoint on
validation MLM loss; fine-tuning with AdamW lr 1e-5, BCE with pos_weight = N_neg/N_pos,
ReduceLROnPlateau(max, patience 2, factor 0.5), early stopping on validation AUROC (patience 8),
best-validation-AUROC weights, and a macro-F1 threshold chosen on validation and stored with the model.
The ``cpu`` preset keeps the recipe but shrinks the model and epochs (see ``PRESETS``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from hicd_core.cohort.schema import TEST, TRAIN, VALIDATION, Cohort
from hicd_core.hierarchy import LEVELS, Setting, code_set_year
from hicd_core.models.bert import PRESETS, UNK, BertConfig, HicdBert, TrainPreset, make_config
from hicd_core.models.bert_data import (
    BertVocab,
    CohortTokens,
    TokenizedSamples,
    build_vocab,
    cohort_tokens,
    mask_for_mlm,
    model_inputs,
    sorted_batches,
    tokenize_histories,
    tokenize_task,
)
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
from hicd_core.runtime import seed_everything

MODEL_NAME = "hicd-bert"
VOCAB_FILE = "vocab.json"

# --------------------------------------------------------------------------------- tokenisation cache

_TOKEN_CACHE: list[tuple[object, object, str, CohortTokens]] = []


def _tokens(cohort: Cohort, vocab: BertVocab) -> CohortTokens:
    """Flat tokens of ``cohort`` under ``vocab``, memoised on the identity of its tables.

    predict/encode are called repeatedly on the same cohort (pages, experiment sweeps); keying on the
    table objects themselves means a modified copy of a cohort is never served stale tokens.
    """
    key = vocab.key()
    for diag, visits, vkey, tokens in _TOKEN_CACHE:
        if diag is cohort.diagnoses and visits is cohort.visits and vkey == key:
            return tokens
    tokens = cohort_tokens(cohort, vocab)
    _TOKEN_CACHE.insert(0, (cohort.diagnoses, cohort.visits, key, tokens))
    del _TOKEN_CACHE[2:]
    return tokens


def _task_samples(cohort: Cohort, task: str) -> pd.DataFrame:
    if task not in cohort.tasks:
        raise KeyError(f"cohort {cohort.label} has no task {task!r}; it has {sorted(cohort.tasks)}")
    return cohort.tasks[task]


# ------------------------------------------------------------------------------------------- runs


@dataclass
class BertRun:
    """A trained HICD-BERT (weights + vocabulary + provenance); base of the two result types."""

    model: HicdBert
    vocab: BertVocab
    preset: str
    seed: int
    cohort_fingerprint: str
    cohort_site: str
    bf16: bool
    mask_hierarchy: bool
    eval_batch: int
    metrics: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    kind: ClassVar[str] = "base"

    @property
    def config(self) -> BertConfig:
        return self.model.config

    @property
    def setting(self) -> Setting:
        return self.model.config.setting

    @property
    def history(self) -> list[dict[str, float]]:
        """Per-epoch rows of this stage (``metrics['history']``: MLM or fine-tuning)."""
        return self.metrics.get("history", [])

    def _tokenize(self, cohort: Cohort, task: str, split: str | None) -> tuple[TokenizedSamples, np.ndarray]:
        samples = tokenize_task(_tokens(cohort, self.vocab), _task_samples(cohort, task),
                                self.config.max_len, self.config.max_visits)
        return samples, samples.indices(split)

    @torch.inference_mode()
    def _forward_all(self, samples: TokenizedSamples, idx: np.ndarray, what: str) -> np.ndarray:
        """Task probabilities or [CLS] vectors for ``idx``, in ``idx`` order (deterministic batches)."""
        self.model.eval()
        out = np.zeros((len(idx), self.config.d_model) if what == "cls" else len(idx), dtype=np.float32)
        for rows in sorted_batches(samples.lengths[idx], self.eval_batch):
            args = model_inputs(samples.batch(idx[rows]), self.device)
            with precision(self.device, self.bf16):
                hidden = self.model.encode(*args)
            cls = hidden[:, 0].float()
            if what == "cls":
                out[rows] = cls.cpu().numpy()
            else:
                out[rows] = torch.sigmoid(self.model.classify(cls)).cpu().numpy()
        return out

    def encode(self, cohort: Cohort, task: str, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frozen-encoder [CLS] vectors (eval mode, no grad) for the task's samples.

        ``cohort`` may come from another site: it is tokenised with THIS model's vocabulary, so
        codes unseen at the source become [UNK] but keep whatever hierarchy ids the source knew.
        Returns ``(sample_ids, array[n, d_model])``, in the task frame's sample order.
        """
        samples, idx = self._tokenize(cohort, task, split)
        return samples.sample_id[idx], self._forward_all(samples, idx, "cls")

    def code_embeddings(self, combined: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
        """Embedding of every real code token in the vocabulary (specials and [UNK] excluded).

        ``combined=True`` adds the code's enabled hierarchy embeddings to its code embedding: the
        diagnosis part of what the encoder sees at that token, before age/position/segment and the
        LayerNorm. ``combined=False`` gives the raw code table. Returns ``(meta, matrix)``: ``meta``
        has columns ``code, G0, G1, G2, train_count`` row-aligned with the float32 ``matrix[n, d]``.
        """
        first = UNK + 1
        emb = self.model.embeddings
        with torch.no_grad():
            matrix = emb.code.weight[first:].detach().float().cpu().clone()
            if combined:
                ids = torch.tensor(self.vocab.code_levels[first:], dtype=torch.long)
                for name, table in emb.levels.items():
                    k = LEVELS.index(name.upper())
                    matrix += table.weight.detach().float().cpu()[ids[:, k]]
        levels = np.array(self.vocab.code_levels[first:], dtype=np.int64).reshape(-1, 3)
        meta = pd.DataFrame({"code": self.vocab.codes[first:]})
        for k, name in enumerate(LEVELS):
            meta[name] = np.asarray(self.vocab.levels[name], dtype=object)[levels[:, k]] if len(meta) else []
        meta["train_count"] = self.vocab.code_counts[first:]
        return meta, matrix.numpy()

    def _artifact_config(self) -> dict[str, Any]:
        return {"model": MODEL_NAME, "kind": self.kind, "setting": self.setting.key,
                "scheme": self.config.scheme, "preset": self.preset, "task": self.task, "seed": self.seed,
                "bert": self.config.to_dict(), "code_set_year": code_set_year(),
                "cohort_fingerprint": self.cohort_fingerprint, "cohort_site": self.cohort_site,
                "bf16": self.bf16, "mask_hierarchy": self.mask_hierarchy, "eval_batch": self.eval_batch,
                "hierarchy": "permuted" if self.vocab.permutation is not None else "real"}

    def save(self, path: Path | str) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``vocab.json`` and ``metrics.json`` atomically."""
        return save_artifact(Path(path), self._artifact_config(), state_dict_cpu(self.model), self.metrics,
                             extra_json={VOCAB_FILE: self.vocab.to_json()})


@dataclass
class PretrainResult(BertRun):
    """The MLM encoder (best validation MLM loss); fine-tune it or probe its [CLS] vectors."""

    kind: ClassVar[str] = "pretrained"

    @property
    def best_val_loss(self) -> float:
        value = self.metrics.get("best_val_loss")
        return math.nan if value is None else float(value)


@dataclass
class TrainedBert(BertRun):
    """A fine-tuned model with its validation-chosen decision threshold."""

    threshold: float = 0.5
    kind: ClassVar[str] = "finetuned"

    def predict(self, cohort: Cohort, task: str | None = None, split: str | None = None) -> pd.DataFrame:
        """``DataFrame[sample_id, prob]`` for the task's samples (all, or one split), in frame order."""
        task = task or self.task
        if task is None:
            raise ValueError("predict needs a task name")
        kept = recalled_predictions(self, cohort, task, split)
        if kept is not None:
            return kept
        samples, idx = self._tokenize(cohort, task, split)
        probs = self._forward_all(samples, idx, "prob")
        return pd.DataFrame({"sample_id": samples.sample_id[idx], "prob": probs})

    def _artifact_config(self) -> dict[str, Any]:
        return {**super()._artifact_config(), "threshold": self.threshold}


# ---------------------------------------------------------------------------------------- helpers


def precision(device: torch.device, bf16: bool) -> contextlib.ExitStack:
    """bf16 autocast, plus on CPU the "math" attention kernel.

    Measured on 2 cores (benchmarks/bench_bert.py): the CPU flash-attention kernel is ~10x slower in
    bf16 than in fp32 for small head dims (its backward dominates a training step), while the math
    kernel in bf16 is as fast as fp32 flash. The backend is chosen in the forward pass, so the
    backward follows it.
    """
    stack = contextlib.ExitStack()
    stack.enter_context(autocast(device, bf16))
    if use_bf16(device, bf16) and device.type == "cpu":
        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; no decay on biases and LayerNorm gains (1-D tensors), as in BERT.

    ``fused=True``: the dense gradients of the code/hierarchy tables make the optimizer step a
    large share of a small model's step; the fused kernel is ~6x faster than the per-tensor loop
    on CPU (measured: 1.2 vs 7.4 ms for the cpu preset's ~0.9M parameters).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    other = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=lr, fused=True)


def _cosine_lambda(total: int, warmup: int, lr: float, min_lr: float):
    """Linear warm-up then cosine from ``lr`` to ``min_lr`` (CosineAnnealingLR's shape, per step)."""
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return (min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))) / lr
    return factor


def _resolve(preset: str, device: str) -> tuple[TrainPreset, torch.device]:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset], pick_device(device)


# ------------------------------------------------------------------------------------- pretraining


def _mlm_loss(model: HicdBert, batch: dict[str, torch.Tensor], flat: torch.Tensor, targets: torch.Tensor,
              device: torch.device, bf16: bool) -> torch.Tensor:
    with precision(device, bf16):
        hidden = model.encode(*model_inputs(batch, device))
        logits = model.mlm_logits(hidden, flat.to(device))
    return nn.functional.cross_entropy(logits.float(), targets.to(device))


def pretrain_mlm(cohort: Cohort, setting: Setting, *, scheme: str = "ontology",
                 preset: str = "cpu", seed: int = 0, device: str = "auto", epochs: int | None = None,
                 mask_hierarchy: bool = False, progress: ProgressCallback | None = None,
                 min_count: int = 1, mask_rate: float = 0.15, bf16: bool | None = None,
                 hierarchy: str = "real") -> PretrainResult:
    """Masked-code pretraining on the TRAIN patients' histories (one sequence per patient).

    15% of real-code positions are picked (80% [MASK], 10% random code, 10% kept) and the loss is
    cross-entropy on the code token only. The checkpoint with the best validation MLM loss (val
    patients, fixed masks) is kept; ``metrics['history']`` holds the per-epoch train/val loss.

    ``mask_hierarchy`` defaults to False: the paper's Eq. 2 keeps "the enabled hierarchy embeddings
    visible as conditioning", so the default reproduces the paper. Be aware that with G2 on, the
    visible category id narrows a masked code to a handful of leaves, so MLM losses are not
    comparable across settings; set True to null the level ids at [MASK] positions (a random
    replacement then carries its own code's ids) for a leak-free objective.

    ``hierarchy="permuted"`` trains on the permuted-hierarchy control: level ids from a permutation of
    the cohort's codes seeded with ``seed`` (:func:`hicd_core.models.bert_data.build_vocab`).
    """
    recipe, dev = _resolve(preset, device)
    seed_everything(seed)
    started = time.perf_counter()
    progress = progress or no_progress
    use_bf16 = recipe.bf16 if bf16 is None else bf16
    n_epochs = recipe.pretrain_epochs if epochs is None else int(epochs)

    vocab = build_vocab(cohort, scheme=scheme, min_count=min_count, hierarchy=hierarchy,
                        permutation_seed=seed)
    config = make_config(preset, setting, scheme, vocab.n_codes, vocab.level_sizes)
    tokens = _tokens(cohort, vocab)
    histories = tokenize_histories(tokens, cohort, config.max_len, config.max_visits)
    train_idx, val_idx = histories.indices(TRAIN), histories.indices(VALIDATION)
    if len(train_idx) == 0:
        raise ValueError(f"cohort {cohort.label} has no train-split patient with a diagnosis code")
    lengths = histories.lengths

    model = HicdBert(config).to(dev)
    code_levels = torch.tensor(vocab.code_levels, dtype=torch.long)
    rng = np.random.default_rng(seed)
    # Validation masks are drawn once, so epochs are compared on the same corrupted inputs.
    val_rng = np.random.default_rng([seed, 1])
    val_batches = [mask_for_mlm(histories.batch(b), code_levels, vocab.n_codes, val_rng, mask_rate,
                                mask_hierarchy)
                   for b in sorted_batches(lengths, recipe.eval_batch, indices=val_idx)]

    steps_per_epoch = math.ceil(len(train_idx) / recipe.pretrain_batch)
    total = max(1, n_epochs * steps_per_epoch)
    opt = _optimizer(model, recipe.pretrain_lr, recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine_lambda(
        total, int(recipe.warmup_frac * total), recipe.pretrain_lr, recipe.pretrain_min_lr))

    history: list[dict[str, float]] = []
    best_loss, best_state, best_epoch = math.inf, state_dict_cpu(model), 0
    for epoch in range(1, n_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        losses, n_tok = [], 0
        order = rng.permutation(len(train_idx))  # epoch shuffle; bucketed_batches then shuffles batches
        for b in bucketed_batches(order, lengths[train_idx], recipe.pretrain_batch, rng):
            batch, flat, targets = mask_for_mlm(histories.batch(train_idx[b]), code_levels, vocab.n_codes,
                                                rng, mask_rate, mask_hierarchy)
            loss = _mlm_loss(model, batch, flat, targets, dev, use_bf16)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append((float(loss.detach()), len(targets)))
            n_tok += int(batch["codes"].numel())
        train_loss = sum(v * n for v, n in losses) / max(1, sum(n for _, n in losses))
        val_loss = _mlm_eval(model, val_batches, dev, use_bf16)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "lr": float(opt.param_groups[0]["lr"]), "seconds": seconds, "tokens_per_s": n_tok / seconds}
        history.append(row)
        monitored = val_loss if not math.isnan(val_loss) else train_loss
        if monitored < best_loss:
            best_loss, best_state, best_epoch = monitored, state_dict_cpu(model), epoch
        progress(ProgressEvent(stage="pretrain", step=epoch, total=n_epochs, metrics=dict(row),
                               message=f"MLM epoch {epoch}/{n_epochs}: val loss {val_loss:.3f}"))
    model.load_state_dict(best_state)
    metrics = {"history": history, "best_epoch": best_epoch,
               "best_val_loss": best_loss if math.isfinite(best_loss) else None,  # None: no epoch run
               "n_train_sequences": len(train_idx), "n_val_sequences": len(val_idx),
               "seconds": time.perf_counter() - started, "setting": config.setting.key}
    return PretrainResult(model=model, vocab=vocab, preset=preset, seed=seed,
                          cohort_fingerprint=cohort.fingerprint, cohort_site=cohort.site, bf16=use_bf16,
                          mask_hierarchy=mask_hierarchy, eval_batch=recipe.eval_batch, metrics=metrics,
                          device=dev)


@torch.inference_mode()
def _mlm_eval(model: HicdBert, batches: list, device: torch.device, bf16: bool) -> float:
    if not batches:
        return math.nan
    model.eval()
    total, count = 0.0, 0
    for batch, flat, targets in batches:
        total += float(_mlm_loss(model, batch, flat, targets, device, bf16)) * len(targets)
        count += len(targets)
    return total / count


# -------------------------------------------------------------------------------------- fine-tuning


def finetune(pretrained: PretrainResult, cohort: Cohort, task: str, *, seed: int = 0, device: str = "auto",
             epochs: int | None = None, progress: ProgressCallback | None = None, lr: float | None = None,
             patience: int | None = None) -> TrainedBert:
    """Fine-tune a copy of the MLM encoder plus a fresh MLP head on ``task``.

    BCEWithLogits with pos_weight = N_neg/N_pos (train split), AdamW, ReduceLROnPlateau on validation
    AUROC (max, patience 2, factor 0.5), early stopping on validation AUROC; the best-validation
    weights are kept and the macro-F1 threshold is chosen on validation
    (:class:`~hicd_core.models.common.FinetuneTail`). ``metrics`` uses the keys listed in
    :mod:`hicd_core.models.common`: ``history``, ``best_epoch``, ``threshold``, ``validation``, ``test``...
    """
    recipe, dev = _resolve(pretrained.preset, device)
    seed_everything(seed)
    started = time.perf_counter()
    progress = progress or no_progress
    n_epochs = recipe.finetune_epochs if epochs is None else int(epochs)
    patience = recipe.finetune_patience if patience is None else patience

    model = copy.deepcopy(pretrained.model).to(dev)
    model.reset_task_head()
    run = TrainedBert(model=model, vocab=pretrained.vocab, preset=pretrained.preset, seed=seed,
                      cohort_fingerprint=cohort.fingerprint, cohort_site=cohort.site, bf16=pretrained.bf16,
                      mask_hierarchy=pretrained.mask_hierarchy, eval_batch=recipe.eval_batch, task=task,
                      device=dev)
    samples, _ = run._tokenize(cohort, task, None)
    train_idx, val_idx, test_idx = (samples.indices(s) for s in (TRAIN, VALIDATION, TEST))
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"task {task!r} needs train and validation samples "
                         f"(has {len(train_idx)} train, {len(val_idx)} val)")
    y_train, y_val = samples.label[train_idx], samples.label[val_idx]
    n_pos = int(y_train.sum())
    pos_weight = torch.tensor((len(y_train) - n_pos) / max(n_pos, 1), dtype=torch.float32, device=dev)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = _optimizer(model, recipe.finetune_lr if lr is None else lr, recipe.weight_decay)
    tail = FinetuneTail(model, opt, patience=patience, min_delta=1e-4, lr_patience=2, lr_factor=0.5,
                        total=n_epochs, stage="finetune", label=task, progress=progress)
    rng = np.random.default_rng(seed)
    lengths = samples.lengths

    def predict(idx: np.ndarray) -> np.ndarray:
        return run._forward_all(samples, idx, "prob")

    for epoch in range(1, n_epochs + 1):
        tail.start_epoch()
        n_tok = 0
        order = rng.permutation(len(train_idx))
        for b in bucketed_batches(order, lengths[train_idx], recipe.finetune_batch, rng):
            batch = samples.batch(train_idx[b])
            with precision(dev, run.bf16):
                logits = model(*model_inputs(batch, dev))
            loss = loss_fn(logits.float(), batch["label"].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tail.add_loss(loss, len(b))
            n_tok += int(batch["codes"].numel())
        tokens_per_s = n_tok / tail.elapsed()
        if tail.end_epoch(epoch, y_val, predict(val_idx), tokens_per_s=tokens_per_s):
            break
    metrics = tail.finish(y_val, lambda: predict(val_idx), samples.label[test_idx], lambda: predict(test_idx))
    run.threshold = metrics["threshold"]
    tail.remember(run, cohort, task, {VALIDATION: samples.sample_id[val_idx],
                                      TEST: samples.sample_id[test_idx]})
    metrics.update({"task": task, "setting": run.setting.key, "pos_weight": float(pos_weight),
                    "pretrain_history": pretrained.metrics.get("history"),
                    "pretrain_best_epoch": pretrained.metrics.get("best_epoch"),
                    "pretrain_best_val_loss": pretrained.metrics.get("best_val_loss"),
                    "pretrain_seconds": pretrained.metrics.get("seconds"), "pretrain_seed": pretrained.seed,
                    "seconds": time.perf_counter() - started})
    run.metrics = metrics
    return run


# ------------------------------------------------------------------------------------------ loading


def _load(path: Path | str, kind: str, expect: dict[str, Any] | None, device: str
          ) -> tuple[dict[str, Any], HicdBert, BertVocab, dict[str, Any], torch.device]:
    path = Path(path)
    config, tensors, metrics = load_artifact(path, {"model": MODEL_NAME, "kind": kind, **(expect or {})})
    try:
        vocab = BertVocab.from_json(json.loads((path / VOCAB_FILE).read_text()))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path / VOCAB_FILE} is missing: the model cannot tokenise without it") from exc
    except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path / VOCAB_FILE} is not a valid HICD-BERT vocabulary ({exc})") from exc
    try:
        bert_config = BertConfig.from_dict(config["bert"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path / 'config.json'} has no valid 'bert' configuration ({exc})") from exc
    if bert_config.setting != config.get("setting"):
        raise ArtifactError(f"{path / 'config.json'}: setting {config.get('setting')!r} disagrees with the "
                            f"model configuration {bert_config.setting.key!r}")
    sizes = (bert_config.code_vocab_size, tuple(bert_config.level_vocab_sizes))
    if sizes != (vocab.n_codes, vocab.level_sizes):
        raise ArtifactError(f"{path}: {VOCAB_FILE} does not match the model's vocabulary sizes")
    dev = pick_device(device)
    model = HicdBert(bert_config)
    load_weights(model, tensors, path)
    return config, model.to(dev), vocab, metrics, dev


def _run_kwargs(config: dict[str, Any], model: HicdBert, vocab: BertVocab, metrics: dict[str, Any],
                dev: torch.device) -> dict[str, Any]:
    return {"model": model, "vocab": vocab, "preset": config.get("preset", "cpu"),
            "seed": int(config.get("seed", 0)), "cohort_fingerprint": config.get("cohort_fingerprint", ""),
            "cohort_site": config.get("cohort_site", ""), "bf16": bool(config.get("bf16", False)),
            "mask_hierarchy": bool(config.get("mask_hierarchy", False)),
            "eval_batch": int(config.get("eval_batch", 256)), "metrics": metrics, "task": config.get("task"),
            "device": dev}


def load_bert(path: Path | str, expect: dict[str, Any] | None = None, *, device: str = "auto") -> TrainedBert:
    """Load a fine-tuned model saved by :meth:`TrainedBert.save`.

    ``expect`` maps config keys to required values (``{"setting": Setting.G1_G2, "task":
    "readmission_30d"}``). Missing/corrupted files, a config of another setting, or weights that do
    not fit raise :class:`~hicd_core.models.common.ArtifactError`.
    """
    config, model, vocab, metrics, dev = _load(path, TrainedBert.kind, expect, device)
    return TrainedBert(**_run_kwargs(config, model, vocab, metrics, dev),
                       threshold=float(config.get("threshold", metrics.get("threshold", 0.5))))


def load_pretrained(path: Path | str, expect: dict[str, Any] | None = None, *, device: str = "auto"
                    ) -> PretrainResult:
    """Load an MLM-only encoder saved by :meth:`PretrainResult.save` (same checks as :func:`load_bert`)."""
    config, model, vocab, metrics, dev = _load(path, PretrainResult.kind, expect, device)
    return PretrainResult(**_run_kwargs(config, model, vocab, metrics, dev))
