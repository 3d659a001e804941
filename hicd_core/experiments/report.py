"""The results behind every chart: per-run metrics, comparisons with the flat model, seed summaries.

Every statistic is recomputed from the stored per-sample test predictions, so nothing here depends
on numbers cached at training time except the validation-chosen thresholds.

Two levels of comparison with the flat model:

* :func:`comparisons` -- per training seed, the paper's tests: DeLong for AUROC, a paired bootstrap
  for macro-F1 and AUPRC, Holm across the settings. One seed's 7 comparisons share one flat run,
  so a lucky or unlucky flat run moves them all together: this is detail, not the headline.
* :func:`across_seeds` -- the headline: per setting, the mean difference to flat over the training
  seeds with a test that treats the seed as the unit (Obuchowski-Rockette with Hillis df,
  :func:`hicd_core.stats.across_seed_test`), Holm across the settings. With one seed it falls back to
  that seed's DeLong / bootstrap and its ``method`` column says so.

The bootstrap resamples whole patients by default (``cluster=True``: one patient's admissions are
correlated); ``cluster=False`` is the paper's per-sample bootstrap. A run whose threshold is
degenerate (predicted-positive rate 0 or 1 on test) makes every macro-F1 comparison it is part of
unstarred, with the reason in ``note``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hicd_core.experiments.runstore import RunStore
from hicd_core.hierarchy import FLAT, Setting, setting_rank
from hicd_core.stats import (
    ACROSS_SEED_METHOD,
    ONE_SEED_METHOD,
    across_seed_test,
    compare_to_flat,
    holm,
    seed_cross_covariance,
    seed_summary,
)

METRICS = ("auroc", "macro_f1", "auprc")
ALPHA = 0.05


def _labels(settings: pd.Series) -> pd.Series:
    return settings.map(lambda key: Setting(key).label)


#: Suffix of the evaluation name of runs trained on the permuted-hierarchy control tree.
PERMUTED_SUFFIX = " [permuted hierarchy]"


def evaluation_name(row: pd.Series | dict, control: bool = True) -> str:
    """The task a row is evaluated on: the source task, or ``source -> target`` for transfer; runs on
    the permuted-hierarchy control tree get :data:`PERMUTED_SUFFIX` (unless ``control`` is False),
    so they form their own evaluation and are compared with the one flat run of the real one."""
    if row["kind"] == "transfer":
        suffix = "" if row.get("encoder", "finetuned") == "finetuned" else f" [{row['encoder']}]"
        name = f"{row['task']} -> {row['target_task']}{suffix}"
    else:
        name = str(row["task"])
    return name + (PERMUTED_SUFFIX if control and row.get("hierarchy") == "permuted" else "")


def results(store: RunStore) -> pd.DataFrame:
    """One row per finished run, with a readable ``evaluation`` (``base_evaluation``: the same without
    the permuted-control suffix) and ``setting_label``."""
    table = store.results_table()
    if table.empty:
        return table
    table["evaluation"] = table.apply(evaluation_name, axis=1)
    table["base_evaluation"] = table.apply(evaluation_name, axis=1, control=False)
    table["setting_label"] = _labels(table["setting"])
    table["setting_rank"] = table["setting"].map(setting_rank)
    return table.sort_values(["model", "evaluation", "seed", "setting_rank"]).reset_index(drop=True)


def degenerate_note(label: str, predicted_positive_rate: float) -> str:
    """Why a run's macro-F1 is not that of a classifier: its threshold puts every sample on one side."""
    side = "no" if predicted_positive_rate == 0 else "every"
    return f"{label} predicts {side} test sample positive (degenerate threshold)"


def _pair_notes(group: pd.DataFrame) -> dict[str, str]:
    """setting -> note for one (model, evaluation, seed): which of the pair's runs is degenerate."""
    flags = group.set_index("setting")
    notes = {}
    for setting in flags.index:
        if setting == FLAT:
            continue
        parts = [degenerate_note(Setting(s).label, float(flags.loc[s, "predicted_positive_rate"]))
                 for s in (FLAT, setting) if s in flags.index and bool(flags.loc[s, "degenerate_threshold"])]
        if parts:
            notes[setting] = "; ".join(parts)
    return notes


