"""The ``counts`` baseline: fit, predict, save / load, exact contributions and the transfer probe.

Two estimators on the features of :mod:`hicd_core.models.counts`:

* ``lr`` -- L2 logistic regression (scikit-learn's liblinear trust-region Newton solver,
  ``class_weight="balanced"`` like the deep models' weighted loss and the transfer probe); C from
  :data:`C_GRID` by validation AUROC, walking the grid upwards and stopping at the first C that does
  worse than the one before (the validation curve is single-peaked; the large, slow C values are then
  never fitted; above :data:`C_SEARCH_SAMPLES` training samples the walk runs on a random
  subsample and only the chosen C is fitted on all). Raw counts, no scaling, so the logit
  is exactly ``intercept + sum(coef * count)`` and every code occurrence's share of it is known
  (:meth:`CountsModel.token_contributions`). On the
  synthetic default, liblinear on raw counts beat lbfgs on raw, max-abs-scaled or log1p counts in
  both validation AUROC and time (lbfgs on raw counts needed minutes: the count columns are badly
  conditioned).
* ``gbm`` -- histogram gradient boosting (scikit-learn) on the :data:`GBM_MAX_FEATURES` columns most
  often non-zero in training (dense float32: HGB takes no sparse input), up to :data:`GBM_MAX_ITER`
  trees; the number of trees is chosen on the validation split (AUROC of each stage), which is
  early stopping on validation without HGB's internal random hold-out.

Artifacts, without pickle: the LR coefficients and intercept, or the boosted trees' node arrays (feature,
threshold, children, leaf values), go into ``model.safetensors``; the vocabulary into ``vocab.json``. Trees
are dumped rather than refitted on load because a loader gets only the folder, not the training cohort,
and dumped arrays predict identically (tested against scikit-learn) with no estimator object at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from hicd_core.cohort.schema import TEST, TRAIN, VALIDATION, Cohort
from hicd_core.hierarchy import Setting
from hicd_core.models.common import (
    ArtifactError,
    ProgressCallback,
    ProgressEvent,
    load_artifact,
    save_artifact,
)
from hicd_core.models.counts import CountsVocab, VisitFeatures, build_vocab, sample_features, visit_features
from hicd_core.stats import auroc, binary_metrics, choose_threshold

MODEL_NAME = "counts"
ESTIMATORS = ("lr", "gbm")
VOCAB_FILE = "vocab.json"
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: Training samples above which C is searched on a random subsample of this size (:func:`fit_logistic`).
C_SEARCH_SAMPLES = 60_000
GBM_MAX_FEATURES = 512
GBM_MAX_ITER = 100
GBM_PARAMS = {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20, "l2_regularization": 1.0}
_TREE_FIELDS = ("feature_idx", "num_threshold", "left", "right", "is_leaf", "value", "missing_go_to_left")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _auroc0(y: np.ndarray, p: np.ndarray) -> float:
    score = auroc(y, p)
    return -1.0 if np.isnan(score) else score


def _fit_one(x: sp.csr_matrix, y: np.ndarray, strength: float, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(
        C=strength, solver="liblinear", tol=1e-3, max_iter=200, class_weight="balanced", random_state=seed
    )
    clf.fit(x, y)
    return clf.coef_[0].astype(np.float64), float(clf.intercept_[0])


def fit_logistic(
    x_train: sp.csr_matrix,
    y_train: np.ndarray,
    x_val: sp.csr_matrix,
    y_val: np.ndarray,
    seed: int,
    grid: tuple[float, ...] = C_GRID,
    subsample: int = C_SEARCH_SAMPLES,
) -> dict[str, Any]:
    """L2 logistic regression, C chosen by validation AUROC (ascending grid, stopped at the first drop);
    returns ``coef``, ``intercept``, ``C``, ``val_logit`` and the validation AUROC per C tried (``grid``).

    With more than ``subsample`` training samples the grid is walked on a seeded random ``subsample`` of
    them and only the chosen C is fitted on all. C is used as is: in liblinear's form
    ``|w|^2 / 2 + C * sum(loss)`` the best C barely moves with the sample count (1e-3 both on the
    synthetic default's 13,784 and on the full-scale cohort's 345,469 training samples), while rescaling
    it by ``subsample / n`` (same penalty per sample) cost 0.005 validation AUROC at full scale. This
    halves the fitting time at full MIMIC-IV scale.
    """
    if len(np.unique(y_train)) < 2:
        raise ValueError("the train split has a single class: cannot fit a logistic regression")
    n = x_train.shape[0]
    x_search, y_search, scale = x_train, y_train, 1.0
    if n > subsample:
        rows = np.sort(np.random.default_rng([seed, 17]).choice(n, size=subsample, replace=False))
        x_search, y_search, scale = x_train[rows], y_train[rows], subsample / n
        if len(np.unique(y_search)) < 2:
            x_search, y_search, scale = x_train, y_train, 1.0
    best: dict[str, Any] | None = None
    scores: list[dict[str, float]] = []
    for strength in sorted(grid):
        if len(scores) >= 2 and scores[-1]["val_auroc"] < scores[-2]["val_auroc"]:
            break  # past the peak: larger C only overfits more, and costs more
        coef, intercept = _fit_one(x_search, y_search, strength, seed)
        val_logit = np.asarray(x_val @ coef).ravel() + intercept
        score = _auroc0(y_val, val_logit)
        scores.append({"C": strength, "val_auroc": score, "samples": int(x_search.shape[0])})
        if best is None or score > best["score"]:
            best = {
                "score": score,
                "coef": coef,
                "intercept": intercept,
                "C": strength,
                "val_logit": val_logit,
            }
    assert best is not None
    if scale < 1.0:  # the chosen C, refitted on every training sample
        best["coef"], best["intercept"] = _fit_one(x_train, y_train, best["C"], seed)
        best["val_logit"] = np.asarray(x_val @ best["coef"]).ravel() + best["intercept"]
        best["score"] = _auroc0(y_val, best["val_logit"])
    return {**best, "grid": scores}


# ------------------------------------------------------------------------------------- boosted trees
def _dump_trees(estimator: Any, n_trees: int) -> dict[str, np.ndarray]:
    """The first ``n_trees`` trees of a fitted binary HGB as flat node arrays (children re-based)."""
    trees = [stage[0].nodes for stage in estimator._predictors[:n_trees]]
    sizes = np.array([len(t) for t in trees], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = {name: np.concatenate([t[name] for t in trees]) for name in _TREE_FIELDS}
    shift = np.repeat(offsets, sizes)
    leaf = out["is_leaf"].astype(bool)
    for child in ("left", "right"):
        out[child] = np.where(leaf, -1, out[child].astype(np.int64) + shift)
    out = {
        "feature_idx": out["feature_idx"].astype(np.int64),
        "num_threshold": out["num_threshold"].astype(np.float64),
        "left": out["left"],
        "right": out["right"],
        "is_leaf": leaf.astype(np.uint8),
        "value": out["value"].astype(np.float64),
        "missing_go_to_left": out["missing_go_to_left"].astype(np.uint8),
    }
    out["tree_offsets"] = offsets
    out["baseline"] = np.asarray(estimator._baseline_prediction, np.float64).ravel()[:1]
    return out


def trees_logit(trees: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Raw score of dumped trees on dense ``x`` (what HGB's ``decision_function`` gives): walk every
    tree level by level, vectorised over samples (x <= threshold goes left; NaN follows the node)."""
    total = np.full(len(x), float(trees["baseline"][0]))
    rows = np.arange(len(x))
    for start in trees["tree_offsets"]:
        node = np.full(len(x), int(start), np.int64)
        while True:
            inner = trees["is_leaf"][node] == 0
            if not inner.any():
                break
            at = node[inner]
            value = x[rows[inner], trees["feature_idx"][at]]
            left = np.where(
                np.isnan(value), trees["missing_go_to_left"][at] == 1, value <= trees["num_threshold"][at]
            )
            node[inner] = np.where(left, trees["left"][at], trees["right"][at])
        total += trees["value"][node]
    return total


