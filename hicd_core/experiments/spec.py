"""What a sweep runs: run specifications, presets, and the stable keys that make runs resumable.

A run is one (model family, hierarchy setting, task, seed) trained on one cohort, or one transfer
probe of such a run onto the target site. Its id combines a readable prefix with a hash of
everything that changes its result (config, cohort fingerprint, code version), so a finished run is
never redone and a changed config or cohort never reuses a stale run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hicd_core import CODE_VERSION
from hicd_core.hierarchy import SETTINGS, parse_setting, setting_key
from hicd_core.runtime import stable_hash

MODELS = ("bert", "graph")
SOURCE_TASKS = ("readmission_30d", "emergency_next")
TRANSFER_TASK = "icu_readmission"


@dataclass(frozen=True)
class RunSpec:
    """One run. ``kind`` is ``task`` (train + test on the source site) or ``transfer`` (frozen encoder
    from the source-site ``task`` run, logistic-regression probe on the target site's ``target_task``)."""

    model: str
    setting: str
    task: str
    seed: int
    preset: str
    scheme: str
    kind: str = "task"
    target_task: str | None = None
    encoder: str = "finetuned"  # transfer: 'finetuned' task encoder, or 'mlm' (HICD-BERT only)
    epochs_scale: float = 1.0

    def key(self, source_fingerprint: str, target_fingerprint: str | None = None) -> str:
        parts = [asdict(self), source_fingerprint, CODE_VERSION]
        if self.kind == "transfer":
            parts.append(target_fingerprint)
        return stable_hash(*parts)[:10]

    def run_id(self, source_fingerprint: str, target_fingerprint: str | None = None) -> str:
        prefix = f"{self.model}-{self.setting}-{self.task}-s{self.seed}"
        if self.kind == "transfer":
            prefix = f"transfer-{self.model}-{self.setting}-{self.task}-to-{self.target_task}-s{self.seed}"
            if self.encoder != "finetuned":
                prefix += f"-{self.encoder}"
        return f"{prefix}-{self.key(source_fingerprint, target_fingerprint)}"

    @property
    def shared_key(self) -> tuple[str, str, int, str, str, float]:
        """Runs with the same shared key reuse one pretraining (HICD-BERT MLM / HICD-Graph GCN)."""
        return (self.model, self.setting, self.seed, self.preset, self.scheme, self.epochs_scale)


@dataclass(frozen=True)
class SweepPreset:
    """A named bundle of runs. ``model_preset`` picks model sizes (``auto``: paper on CUDA, cpu
    otherwise); ``schemes`` maps model family to level scheme."""

    name: str
    models: tuple[str, ...] = MODELS
    settings: tuple[str, ...] = tuple(setting_key(s) for s in SETTINGS)
    tasks: tuple[str, ...] = SOURCE_TASKS
    seeds: tuple[int, ...] = (0,)
    transfer: bool = True
    transfer_from: str = "readmission_30d"
    model_preset: str = "auto"
    schemes: dict[str, str] = field(default_factory=lambda: {"bert": "ontology", "graph": "graph"})
    epochs_scale: float = 1.0
    synthetic_patients: int | None = None  # None: the generator's default size
    description: str = ""

    def runs(self, model_preset: str) -> list[RunSpec]:
        """Task runs first (in paper table order), then transfer probes that depend on them."""
        runs = [RunSpec(model=m, setting=s, task=t, seed=seed, preset=model_preset,
                        scheme=self.schemes.get(m, "ontology"), epochs_scale=self.epochs_scale)
                for seed in self.seeds for m in self.models for t in self.tasks for s in self.settings]
        if self.transfer and self.transfer_from in self.tasks:
            runs += [replace(r, kind="transfer", target_task=TRANSFER_TASK)
                     for r in runs if r.task == self.transfer_from]
        return runs

    def with_overrides(self, **overrides) -> SweepPreset:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, SweepPreset] = {
    "default": SweepPreset(
        name="default",
        description="The bundle the app shows: 8 settings x HICD-BERT and HICD-Graph x readmission_30d and "
                    "emergency_next, plus eICU-layout transfer, one seed, on the synthetic default."),
    "paper": SweepPreset(
        name="paper", model_preset="paper", seeds=(0, 1, 2),
        description="Paper-size models (HICD-BERT d=512, 6 layers; GCN 400 epochs), three seeds: "
                    "meant for a GPU and a real MIMIC-IV / eICU copy."),
    "tiny": SweepPreset(
        name="tiny", tasks=("readmission_30d",), epochs_scale=0.34, synthetic_patients=1500,
        description="A seconds-scale smoke bundle for tests and first runs: all 8 settings, both "
                    "models, one task, transfer, short training."),
}


def load_preset(name: str) -> SweepPreset:
    """A built-in preset by name, or a JSON file holding SweepPreset fields."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text())
        for key in ("models", "settings", "tasks", "seeds"):
            if key in data:
                data[key] = tuple(data[key])
        return SweepPreset(**{"name": path.stem, **data})
    raise ValueError(f"unknown preset {name!r}: use {', '.join(PRESETS)} or a .json file of preset fields")


def parse_settings(text: str) -> tuple[str, ...]:
    """``all`` or a comma list like ``000,011`` (validated)."""
    if text == "all":
        return tuple(setting_key(s) for s in SETTINGS)
    return tuple(setting_key(parse_setting(part.strip())) for part in text.split(",") if part.strip())


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [item for item in items if item not in allowed]
    if bad or not items:
        raise ValueError(f"unknown {what} {', '.join(bad) or '(none)'}; choose from {', '.join(allowed)}")
    return items


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from exc
    if not seeds:
        raise ValueError("--seeds is empty")
    return seeds
