"""Evidence from a review session: preference for the hierarchical explanation, agreement, the report.

Statistics come from maintained libraries (statsmodels' Wilson interval and Fleiss' kappa, SciPy's
exact binomial test, scikit-learn's Cohen's kappa), so the numbers are the ones a statistician would
get. A *decided* item is one where the reviewer preferred one side; "both" and "neither" are counted
and shown but left out of the preference share (the sign test's ties).
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pandas as pd

from hicd_core.runtime import safe_csv

CATEGORIES = ("hierarchy", "flat", "both", "neither")
SUMMARY_COLUMNS = ("group", "answers", "decided", "prefer_hierarchy", "prefer_flat", "both", "neither",
                   "share_hierarchy", "ci_low", "ci_high", "p_value")


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` (NaNs when ``n`` is 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(int(successes), int(n), alpha=alpha, method="wilson")
    return float(low), float(high)


def sign_test(successes: int, n: int) -> float:
    """Two-sided exact binomial (sign) test of ``successes`` out of ``n`` against one half."""
    if n <= 0:
        return float("nan")
    from scipy.stats import binomtest

    return float(binomtest(int(successes), int(n), 0.5, alternative="two-sided").pvalue)


def preference_row(prefers: pd.Series, group: str) -> dict[str, Any]:
    """One summary row for a set of answers' decoded preferences (:data:`CATEGORIES` or None)."""
    counts = prefers.value_counts()
    hier, flat = int(counts.get("hierarchy", 0)), int(counts.get("flat", 0))
    decided = hier + flat
    low, high = wilson_interval(hier, decided)
    return {"group": group, "answers": int(prefers.notna().sum()), "decided": decided,
            "prefer_hierarchy": hier,
            "prefer_flat": flat, "both": int(counts.get("both", 0)), "neither": int(counts.get("neither", 0)),
            "share_hierarchy": hier / decided if decided else float("nan"), "ci_low": low, "ci_high": high,
            "p_value": sign_test(hier, decided)}


def preference_summary(answers: pd.DataFrame) -> pd.DataFrame:
    """The session first (every answer), then one row per reviewer (``rater``)."""
    rows = [preference_row(answers["prefers"], "all reviewers")]
    for rater, part in answers.groupby("rater", sort=True):
        rows.append(preference_row(part["prefers"], str(rater)))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def rating_matrix(answers: pd.DataFrame) -> pd.DataFrame:
    """Items (rows) x raters (columns) of decoded preferences, keeping the items every rater answered."""
    rated = answers.dropna(subset=["prefers"])
    wide = rated.pivot_table(index="position", columns="rater", values="prefers", aggfunc="last")
    return wide.dropna(axis=0, how="any")


def agreement(answers: pd.DataFrame) -> dict[str, Any]:
    """Chance-corrected agreement on the items all raters answered: Cohen's kappa for two raters,
    Fleiss' kappa for more. ``kappa`` is NaN (with ``note``) when it cannot be computed."""
    wide = rating_matrix(answers)
    raters = list(wide.columns)
    out: dict[str, Any] = {"raters": len(raters), "shared_items": len(wide), "kappa": float("nan"),
                           "method": "", "percent_agreement": float("nan"), "note": ""}
    if len(raters) < 2:
        out["note"] = "agreement needs at least two reviewers"
        return out
    if len(wide) == 0:
        out["note"] = "no item was answered by every reviewer"
        return out
    values = wide.to_numpy(dtype=object)
    out["percent_agreement"] = float(np.mean([len(set(row)) == 1 for row in values]))
    if len(set(values.ravel())) < 2:
        out["note"] = "every answer is the same category: kappa is undefined (agreement is perfect)"
        out["method"] = "Cohen's kappa" if len(raters) == 2 else "Fleiss' kappa"
        return out
    if len(raters) == 2:
        from sklearn.metrics import cohen_kappa_score

        out.update(kappa=float(cohen_kappa_score(values[:, 0], values[:, 1], labels=list(CATEGORIES))),
                   method="Cohen's kappa")
    else:
        from statsmodels.stats.inter_rater import fleiss_kappa

        table = np.array([[int((row == c).sum()) for c in CATEGORIES] for row in values])
        out.update(kappa=float(fleiss_kappa(table, method="fleiss")), method="Fleiss' kappa")
    return out