def fit_gbm(
    x_train: sp.csr_matrix,
    y_train: np.ndarray,
    x_val: sp.csr_matrix,
    y_val: np.ndarray,
    seed: int,
    max_features: int = GBM_MAX_FEATURES,
    max_iter: int = GBM_MAX_ITER,
) -> dict[str, Any]:
    """HGB on the most frequent columns; the tree count with the best validation AUROC is kept."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    frequency = np.diff(x_train.tocsc().indptr)
    columns = np.sort(np.argsort(-frequency, kind="stable")[:max_features]).astype(np.int64)
    dense_train = x_train[:, columns].toarray().astype(np.float32)
    dense_val = x_val[:, columns].toarray().astype(np.float32)
    clf = HistGradientBoostingClassifier(
        max_iter=max_iter, early_stopping=False, class_weight="balanced", random_state=seed, **GBM_PARAMS
    )
    clf.fit(dense_train, y_train)
    scores = [_auroc0(y_val, stage) for stage in clf.staged_decision_function(dense_val)]
    best = int(np.argmax(scores)) + 1
    trees = _dump_trees(clf, best)
    return {
        "trees": trees,
        "columns": columns,
        "n_trees": best,
        "score": scores[best - 1],
        "val_logit": trees_logit(trees, dense_val.astype(np.float64)),
    }


# ------------------------------------------------------------------------------------- the model
@dataclass
class CountsFeatures:
    """The task-independent part (``prepare``): the vocabulary and the source cohort's visit counts."""

    vocab: CountsVocab
    visits: VisitFeatures
    cohort_fingerprint: str


