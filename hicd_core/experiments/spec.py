"""What a sweep runs: run specifications, presets, and the stable keys that make runs resumable.

A run is one (model family, hierarchy setting, task, seed) trained on one cohort, or one transfer
probe of such a run onto the target site. Its id combines a readable prefix with a hash of
everything that changes its result (config, cohort fingerprint, code version), so a finished run is
never redone and a changed config or cohort never reuses a stale run.

Run-id rules for the variants (``RunSpec.hierarchy``, ``RunSpec.mask_hierarchy``): a field at its
default is left out of the hash, so every run stored before these fields existed keeps its id; a
permuted-hierarchy run gets ``-permuted`` in its prefix and its own hash. The flat setting has no
hierarchy, so it is one run under both trees and with or without hierarchy masking (the spec
normalises it to ``real`` / unmasked, same id); ``mask_hierarchy`` only exists for HICD-BERT.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hicd_core import CODE_VERSION
from hicd_core.hierarchy import SETTINGS, Setting
from hicd_core.hierarchy.levels import HIERARCHIES
from hicd_core.runtime import stable_hash

#: Every model family a sweep can train; ``counts-*`` are the bag-of-codes baselines (counts-gbm opt-in).
MODELS = ("bert", "graph", "counts-lr", "counts-gbm")
#: The families a preset trains unless it names its own.
DEFAULT_MODELS = ("bert", "graph", "counts-lr")
#: The default bundle's tasks (the paper's); ``--tasks`` also accepts the censoring variant.
DEFAULT_TASKS = ("readmission_30d", "emergency_next")
SOURCE_TASKS = (*DEFAULT_TASKS, "readmission_30d_excl_deaths")
TRANSFER_TASK = "icu_readmission"
#: Which task runs store the embedding analysis (vectors, tightness, UMAP): ``first-seed`` (the
#: default: the lowest seed of the sweep's specs; the Embeddings page shows one seed at a time, and
#: on the default bundle the analysis is 16% of a seed's CPU time, bench_sweep), ``all`` or ``none``.
#: Not part of any run key: it adds files to a run, never changes its numbers.
EMBEDDING_SCOPES = ("first-seed", "all", "none")
#: RunSpec fields added after runs were stored: left out of the run key at these defaults.
_KEY_DEFAULTS = {"hierarchy": "real", "mask_hierarchy": False}


@dataclass(frozen=True)
class RunSpec:
    """One run. ``kind`` is ``task`` (train + test on the source site) or ``transfer`` (frozen encoder
    from the source-site ``task`` run, logistic-regression probe on the target site's ``target_task``).
    ``hierarchy`` is ``real`` or ``permuted`` (the permuted-hierarchy control, permutation seeded with
    ``seed``); ``mask_hierarchy`` is HICD-BERT's leak-free MLM (level ids hidden at [MASK])."""

    model: str
    setting: Setting
    task: str
    seed: int
    preset: str
    scheme: str
    kind: str = "task"
    target_task: str | None = None
    encoder: str = "finetuned"  # transfer: 'finetuned' task encoder, or 'mlm' (HICD-BERT only)
    epochs_scale: float = 1.0
    hierarchy: str = "real"
    mask_hierarchy: bool = False

    def __post_init__(self) -> None:
        # run.json stores the plain key; a spec read back from it gets the Setting again.
        object.__setattr__(self, "setting", Setting(self.setting))
        if self.hierarchy not in HIERARCHIES:
            raise ValueError(f"hierarchy must be one of {', '.join(HIERARCHIES)}, got {self.hierarchy!r}")
        # No hierarchy embedding to permute or mask: the same experiment, so the same run.
        if self.setting.is_flat:
            object.__setattr__(self, "hierarchy", "real")
        if self.setting.is_flat or self.model != "bert":
            object.__setattr__(self, "mask_hierarchy", False)

    def _key_fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in _KEY_DEFAULTS or v != _KEY_DEFAULTS[k]}

    def key(self, source_fingerprint: str, target_fingerprint: str | None = None) -> str:
        parts = [self._key_fields(), source_fingerprint, CODE_VERSION]
        if self.kind == "transfer":
            parts.append(target_fingerprint)
        return stable_hash(*parts)[:10]

    def run_id(self, source_fingerprint: str, target_fingerprint: str | None = None) -> str:
        prefix = f"{self.model}-{self.setting}-{self.task}-s{self.seed}"
        if self.kind == "transfer":
            prefix = f"transfer-{self.model}-{self.setting}-{self.task}-to-{self.target_task}-s{self.seed}"
            if self.encoder != "finetuned":
                prefix += f"-{self.encoder}"
        prefix += "-permuted" if self.hierarchy == "permuted" else ""
        prefix += "-maskh" if self.mask_hierarchy else ""
        return f"{prefix}-{self.key(source_fingerprint, target_fingerprint)}"

    @property
    def shared_key(self) -> tuple:
        """Runs with the same shared key reuse one pretraining (HICD-BERT MLM / HICD-Graph GCN); the
        variant fields join it only when set, so existing shared folders keep their names."""
        base = (self.model, self.setting, self.seed, self.preset, self.scheme, self.epochs_scale)
        extra = tuple(f"{k}={v}" for k, v in self._key_fields().items() if k in _KEY_DEFAULTS)
        return base + extra


