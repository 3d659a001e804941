"""Adapters that give the sweep one interface over HICD-BERT, HICD-Graph and the counts baseline.

``prepare`` does the task-independent part once per (setting, seed) -- HICD-BERT's MLM pretraining,
HICD-Graph's graph + GCN -- and ``train`` fine-tunes one task from it. ``hierarchy="permuted"`` (the
permuted-hierarchy control, permutation seeded with the run's seed) reaches both models' level ids
there; ``mask_hierarchy`` is HICD-BERT's leak-free MLM (HICD-Graph has no MLM and ignores it).
Both trained models expose ``predict``, ``encode``, ``save`` and ``threshold``; ``embeddings``
returns the code embeddings the analysis uses (HICD-BERT: code embedding plus its enabled hierarchy
embeddings; HICD-Graph: GCN node embeddings of code nodes).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicd_core.cohort import Cohort
from hicd_core.hierarchy import Setting
from hicd_core.models.common import ProgressCallback


def resolve_model_preset(model_preset: str, device: str) -> str:
    from hicd_core.models.bert import default_preset
    from hicd_core.models.common import pick_device

    return default_preset(pick_device(device)) if model_preset == "auto" else model_preset


def _scaled(value: int, scale: float) -> int:
    return max(1, round(value * scale))


class BertFamily:
    name = "bert"

    def prepare(self, cohort: Cohort, setting: Setting, *, seed: int, preset: str, scheme: str, device: str,
                epochs_scale: float, shared_dir: Path | None, progress: ProgressCallback | None,
                hierarchy: str = "real", mask_hierarchy: bool = False) -> Any:
        from hicd_core.models.bert import PRESETS
        from hicd_core.models.bert_train import load_pretrained, pretrain_mlm
        from hicd_core.models.common import ArtifactError

        expect = {"setting": setting, "cohort_fingerprint": cohort.fingerprint}
        if shared_dir is not None and (shared_dir / "model.safetensors").is_file():
            try:
                return load_pretrained(shared_dir, expect, device=device)
            except ArtifactError:
                pass  # stale or damaged: retrain below and overwrite
        result = pretrain_mlm(cohort, setting, scheme=scheme, preset=preset, seed=seed,
                              device=device, epochs=_scaled(PRESETS[preset].pretrain_epochs, epochs_scale),
                              progress=progress, hierarchy=hierarchy, mask_hierarchy=mask_hierarchy)
        if shared_dir is not None:
            result.save(shared_dir)
        return result

    def train(self, prepared: Any, cohort: Cohort, task: str, setting: Setting, *, seed: int, preset: str,
              device: str, epochs_scale: float, progress: ProgressCallback | None) -> Any:
        from hicd_core.models.bert import PRESETS
        from hicd_core.models.bert_train import finetune

        return finetune(prepared, cohort, task, seed=seed, device=device, progress=progress,
                        epochs=_scaled(PRESETS[preset].finetune_epochs, epochs_scale))

    def load(self, path: Path, device: str) -> Any:
        from hicd_core.models.bert_train import load_bert

        return load_bert(path, device=device)

    def embeddings(self, trained: Any) -> tuple[list[str], np.ndarray]:
        meta, matrix = trained.code_embeddings()
        return meta["code"].astype(str).tolist(), matrix


class GraphFamily:
    name = "graph"

    def _config(self, preset: str, epochs_scale: float):
        from hicd_core.models.graph_model import graph_config

        config = graph_config(preset)  # the preset table sits next to GraphConfig
        return replace(config, gcn_epochs=_scaled(config.gcn_epochs, epochs_scale),
                       max_epochs=_scaled(config.max_epochs, epochs_scale))

    def prepare(self, cohort: Cohort, setting: Setting, *, seed: int, preset: str, scheme: str, device: str,
                epochs_scale: float, shared_dir: Path | None, progress: ProgressCallback | None,
                hierarchy: str = "real", mask_hierarchy: bool = False) -> Any:
        from hicd_core.models.graph_train import build_graph, train_gcn

        graph = build_graph(cohort, setting, hierarchy=hierarchy, permutation_seed=seed)
        # The GCN is cheap relative to the patient transformer and deterministic given the seed, so
        # it is recomputed after a restart rather than persisted on its own.
        return train_gcn(graph, seed=seed, device=device, progress=progress,
                         config=self._config(preset, epochs_scale))

    def train(self, prepared: Any, cohort: Cohort, task: str, setting: Setting, *, seed: int, preset: str,
              device: str, epochs_scale: float, progress: ProgressCallback | None) -> Any:
        from hicd_core.models.graph_train import train_graph_model

        return train_graph_model(cohort, task, setting, seed=seed, device=device, gcn=prepared,
                                 progress=progress, config=self._config(preset, epochs_scale))

    def load(self, path: Path, device: str) -> Any:
        from hicd_core.models.graph_train import load_graph_model

        return load_graph_model(path, device=device)

    def embeddings(self, trained: Any) -> tuple[list[str], np.ndarray]:
        nodes, matrix = trained.node_embeddings()
        keep = (nodes["kind"].astype(str) == "code").to_numpy()
        return nodes.loc[keep, "name"].astype(str).tolist(), np.asarray(matrix)[keep]


class CountsFamily:
    """The bag-of-codes baseline (:mod:`hicd_core.models.counts_train`), one family per estimator
    (``counts-lr``, ``counts-gbm``). ``prepare`` builds the train-split vocabulary and roll-ups and the
    source's visit counts once per (setting, seed); nothing is persisted under ``shared/`` (seconds to
    rebuild). It has no embeddings (``has_embeddings``) and its own transfer (:meth:`transfer`)."""

    has_embeddings = False

    def __init__(self, estimator: str) -> None:
        self.estimator = estimator
        self.name = f"counts-{estimator}"

    def prepare(self, cohort: Cohort, setting: Setting, *, seed: int, preset: str, scheme: str, device: str,
                epochs_scale: float, shared_dir: Path | None, progress: ProgressCallback | None,
                hierarchy: str = "real", mask_hierarchy: bool = False) -> Any:
        from hicd_core.models.counts_train import prepare_features

        return prepare_features(cohort, setting, scheme=scheme, hierarchy=hierarchy, seed=seed)

    def train(self, prepared: Any, cohort: Cohort, task: str, setting: Setting, *, seed: int, preset: str,
              device: str, epochs_scale: float, progress: ProgressCallback | None) -> Any:
        from hicd_core.models.counts_train import train_counts

        return train_counts(prepared, cohort, task, estimator=self.estimator, seed=seed, progress=progress)

    def load(self, path: Path, device: str) -> Any:
        from hicd_core.models.counts_train import load_counts

        return load_counts(path, {"estimator": self.estimator})

    def transfer(self, trained: Any, target: Cohort, task: str, seed: int) -> tuple[dict, pd.DataFrame]:
        from hicd_core.models.counts_train import transfer_counts

        return transfer_counts(trained, target, task, seed=seed)

    def embeddings(self, trained: Any) -> tuple[list[str], np.ndarray]:
        raise ValueError(f"{self.name} has no code embeddings (a count model has one weight per feature)")


FAMILIES = {"bert": BertFamily(), "graph": GraphFamily(), "counts-lr": CountsFamily("lr"),
            "counts-gbm": CountsFamily("gbm")}


def has_embeddings(model: str) -> bool:
    """Whether a model family stores code embeddings (the embedding views skip those that do not)."""
    family = FAMILIES.get(model)
    return family is not None and getattr(family, "has_embeddings", True)


def split_predictions(trained: Any, cohort: Cohort, task: str, split: str) -> pd.DataFrame:
    """Per-sample predictions on one split with labels and patient ids (the stored predictions)."""
    samples = cohort.tasks[task]
    samples = samples[samples["split"] == split]
    pred = trained.predict(cohort, task, split)
    merged = samples[["sample_id", "patient_id", "label"]].merge(pred, on="sample_id", how="inner")
    if len(merged) != len(samples):
        raise RuntimeError(f"{task}/{split}: {len(samples) - len(merged)} samples got no prediction")
    return merged