def prepare_features(
    cohort: Cohort, setting: Setting, scheme: str = "ontology", hierarchy: str = "real", seed: int = 0
) -> CountsFeatures:
    vocab = build_vocab(cohort, setting, scheme, hierarchy, permutation_seed=seed)
    return CountsFeatures(vocab, visit_features(cohort, vocab), cohort.fingerprint)


@dataclass
class CountsModel:
    """A fitted count model. ``params`` holds the estimator's arrays (``coef``/``intercept``, or the trees
    and their ``columns``); ``threshold`` is the validation-chosen macro-F1 threshold."""

    estimator: str
    vocab: CountsVocab
    params: dict[str, np.ndarray]
    threshold: float = 0.5
    seed: int = 0
    task: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cohort_fingerprint: str = ""
    _visits: dict[tuple, VisitFeatures] = field(default_factory=dict, repr=False)

    @property
    def setting(self) -> Setting:
        return self.vocab.setting

    @property
    def config(self) -> dict[str, Any]:
        """What the patient page's history caption reads."""
        return {"estimator": self.estimator, "setting": self.setting.key, "scheme": self.vocab.scheme}

    def remember(self, cohort: Cohort, visits: VisitFeatures) -> None:
        self._visits[(cohort.fingerprint, id(cohort.diagnoses))] = visits

    def features(
        self, cohort: Cohort, task: str, split: str | None = None
    ) -> tuple[np.ndarray, sp.csr_matrix]:
        """(sample_ids, counts) of the task's samples in ``split`` (all when None)."""
        key = (cohort.fingerprint, id(cohort.diagnoses))
        if key not in self._visits:
            self._visits = {key: visit_features(cohort, self.vocab)}  # one cohort at a time in memory
        samples = cohort.tasks[task]
        if split is not None:
            samples = samples[samples["split"].astype(str) == split]
        return samples["sample_id"].to_numpy(np.int64), sample_features(self._visits[key], samples)

    def logit(self, x: sp.csr_matrix) -> np.ndarray:
        if self.estimator == "lr":
            return np.asarray(x @ self.params["coef"]).ravel() + float(self.params["intercept"][0])
        dense = x[:, self.params["columns"]].toarray().astype(np.float64)
        return trees_logit(self.params, dense)

    def predict(self, cohort: Cohort, task: str | None = None, split: str | None = None) -> pd.DataFrame:
        ids, x = self.features(cohort, task or self.task, split)
        logit = self.logit(x)
        return pd.DataFrame({"sample_id": ids, "prob": _sigmoid(logit), "logit": logit})

    def encode(self, cohort: Cohort, task: str, split: str | None = None) -> tuple[np.ndarray, sp.csr_matrix]:
        """The "encoder" of the transfer protocol: the source-fitted count features (sparse)."""
        return self.features(cohort, task, split)

    def token_contributions(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Exact share of the logit of each code occurrence (rows of :func:`counts.row_columns`), per
        component: ``code`` (its own coefficient) and each enabled level (its ancestor node's)."""
        if self.estimator != "lr":
            raise ValueError(
                "exact per-code contributions exist for counts-lr only (boosted trees are not "
                "additive in the codes)"
            )
        coef = self.params["coef"]
        names = ("code", *self.setting.levels)
        return {
            name: np.where(rows[:, k] >= 0, coef[np.maximum(rows[:, k], 0)], 0.0)
            for k, name in enumerate(names)
        }

    def save(self, path: Path | str) -> Path:
        config = {
            "model": MODEL_NAME,
            "estimator": self.estimator,
            "setting": self.setting.key,
            "scheme": self.vocab.scheme,
            "seed": self.seed,
            "task": self.task,
            "threshold": self.threshold,
            "n_features": self.vocab.n_features,
            "cohort_fingerprint": self.cohort_fingerprint,
            "hierarchy": "permuted" if self.vocab.permutation is not None else "real",
        }
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.params.items()}
        return save_artifact(
            Path(path), config, tensors, self.metrics, extra_json={VOCAB_FILE: self.vocab.to_json()}
        )


def load_counts(path: Path | str, expect: dict[str, Any] | None = None) -> CountsModel:
    """Load a model saved by :meth:`CountsModel.save` (checksums verified; ArtifactError names the file)."""
    path = Path(path)
    config, tensors, metrics = load_artifact(path, {"model": MODEL_NAME, **(expect or {})})
    try:
        vocab = CountsVocab.from_json(json.loads((path / VOCAB_FILE).read_text()))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path / VOCAB_FILE} is missing: the model cannot build its features") from exc
    except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path / VOCAB_FILE} is not a valid counts vocabulary ({exc})") from exc
    params = {k: v.numpy() for k, v in tensors.items()}
    width = len(params["coef"]) if config.get("estimator") == "lr" else None
    if vocab.setting.key != config.get("setting") or (width is not None and width != vocab.n_features):
        raise ArtifactError(f"{path}: {VOCAB_FILE} does not match the model's setting or feature count")
    return CountsModel(
        estimator=str(config["estimator"]),
        vocab=vocab,
        params=params,
        threshold=float(config.get("threshold", 0.5)),
        seed=int(config.get("seed", 0)),
        task=config.get("task"),
        metrics=metrics,
        cohort_fingerprint=str(config.get("cohort_fingerprint", "")),
    )