@dataclass(frozen=True)
class SweepPreset:
    """A named bundle of runs. ``model_preset`` picks model sizes (``auto``: paper on CUDA, cpu otherwise);
    ``schemes`` maps model family to level scheme (a family it leaves out, such as the ``counts-*``
    baselines, gets ``ontology``: chapter / block / category); ``cohort`` and ``target`` name the data
    (``synthetic``, ``mimic-iv:PATH``, ``mimic-iii:PATH``, ``meds:PATH``; ``eicu:PATH`` or ``none``;
    the CLI's ``--cohort`` and ``--target`` override them). ``hierarchies`` lists the trees the
    hierarchical settings train on (``real``, ``permuted``: the permuted-hierarchy control);
    ``mask_hierarchy`` switches HICD-BERT to the leak-free MLM; ``hierarchy_signal`` picks the
    synthetic data's share of outcome risk in the hierarchy (None: the generator's 0.7; only with the
    synthetic cohort). A preset round-trips through JSON (:meth:`to_json`, :func:`load_preset`), which
    is how the app hands a sweep to its background process.
    """

    name: str
    models: tuple[str, ...] = DEFAULT_MODELS
    settings: tuple[Setting, ...] = SETTINGS
    tasks: tuple[str, ...] = DEFAULT_TASKS
    seeds: tuple[int, ...] = (0,)
    transfer: bool = True
    transfer_from: str = "readmission_30d"
    model_preset: str = "auto"
    schemes: dict[str, str] = field(default_factory=lambda: {"bert": "ontology", "graph": "graph"})
    epochs_scale: float = 1.0
    synthetic_patients: int | None = None  # None: the generator's default size
    cohort: str = "synthetic"
    target: str | None = None  # None: the synthetic target with a synthetic cohort, else no target
    description: str = ""
    hierarchies: tuple[str, ...] = ("real",)
    mask_hierarchy: bool = False
    hierarchy_signal: float | None = None

    def __post_init__(self) -> None:
        # JSON gives lists and plain keys; the preset always holds checked tuples and Settings, and
        # a wrong value is an error naming the key before anything runs (never reinterpreted).
        for key, value in _checked_fields(self).items():
            object.__setattr__(self, key, value)

    def runs(self, model_preset: str) -> list[RunSpec]:
        """Seed-major: every run of the first seed (task runs in paper table order, real tree first,
        then the transfer probes that read them) before any run of the next seed, so a complete
        one-seed picture comes first and later seeds tighten it."""
        runs: list[RunSpec] = []
        for seed in self.seeds:
            tasks = list(dict.fromkeys(  # the flat run is one run under every tree (RunSpec)
                RunSpec(model=m, setting=s, task=t, seed=seed, preset=model_preset,
                        scheme=self.schemes.get(m, "ontology"), epochs_scale=self.epochs_scale,
                        hierarchy=h, mask_hierarchy=self.mask_hierarchy)
                for h in self.hierarchies for m in self.models for t in self.tasks for s in self.settings))
            runs += tasks
            if self.transfer and self.transfer_from in self.tasks:
                runs += [replace(r, kind="transfer", target_task=TRANSFER_TASK)
                         for r in tasks if r.task == self.transfer_from]
        return runs

    def with_overrides(self, **overrides) -> SweepPreset:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str) -> SweepPreset:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"preset {name!r}: unknown field(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**{"name": name, **data})


MODEL_PRESETS = ("auto", "cpu", "paper")


