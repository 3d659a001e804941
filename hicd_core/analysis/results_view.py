"""The tables behind the results pages (level ablation, transfer, overview): per-setting curves
with intervals, difference-to-flat heatmap cells, the numbers table and the paper's values.

Pure functions of the report's frames (:mod:`hicd_core.experiments.report`): the app caches and
draws them, tests call them directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd

from hicd_core.analysis.charts import model_name
from hicd_core.experiments import report
from hicd_core.stats import binary_metrics, bootstrap_ci, delong_ci, load_paper_results

#: The paper's table per evaluation name (Table 3 is the frozen-encoder transfer to eICU).
PAPER_TABLES = {"readmission_30d": 1, "emergency_next": 2, "readmission_30d -> icu_readmission": 3}


#: The columns of :func:`curve_table`.
CURVE_COLUMNS = ("model", "setting", "setting_label", "value", "ci_low", "ci_high", "n_seeds", "interval")


def evaluations(results: pd.DataFrame) -> list[str]:
    """Evaluation names, in-domain tasks first, then transfers."""
    if results.empty:
        return []
    order = results.drop_duplicates("evaluation").sort_values(["kind", "evaluation"], key=lambda c: (
        c.map({"task": 0, "transfer": 1}) if c.name == "kind" else c))
    return order["evaluation"].tolist()


def run_interval(predictions: pd.DataFrame, metric: str, threshold: float, n_resamples: int = 200,
                 seed: int = 0) -> tuple[float, float, float, str]:
    """Point value and 95% interval of one run's test metric: DeLong for AUROC, a percentile
    bootstrap over test samples for AUPRC and macro-F1 (one seed gives no seed interval)."""
    y = predictions["label"].to_numpy()
    p = predictions["prob"].to_numpy(float)
    if metric == "auroc":
        ci = delong_ci(y, p)
        return ci["auc"], ci["ci_low"], ci["ci_high"], "DeLong 95% CI (one seed)"
    value = float(binary_metrics(y, p, threshold)[metric])
    if len(np.unique(y)) < 2:
        return value, float("nan"), float("nan"), "no interval (one class in the test split)"
    # AUPRC is average precision, the definition binary_metrics uses; macro-F1 at the run's threshold.
    ci = bootstrap_ci(y, p, metric, threshold=threshold, n_resamples=n_resamples, seed=seed)
    return value, ci["ci_low"], ci["ci_high"], f"bootstrap 95% CI ({n_resamples} resamples, one seed)"


def curve_table(results: pd.DataFrame, evaluation: str, metric: str,
                predictions: Callable[[str], pd.DataFrame]) -> pd.DataFrame:
    """One row per (model, setting): mean over seeds with a seed t-interval when there are several
    seeds, else the single run's DeLong / bootstrap interval."""
    rows = []
    part = results[results["evaluation"] == evaluation]
    first_run = part.drop_duplicates(["model", "setting"]).set_index(["model", "setting"])
    # One row per (model, setting) in table order (report.seed_summaries sorts by model and setting).
    for summary in report.seed_summaries(part, (metric,)).itertuples(index=False):
        model, setting, n_seeds = summary.model, summary.setting, int(summary.n_seeds)
        if n_seeds >= 2:
            value, low, high = (getattr(summary, f"{metric}_{end}") for end in ("mean", "ci_low", "ci_high"))
            interval = f"t-interval over {n_seeds} seeds"
        else:
            run = first_run.loc[(model, setting)]
            value, low, high, interval = run_interval(predictions(run["run_id"]), metric,
                                                      float(run["threshold"]))
        rows.append({"model": model, "setting": setting, "setting_label": summary.setting_label,
                     "value": value, "ci_low": low, "ci_high": high, "n_seeds": n_seeds,
                     "interval": interval})
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def delta_cells(comparison: pd.DataFrame, evaluation: str | None, metric: str, corrected: bool
                ) -> pd.DataFrame:
    """Heatmap cells: mean difference to flat over seeds and the largest (most cautious) p-value.

    ``p`` is the Holm-corrected p when ``corrected``, else the raw one; ``p_raw`` and ``p_holm``
    carry both, so a table showing both needs one call. ``evaluation=None`` takes every evaluation,
    one row per model and evaluation (the overview).
    """
    columns = ["row", "setting", "delta", "p", "p_raw", "p_holm"]
    if comparison.empty:
        return pd.DataFrame(columns=columns)
    part = comparison if evaluation is None else comparison[comparison["evaluation"] == evaluation]
    if part.empty or f"delta_{metric}" not in part:
        return pd.DataFrame(columns=columns)
    grouped = part.groupby(["model", "evaluation", "setting"], as_index=False).agg(
        delta=(f"delta_{metric}", "mean"), p_raw=(f"p_{metric}", "max"),
        p_holm=(f"p_{metric}_holm", "max"), seeds=("seed", "nunique"))
    grouped["p"] = grouped["p_holm"] if corrected else grouped["p_raw"]
    grouped["row"] = [model_name(m) + (f" · {e}" if evaluation is None else "")
                      + (f" ({n} seeds)" if n > 1 else "")
                      for m, e, n in zip(grouped["model"], grouped["evaluation"], grouped["seeds"],
                                         strict=True)]
    return grouped[columns]


@functools.cache
def _paper_results() -> pd.DataFrame:
    """The paper's tables, read once per process (a bundled file that never changes; never mutated)."""
    return load_paper_results()


def paper_values(evaluation: str, metric: str) -> pd.DataFrame:
    """The paper's published values for this evaluation and metric (empty when it reports none)."""
    table = PAPER_TABLES.get(evaluation)
    if table is None or metric not in ("auroc", "macro_f1"):
        return pd.DataFrame(columns=["model", "setting", "value", "significant", "dataset"])
    paper = _paper_results()
    rows = paper[(paper["table"] == table) & (paper["metric"] == metric)]
    return rows[["model", "setting", "value", "significant", "dataset"]].reset_index(drop=True)


def numbers_table(results: pd.DataFrame, comparison: pd.DataFrame, evaluation: str, metric: str
                  ) -> pd.DataFrame:
    """Per run: the metric, its difference to flat and both p-values (raw and Holm).

    ``results`` is :func:`report.results`, already in (model, evaluation, seed, setting) order; the
    left merge keeps that order."""
    part = results[results["evaluation"] == evaluation]
    columns = ["model", "setting", "setting_label", "seed", "auroc", "auprc", "macro_f1", "n", "n_pos"]
    table = part[columns].copy()
    if not comparison.empty and f"delta_{metric}" in comparison:
        cmp = comparison[comparison["evaluation"] == evaluation][
            ["model", "seed", "setting", f"delta_{metric}", f"p_{metric}", f"p_{metric}_holm"]]
        table = table.merge(cmp, on=["model", "seed", "setting"], how="left")
    return table.reset_index(drop=True)