def _split(
    model: CountsModel, cohort: Cohort, task: str, split: str
) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    ids, x = model.features(cohort, task, split)
    labels = cohort.tasks[task].set_index("sample_id").loc[ids, "label"].to_numpy(np.int64)
    return ids, x, labels


def train_counts(
    prepared: CountsFeatures,
    cohort: Cohort,
    task: str,
    *,
    estimator: str = "lr",
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> CountsModel:
    """Fit one task on the TRAIN split, select on VALIDATION (C or tree count, then the threshold)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"counts estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    started = time.perf_counter()
    progress = progress or (lambda event: None)
    model = CountsModel(
        estimator=estimator,
        vocab=prepared.vocab,
        params={},
        seed=seed,
        task=task,
        cohort_fingerprint=cohort.fingerprint,
    )
    model.remember(cohort, prepared.visits)
    _, x_train, y_train = _split(model, cohort, task, TRAIN)
    _, x_val, y_val = _split(model, cohort, task, VALIDATION)
    progress(
        ProgressEvent("fit", 0, 1, message=f"counts-{estimator}: {x_train.shape[0]:,} x {x_train.shape[1]:,}")
    )
    if estimator == "lr":
        fit = fit_logistic(x_train, y_train, x_val, y_val, seed)
        model.params = {"coef": fit["coef"], "intercept": np.array([fit["intercept"]])}
        chosen = {"C": fit["C"], "grid": fit["grid"]}
    else:
        fit = fit_gbm(x_train, y_train, x_val, y_val, seed, GBM_MAX_FEATURES, GBM_MAX_ITER)
        model.params = {**fit["trees"], "columns": fit["columns"]}
        chosen = {"n_trees": fit["n_trees"], "max_features": GBM_MAX_FEATURES, **GBM_PARAMS}
    val_prob = _sigmoid(fit["val_logit"])
    model.threshold = choose_threshold(y_val, val_prob)
    model.metrics = {
        "task": task,
        "setting": prepared.vocab.setting.key,
        "estimator": estimator,
        "threshold": model.threshold,
        "validation": binary_metrics(y_val, val_prob, model.threshold),
        "n_features": prepared.vocab.n_features,
        "n_train": len(y_train),
        "chosen": chosen,
        "history": [],
        "best_epoch": 0,
        "stopped_epoch": 0,
        "seconds": round(time.perf_counter() - started, 3),
    }
    progress(ProgressEvent("fit", 1, 1, metrics={"val_auroc": float(fit["score"])}))
    return model


# ------------------------------------------------------------------------------------- transfer
def transfer_counts(
    model: CountsModel, target: Cohort, task: str, seed: int = 0
) -> tuple[dict, pd.DataFrame]:
    """Transfer of a source-trained count model to the target site, two ways (both in ``metrics``):

    * ``probe`` (the stored ``prob``, what the Transfer page plots; like the deep models' frozen encoder +
      probe): the SOURCE vocabulary and roll-ups build the target's features (unseen codes reach their
      ancestors), an L2 logistic regression is fitted on the target's TRAIN split, C and the threshold on
      its validation split.
    * ``source_model_direct``: the source model's own scores on the target, no target training at all
      (the source task is another task, so only its ranking means something; the threshold is chosen on
      the target's validation split). Stored as ``prob_source_model`` next to ``prob``.
    """
    from hicd_core.experiments.transfer import add_calibration

    _, x_train, y_train = _split(model, target, task, TRAIN)
    _, x_val, y_val = _split(model, target, task, VALIDATION)
    ids, x_test, y_test = _split(model, target, task, TEST)
    fit = fit_logistic(x_train, y_train, x_val, y_val, seed)
    val_prob = _sigmoid(fit["val_logit"])
    threshold = choose_threshold(y_val, val_prob)
    prob = _sigmoid(np.asarray(x_test @ fit["coef"]).ravel() + fit["intercept"])
    direct_val, direct_test = _sigmoid(model.logit(x_val)), _sigmoid(model.logit(x_test))
    direct_threshold = choose_threshold(y_val, direct_val)
    unseen = float(
        np.asarray(x_test[:, 0].sum()).item() / max(float(x_test[:, : len(model.vocab.codes)].sum()), 1.0)
    )
    metrics = {
        "protocol": "probe: source vocabulary and roll-ups, L2 logistic regression fitted on the target "
        "train split (C and threshold on target validation)",
        "test": binary_metrics(y_test, prob, threshold),
        "validation": binary_metrics(y_val, val_prob, threshold),
        "threshold": threshold,
        "probe_C": fit["C"],
        "n_features": int(x_train.shape[1]),
        "n_train": len(y_train),
        "target_unk_code_share": unseen,
        "source_model_direct": {
            "protocol": "the source-trained model applied to the target as is (threshold chosen on target "
            "validation)",
            "test": binary_metrics(y_test, direct_test, direct_threshold),
            "validation": binary_metrics(y_val, direct_val, direct_threshold),
            "threshold": direct_threshold,
        },
    }
    samples = target.tasks[task].set_index("sample_id")
    predictions = pd.DataFrame(
        {
            "sample_id": ids,
            "patient_id": samples.loc[ids, "patient_id"].to_numpy(),
            "label": y_test.astype(np.int8),
            "prob": prob.astype(np.float64),
            "prob_source_model": direct_test.astype(np.float64),
        }
    )
    add_calibration(metrics, pd.DataFrame({"label": y_val, "prob": val_prob}), predictions)
    return metrics, predictions
