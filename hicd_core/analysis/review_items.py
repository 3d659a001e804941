"""What a review session shows: which test patients (seeded, stratified or by disagreement) and each
explanation as a ranked list in plain words.

Everything here is pure (frames in, frames out) so that the selection and the wording are tested
without a trained model. A blinded reviewer must not learn which side is the flat model from the
wording, so the plain-words list never names a setting or a G0/G1/G2 level: levels are described by
what they are in the ICD-10-CM tree (chapter, block, category).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hicd_core.hierarchy import chapter_titles, describe
from hicd_core.hierarchy.icd10 import UNKNOWN, block_titles

#: How patients are chosen. ``stratified``: equal shares of true/false positives/negatives of the
#: hierarchical model at its validation threshold; ``disagreement``: the patients whose risk ranks
#: differ most between flat and the setting; ``random``: a seeded draw.
SELECTIONS = {
    "stratified": "stratified by outcome and prediction (true/false positives/negatives)",
    "disagreement": "largest disagreement between flat and the setting",
    "random": "random",
}
STRATA = ("TP", "FP", "FN", "TN")
STRATUM_WORDS = {"TP": "true positive", "FP": "false positive", "FN": "false negative", "TN": "true negative"}
ITEM_COLUMNS = ("position", "sample_id", "patient_index", "label", "stratum", "flat_prob", "setting_prob",
                "disagreement", "a_is_flat")
#: What a level acts through, in words a clinician reads (no setting or G-level names: blinding).
LEVEL_WORDS = {"code": "the code itself", "G0": "its chapter", "G1": "its block", "G2": "its category",
               "chapter": "its chapter", "block": "its block", "category": "its category",
               "prefix": "its category"}
OTHER_FACTORS = {"age": "Patient age at each visit", "position": "Order of the visits",
                 "segment": "Visit segment markers"}
PLAIN_COLUMNS = ("rank", "effect", "code", "title", "acts_through", "share", "attribution", "visits")


class SelectionError(ValueError):
    """The run's predictions cannot give the items asked for (the message says why)."""