def comments_table(answers: pd.DataFrame) -> pd.DataFrame:
    """Every non-empty comment with its item, reviewer and answer."""
    frame = answers[answers["comment"].fillna("").str.strip() != ""]
    frame = frame.assign(item=frame["position"].astype(int) + 1)
    return frame[["item", "rater", "preference", "prefers", "comment"]].reset_index(drop=True)


def answers_csv(answers: pd.DataFrame) -> bytes:
    """Answers as CSV, cells that a spreadsheet would run as a formula neutralised."""
    cols = ["session_id", "position", "patient_index", "sample_id", "label", "stratum", "rater", "origin",
            "preference", "a_is_flat", "prefers", "verdict_flat", "verdict_setting", "comment", "answered_at"]
    frame = answers[cols].assign(item=answers["position"].astype(int) + 1).drop(columns="position")
    return safe_csv(frame, index=False).encode("utf-8")


# --------------------------------------------------------------------------------- HTML report
_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}.note{color:#555}")


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.3g}"
    return str(value)


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def share_sentence(row: pd.Series | dict) -> str:
    """'7 of 10 decided answers (70%, 95% CI 40% to 89%) preferred the hierarchical explanation; ...'"""
    if not row["decided"]:
        return "No decided answers yet (every answer was 'both' or 'neither', or none was given)."
    return (f"{row['prefer_hierarchy']} of {row['decided']} decided answers "
            f"({row['share_hierarchy']:.0%}, 95% Wilson interval {row['ci_low']:.0%} to "
            f"{row['ci_high']:.0%}) preferred the hierarchical explanation; two-sided sign test "
            f"p = {row['p_value']:.3g}.")


def report_html(config: dict[str, Any], answers: pd.DataFrame, *, setting_label: str = "") -> str:
    """A self-contained HTML session report (inline CSS, no scripts, no external assets). Every piece
    of text that came from a person (title, names, comments) is escaped."""
    summary = preference_summary(answers)
    agree = agreement(answers)
    kappa = ("" if np.isnan(agree["kappa"]) else f"{agree['method']} = {agree['kappa']:.3f}; ") + (
        f"raw agreement {agree['percent_agreement']:.0%} on {agree['shared_items']} items answered by all "
        f"{agree['raters']} reviewers" if agree["raters"] >= 2 and agree["shared_items"] else "") + (
        f" ({agree['note']})" if agree["note"] else "")
    setting = f"{config['setting']}" + (f" ({setting_label})" if setting_label else "")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Review session {escape(config['session_id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Review session {escape(config['session_id'])}: {escape(str(config.get('title') or ''))}</h1>",
        "<p class='note'>Flat vs hierarchical explanations of the same patients, judged by clinicians. "
        "De-identified item indices only.</p>",
        _table(pd.DataFrame([{"model": config["model"], "task": config["task"], "seed": config["seed"],
                              "hierarchical setting": setting, "selection": config["selection"],
                              "items": config["n_items"], "blinded": config["blinded"],
                              "created": config.get("created_at", "")}])),
        "<h2>Preference</h2>", f"<p>{escape(share_sentence(summary.iloc[0]))}</p>", _table(summary),
        "<h2>Agreement between reviewers</h2>", f"<p>{escape(kappa or 'Not computed.')}</p>",
        "<h2>Comments</h2>", _table(comments_table(answers)) if len(answers) else "<p>None.</p>",
        "</body></html>"]
    return "".join(parts)
