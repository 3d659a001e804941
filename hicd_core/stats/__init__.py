"""Evaluation statistics for comparing hierarchy settings against the flat-code baseline.

The paper (notes §7.3-7.4, §12) reports F1-macro at a validation-tuned threshold and AUROC, and flags
each hierarchy variant against the same model's ``'000'`` variant with a DeLong test (AUROC) and a
paired bootstrap (F1-macro) at p < 0.05, without a multiplicity correction. This module provides
those tests plus what the paper leaves out (AUPRC, calibration and Platt recalibration, Holm
correction, a cluster (patient-level) bootstrap, and a test across training seeds that treats the seed
as the unit), so our runs can be compared with the published numbers in ``assets/paper_results.csv``.

Public API::

    choose_threshold(y_true, prob)                        -> float (validation data only)
    binary_metrics(y_true, prob, threshold)               -> dict of auroc, auprc, macro_f1, brier, ece...
    fit_platt(y_val, prob_val) / apply_platt(prob, cal)   -> Platt recalibration (validation-fitted)
    calibration_scores(y_true, prob)                      -> Brier and ECE, keys suffixed "_calibrated"
    auroc(y_true, prob)                                   -> float (NaN when one class only)
    bootstrap_ci(y_true, prob, metric, ...)               -> dict (value, percentile 95% CI)
    delong_test(y_true, prob_a, prob_b)                   -> dict (paired AUROC difference a - b)
    delong_ci(y_true, prob)                               -> dict (single AUROC with 95% CI)
    paired_bootstrap(y_true, prob_a, prob_b, metric, ...) -> dict (difference a - b, CI, p-value)
    bootstrap_indices(n, n_resamples, seed)               -> the exact resample index sets used
    holm(p_values)                                        -> Holm-Bonferroni adjusted p-values
    seed_summary(values)                                  -> mean, sd, n, 95% t-interval
    compare_to_flat(frame, ...)                           -> one row per non-flat setting (one seed)
    seed_cross_covariance(frame, ...)                     -> test-sampling covariance across seeds
    across_seed_test(diffs, cross_cov)                    -> setting - flat over seeds (seed = unit)
    load_paper_results()                                  -> the paper's Tables 1-3, long format

The bootstrap functions take ``clusters`` (``compare_to_flat``: ``cluster=True`` and a
``patient_id`` column): whole patients are resampled, so admissions of one patient stay together.

Conventions: labels are 0/1; a sample is predicted positive when ``prob >= threshold``; macro-F1
is the unweighted mean of the F1 of class 1 and class 0 (both classes always count, an undefined F1
counts as 0, i.e. sklearn's ``f1_score(labels=[0, 1], average="macro", zero_division=0)``); every
difference is ``a - b`` (``compare_to_flat`` passes the hierarchy setting as ``a``, flat as ``b``).

Package layout: ``metrics`` (inputs, threshold, point metrics, calibration), ``delong``,
``bootstrap``, ``compare`` (Holm, seed summaries, setting vs flat, across seeds), ``paper``.
"""

from hicd_core.stats.bootstrap import bootstrap_ci, bootstrap_indices, paired_bootstrap
from hicd_core.stats.compare import (
    ACROSS_SEED_METHOD,
    ONE_SEED_METHOD,
    across_seed_test,
    compare_to_flat,
    holm,
    seed_cross_covariance,
    seed_summary,
)
from hicd_core.stats.delong import delong_ci, delong_test
from hicd_core.stats.metrics import (
    BOOTSTRAP_METRICS,
    PAPER_RESULTS_PATH,
    THRESHOLD_GRID,
    apply_platt,
    auroc,
    binary_metrics,
    calibration_scores,
    choose_threshold,
    expected_calibration_error,
    fit_platt,
    macro_f1,
)
from hicd_core.stats.paper import load_paper_results

__all__ = [
    "ACROSS_SEED_METHOD", "BOOTSTRAP_METRICS", "ONE_SEED_METHOD", "PAPER_RESULTS_PATH", "THRESHOLD_GRID",
    "across_seed_test", "apply_platt", "auroc", "binary_metrics", "bootstrap_ci", "bootstrap_indices",
    "calibration_scores", "choose_threshold", "compare_to_flat", "delong_ci", "delong_test",
    "expected_calibration_error", "fit_platt", "holm", "load_paper_results", "macro_f1", "paired_bootstrap",
    "seed_cross_covariance", "seed_summary",
]