def _strata(label: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return np.where(label == 1, np.where(predicted, "TP", "FN"), np.where(predicted, "FP", "TN"))


def select_items(flat: pd.DataFrame, setting: pd.DataFrame, *, method: str, n: int, seed: int,
                 flat_threshold: float, setting_threshold: float) -> pd.DataFrame:
    """The session's fixed item list: one test sample per patient, ``n`` at most, in a seeded order,
    each with a seeded A/B side (``a_is_flat``) so that position on the screen says nothing.

    ``flat`` / ``setting``: the two runs' stored test predictions (``sample_id``, ``patient_id``,
    ``label``, ``prob``). The stratum is the hierarchical model's outcome at its validation threshold.
    """
    if method not in SELECTIONS:
        raise SelectionError(f"selection must be one of {', '.join(SELECTIONS)}; got {method!r}")
    if int(n) < 1:
        raise SelectionError("a session needs at least one item")
    cols = ["sample_id", "patient_id", "label", "prob"]
    frame = flat[cols].merge(setting[["sample_id", "prob"]], on="sample_id", suffixes=("_flat", "_setting"))
    if frame.empty:
        raise SelectionError("the flat and the hierarchical run share no test sample")
    frame = frame.sort_values("sample_id", kind="stable").reset_index(drop=True)
    predicted = frame["prob_setting"].to_numpy() >= setting_threshold
    frame["stratum"] = _strata(frame["label"].to_numpy(), predicted)
    # Percentile ranks make the two runs' risks comparable whatever their calibration.
    frame["disagreement"] = (frame["prob_setting"].rank(pct=True) - frame["prob_flat"].rank(pct=True)).abs()
    rng = np.random.default_rng(int(seed))
    shuffled = frame.iloc[rng.permutation(len(frame))]
    if method == "disagreement":
        ordered = frame.sort_values(["disagreement", "sample_id"], ascending=[False, True], kind="stable")
        chosen = ordered.drop_duplicates("patient_id").head(int(n))
    else:
        unique = shuffled.drop_duplicates("patient_id")
        if method == "random":
            chosen = unique.head(int(n))
        else:  # round-robin over the strata; a short stratum leaves its turns to the others
            pools = {s: list(unique.index[unique["stratum"] == s]) for s in STRATA}
            picked: list[int] = []
            while len(picked) < int(n) and any(pools.values()):
                for s in STRATA:
                    if pools[s] and len(picked) < int(n):
                        picked.append(pools[s].pop(0))
            chosen = unique.loc[picked]
    chosen = chosen.iloc[rng.permutation(len(chosen))]  # presentation order says nothing either
    items = pd.DataFrame({
        "position": np.arange(len(chosen), dtype=np.int64),
        "sample_id": chosen["sample_id"].astype(np.int64).to_numpy(),
        "patient_index": chosen["patient_id"].astype(np.int64).to_numpy(),
        "label": chosen["label"].astype(np.int64).to_numpy(),
        "stratum": chosen["stratum"].astype(str).to_numpy(),
        "flat_prob": chosen["prob_flat"].astype(float).to_numpy(),
        "setting_prob": chosen["prob_setting"].astype(float).to_numpy(),
        "disagreement": chosen["disagreement"].astype(float).to_numpy(),
        "a_is_flat": rng.integers(0, 2, len(chosen)).astype(bool),
    })
    return items[list(ITEM_COLUMNS)]


def group_title(kind: str, code: str) -> str:
    """Title of a code, category, block or chapter ('' when unknown)."""
    if not code or code == UNKNOWN:
        return ""
    if kind in ("chapter", "G0"):
        return chapter_titles().get(code.removeprefix("CH:"), "")
    return describe(code) or block_titles().get(code, "")


def _bert_rows(table: pd.DataFrame, components: tuple[str, ...]) -> pd.DataFrame:
    diag = table[table["code"].astype(str) != ""]
    parts = [c for c in ("code", "G0", "G1", "G2") if c in components]
    level_cols = {"G0": "chapter", "G1": "block", "G2": "category"}
    rows: list[dict[str, Any]] = []
    for code, group in diag.groupby("code", sort=False):
        sums = {c: float(group[f"attr_{c}"].sum()) for c in parts}
        total = sum(sums.values())
        strongest = max(sums, key=lambda c: abs(sums[c])) if sums else "code"
        words = LEVEL_WORDS[strongest]
        if strongest in level_cols:
            group_code = str(group[level_cols[strongest]].iloc[0])
            title = group_title(strongest, group_code)
            words += f" ({title})" if title else ""
        rows.append({"code": str(code), "title": str(group["title"].iloc[0]), "acts_through": words,
                     "attribution": total, "visits": int(group["visit_index"].nunique())})
    for component, label in OTHER_FACTORS.items():
        if component in components:
            rows.append({"code": "", "title": label, "acts_through": "not a diagnosis",
                         "attribution": float(table[f"attr_{component}"].sum()), "visits": 0})
    return pd.DataFrame(rows)


def _node_rows(table: pd.DataFrame) -> pd.DataFrame:
    name = "node" if "node" in table else "code"
    kinds = table["kind"].astype(str) if "kind" in table else pd.Series("code", index=table.index)
    frame = table.assign(_kind=kinds)
    rows = []
    for (node, kind), group in frame.groupby([name, "_kind"], sort=False):
        acts = LEVEL_WORDS.get(str(kind), str(kind))
        rows.append({"code": str(node), "title": str(group["title"].iloc[0]) if "title" in group else "",
                     "acts_through": acts, "attribution": float(group["attribution"].sum()),
                     "visits": int(group["visit_index"].nunique()) if "visit_index" in group else 0})
    return pd.DataFrame(rows)


def plain_explanation(attr: Any, top: int = 10) -> pd.DataFrame:
    """The tokens that pushed this patient's risk up or down, largest first, in plain words.

    Columns: ``rank``, ``effect`` (raises / lowers the risk), ``code``, ``title``, ``acts_through`` (the
    code itself or the chapter/block/category it acts through, for HICD-BERT the component with the
    largest part of the code's attribution), ``share`` (of the summed absolute attribution of all
    rows, so shares are comparable between two models), ``attribution`` (logit units), ``visits``.
    """
    table = attr.table
    if "attr_diagnosis" in table or any(c.startswith("attr_") for c in table.columns):
        rows = _bert_rows(table, tuple(attr.components))
    elif "attribution" in table:
        rows = _node_rows(table)
    else:
        raise ValueError(f"no attribution column in the explanation of run {attr.run_id}")
    if rows.empty:
        return pd.DataFrame(columns=list(PLAIN_COLUMNS))
    magnitude = rows["attribution"].abs()
    total = float(magnitude.sum())
    rows["share"] = magnitude / total if total > 0 else 0.0
    rows["effect"] = np.where(rows["attribution"] >= 0, "raises the risk", "lowers the risk")
    rows = rows.assign(_m=magnitude).sort_values(["_m", "code"], ascending=[False, True], kind="stable")
    rows = rows.head(int(top)).drop(columns="_m").reset_index(drop=True)
    rows["rank"] = np.arange(1, len(rows) + 1)
    return rows[list(PLAIN_COLUMNS)]


def plain_sentences(rows: pd.DataFrame) -> list[str]:
    """One short sentence per row of :func:`plain_explanation` (for the HTML report and screen readers)."""
    out = []
    for row in rows.itertuples():
        name = f"{row.code} {row.title}".strip() if row.code else row.title
        out.append(f"{row.rank}. {name}: {row.effect} through {row.acts_through} "
                   f"({row.share:.0%} of the total).")
    return out


def timeline_words(timeline: pd.DataFrame) -> pd.DataFrame:
    """The visit timeline with code titles, one row per visit: ``visit``, ``day``, ``diagnoses``."""
    rows = []
    for visit, group in timeline.groupby("visit_index", sort=True):
        codes = [f"{c} {t}".strip() for c, t in zip(group["code"], group["title"], strict=True) if c]
        rows.append({"visit": int(visit), "day": float(group["day"].iloc[0]),
                     "diagnoses": "; ".join(codes) if codes else "(no diagnosis codes)"})
    return pd.DataFrame(rows, columns=["visit", "day", "diagnoses"])


# ------------------------------------------------------------------------- from a run store
def run_threshold(store: Any, run_id: str) -> float:
    """The run's validation-chosen decision threshold (``metrics.json``, checksum-verified)."""
    import json

    from hicd_core.checksums import read_verified
    from hicd_core.experiments.runstore import METRICS_FILE

    metrics = json.loads(read_verified(store.run_dir(run_id), METRICS_FILE))
    if metrics.get("threshold") is None:
        raise SelectionError(f"run {run_id} has no stored decision threshold")
    return float(metrics["threshold"])


def plan_items(store: Any, flat_run: str, setting_run: str, *, method: str, n: int, seed: int
               ) -> pd.DataFrame:
    """:func:`select_items` on the two runs' stored test predictions and thresholds."""
    return select_items(store.predictions(flat_run), store.predictions(setting_run), method=method, n=n,
                        seed=seed, flat_threshold=run_threshold(store, flat_run),
                        setting_threshold=run_threshold(store, setting_run))


@dataclass
class Side:
    """One explanation of an item as a reviewer sees it (``is_flat`` is never shown when blinded)."""

    letter: str
    is_flat: bool
    setting: str
    rows: pd.DataFrame
    risk: float
    calibrated: bool
    attribution: Any


@dataclass
class ItemView:
    """What the worklist shows for one item: the timeline in words and the two sides, A first."""

    position: int
    sample_id: int
    patient_index: int
    label: int
    timeline: pd.DataFrame
    sides: tuple[Side, Side]
    seconds: float


def explain_item(store: Any, config: dict[str, Any], item: pd.Series | dict, cohort: Any, *,
                 n_steps: int = 32, top: int = 10) -> ItemView:
    """Both explanations of one item through :func:`attributions.explain_patient` (models and
    attributions cached in-process, so every reviewer after the first gets a cache hit)."""
    from hicd_core.analysis.attributions import explain_patient
    from hicd_core.hierarchy import FLAT

    started = time.perf_counter()
    runs = {str(FLAT): str(config["flat_run"]), str(config["setting"]): str(config["setting_run"])}
    report = explain_patient(store, runs, cohort, str(config["task"]), int(item["sample_id"]), n_steps)
    risks = report.risks.set_index("setting")
    sides = []
    for setting in (str(FLAT), str(config["setting"])):
        row = risks.loc[setting]
        calibrated = bool(np.isfinite(row["prob_calibrated"]))
        sides.append(Side(letter="", is_flat=setting == str(FLAT), setting=setting,
                          rows=plain_explanation(report.attributions[setting], top),
                          risk=float(row["prob_calibrated"] if calibrated else row["prob"]),
                          calibrated=calibrated, attribution=report.attributions[setting]))
    flat, hier = sides
    first, second = (flat, hier) if bool(item["a_is_flat"]) else (hier, flat)
    first.letter, second.letter = "A", "B"
    return ItemView(position=int(item["position"]), sample_id=int(item["sample_id"]),
                    patient_index=int(report.patient_id), label=int(report.label),
                    timeline=timeline_words(report.timeline), sides=(first, second),
                    seconds=time.perf_counter() - started)
