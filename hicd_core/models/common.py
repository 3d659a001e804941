"""Plumbing shared by HICD-BERT and HICD-Graph: devices, precision, progress, batching, artifacts,
early stopping, and the fine-tune tail (:class:`FinetuneTail`).

Artifacts are directories holding ``config.json`` + ``model.safetensors`` + ``metrics.json`` (and any
extra JSON such as a vocabulary). safetensors cannot execute code on load, so nothing here ever
unpickles. Directories are written to a temporary sibling and renamed in one step, so a crash never
leaves a half-written model that looks complete.

Metric keys: a fine-tuned model's ``metrics`` (its ``metrics.json``, and what the sweep stores under
``training``) use one vocabulary for both models; :class:`FinetuneTail` writes the first six.

===================== ==========================================================================
key                   meaning
===================== ==========================================================================
``history``           per-epoch fine-tuning rows: ``epoch``, ``train_loss`` (mean over the epoch's
                      samples), ``val_auroc`` (NaN where undefined), ``lr`` (after the scheduler
                      step), ``seconds``; HICD-BERT adds ``tokens_per_s``
``best_epoch``        the epoch whose weights were kept (best validation AUROC)
``stopped_epoch``     epochs run (fewer than asked when early stopping fired)
``threshold``         the macro-F1 decision threshold, chosen on the validation split
``validation``        :func:`~hicd_core.stats.binary_metrics` on the validation split at ``threshold``
``test``              the same on the test split (when it has samples)
``task``, ``setting`` the task name and the setting's three-digit key
``pos_weight``        the positive-class weight of the BCE loss
``seconds``           wall time of the fine-tuning
``pretrain_history``  per-epoch rows of the task-independent stage: HICD-BERT's MLM (``epoch``,
                      ``train_loss``, ``val_loss``, ``lr``, ``seconds``, ``tokens_per_s``), HICD-Graph's
                      GCN (``epoch``, ``train_loss``, and ``link_auc`` every ``gcn_eval_every`` epochs)
``pretrain_seconds``  wall time of that stage
===================== ==========================================================================

Only one model has: HICD-BERT ``pretrain_best_epoch``, ``pretrain_best_val_loss``, ``pretrain_seed``;
HICD-Graph ``link_auc`` (final held-out link-prediction AUROC), ``class_balance``, ``graph``. The
pretraining stages keep their own rows as ``history`` too (``PretrainResult.history`` with
``best_epoch`` and ``best_val_loss`` in its metrics, ``GCNResult.history``). The sweep's run
``metrics.json`` recomputes ``test``, ``validation`` and ``threshold`` at its top level.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hicd_core import CODE_VERSION
from hicd_core.checksums import DamagedArtifactError, verify_or_raise, write_manifest
from hicd_core.runtime import atomic_directory, library_versions
from hicd_core.stats import auroc, binary_metrics, choose_threshold

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.json", "model.safetensors", "metrics.json"


class ArtifactError(RuntimeError):
    """A model directory is missing, truncated, corrupted, or belongs to another configuration."""


def pick_device(requested: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is a clear error.

    A ``torch.device`` is returned unchanged, so callers can pass either form through.
    """
    if isinstance(requested, torch.device):
        return requested
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch sees no CUDA device")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    return torch.device(requested)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matmul units (AVX512-BF16 or AMX). Without them PyTorch emulates
    bf16 and it is far slower than fp32: measured on an AMD EPYC with AVX2 only, 1 thread
    (2026-12-06), the cpu-preset MLM step ran at 2.0k tokens per CPU-second in bf16 against 12.6k
    in fp32, and HICD-GCN's Gram-matrix decoder took 3.19 CPU-s in bf16 against 0.28 in fp32.
    (Hand-written: PyTorch exposes these checks only as ``torch.cpu._is_*_supported``.)"""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(device: torch.device | str, requested: bool = True) -> bool:
    """bf16 where it pays: CUDA, or a CPU with native bf16 units (:func:`cpu_has_native_bf16`)."""
    kind = torch.device(device).type
    return bool(requested) and (kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16()))


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision: bf16 autocast on CUDA (no loss scaling needed) and on CPUs with bf16 units
    (~4x fp32 matmul throughput with AMX); plain fp32 elsewhere (:func:`use_bf16`) and with
    ``enabled=False``."""
    if not use_bf16(device, enabled):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass
class ProgressEvent:
    """One progress report. ``fraction`` is the share of this run done, in [0, 1]."""

    stage: str
    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    started_at: float = field(default_factory=time.time)

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    """Default callback: report nothing."""


