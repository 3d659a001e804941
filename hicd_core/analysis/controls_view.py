"""The permuted-hierarchy control beside the real tree's result (the Level ablation page's control section).

A permuted-hierarchy run (``RunSpec.hierarchy == "permuted"``, ``sweep --preset control``) trains a
hierarchical setting on a tree whose codes were shuffled between groups with the group sizes kept
(:func:`hicd_core.hierarchy.levels.permute_hierarchy`); the flat run is shared. If the hierarchy
helps as much with the permuted tree, the gain is capacity or regularisation, not clinical structure.

* :func:`control_summary` -- per (model, evaluation, setting): the real tree's across-seed gain over
  flat next to the permuted tree's, both from :func:`hicd_core.experiments.report.across_seeds`.
* :func:`real_vs_permuted` -- the direct question, real tree minus permuted tree on the same test
  patients: per seed the AUROC difference, across seeds the Obuchowski-Rockette test with Hillis df
  (:func:`hicd_core.stats.across_seed_test`; the test-sampling covariance of two seeds' differences
  from DeLong, :func:`hicd_core.stats.seed_cross_covariance`), Holm across the settings. With one
  seed it is that seed's DeLong test, and ``method`` says so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from hicd_core.experiments.report import PERMUTED_SUFFIX
from hicd_core.hierarchy import FLAT, Setting, setting_rank
from hicd_core.stats import ACROSS_SEED_METHOD, across_seed_test, delong_test, holm, seed_cross_covariance

#: How the page and the report name the control.
CONTROL_LABEL = "permuted-hierarchy control"
#: The columns :func:`control_summary` returns.
SUMMARY_COLUMNS = ("model", "evaluation", "setting", "setting_label", "n_seeds_real", "delta_auroc_real",
                   "ci_low_real", "ci_high_real", "p_holm_real", "n_seeds_permuted", "delta_auroc_permuted",
                   "ci_low_permuted", "ci_high_permuted", "p_holm_permuted", "real_minus_permuted")
#: The columns :func:`real_vs_permuted` returns.
DIRECT_COLUMNS = ("model", "evaluation", "setting", "setting_label", "n_seeds", "seeds", "auroc_real",
                  "auroc_permuted", "diff", "ci_low", "ci_high", "p_value", "p_holm", "method")


def control_evaluations(results: pd.DataFrame) -> list[str]:
    """Base evaluations (``readmission_30d``, ...) that have permuted-hierarchy runs, in-domain first."""
    if results.empty or "hierarchy" not in results:
        return []
    permuted = results[results["hierarchy"].fillna("real") == "permuted"]
    first = permuted.drop_duplicates("base_evaluation")
    order = first.assign(_kind=first["kind"].map({"task": 0, "transfer": 1})).sort_values(
        ["_kind", "base_evaluation"])
    return order["base_evaluation"].tolist()


def control_summary(across: pd.DataFrame, evaluation: str) -> pd.DataFrame:
    """The real tree's and the permuted tree's across-seed AUROC gain over flat, side by side.

    ``across`` is :func:`hicd_core.experiments.report.across_seeds` (the permuted runs are their own
    evaluation, ``<evaluation> [permuted hierarchy]``, compared with the real tree's flat runs).
    ``real_minus_permuted`` is the difference of the two mean gains (its test: :func:`real_vs_permuted`).
    Empty when the evaluation has no permuted runs.
    """
    if across.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    keep = ["model", "setting", "n_seeds", "delta_auroc", "delta_auroc_ci_low", "delta_auroc_ci_high",
            "p_auroc_holm"]
    real = across[across["evaluation"] == evaluation][keep]
    permuted = across[across["evaluation"] == evaluation + PERMUTED_SUFFIX][keep]
    if permuted.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    names = {"n_seeds": "n_seeds", "delta_auroc": "delta_auroc", "delta_auroc_ci_low": "ci_low",
             "delta_auroc_ci_high": "ci_high", "p_auroc_holm": "p_holm"}
    frame = real.rename(columns={k: f"{v}_real" for k, v in names.items()}).merge(
        permuted.rename(columns={k: f"{v}_permuted" for k, v in names.items()}), on=["model", "setting"],
        how="right")
    frame["real_minus_permuted"] = frame["delta_auroc_real"] - frame["delta_auroc_permuted"]
    frame["evaluation"] = evaluation
    frame["setting_label"] = frame["setting"].map(lambda s: Setting(s).label)
    frame["rank"] = frame["setting"].map(setting_rank)
    frame = frame.sort_values(["model", "rank"]).reset_index(drop=True)
    return frame[list(SUMMARY_COLUMNS)]


def _pair_frame(real: pd.DataFrame, permuted: pd.DataFrame, setting: str,
                predictions: Callable[[str], pd.DataFrame]) -> pd.DataFrame:
    """Long predictions of the paired runs: the real tree's as ``setting``, the permuted tree's in the
    reference slot (``FLAT``), so the stats functions give real minus permuted."""
    frames = []
    for runs, label in ((real, setting), (permuted, FLAT)):
        for row in runs.itertuples():
            pred = predictions(row.run_id)
            frames.append(pred.assign(setting=label, threshold=row.threshold, seed=row.seed))
    return pd.concat(frames, ignore_index=True)


def real_vs_permuted(results: pd.DataFrame, evaluation: str, predictions: Callable[[str], pd.DataFrame]
                     ) -> pd.DataFrame:
    """Per (model, setting): does the real tree beat the permuted one? AUROC, real minus permuted.

    ``results`` is :func:`hicd_core.experiments.report.results`; ``predictions(run_id)`` reads a
    run's test predictions. Seeds with both trees trained count; method in the module docstring.
    """
    rows = []
    if results.empty or "hierarchy" not in results:
        return pd.DataFrame(columns=list(DIRECT_COLUMNS))
    part = results[(results["base_evaluation"] == evaluation) & (results["setting"] != FLAT)]
    tree = part["hierarchy"].fillna("real")
    for (model, setting), group in part.groupby(["model", "setting"]):
        real, permuted = group[tree[group.index] == "real"], group[tree[group.index] == "permuted"]
        seeds = sorted(set(real["seed"]) & set(permuted["seed"]))
        if not seeds:
            continue
        real = real[real["seed"].isin(seeds)].sort_values("seed")
        permuted = permuted[permuted["seed"].isin(seeds)].sort_values("seed")
        frame = _pair_frame(real, permuted, setting, predictions)
        row = {"model": model, "evaluation": evaluation, "setting": setting,
               "setting_label": Setting(setting).label, "n_seeds": len(seeds),
               "seeds": ",".join(str(int(s)) for s in seeds),
               "auroc_real": float(real["auroc"].mean()), "auroc_permuted": float(permuted["auroc"].mean())}
        if len(seeds) == 1:
            one = frame.pivot(index="sample_id", columns="setting", values="prob").dropna()
            labels = frame.groupby("sample_id")["label"].first().reindex(one.index)
            test = delong_test(labels.to_numpy(), one[setting].to_numpy(), one[FLAT].to_numpy())
            half = 1.959963984540054 * test["se"]
            row |= {"diff": test["diff"], "ci_low": test["diff"] - half, "ci_high": test["diff"] + half,
                    "p_value": test["p_value"], "method": "one seed: DeLong"}
        else:
            # n_resamples=0: only the DeLong (AUROC) covariance is needed, no bootstrap.
            cross = seed_cross_covariance(frame, n_resamples=0)["cross_cov_auroc"].iloc[0]
            diffs = real["auroc"].to_numpy(float) - permuted["auroc"].to_numpy(float)
            test = across_seed_test(diffs, float(cross))
            row |= {"diff": test["diff"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
                    "p_value": test["p_value"], "method": ACROSS_SEED_METHOD}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in DIRECT_COLUMNS if c != "p_holm"])
    if frame.empty:
        return pd.DataFrame(columns=list(DIRECT_COLUMNS))
    frame["rank"] = frame["setting"].map(setting_rank)
    frame = frame.sort_values(["model", "rank"]).reset_index(drop=True)
    frame["p_holm"] = frame.groupby("model")["p_value"].transform(
        lambda p: pd.Series(holm(p.to_numpy(np.float64)), index=p.index))
    return frame[list(DIRECT_COLUMNS)]