def _checked_fields(preset: SweepPreset) -> dict[str, Any]:
    """Every field of a preset checked for type and range; the normalised values to set."""
    from hicd_core.hierarchy import SCHEMES

    def fail(key: str, message: str) -> ValueError:
        return ValueError(f"preset {preset.name!r}: {key} {message}")

    def is_list(value: object) -> bool:
        return isinstance(value, list | tuple) and len(value) > 0

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def choices(key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        value = getattr(preset, key)
        if not isinstance(value, list | tuple):
            raise fail(key, f"must be a list, got {value!r}")
        bad = [v for v in value if v not in allowed]
        if bad or not value:
            raise fail(key, f"has {', '.join(map(repr, bad)) or 'nothing'}; choose from {', '.join(allowed)}")
        return tuple(value)

    out: dict[str, Any] = {"models": choices("models", MODELS), "tasks": choices("tasks", SOURCE_TASKS),
                           "hierarchies": choices("hierarchies", HIERARCHIES)}
    if not is_list(preset.settings):
        raise fail("settings", f"must be a non-empty list of keys like '011', got {preset.settings!r}")
    try:
        out["settings"] = tuple(Setting(s) for s in preset.settings)
    except ValueError as exc:
        raise fail("settings", str(exc)) from None
    seeds = preset.seeds
    if not is_list(seeds) or not all(is_int(s) and s >= 0 for s in seeds):
        raise fail("seeds", f"must be a non-empty list of non-negative integers, got {seeds!r}")
    out["seeds"] = tuple(seeds)
    if not isinstance(preset.transfer, bool):
        raise fail("transfer", f"must be true or false, got {preset.transfer!r}")
    if preset.transfer_from not in SOURCE_TASKS:
        raise fail("transfer_from", f"must be one of {', '.join(SOURCE_TASKS)}, got {preset.transfer_from!r}")
    if preset.model_preset not in MODEL_PRESETS:
        raise fail("model_preset", f"must be one of {', '.join(MODEL_PRESETS)}, got {preset.model_preset!r}")
    schemes = preset.schemes
    if not isinstance(schemes, dict) or any(k not in MODELS or v not in SCHEMES for k, v in schemes.items()):
        raise fail("schemes", f"must map {'/'.join(MODELS)} to one of {', '.join(SCHEMES)}, got {schemes!r}")
    scale = preset.epochs_scale
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 100:
        raise fail("epochs_scale", f"must be a number in (0, 100], got {scale!r}")
    patients = preset.synthetic_patients
    if patients is not None and not (is_int(patients) and patients >= 100):
        raise fail("synthetic_patients", f"must be null or an integer of at least 100, got {patients!r}")
    for key in ("cohort", "description"):
        if not isinstance(getattr(preset, key), str) or (key == "cohort" and not preset.cohort.strip()):
            raise fail(key, f"must be a non-empty string, got {getattr(preset, key)!r}")
    if preset.target is not None and (not isinstance(preset.target, str) or not preset.target.strip()):
        raise fail("target", f"must be null, 'none' or 'eicu:PATH', got {preset.target!r}")
    if not isinstance(preset.mask_hierarchy, bool):
        raise fail("mask_hierarchy", f"must be true or false, got {preset.mask_hierarchy!r}")
    signal = preset.hierarchy_signal
    if signal is not None and (isinstance(signal, bool) or not isinstance(signal, int | float)
                               or not 0 <= signal <= 1):
        raise fail("hierarchy_signal", f"must be null or a number in [0, 1], got {signal!r}")
    return out


#: The default bundle's seeds: training-seed variance is as large as the effects, so the headline
#: comparison is across seeds (runs are seed-major, so seed 0's complete picture comes first).
DEFAULT_SEEDS = (0, 1, 2)

PRESETS: dict[str, SweepPreset] = {
    "default": SweepPreset(
        name="default", seeds=DEFAULT_SEEDS,
        description="The bundle the app shows: 8 settings x HICD-BERT, HICD-Graph and the counts-lr "
                    "baseline x readmission_30d and emergency_next, plus eICU-layout transfer, three seeds "
                    "(seed-major), on the synthetic default. HICD-BERT and counts-lr use the ontology level "
                    "scheme."),
    "paper": SweepPreset(
        name="paper", model_preset="paper", seeds=(0, 1, 2), schemes={"bert": "prefix", "graph": "graph"},
        description="Paper-size models (HICD-BERT d=512, 6 layers, prefix levels as in the paper; GCN 400 "
                    "epochs, 15 transformer epochs without early stop), three seeds: meant for a GPU and "
                    "a real MIMIC-IV / eICU copy."),
    "null": SweepPreset(
        name="null", seeds=DEFAULT_SEEDS, hierarchy_signal=0.0,
        description="Control: the default design on synthetic data generated with hierarchy_signal 0 "
                    "(no outcome risk in the hierarchy), so a 'significant' gain is a false positive or "
                    "capacity, not clinical structure (pair it with the permuted-hierarchy control to tell "
                    "them apart)."),
    "control": SweepPreset(
        name="control", seeds=DEFAULT_SEEDS, hierarchies=("real", "permuted"),
        description="Control: the default bundle plus every hierarchical setting trained on a permuted "
                    "hierarchy (codes shuffled between groups, group sizes kept; the flat runs are "
                    "shared). Works with any --cohort."),
    "tiny": SweepPreset(
        name="tiny", tasks=("readmission_30d",), epochs_scale=0.34, synthetic_patients=1500,
        description="A seconds-scale smoke bundle for tests and first runs: all 8 settings, HICD-BERT, "
                    "HICD-Graph and counts-lr, one task, transfer, short training."),
}


def load_preset(name: str) -> SweepPreset:
    """A built-in preset by name, or a JSON file holding SweepPreset fields."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"preset file {path} is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"preset file {path} must hold one JSON object of preset fields")
        return SweepPreset.from_dict(data, path.stem)
    raise ValueError(f"unknown preset {name!r}: use {', '.join(PRESETS)} or a .json file of preset fields")


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
