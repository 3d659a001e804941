"""The tables behind the results pages (level ablation, transfer, overview): per-setting curves
with intervals, difference-to-flat heatmap cells and table across seeds (the headline), the per-run
numbers table (per-seed detail) and the paper's values.

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
from hicd_core.hierarchy import setting_rank
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


#: The columns of :func:`delta_cells`.
CELL_COLUMNS = ("row", "setting", "delta", "p", "p_raw", "p_holm", "ci_low", "ci_high", "n_seeds", "method",
                "markable", "note")


def seeds_label(n_seeds: int) -> str:
    return f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"


def delta_cells(comparison: pd.DataFrame, evaluation: str | None, metric: str, corrected: bool
                ) -> pd.DataFrame:
    """Heatmap cells: the across-seed difference to flat (:func:`report.across_seeds`, the seed as
    the unit; one seed: that seed's DeLong / bootstrap, ``method`` says which) with its interval.

    ``p`` is the Holm-corrected p when ``corrected``, else the raw one; ``p_raw`` and ``p_holm``
    carry both, so a table showing both needs one call. ``markable`` is False where a star would
    mislead (macro-F1 with a degenerate-threshold run; ``note`` says why). ``evaluation=None`` takes
    every evaluation, one row per model and evaluation (the overview). Row labels say how many seeds.
    """
    columns = list(CELL_COLUMNS)
    if comparison.empty or f"delta_{metric}" not in comparison:
        return pd.DataFrame(columns=columns)
    part = comparison if evaluation is None else comparison[comparison["evaluation"] == evaluation]
    table = report.across_seeds(part)
    if table.empty:
        return pd.DataFrame(columns=columns)
    cells = pd.DataFrame({
        "setting": table["setting"], "delta": table[f"delta_{metric}"], "p_raw": table[f"p_{metric}"],
        "p_holm": table[f"p_{metric}_holm"], "ci_low": table[f"delta_{metric}_ci_low"],
        "ci_high": table[f"delta_{metric}_ci_high"], "n_seeds": table["n_seeds"],
        "method": table[f"method_{metric}"],
        "markable": ~table["degenerate_threshold"] if metric == "macro_f1" else True,
        "note": table["note"] if metric == "macro_f1" else ""})
    cells["p"] = cells["p_holm"] if corrected else cells["p_raw"]
    seeds = table.groupby(["model", "evaluation"])["n_seeds"].transform("max")
    cells["row"] = [model_name(m) + (f" · {e}" if evaluation is None else "") + f" ({seeds_label(n)})"
                    for m, e, n in zip(table["model"], table["evaluation"], seeds, strict=True)]
    return cells[columns].reset_index(drop=True)


def across_seed_table(comparison: pd.DataFrame, evaluation: str, metric: str) -> pd.DataFrame:
    """The across-seed result as a table for one evaluation and metric: per model and setting the mean
    difference to flat, its 95% interval, raw and Holm p, the seeds it rests on and the method."""
    columns = ["model", "setting", "seeds", "delta", "ci_low", "ci_high", "p", "Holm p", "method", "note"]
    if comparison.empty or f"delta_{metric}" not in comparison:
        return pd.DataFrame(columns=columns)
    table = report.across_seeds(comparison[comparison["evaluation"] == evaluation])
    if table.empty:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame({
        "model": table["model"].map(model_name), "setting": table["setting_label"], "seeds": table["n_seeds"],
        "delta": table[f"delta_{metric}"], "ci_low": table[f"delta_{metric}_ci_low"],
        "ci_high": table[f"delta_{metric}_ci_high"], "p": table[f"p_{metric}"],
        "Holm p": table[f"p_{metric}_holm"], "method": table[f"method_{metric}"],
        "note": table["note"] if metric == "macro_f1" else ""})
    return out[columns]


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
    """Per run (the per-seed detail): the metrics, calibration, its difference to flat and both
    p-values of that seed's test (raw and Holm), and the degenerate-threshold note.

    Brier and ECE come twice, labelled: ``brier_calibrated`` / ``ece_calibrated`` (Platt-recalibrated
    on validation; NaN for runs stored before recalibration) and ``brier_uncalibrated`` /
    ``ece_uncalibrated`` (the paper recipe's raw probabilities). ``results`` is
    :func:`report.results`, already in (model, evaluation, seed, setting) order; the left merge keeps
    that order."""
    part = results[results["evaluation"] == evaluation]
    columns = ["model", "setting", "setting_label", "seed", "auroc", "auprc", "macro_f1",
               "brier_calibrated", "ece_calibrated", "brier", "ece", "predicted_positive_rate",
               "degenerate_threshold", "n", "n_pos"]
    table = part[[c for c in columns if c in part]].rename(
        columns={"brier": "brier_uncalibrated", "ece": "ece_uncalibrated"})
    if not comparison.empty and f"delta_{metric}" in comparison:
        cmp = comparison[comparison["evaluation"] == evaluation][
            ["model", "seed", "setting", f"delta_{metric}", f"p_{metric}", f"p_{metric}_holm"]
            + (["note"] if "note" in comparison and metric == "macro_f1" else [])]
        table = table.merge(cmp, on=["model", "seed", "setting"], how="left")
    return table.reset_index(drop=True)




def counts_transfer_table(runs: list[dict], evaluation_task: str | None = None) -> pd.DataFrame:
    """The counts baselines' two transfer readings side by side per run: the stored probe (source
    vocabulary and roll-ups, logistic regression fitted on target train: what the Transfer chart plots)
    and the source-trained model applied to the target as is (``source_model_direct``)."""
    rows = []
    for run in runs:
        spec, metrics = run.get("spec", {}), run.get("metrics", {})
        direct = metrics.get("source_model_direct")
        if spec.get("kind") != "transfer" or not direct:
            continue
        if evaluation_task is not None and spec.get("task") != evaluation_task:
            continue
        rows.append({"model": model_name(spec["model"]), "setting": spec["setting"], "seed": spec["seed"],
                     "probe AUROC (target-trained)": metrics.get("test", {}).get("auroc", np.nan),
                     "source model as is AUROC": direct.get("test", {}).get("auroc", np.nan),
                     "target codes unseen at the source": metrics.get("target_unk_code_share", np.nan)})
    columns = ["model", "setting", "seed", "probe AUROC (target-trained)", "source model as is AUROC",
               "target codes unseen at the source"]
    frame = pd.DataFrame(rows, columns=columns)
    if not frame.empty:
        frame["rank"] = frame["setting"].map(setting_rank)
        frame = frame.sort_values(["model", "seed", "rank"]).drop(columns="rank").reset_index(drop=True)
    return frame