def comparisons(store: RunStore, n_resamples: int = 1000, seed: int = 0, cluster: bool = True
                ) -> pd.DataFrame:
    """Each non-flat setting against the flat model of the same family, evaluation and seed:
    DeLong for AUROC, paired bootstrap for macro-F1 and AUPRC (whole patients resampled when
    ``cluster``), Holm across the (up to 7) settings.

    Extra columns: ``bootstrap_unit`` (patient / sample), ``degenerate_threshold`` and ``note`` (a
    run of the pair predicts one class only), and ``cross_cov_<metric>``: the test-sampling
    covariance of two seeds' differences that :func:`across_seeds` needs (NaN with one seed).
    """
    table = results(store)
    if table.empty:
        return pd.DataFrame()
    out = []
    flat_runs = table[table["setting"] == FLAT]
    for (model, evaluation), runs in table.groupby(["model", "evaluation"]):
        if FLAT not in set(runs["setting"]):  # a permuted-hierarchy control: the real tree's flat runs
            runs = pd.concat([flat_runs[(flat_runs["model"] == model)
                                        & (flat_runs["base_evaluation"] == runs["base_evaluation"].iloc[0])],
                              runs], ignore_index=True)
        frames = []
        for row in runs.itertuples():
            pred = store.predictions(row.run_id)
            frames.append(pred.assign(setting=row.setting, threshold=row.threshold, seed=row.seed))
        every = pd.concat(frames, ignore_index=True)
        by_patient = cluster and "patient_id" in every and every["patient_id"].notna().all()
        per_seed = []
        for run_seed, group in runs.groupby("seed"):
            if FLAT not in set(group["setting"]) or len(group) < 2:
                continue
            compared = compare_to_flat(every[every["seed"] == run_seed], n_resamples=n_resamples, seed=seed,
                                       cluster=by_patient)
            notes = _pair_notes(group)
            compared["note"] = compared["setting"].map(notes).fillna("")
            compared["degenerate_threshold"] = compared["note"] != ""
            compared.insert(0, "seed", run_seed)
            per_seed.append(compared)
        if not per_seed:
            continue
        compared = pd.concat(per_seed, ignore_index=True)
        seeds_with_flat = set(compared["seed"])
        if len(seeds_with_flat) > 1:
            covariance = seed_cross_covariance(every[every["seed"].isin(seeds_with_flat)],
                                               n_resamples=n_resamples, seed=seed, cluster=by_patient)
            compared = compared.merge(covariance.drop(columns=["n_seeds", "seeds"]), on="setting", how="left")
        else:
            compared = compared.assign(**{f"cross_cov_{m}": np.nan for m in METRICS})
        compared.insert(0, "evaluation", evaluation)
        compared.insert(0, "model", model)
        compared["bootstrap_unit"] = "patient" if by_patient else "sample"
        out.append(compared)
    if not out:
        return pd.DataFrame()
    frame = pd.concat(out, ignore_index=True)
    frame["setting_label"] = _labels(frame["setting"])
    return frame


def _one_seed(row: pd.Series, metric: str) -> dict[str, float]:
    """The per-seed result as the across-seed row when there is one seed (labelled as such)."""
    delta = float(row[f"delta_{metric}"])
    if metric == "auroc":
        half = 1.959963984540054 * float(row["delta_auroc_se"])
        low, high = delta - half, delta + half
    else:
        low, high = float(row[f"delta_{metric}_ci_low"]), float(row[f"delta_{metric}_ci_high"])
    return {"diff": delta, "ci_low": low, "ci_high": high, "p_value": float(row[f"p_{metric}"]),
            "df": float("nan"), "sd_seeds": float("nan")}


