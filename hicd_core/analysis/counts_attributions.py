"""Exact explanations of the counts-lr baseline, in the table form of HICD-BERT's attributions.

A count model's logit is ``intercept + sum_j coef_j * count_j``, and each code occurrence adds 1 to
its code's column and 1 to each enabled ancestor's column. So one occurrence's share of the logit is
exactly ``coef[code] + coef[chapter] + coef[block] + coef[category]`` (enabled levels only), and the
shares of a patient's occurrences add up to ``logit - intercept`` with no approximation: the
"baseline" is the intercept (a history with no codes) and the delta is float rounding only. The
Patient page shows these next to the deep models' integrated gradients, an exact explanation beside
an approximate one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from hicd_core.cohort.schema import Cohort

COUNTS_BASELINE = (
    "exact: logit = intercept + sum of coefficient x count; each code occurrence's share is its "
    "code's coefficient plus its enabled ancestors' (chapter / block / category); the baseline is "
    "the intercept (a history with no codes)"
)


def counts_attributions(
    trained: Any,
    cohort: Cohort,
    task: str,
    sample_ids: Iterable[int],
    *,
    n_steps: int = 0,
    run_id: str = "",
    setting: str | None = None,
) -> list[Any]:
    """One :class:`~hicd_core.analysis.attributions.Attribution` per sample (``model="counts"``): one row
    per code occurrence of the history (visits up to the anchor, codes in ``seq`` order) with
    ``attr_code``, ``attr_<level>`` per enabled level, ``attr_hierarchy``, ``attr_diagnosis`` and
    ``attr_total`` (all equal shares of the logit, exactly)."""
    from hicd_core.analysis.attributions import Attribution, _title, patient_slice
    from hicd_core.models.counts import UNK_CODE, row_columns

    ids = np.asarray(list(sample_ids), dtype=np.int64)
    frame = cohort.tasks[task].set_index("sample_id")
    components = ("code", *trained.setting.levels)
    intercept = float(trained.params["intercept"][0]) if trained.estimator == "lr" else 0.0
    out = []
    for sid in ids:
        started = time.perf_counter()
        row = frame.loc[int(sid)]
        sliced = patient_slice(cohort, int(row["patient_id"]))
        visits = sliced.visits[["visit_id", "visit_index"]]
        diag = sliced.diagnoses.merge(visits, on="visit_id", how="inner")
        diag = diag[diag["visit_index"] <= int(row["visit_index"])]
        diag = diag.sort_values(["visit_index", "seq"], kind="stable").reset_index(drop=True)
        columns = row_columns(diag, trained.vocab)
        shares = trained.token_contributions(columns)
        icd = diag["icd10"].astype(object)
        code = np.where(icd.notna(), icd.astype(str), "")
        names = np.asarray(trained.vocab.codes, dtype=object)
        table = pd.DataFrame(
            {
                "token_index": np.arange(len(diag)),
                "visit_index": diag["visit_index"].to_numpy(),
                "token": names[columns[:, 0]] if len(diag) else [],
                "code": code,
            }
        )
        table.loc[table["token"] == UNK_CODE, "token"] = "[UNK]"
        table["title"] = [_title(c) if c else "(unresolved code)" for c in table["code"]]
        for col in ("chapter", "block", "category"):
            table[col] = diag[col].astype(str).to_numpy()
        feature_names = np.asarray(trained.vocab.feature_names(), dtype=object)
        for k, level in enumerate(trained.setting.levels, start=1):
            table[f"{level}_token"] = np.where(
                columns[:, k] >= 0, feature_names[np.maximum(columns[:, k], 0)], ""
            )
        for name in components:
            table[f"attr_{name}"] = shares[name]
        levels = [f"attr_{c}" for c in components[1:]]
        table["attr_hierarchy"] = table[levels].sum(1) if levels else 0.0
        table["attr_diagnosis"] = table["attr_code"] + table["attr_hierarchy"]
        table["attr_total"] = table["attr_diagnosis"]
        sample = cohort.tasks[task][cohort.tasks[task]["sample_id"].to_numpy() == int(sid)]
        logit = _sample_logit(trained, sliced, sample)
        delta = float(table["attr_total"].sum() - (logit - intercept))
        out.append(
            Attribution(
                model="counts",
                run_id=run_id,
                setting=setting or trained.setting.key,
                task=task,
                sample_id=int(sid),
                patient_id=int(row["patient_id"]),
                n_steps=0,
                table=table,
                components=components,
                logit=logit,
                baseline_logit=intercept,
                prob=float(1 / (1 + np.exp(-logit))),
                delta=delta,
                threshold=float(trained.threshold),
                baseline=COUNTS_BASELINE,
                seconds=time.perf_counter() - started,
            )
        )
    return out


def _sample_logit(trained: Any, sliced: Cohort, sample: pd.DataFrame) -> float:
    """The model's own logit for the sample, computed from its count features (not from the shares)."""
    from hicd_core.models.counts import sample_features, visit_features

    features = visit_features(sliced, trained.vocab)
    return float(trained.logit(sample_features(features, sample))[0])
