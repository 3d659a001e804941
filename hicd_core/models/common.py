"""Plumbing shared by HICD-BERT and HICD-Graph: devices, precision, progress, batching, artifacts,
early stopping.

Artifacts are directories holding ``config.json`` + ``model.safetensors`` + ``metrics.json`` (and any
extra JSON such as a vocabulary). safetensors cannot execute code on load, so nothing here ever
unpickles. Directories are written to a temporary sibling and renamed in one step, so a crash never
leaves a half-written model that looks complete.
"""

from __future__ import annotations

import contextlib
import json
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
from hicd_core.hierarchy import setting_key
from hicd_core.runtime import atomic_directory, library_versions

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


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed precision: bf16 autocast on CPU (~4x fp32 matmul throughput on this class of CPU) and
    bf16 on CUDA (no loss scaling needed). ``enabled=False`` gives plain fp32."""
    if not enabled:
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
    """Write a model directory atomically; the config gets library versions and the code version."""
    config = {**config, "code_version": CODE_VERSION, "library_versions": library_versions()}
    with atomic_directory(Path(path)) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        (tmp / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2, sort_keys=True, default=str))
        for name, obj in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(obj, sort_keys=True, default=str))
    return Path(path)


def load_artifact(path: Path, expect: dict[str, Any] | None = None
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model directory; raise :class:`ArtifactError` naming the file on any problem.

    ``expect`` maps config keys to required values (e.g. ``{"model": "bert", "setting": "011"}``),
    so loading weights into the wrong configuration fails loudly instead of silently. A ``setting``
    may also be given as a tuple of switches (``(0, 1, 1)``); it is compared as its key (``'011'``).
    """
    path = Path(path)
    expect = {key: setting_key(value) if key == "setting" and not isinstance(value, str) else value
              for key, value in (expect or {}).items()}
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ArtifactError(f"{path / name} is missing: {path} is not a complete model directory")
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