class EarlyStopping:
    """Tracks the best value of a monitored metric; ``step`` returns True when training should stop."""

    def __init__(self, patience: int, min_delta: float = 1e-4, mode: str = "max") -> None:
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best: float | None = None
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, value: float) -> bool:
        if self.improved(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs > self.patience


class FinetuneTail:
    """The bookkeeping both fine-tuning loops share: per epoch and once training stops.

    Per epoch: :meth:`start_epoch` (train mode, clock), :meth:`add_loss` per batch, then
    :meth:`end_epoch` with the validation probabilities: validation AUROC (0.5, chance, stands in
    for the scheduler and early stopping where it is undefined), one ``ReduceLROnPlateau(max)``
    step, the ``history`` row, a CPU copy of the weights when the monitored value improved, one
    progress event, and whether early stopping says stop. At the end, :meth:`finish` loads the best
    weights back, chooses the macro-F1 threshold on validation and returns the metrics at it (the
    first keys of the table in this module's docstring).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, patience: int,
                 min_delta: float, lr_patience: int, lr_factor: float, total: int, stage: str, label: str,
                 progress: ProgressCallback) -> None:
        self.model, self.optimizer, self.progress = model, optimizer, progress
        self.total, self.stage, self.label = total, stage, label
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", patience=lr_patience, factor=lr_factor)
        self.stopper = EarlyStopping(patience, min_delta, mode="max")
        self.best_state, self.best_epoch = state_dict_cpu(model), 0
        self.best_val_prob: np.ndarray | None = None  # what the kept weights gave on validation
        #: ``validation`` / ``test`` probabilities of the kept weights, set by :meth:`finish`
        self.final_probs: dict[str, np.ndarray] = {}
        self.history: list[dict[str, float]] = []
        self._started, self._loss_sum, self._loss_count = 0.0, 0.0, 0

    def start_epoch(self) -> None:
        self._started, self._loss_sum, self._loss_count = time.perf_counter(), 0.0, 0
        self.model.train()

    def add_loss(self, loss: torch.Tensor, n: int) -> None:
        """Count one batch's mean loss for ``n`` samples towards the epoch's ``train_loss``."""
        self._loss_sum += float(loss.detach()) * n
        self._loss_count += n

    def elapsed(self) -> float:
        """Seconds since :meth:`start_epoch`."""
        return time.perf_counter() - self._started

    def end_epoch(self, epoch: int, y_val: np.ndarray, val_prob: np.ndarray, **extra: float) -> bool:
        """Record epoch ``epoch`` (``extra`` goes into its row); True when training should stop."""
        val_auroc = auroc(y_val, val_prob)
        monitored = 0.5 if math.isnan(val_auroc) else val_auroc
        self.scheduler.step(monitored)
        train_loss = self._loss_sum / max(self._loss_count, 1)
        row = {"epoch": epoch, "train_loss": train_loss, "val_auroc": val_auroc,
               "lr": float(self.optimizer.param_groups[0]["lr"]), "seconds": self.elapsed(), **extra}
        self.history.append(row)
        if self.stopper.improved(monitored):
            self.best_state, self.best_epoch = state_dict_cpu(self.model), epoch
            self.best_val_prob = np.array(val_prob, copy=True)
        stop = self.stopper.step(monitored)
        message = f"{self.label} epoch {epoch}/{self.total}: val AUROC {val_auroc:.4f}"
        self.progress(ProgressEvent(stage=self.stage, step=epoch, total=self.total, metrics=dict(row),
                                    message=message))
        return stop

    def finish(self, y_val: np.ndarray, predict_val: Callable[[], np.ndarray],
               y_test: np.ndarray | None = None, predict_test: Callable[[], np.ndarray] | None = None
               ) -> dict[str, Any]:
        """Best weights back (eval mode), threshold on validation, metrics at it.

        ``predict_*`` return the current model's probabilities for the split whose labels are
        ``y_*``; the test metrics are left out when ``predict_test`` is None or ``y_test`` is empty.
        The validation probabilities of the kept epoch are reused, not recomputed: the same weights in
        eval mode on the same batches give the same numbers. Both splits' are kept in
        :attr:`final_probs` for :meth:`remember`.
        """
        self.model.load_state_dict(self.best_state)
        self.model.eval()
        p_val = self.best_val_prob if self.best_val_prob is not None else predict_val()
        self.final_probs = {"validation": p_val}
        threshold = choose_threshold(y_val, p_val)
        metrics: dict[str, Any] = {"threshold": threshold,
                                   "validation": binary_metrics(y_val, p_val, threshold)}
        if predict_test is not None and y_test is not None and len(y_test):
            self.final_probs["test"] = predict_test()
            metrics["test"] = binary_metrics(y_test, self.final_probs["test"], threshold)
        metrics.update({"history": self.history, "best_epoch": self.best_epoch,
                        "stopped_epoch": len(self.history)})
        return metrics


    def remember(self, model: Any, cohort: Any, task: str, sample_ids: dict[str, np.ndarray],
                 dtype: type = np.float32) -> None:
        """Hand the kept weights' final probabilities to ``model`` (:func:`remember_predictions`), so
        its first ``predict`` of those splits costs no forward pass. ``sample_ids`` maps the split
        names (``val``, ``test``) to the ids in the order the probabilities were computed; ``dtype``
        is what the model's own ``predict`` returns."""
        import pandas as pd

        from hicd_core.cohort.schema import TEST, VALIDATION

        for split, key in ((VALIDATION, "validation"), (TEST, "test")):
            if key in self.final_probs and split in sample_ids:
                remember_predictions(model, cohort, task, split, pd.DataFrame(
                    {"sample_id": sample_ids[split], "prob": self.final_probs[key].astype(dtype)}))


def remember_predictions(model: Any, cohort: Any, task: str, split: str, predictions: Any) -> None:
    """Keep a finished model's probabilities for one split of ``cohort``'s ``task``, so the first
    ``predict`` of that split (the sweep's evaluation) is served without another forward pass.

    Keyed on the task table object itself (as the token cache is), so a modified copy of the cohort
    is never served these numbers; a saved and reloaded model starts without them."""
    memo = model.__dict__.setdefault("_split_predictions", [])
    memo.append((cohort.tasks[task], task, split, predictions.copy()))


def recalled_predictions(model: Any, cohort: Any, task: str, split: str | None) -> Any | None:
    """What :func:`remember_predictions` kept for this split, as a fresh copy; None if nothing."""
    frame = cohort.tasks.get(task)
    for kept_frame, kept_task, kept_split, predictions in model.__dict__.get("_split_predictions", ()):
        if kept_frame is frame and kept_task == task and kept_split == split:
            return predictions.copy()
    return None


def bucketed_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                     chunk_batches: int = 50) -> list[np.ndarray]:
    """Cut an epoch's sample order into batches of similar length, in shuffled batch order.

    ``order`` (indices into ``lengths``: a shuffle, or a weighted sampler's draw) is split into
    chunks of ``chunk_batches`` batches; each chunk is sorted by length (stable) before cutting, and
    the batch order is then shuffled with ``rng``. Which samples an epoch sees is unchanged; sorting
    only inside chunks keeps batches random enough for SGD while padding (and so compute) stays small.
    """
    order = np.asarray(order)
    span = batch_size * chunk_batches
    batches: list[np.ndarray] = []
    for lo in range(0, len(order), span):
        chunk = order[lo: lo + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def state_dict_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of the weights (for best-checkpoint keeping and saving)."""
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in module.state_dict().items()}


def save_artifact(path: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                  metrics: dict[str, Any] | None = None, extra_json: dict[str, Any] | None = None) -> Path:
    """Write a model directory atomically; the config gets library versions and the code version, and
    a checksum manifest of every file is written last (verified by :func:`load_artifact`)."""
    config = {**config, "code_version": CODE_VERSION, "library_versions": library_versions()}
    with atomic_directory(Path(path)) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        (tmp / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2, sort_keys=True, default=str))
        for name, obj in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(obj, sort_keys=True, default=str))
        write_manifest(tmp)
    return Path(path)


def load_artifact(path: Path, expect: dict[str, Any] | None = None
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model directory; raise :class:`ArtifactError` naming the file on any problem.

    ``expect`` maps config keys to required values (e.g. ``{"model": "bert", "setting": Setting.G1_G2}``),
    so loading weights into the wrong configuration fails loudly instead of silently.
    """
    path = Path(path)
    expect = expect or {}
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ArtifactError(f"{path / name} is missing: {path} is not a complete model directory")
    try:  # every file of the directory against its manifest: flipped weights never load silently
        verify_or_raise(path, required=(CONFIG_FILE, WEIGHTS_FILE))
    except DamagedArtifactError as exc:
        what = "is missing" if exc.reason == "missing" else f"is corrupted or truncated: {exc.reason}"
        raise ArtifactError(f"{exc.path} {what} (retrain it: a sweep redoes damaged runs)") from exc
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path / CONFIG_FILE} is not valid JSON ({exc})") from exc
    for key, value in expect.items():
        if config.get(key) != value:
            raise ArtifactError(f"{path / CONFIG_FILE} has {key}={config.get(key)!r}, expected {value!r}: "
                                "this model was trained for another configuration")
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path / WEIGHTS_FILE} is corrupted or truncated ({exc})") from exc
    metrics_path = path / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return config, tensors, metrics


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """``load_state_dict(strict=True)`` with an error that names the artifact."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{source}: weights do not fit the model its config describes ({exc})") from exc


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t['seconds']``."""
    box: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start
