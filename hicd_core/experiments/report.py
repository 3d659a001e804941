"""The results behind every chart: per-run metrics, comparisons with the flat model, seed summaries.

Every statistic is recomputed from the stored per-sample test predictions, so nothing here depends
on numbers cached at training time except the validation-chosen thresholds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hicd_core.experiments.runstore import RunStore
from hicd_core.hierarchy import FLAT, Setting, setting_rank
from hicd_core.stats import compare_to_flat, seed_summary


def _labels(settings: pd.Series) -> pd.Series:
    return settings.map(lambda key: Setting(key).label)


def evaluation_name(row: pd.Series | dict) -> str:
    """The task a row is evaluated on: the source task, or ``source -> target`` for transfer."""
    if row["kind"] == "transfer":
        suffix = "" if row.get("encoder", "finetuned") == "finetuned" else f" [{row['encoder']}]"
        return f"{row['task']} -> {row['target_task']}{suffix}"
    return str(row["task"])


def results(store: RunStore) -> pd.DataFrame:
    """One row per finished run, with a readable ``evaluation`` and ``setting_label``."""
    table = store.results_table()
    if table.empty:
        return table
    table["evaluation"] = table.apply(evaluation_name, axis=1)
    table["setting_label"] = _labels(table["setting"])
    table["setting_rank"] = table["setting"].map(setting_rank)
    return table.sort_values(["model", "evaluation", "seed", "setting_rank"]).reset_index(drop=True)


def comparisons(store: RunStore, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each non-flat setting against the flat model of the same family, evaluation and seed:
    DeLong for AUROC, paired bootstrap for macro-F1 and AUPRC, Holm across the (up to 7) settings."""
    table = results(store)
    if table.empty:
        return pd.DataFrame()
    out = []
    for (model, evaluation, run_seed), group in table.groupby(["model", "evaluation", "seed"]):
        if FLAT not in set(group["setting"]) or len(group) < 2:
            continue
        frames = []
        for row in group.itertuples():
            pred = store.predictions(row.run_id)
            frames.append(pred.assign(setting=row.setting, threshold=row.threshold))
        compared = compare_to_flat(pd.concat(frames, ignore_index=True), n_resamples=n_resamples, seed=seed)
        compared.insert(0, "seed", run_seed)
        compared.insert(0, "evaluation", evaluation)
        compared.insert(0, "model", model)
        out.append(compared)
    if not out:
        return pd.DataFrame()
    frame = pd.concat(out, ignore_index=True)
    frame["setting_label"] = _labels(frame["setting"])
    return frame


def seed_summaries(table: pd.DataFrame, metrics: tuple[str, ...] = ("auroc", "auprc", "macro_f1")
                   ) -> pd.DataFrame:
    """Mean and 95% t-interval across seeds per (model, evaluation, setting)."""
    rows = []
    for (model, evaluation, setting), group in table.groupby(["model", "evaluation", "setting"]):
        row = {"model": model, "evaluation": evaluation, "setting": setting,
               "setting_label": Setting(setting).label, "n_seeds": len(group)}
        for metric in metrics:
            summary = seed_summary(group[metric].astype(float).to_numpy())
            row |= {f"{metric}_mean": summary["mean"], f"{metric}_ci_low": summary["ci_low"],
                    f"{metric}_ci_high": summary["ci_high"]}
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["setting_rank"] = frame["setting"].map(setting_rank)
        frame = frame.sort_values(["model", "evaluation", "setting_rank"]).drop(columns="setting_rank")
    return frame.reset_index(drop=True)


def headline(comparison: pd.DataFrame) -> pd.DataFrame:
    """For each model and evaluation (seed 0 comparisons averaged over seeds): the best setting by
    AUROC and its difference to flat with the Holm-corrected DeLong p-value."""
    if comparison.empty:
        return comparison
    grouped = comparison.groupby(["model", "evaluation", "setting"], as_index=False).agg(
        delta_auroc=("delta_auroc", "mean"), auroc=("auroc", "mean"), auroc_flat=("auroc_flat", "mean"),
        p_auroc=("p_auroc", "max"), p_auroc_holm=("p_auroc_holm", "max"))
    best = grouped.loc[grouped.groupby(["model", "evaluation"])["delta_auroc"].idxmax()].copy()
    best["setting_label"] = _labels(best["setting"])
    best["significant_holm"] = best["p_auroc_holm"] < 0.05
    return best.reset_index(drop=True)


def significance_mark(p: float, alpha: float = 0.05) -> str:
    """``*`` when significant at ``alpha`` (the paper's mark), else ``''``; NaN gives ``''``."""
    return "*" if np.isfinite(p) and p < alpha else ""