def across_seeds(comparison: pd.DataFrame) -> pd.DataFrame:
    """The headline: each setting against flat across training seeds, one row per (model, evaluation,
    setting), in the paper's table order.

    Per metric m: ``delta_m`` (mean over seeds of setting minus flat), ``delta_m_ci_low`` /
    ``_ci_high`` (95%), ``p_m``, ``p_m_holm`` (Holm across the settings of the model and evaluation),
    ``df_m``, ``sd_seeds_m`` (between-seed SD of the difference) and ``method_m``
    (:data:`~hicd_core.stats.ACROSS_SEED_METHOD`, or the per-seed test when ``n_seeds`` is 1).
    ``significant_m`` is Holm p < 0.05, never for macro-F1 when a run involved has a degenerate
    threshold (``note`` says which). Also ``auroc`` / ``auroc_flat`` (means over the seeds).
    """
    if comparison.empty:
        return pd.DataFrame()
    rows = []
    for (model, evaluation, setting), group in comparison.groupby(["model", "evaluation", "setting"]):
        group = group.sort_values("seed")
        n_seeds = int(group["seed"].nunique())
        row: dict = {"model": model, "evaluation": evaluation, "setting": setting,
                     "setting_label": Setting(setting).label, "n_seeds": n_seeds,
                     "seeds": ",".join(str(int(s)) for s in group["seed"]),
                     "auroc": float(group["auroc"].mean()), "auroc_flat": float(group["auroc_flat"].mean()),
                     "bootstrap_unit": str(group["bootstrap_unit"].iloc[0]) if "bootstrap_unit" in group
                     else "sample"}
        for metric in METRICS:
            if n_seeds == 1:
                result, method = _one_seed(group.iloc[0], metric), ONE_SEED_METHOD[metric]
            else:
                cross = group.get(f"cross_cov_{metric}", pd.Series([np.nan])).iloc[0]
                result = across_seed_test(group[f"delta_{metric}"].to_numpy(float), float(cross))
                method = ACROSS_SEED_METHOD
            row |= {f"delta_{metric}": result["diff"], f"delta_{metric}_ci_low": result["ci_low"],
                    f"delta_{metric}_ci_high": result["ci_high"], f"p_{metric}": result["p_value"],
                    f"df_{metric}": result["df"], f"sd_seeds_{metric}": result["sd_seeds"],
                    f"method_{metric}": method}
        pair_notes = group["note"] if "note" in group else [""] * len(group)
        notes = [f"seed {int(s)}: {n}" for s, n in zip(group["seed"], pair_notes, strict=True) if n]
        row["degenerate_threshold"] = bool(notes)
        row["note"] = ("macro-F1 not starred: " + "; ".join(notes)) if notes else ""
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["setting_rank"] = frame["setting"].map(setting_rank)
    frame = frame.sort_values(["model", "evaluation", "setting_rank"]).drop(columns="setting_rank")
    for metric in METRICS:
        frame[f"p_{metric}_holm"] = frame.groupby(["model", "evaluation"])[f"p_{metric}"].transform(
            lambda p: pd.Series(holm(p.to_numpy(float)), index=p.index))
        frame[f"significant_{metric}"] = frame[f"p_{metric}_holm"] < ALPHA
    frame.loc[frame["degenerate_threshold"], "significant_macro_f1"] = False
    return frame.reset_index(drop=True)


def seed_note(n_seeds: int) -> str:
    """How many seeds a result rests on, in plain words (the one-seed case says what it lacks)."""
    if n_seeds <= 1:
        return ("ONE training seed: the test is that seed's DeLong / bootstrap on the test patients; "
                "training-seed noise is not measured (train more seeds to test across them)")
    return f"{n_seeds} training seeds, the seed as the unit ({ACROSS_SEED_METHOD})"


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
    """For each model and evaluation: the setting with the largest across-seed AUROC gain over flat,
    with its interval, Holm-corrected p over the settings and the number of seeds it rests on
    (:func:`across_seeds`). ``significant_holm`` is the AUROC star; the macro-F1 columns come along
    with their own star, which a degenerate threshold withholds."""
    table = across_seeds(comparison)
    if table.empty:
        return table
    table = table[table["delta_auroc"].notna()]
    if table.empty:
        return table
    best = table.loc[table.groupby(["model", "evaluation"])["delta_auroc"].idxmax()].copy()
    best["significant_holm"] = best["significant_auroc"]
    best["seed_note"] = best["n_seeds"].map(seed_note)
    return best.reset_index(drop=True)


def significance_mark(p: float, alpha: float = ALPHA) -> str:
    """``*`` when significant at ``alpha`` (the paper's mark), else ``''``; NaN gives ``''``."""
    return "*" if np.isfinite(p) and p < alpha else ""
