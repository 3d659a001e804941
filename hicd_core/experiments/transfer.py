"""Cross-site transfer by frozen-encoder probing (the paper's eICU protocol, notes section 12.16).

The source-trained encoder is frozen; patient vectors are extracted on the target cohort (codes
absent from the source vocabulary go through the hierarchy exactly as each model defines); an
L2 logistic-regression probe (scikit-learn) is fitted on the target's train split, its strength C
and the decision threshold are chosen on the target's validation split, and it is evaluated on
the target's test split with the same statistics as every other run.

:func:`add_calibration` is the recalibration every run gets (task runs in ``sweep.run_one`` and
probes here): the probe's ``class_weight="balanced"`` shifts its logits just as the paper's weighted
training does, so both store Platt-recalibrated test probabilities next to the raw ones.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hicd_core.cohort import TEST, TRAIN, VALIDATION, Cohort
from hicd_core.stats import (
    apply_platt,
    auroc,
    binary_metrics,
    calibration_scores,
    choose_threshold,
    fit_platt,
)

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def add_calibration(metrics: dict, validation: pd.DataFrame, predictions: pd.DataFrame) -> None:
    """Fit Platt scaling on the validation predictions and record what it changes, in place.

    The paper's recipe (weighted sampler and pos_weight for HICD-Graph, a balanced probe) keeps its
    raw probabilities: ``prob`` stays the raw one, so AUROC and the validation-chosen threshold are
    exactly the paper's. Added: ``predictions["prob_calibrated"]``, ``metrics["calibration"]`` (method,
    slope, intercept: :func:`hicd_core.stats.fit_platt`) and ``brier_calibrated`` / ``ece_calibrated``
    in ``metrics["test"]`` and ``metrics["validation"]`` (the raw ``brier`` / ``ece`` stay, uncalibrated).
    """
    calibration = fit_platt(validation["label"].to_numpy(), validation["prob"].to_numpy(float))
    calibration["fitted_on"] = "validation"
    val_calibrated = apply_platt(validation["prob"].to_numpy(float), calibration)
    predictions["prob_calibrated"] = apply_platt(predictions["prob"].to_numpy(float), calibration)
    metrics["calibration"] = calibration
    metrics["validation"] |= calibration_scores(validation["label"].to_numpy(), val_calibrated)
    metrics["test"] |= calibration_scores(predictions["label"].to_numpy(),
                                          predictions["prob_calibrated"].to_numpy())


class Encoder(Protocol):
    def encode(self, cohort: Cohort, task: str, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sample_ids, vectors) of the task's samples in ``split``, encoder frozen."""


def probe_transfer(encoder: Encoder, target: Cohort, task: str, seed: int = 0
                   ) -> tuple[dict, pd.DataFrame]:
    """Fit and evaluate the probe; returns (metrics, per-sample test predictions)."""
    samples = target.tasks[task].set_index("sample_id")
    # One encoder pass over every sample, then split: the encoders tokenise the whole task per call,
    # so three per-split calls tokenised the target three times (the sample order within a split is
    # the task frame's either way).
    all_ids, all_vectors = encoder.encode(target, task, None)
    all_ids = np.asarray(all_ids)
    split_of = samples.loc[all_ids, "split"].to_numpy()
    data = {}
    for split in (TRAIN, VALIDATION, TEST):
        rows = np.flatnonzero(split_of == split)
        ids = all_ids[rows]
        data[split] = (ids, np.asarray(all_vectors[rows], dtype=np.float64),
                       samples.loc[ids, "label"].to_numpy())
    x_train, y_train = data[TRAIN][1], data[TRAIN][2]
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"target task {task!r}: the train split has a single class; cannot fit a probe")
    best = None
    for strength in C_GRID:
        probe = make_pipeline(StandardScaler(), LogisticRegression(
            C=strength, max_iter=2000, class_weight="balanced", random_state=seed))
        probe.fit(x_train, y_train)
        val_prob = probe.predict_proba(data[VALIDATION][1])[:, 1]
        score = auroc(data[VALIDATION][2], val_prob)
        if best is None or (np.nan_to_num(score, nan=-1) > np.nan_to_num(best[0], nan=-1)):
            best = (score, strength, probe, val_prob)
    _, strength, probe, val_prob = best
    threshold = choose_threshold(data[VALIDATION][2], val_prob)
    ids, x_test, y_test = data[TEST]
    prob = probe.predict_proba(x_test)[:, 1]
    metrics = {"test": binary_metrics(y_test, prob, threshold),
               "validation": binary_metrics(data[VALIDATION][2], val_prob, threshold),
               "threshold": threshold, "probe_C": strength, "n_features": int(x_train.shape[1]),
               "n_train": len(y_train)}
    predictions = pd.DataFrame({"sample_id": ids, "patient_id": samples.loc[ids, "patient_id"].to_numpy(),
                                "label": y_test.astype(np.int8), "prob": prob.astype(np.float64)})
    add_calibration(metrics, pd.DataFrame({"label": data[VALIDATION][2], "prob": val_prob}), predictions)
    return metrics, predictions


def code_coverage(source: Cohort, target: Cohort) -> pd.DataFrame:
    """How the target's codes relate to the source's: same code, same category only, same chapter
    only, or nothing (the per-site coverage behind the transfer results)."""
    train_patients = source.patients.loc[source.patients["split"] == TRAIN, "patient_id"]
    src = source.diagnoses[source.diagnoses["patient_id"].isin(train_patients)]
    codes, categories, chapters = (set(src[c].dropna().astype(str)) for c in ("icd10", "category", "chapter"))
    tgt = target.diagnoses
    code = tgt["icd10"].astype(object)
    level = np.select(
        [code.isin(codes).to_numpy(), tgt["category"].astype(str).isin(categories).to_numpy(),
         tgt["chapter"].astype(str).isin(chapters - {"UNK"}).to_numpy()],
        ["same code", "same category", "same chapter"], default="unmapped or unseen chapter")
    counts = pd.Series(level).value_counts()
    return pd.DataFrame({"overlap": counts.index, "occurrences": counts.to_numpy(),
                         "share": (counts / counts.sum()).to_numpy()})
