"""What every page of the app shares: the open cohorts and run store, cached loaders, the sidebar
(data source, run store, background training) and the small view models the pages draw.

Pages stay thin: they call :func:`context` for the current selection and the functions here for
data, then hand frames to :mod:`hicd_core.analysis.charts`. The pure helpers (no Streamlit calls)
are unit-tested; the cached wrappers key every result by the store path plus a cheap store
version (:func:`store_version`: run folder count and file mtimes), so runs finished by a background
sweep appear without a restart and finished runs, which never change, are read once.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from hicd_core.analysis.charts import METRIC_LABELS, model_name
from hicd_core.cohort import EICU, MIMIC_IV, Cohort, CohortInputError, cohort_summary, load_cohort
from hicd_core.experiments import background, report
from hicd_core.experiments.runstore import RunStore, default_store_root
from hicd_core.experiments.spec import RunSpec
from hicd_core.hierarchy import describe
from hicd_core.runtime import data_dir
from hicd_core.stats import binary_metrics, bootstrap_ci, delong_ci, load_paper_results

STORE_ENV = "HICD_STORE"
NO_AUTOTRAIN_ENV = "HICD_NO_AUTOTRAIN"
ALL_SETTINGS = report.SETTING_ORDER
#: Session-state key of the context computed by the entry point for the current script run.
CONTEXT_KEY = "_hicd_context"
ENTRY_RUN_KEY, SEEN_RUN_KEY = "_hicd_entry_run", "_hicd_seen_run"  # did the entry point run this time?
SYNTHETIC_BANNER = ("SYNTHETIC data: these patients and results come from the built-in synthetic "
                    "generator, not from MIMIC-IV or eICU. They show how the tool works, not what the "
                    "paper found.")
DATA_MODES = {"store": "Cohorts of the run store", "synthetic": "Synthetic default",
              "folders": "MIMIC-IV / eICU folders"}
#: The paper's table per evaluation name (Table 3 is the frozen-encoder transfer to eICU).
PAPER_TABLES = {"readmission_30d": 1, "emergency_next": 2, "readmission_30d -> icu_readmission": 3}
MIN_CELL = 10  # smallest group whose outcome rate is shown (no rates of a handful of patients)


# =================================================================================== pure helpers
def launch_store_root() -> Path:
    """The store opened at launch: ``$HICD_STORE`` or the default bundle ``$HICD_DATA_DIR/runs/default``."""
    env = os.environ.get(STORE_ENV)
    return Path(env).expanduser() if env else default_store_root()


def autotrain_disabled() -> bool:
    """``HICD_NO_AUTOTRAIN=1`` turns the first-launch training off; ``=0`` turns it on explicitly.

    Unset, it is on, except inside a pytest run: a test that opens the app without the flag must
    never leave a training process behind.
    """
    value = os.environ.get(NO_AUTOTRAIN_ENV, "").strip().lower()
    if value:
        return value not in ("0", "false", "no")
    return "PYTEST_CURRENT_TEST" in os.environ


def synthetic_default_path() -> Path:
    """Where the sweep's synthetic default lives (``sweep.synthetic_default_dir()`` with no size)."""
    return data_dir() / "synthetic" / "seed0"


def store_problem(root: Path, *, launch_default: bool) -> tuple[str, str] | None:
    """``(level, message)`` when ``root`` cannot be read as a run store, else None.

    The launch default may not exist yet (first launch: the sweep creates it); a folder the user
    names must exist, be a folder, and either look like a store or be empty (a new store).
    """
    if not root.exists():
        if launch_default:
            return None
        return "error", f"No folder at {root}. Name an existing run store directory (it holds runs/)."
    if not root.is_dir():
        return "error", f"{root} is a file, not a run store directory."
    markers = ("runs", "store.json", "results.parquet", background.STATUS_FILE)
    if any((root / name).exists() for name in markers):
        return None
    if any(root.iterdir()):
        return "error", (f"{root} is not a run store: it has no runs/, store.json or results.parquet. "
                         "Point at the folder a sweep wrote (python -m hicd_core sweep --store ...).")
    return None


def store_version(root: Path) -> str:
    """A cheap version of a store's content: changes whenever a run finishes or fails (not when one
    starts: the sweep's ``.tmp-*`` folders are not counted)."""
    parts = []
    for name in ("failed", "results.parquet", "store.json"):
        try:
            parts.append(str((root / name).stat().st_mtime_ns))
        except OSError:
            parts.append("-")
    try:
        parts.append(str(sum(not name.startswith(".") for name in os.listdir(root / "runs"))))
    except OSError:
        parts.append("-")
    return ":".join(parts)


def is_default_bundle(root: Path, info: dict) -> bool:
    """The default bundle: the launch store, empty or trained on the synthetic default cohorts."""
    if root.resolve() != launch_store_root().resolve():
        return False
    if not info:
        return True
    default_source = str(synthetic_default_path() / "mimic-iv")
    return bool(info.get("synthetic")) and info.get("source_path") == default_source


@dataclass
class _Fingerprinted:
    """Only what ``expected_runs`` reads of a cohort: its fingerprint (no need to load the data)."""

    fingerprint: str


def default_expected_runs(info: dict) -> dict[str, RunSpec]:
    """Runs of the ``default`` preset for the store's cohorts (empty before the first sweep)."""
    if not info.get("source_fingerprint"):
        return {}
    return dict(_default_expected(info["source_fingerprint"], info.get("target_fingerprint")))


@functools.lru_cache(maxsize=16)
def _default_expected(source: str, target: str | None) -> tuple[tuple[str, RunSpec], ...]:
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, expected_runs

    cohorts = Cohorts(_Fingerprinted(source),  # type: ignore[arg-type]
                      _Fingerprinted(target) if target else None)  # type: ignore[arg-type]
    return tuple(expected_runs(load_preset("default"), cohorts).items())


def grid_expected_runs(store: RunStore, info: dict) -> dict[str, RunSpec]:
    """All 8 settings of every (model, task, seed, ...) the store holds a run of (finished or failed).

    A store copied from elsewhere carries no preset name, so its expected grid is inferred: a
    setting missing from a group is a run still to train.
    """
    specs = [RunSpec(**run["spec"]) for run in store.finished_runs()]
    failed_dir = store.root / "failed"
    if failed_dir.is_dir():
        for path in sorted(failed_dir.glob("*.json")):
            try:
                specs.append(RunSpec(**json.loads(path.read_text())["spec"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    source, target = info.get("source_fingerprint"), info.get("target_fingerprint")
    if not source:
        return {}
    expected: dict[str, RunSpec] = {}
    for spec in specs:
        for setting in ALL_SETTINGS:
            variant = replace(spec, setting=setting)
            if variant.kind == "transfer" and not target:
                continue
            expected[variant.run_id(source, target)] = variant
    return expected


def expected_for(store: RunStore, info: dict, default_bundle: bool) -> dict[str, RunSpec]:
    expected = grid_expected_runs(store, info)
    if default_bundle:
        expected = {**default_expected_runs(info), **expected}
    return expected


def listing_counts(listing: pd.DataFrame) -> dict[str, int]:
    counts = listing["status"].value_counts() if not listing.empty else pd.Series(dtype=int)
    return {name: int(counts.get(name, 0)) for name in ("finished", "failed", "missing")}


def missing_summary(listing: pd.DataFrame) -> str:
    """One line naming what is not trained yet, e.g. ``bert readmission_30d: G0, G1 (+1 more)``."""
    todo = listing[listing["status"] != "finished"] if not listing.empty else listing
    if todo.empty:
        return ""
    parts = []
    for (model, task, kind), group in todo.groupby(["model", "task", "kind"], sort=True):
        labels = sorted(set(group["setting"]), key=ALL_SETTINGS.index)
        what = f"{model} {task}" + (" transfer" if kind == "transfer" else "")
        parts.append(f"{what}: {', '.join(report.setting_label(s) for s in labels)}")
    return "; ".join(parts[:6]) + (f" (+{len(parts) - 6} more groups)" if len(parts) > 6 else "")


def format_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "estimating"
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def training_view(status: dict, running: bool) -> dict[str, Any]:
    """What the sidebar shows about the background sweep, from ``read_status``."""
    event = status.get("event") or {}
    state = "running" if running else status.get("state", "idle")
    if state == "running" and not running:
        state = "stopped"
    return {
        "state": state,
        "overall": float(event.get("overall_fraction", 0.0)) if event else 0.0,
        "run": float(event.get("run_fraction", 0.0)) if event else 0.0,
        "run_id": str(event.get("run_id", "")),
        "stage": str(event.get("stage", "")),
        "n_runs": int(event.get("n_runs", 0)) if event else 0,
        "run_index": int(event.get("run_index", 0)) if event else 0,
        "eta": format_eta(event.get("eta_seconds")) if event else "estimating",
        "finished": len(status.get("finished", [])),
        "failed": len(status.get("failed", [])),
        "message": str(status.get("message", "")),
        # Runs in progress: one per worker process (older status files name only the last event's).
        "active": [(str(run_id), str(info.get("stage", "")), float(info.get("fraction", 0.0)))
                   for run_id, info in (status.get("active") or {}).items()]
        or ([(str(event["run_id"]), str(event.get("stage", "")), float(event.get("run_fraction", 0.0)))]
            if event.get("run_id") else []),
    }


def sweep_args(store: RunStore, info: dict, default_bundle: bool, *, models: list[str], tasks: list[str],
               settings: list[str], seeds: list[int]) -> list[str]:
    """Arguments of ``start_sweep`` that train exactly these runs into this store.

    The default bundle uses the ``default`` preset; any other store gets a preset file written into
    it with the model sizes of its existing runs (so the new runs are comparable) and its cohorts'
    recorded source folders.
    """
    subset = ["--models", ",".join(models), "--tasks", ",".join(tasks), "--settings", ",".join(settings),
              "--seeds", ",".join(str(s) for s in seeds)]
    if default_bundle:
        return ["--preset", "default", *subset]
    runs = store.finished_runs()
    specs = [run["spec"] for run in runs if run["spec"]["kind"] == "task"]
    fields: dict[str, Any] = {"description": "written by the app to extend this store"}
    if specs:
        first = specs[0]
        schemes = {spec["model"]: spec["scheme"] for spec in specs}
        fields |= {"model_preset": first["preset"], "epochs_scale": first["epochs_scale"], "schemes": schemes}
    has_transfer = any(run["spec"]["kind"] == "transfer" for run in runs)
    fields["transfer"] = bool(has_transfer and info.get("target_path"))
    preset_file = store.root / "app_preset.json"
    preset_file.parent.mkdir(parents=True, exist_ok=True)
    preset_file.write_text(json.dumps(fields, indent=2))
    args = ["--preset", str(preset_file), *subset]
    if info.get("source_path"):
        args += ["--cohort", f"mimic-iv:{info['source_path']}"]
        args += ["--target", f"eicu:{info['target_path']}" if info.get("target_path") else "none"]
    return args


# ---------------------------------------------------------------------------------- result views
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
    return pd.DataFrame(rows, columns=["model", "setting", "setting_label", "value", "ci_low", "ci_high",
                                       "n_seeds", "interval"])


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


# ----------------------------------------------------------------------------------- cohort views
def code_counts(cohort: Cohort) -> pd.Series:
    """Occurrences per undotted ICD-10-CM code in the cohort's diagnoses."""
    codes = cohort.diagnoses["icd10"].dropna().astype(str)
    return codes.value_counts()


def node_ids_of_rows(diagnoses: pd.DataFrame) -> dict[str, np.ndarray]:
    """Tree node ids (``CH:``, ``BL:``, ``CA:``, ``CO:``) of each diagnosis row, one array per level."""
    out = {}
    for prefix, column in (("CH:", "chapter"), ("BL:", "block"), ("CA:", "category"), ("CO:", "icd10")):
        values = diagnoses[column].astype("string")
        valid = (values.notna() & (values != "") & (values != "UNK")).fillna(False).to_numpy(bool)
        out[prefix] = np.where(valid, (prefix + values.fillna("")).to_numpy(object), "")
    return out


def node_outcome_rates(cohort: Cohort, task: str, min_samples: int = MIN_CELL) -> pd.DataFrame:
    """Per tree node: the share of positive samples among samples whose history (the anchor visit and
    every earlier visit) holds a code under the node. Nodes with fewer than ``min_samples`` such
    samples get NaN, so no rate describes a handful of patients."""
    samples = cohort.tasks[task]
    diag = cohort.diagnoses[["patient_id", "visit_id", "chapter", "block", "category", "icd10"]]
    visit_index = cohort.visits.set_index("visit_id")["visit_index"]
    first_index = visit_index.reindex(diag["visit_id"]).to_numpy()
    order = samples.sort_values(["patient_id", "visit_index"])
    span = int(cohort.visits["visit_index"].max()) + 2 if len(cohort.visits) else 2
    keys = order["patient_id"].to_numpy(np.int64) * span + order["visit_index"].to_numpy(np.int64)
    positives = np.concatenate([[0], np.cumsum(order["label"].to_numpy(np.int64))])
    frames = []
    for ids in node_ids_of_rows(diag).values():
        part = pd.DataFrame({"id": ids, "patient_id": diag["patient_id"].to_numpy(), "first": first_index})
        part = part[part["id"] != ""].groupby(["id", "patient_id"], as_index=False)["first"].min()
        pid = part["patient_id"].to_numpy(np.int64)
        lo = np.searchsorted(keys, pid * span + part["first"].to_numpy(np.int64), side="left")
        hi = np.searchsorted(keys, pid * span + span - 1, side="left")
        part["samples"] = hi - lo
        part["positives"] = positives[hi] - positives[lo]
        frames.append(part.groupby("id", as_index=False)[["samples", "positives"]].sum())
    table = pd.concat(frames, ignore_index=True)
    share = table["positives"] / table["samples"].clip(lower=1)
    table["rate"] = np.where(table["samples"] >= min_samples, share, np.nan)
    return table


def node_statistics(cohort: Cohort, node_id: str) -> dict[str, int]:
    """Occurrences and distinct patients under a tree node in the cohort."""
    prefix, _, value = node_id.partition(":")
    column = {"CH": "chapter", "BL": "block", "CA": "category", "CO": "icd10"}.get(prefix)
    if column is None:
        return {"occurrences": 0, "patients": 0, "visits": 0}
    diag = cohort.diagnoses
    rows = diag[diag[column].astype(object) == value]
    return {"occurrences": len(rows), "patients": int(rows["patient_id"].nunique()),
            "visits": int(rows["visit_id"].nunique())}


def attribution_provider() -> Callable[..., pd.DataFrame] | None:
    """``attributions.mean_attribution_by_code`` when the Patient page's module provides it."""
    import importlib.util

    if importlib.util.find_spec("hicd_core.analysis.attributions") is None:
        return None
    try:
        from hicd_core.analysis import attributions
    except ImportError:  # e.g. captum missing: the colour is simply not offered
        return None
    return getattr(attributions, "mean_attribution_by_code", None)


def attribution_samples(cohort: Cohort, task: str, n: int, seed: int = 0) -> list[int]:
    """``n`` test-split sample ids of a task, drawn with a fixed seed (the same every visit)."""
    from hicd_core.cohort import TEST

    samples = cohort.tasks[task]
    ids = samples.loc[samples["split"] == TEST, "sample_id"].to_numpy()
    if len(ids) > n:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False))
    return [int(i) for i in ids]


# --------------------------------------------------------------------------------- embedding views
def embedding_points(codes: list[str], coords: np.ndarray) -> pd.DataFrame:
    """UMAP coordinates with each code's title and chapter (graph ancestor nodes left out)."""
    from hicd_core.experiments.embeddings import code_labels

    labels = code_labels(codes)
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "code": labels["code"],
                          "chapter": labels["chapter"], "kind": labels["kind"]})
    frame = frame[frame["kind"] == "code"].drop(columns="kind")
    frame["title"] = [describe(str(code).replace(".", "")) for code in frame["code"]]
    return frame.reset_index(drop=True)


def stored_embedding_summaries(runs: list[dict], model: str, evaluation_task: str, seed: int
                               ) -> dict[str, dict]:
    """setting -> the embedding summary the sweep stored (relationship means, silhouette, chapters)."""
    out = {}
    for run in runs:
        spec = run["spec"]
        if (spec["kind"], spec["model"], spec["task"], spec["seed"]) != ("task", model, evaluation_task,
                                                                          seed):
            continue
        summary = run.get("metrics", {}).get("embeddings")
        if summary:
            out[spec["setting"]] = summary
    return out


def tightness_frames(summaries: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tightness table per setting, chapter x setting mean cosine) from stored summaries."""
    from hicd_core.experiments.embeddings import chapter_similarity_wide, tightness_table

    per_setting = {}
    chapters = {}
    for setting, summary in summaries.items():
        # Current sweeps store a flat tightness-table entry; early ones nested it under "relationship".
        relationship = dict(summary.get("relationship", summary))
        relationship["silhouette"] = summary.get("silhouette",
                                                 summary.get("silhouette_by_chapter", float("nan")))
        per_setting[setting] = relationship
        if summary.get("chapters"):
            chapters[setting] = pd.DataFrame(summary["chapters"])
    tight = tightness_table(per_setting)
    for name in ("same_category", "same_chapter", "different_chapter"):
        tight[f"std_{name}"] = [float(per_setting[s].get(f"std_{name}", np.nan)) for s in tight.index]
    wide = chapter_similarity_wide(chapters) if chapters else pd.DataFrame()
    return tight, wide


# ================================================================================ Streamlit state
@dataclass
class CohortSet:
    """The cohorts a page shows: the MIMIC-IV-layout source and the eICU-layout target (either may be
    None)."""

    source: Cohort | None = None
    target: Cohort | None = None
    mode: str = ""  # a DATA_MODES key
    label: str = ""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def cohorts(self) -> dict[str, Cohort]:
        return {c.site: c for c in (self.source, self.target) if c is not None}

    @property
    def synthetic(self) -> bool:
        return any(c.synthetic for c in self.cohorts.values())


@dataclass
class AppContext:
    """The selection every page reads (computed once per script run by the entry point)."""

    store_root: Path
    store: RunStore | None
    store_problem: tuple[str, str] | None
    launch_default: bool
    default_bundle: bool
    version: str
    info: dict
    data: CohortSet
    running: bool

    @property
    def root_key(self) -> str:
        return str(self.store_root)

    @property
    def synthetic(self) -> bool:
        return bool(self.info.get("synthetic")) or self.data.synthetic


@st.cache_resource(show_spinner="Loading the cohort (first time: parsing the source tables) ...",
                   max_entries=8)
def _cohort(site: str, path: str, split_seed: int, stamp: int) -> Cohort:
    return load_cohort(site, path, split_seed=split_seed)


def _folder_stamp(path: Path) -> int:
    """Changes when files are added to or replaced in the folder (or its hosp/ subfolder)."""
    stamps = [path.stat().st_mtime_ns]
    if (path / "hosp").is_dir():
        stamps.append((path / "hosp").stat().st_mtime_ns)
    return max(stamps)


def try_load_cohort(site: str, path: str | Path, split_seed: int = 0) -> tuple[Cohort | None, str | None]:
    """A cohort, or a readable error (never a traceback): missing folder, missing table, bad columns."""
    folder = Path(str(path)).expanduser()
    label = "MIMIC-IV" if site == MIMIC_IV else "eICU"
    if not str(path).strip():
        return None, None
    if not folder.exists():
        return None, f"{label}: no folder at {folder}."
    if not folder.is_dir():
        return None, f"{label}: {folder} is a file; name the folder that holds the tables."
    try:
        return _cohort(site, str(folder), int(split_seed), _folder_stamp(folder)), None
    except CohortInputError as exc:
        return None, f"{label} folder {folder} cannot be used: {exc}"
    except Exception as exc:  # a damaged file must give a message, not a traceback
        return None, f"{label} folder {folder} could not be read ({type(exc).__name__}: {exc})"


def store_cohorts(info: dict) -> CohortSet:
    """The cohorts the store's runs were trained on (from the paths recorded in store.json)."""
    data = CohortSet(mode="store", label="cohorts of the run store")
    for site, key in ((MIMIC_IV, "source"), (EICU, "target")):
        path = info.get(f"{key}_path")
        if not path:
            continue
        seed = int(info.get("source_split_seed", 0) or 0)
        cohort, error = try_load_cohort(info.get(f"{key}_site") or site, path, seed)
        if error:
            data.errors.append(f"The store's {key} cohort is not available here: {error}")
        elif cohort is not None:
            if cohort.fingerprint != info.get(f"{key}_fingerprint"):
                data.notes.append(f"The {cohort.site} files at {path} changed since the runs were trained "
                                  "(fingerprint differs): cohort views show today's files.")
            setattr(data, key, cohort)
    return data


def synthetic_cohorts(running: bool) -> CohortSet:
    data = CohortSet(mode="synthetic", label="synthetic default")
    root = synthetic_default_path()
    if not (root / "SYNTHETIC.json").is_file():
        if running:
            data.notes.append("The background sweep is generating the synthetic default; it appears here "
                              "in a moment.")
            return data
        from hicd_core.cohort.synthetic import write_synthetic

        with st.spinner("Generating the synthetic default cohorts (first launch only) ..."):
            write_synthetic(root, seed=0)
    for site, key in ((MIMIC_IV, "source"), (EICU, "target")):
        cohort, error = try_load_cohort(site, root / ("mimic-iv" if site == MIMIC_IV else "eicu"))
        if error:
            data.errors.append(error)
        setattr(data, key, cohort)
    return data


def folder_cohorts(mimic: str, eicu: str) -> CohortSet:
    data = CohortSet(mode="folders", label="your folders")
    if not mimic.strip() and not eicu.strip():
        data.notes.append("Name a MIMIC-IV folder (with hosp/) and/or an eICU folder above.")
    for site, key, path in ((MIMIC_IV, "source", mimic), (EICU, "target", eicu)):
        cohort, error = try_load_cohort(site, path)
        if error:
            data.errors.append(error)
        setattr(data, key, cohort)
    return data


# ------------------------------------------------------------------------------- cached loaders
@st.cache_data(show_spinner=False, max_entries=32)
def store_info(root: str, version: str) -> dict:
    try:
        return RunStore(root).store_info()
    except (OSError, json.JSONDecodeError):
        return {}


#: What a damaged or foreign store raises while being read (unreadable or missing files, bad JSON or
#: parquet, missing fields). Anything else is a bug and must show as one, not as a damaged store.
STORE_ERRORS = (OSError, ValueError, KeyError, json.JSONDecodeError)


def _failure(what: str, exc: Exception) -> str:
    return f"{what} failed: {type(exc).__name__}: {exc}"


def _guarded(what: str, build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """A damaged file in a store must give a message, not a traceback: an empty frame whose
    ``attrs['error']`` says what failed (:func:`show_problem` prints it)."""
    try:
        return build()
    except STORE_ERRORS as exc:
        frame = pd.DataFrame()
        frame.attrs["error"] = _failure(what, exc)
        return frame


def show_problem(problem: pd.DataFrame | str | None) -> None:
    """The warning for a store read that failed: a :func:`_guarded` frame or a message (or nothing)."""
    message = problem.attrs.get("error") if isinstance(problem, pd.DataFrame) else problem
    if message:
        st.warning(f"{message}. The store may be damaged or written by another version.")


@st.cache_data(show_spinner=False, max_entries=16)
def results(root: str, version: str) -> pd.DataFrame:
    return _guarded("Reading the finished runs", lambda: report.results(RunStore(root)))


@st.cache_data(show_spinner=False, max_entries=16)
def finished_runs(root: str, version: str) -> tuple[list[dict], str | None]:
    """(finished runs, None), or ([], what failed) when the store cannot be read (:func:`show_problem`)."""
    try:
        return RunStore(root).finished_runs(), None
    except STORE_ERRORS as exc:
        return [], _failure("Reading the finished runs", exc)


@st.cache_data(show_spinner="Comparing each setting with the flat model (DeLong, paired bootstrap) ...",
               max_entries=8)
def comparisons(root: str, version: str) -> pd.DataFrame:
    return _guarded("Comparing with the flat model", lambda: report.comparisons(RunStore(root)))


@st.cache_data(show_spinner=False, max_entries=512)
def predictions(root: str, run_id: str) -> pd.DataFrame:
    """A finished run never changes, so its predictions are keyed by run id alone."""
    return RunStore(root).predictions(run_id)


@st.cache_data(show_spinner=False, max_entries=16)
def listing(root: str, version: str, default_bundle: bool) -> pd.DataFrame:
    store = RunStore(root)
    return _guarded("Listing the runs",
                    lambda: store.listing(expected_for(store, store.store_info(), default_bundle)))


@st.cache_data(show_spinner="Computing intervals ...", max_entries=64)
def curve(root: str, version: str, evaluation: str, metric: str) -> pd.DataFrame:
    return curve_table(results(root, version), evaluation, metric, lambda run_id: predictions(root, run_id))


@st.cache_data(show_spinner=False, max_entries=64)
def embedding_bundle(root: str, run_id: str) -> tuple[list[str], np.ndarray, pd.DataFrame] | None:
    """(codes, embedding matrix, UMAP points) a sweep stored for a run; None when it stored none."""
    folder = RunStore(root).run_dir(run_id)
    try:
        codes = json.loads((folder / "embedding_codes.json").read_text())
        matrix = np.load(folder / "embeddings.npy", allow_pickle=False)
        coords = np.load(folder / "umap.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return codes, matrix, embedding_points(codes, coords)


@st.cache_resource(show_spinner="Loading the HICD-Graph graph ...", max_entries=16)
def code_graph(root: str, run_id: str) -> Any:
    """The co-occurrence + hierarchy graph stored with a HICD-Graph run (no torch needed)."""
    from hicd_core.models.graph_build import CodeGraph

    path = RunStore(root).run_dir(run_id) / "model" / "graph.json"
    return CodeGraph.from_dict(json.loads(path.read_text()))


@st.cache_data(show_spinner=False, max_entries=16)
def summary_of(fingerprint: str, _cohort: Cohort) -> dict:
    return cohort_summary(_cohort)


@st.cache_data(show_spinner=False, max_entries=16)
def counts_of(fingerprint: str, _cohort: Cohort) -> pd.Series:
    return code_counts(_cohort)


@st.cache_data(show_spinner="Computing outcome rates per node ...", max_entries=16)
def outcome_rates_of(fingerprint: str, task: str, _cohort: Cohort) -> pd.DataFrame:
    return node_outcome_rates(_cohort, task)


@st.cache_data(show_spinner="Comparing the sites' codes ...", max_entries=8)
def coverage_of(source_fp: str, target_fp: str, _source: Cohort, _target: Cohort) -> pd.DataFrame:
    from hicd_core.experiments.transfer import code_coverage

    return code_coverage(_source, _target)


@st.cache_resource
def _autotrain_attempted() -> set[str]:
    """Store roots this server already auto-started (once per process: never a restart loop)."""
    return set()


# ------------------------------------------------------------------------------------- sidebar
def _maybe_autotrain(root: Path, info: dict, default_bundle: bool, running: bool) -> str | None:
    """First launch on the default bundle: start the default preset in the background if runs are missing."""
    if autotrain_disabled() or running or not default_bundle or str(root) in _autotrain_attempted():
        return None
    _autotrain_attempted().add(str(root))
    expected = default_expected_runs(info)
    store = RunStore(root)
    if expected and all(store.is_finished(run_id) for run_id in expected):
        return None
    if background.start_sweep(root, ["--preset", "default"]):
        return "Started training the default bundle in the background; pages fill in as runs finish."
    return None


def _offer_default_training(root: Path, info: dict, default_bundle: bool, version: str) -> None:
    """A button (never an automatic start) that trains the default preset: into an empty store the
    user named, or into the default bundle when auto-start is off and runs are missing.

    Whether the default runs are all finished comes from the cached :func:`listing` of this store
    version (which includes them on the default bundle), not from a scan of the run folders."""
    if default_bundle:
        expected = default_expected_runs(info)
        if expected:
            runs = listing(str(root), version, default_bundle)
            finished = set(runs.loc[runs["status"] == "finished", "run_id"]) if "run_id" in runs else set()
            if finished.issuperset(expected):
                return
        label = "Train the default bundle"
    elif not info and not (root / "runs").is_dir():
        label = "Train the default preset into this store"
    else:
        return
    st.caption("The default preset: 8 settings x HICD-BERT and HICD-Graph x two tasks + transfer, on the "
               "synthetic default. It runs in the background; pages fill in as runs finish.")
    if st.button(label, key="train_default", icon=":material/play_arrow:"):
        if background.start_sweep(root, ["--preset", "default"]):
            st.rerun()
        st.warning("A sweep is already running for this store.")


def _status_panel(root: str, version: str) -> None:
    """Progress of the background sweep; a full rerun when a run finished so pages fill in."""
    status = background.read_status(Path(root))
    running = background.is_running(Path(root))
    view = training_view(status, running)
    if view["state"] == "running":
        if view["n_runs"]:
            done = view["finished"] + view["failed"]
            st.progress(min(view["overall"], 1.0),
                        text=f"Overall: {done} of {view['n_runs']} runs done, ETA {view['eta']}")
            for run_id, stage, fraction in view["active"]:
                st.progress(min(fraction, 1.0), text=f"{run_id[:48]}: {stage}")
        else:
            st.progress(0.0, text="Preparing the cohorts ...")
        st.caption(f"finished {view['finished']}, failed {view['failed']} in this sweep")
    elif view["state"] in ("finished", "failed", "stopped"):
        st.caption(f"Last sweep {view['state']}: finished {view['finished']}, failed {view['failed']}."
                   + (f" {view['message']}" if view["message"] else ""))
    else:
        st.caption("No background training.")
    if store_version(Path(root)) != version:
        st.rerun()  # a run finished or failed: redraw the page with it


_running_status = st.fragment(run_every=2)(_status_panel)
_idle_status = st.fragment(_status_panel)


SIDEBAR_KEYS = ("store_mode", "store_path", "data_mode", "data_mimic", "data_eicu")


def _kept(key: str) -> str:
    """A sidebar widget key whose value survives runs in which the widget is not the same widget.

    Streamlit drops a widget's state when a run does not render it (conventions B.1), and the same
    key drawn from another script (the entry point vs a page run on its own, as ``AppTest`` does) is
    a new widget. So the current value, or the one copied to a plain session key after the last run
    (:func:`_keep_sidebar_values`), is assigned to the key before the widget is drawn.
    """
    saved = f"_kept_{key}"
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]
    elif saved in st.session_state:
        st.session_state[key] = st.session_state[saved]
    return key


def _keep_sidebar_values() -> None:
    for key in SIDEBAR_KEYS:
        if key in st.session_state:
            st.session_state[f"_kept_{key}"] = st.session_state[key]


def sidebar() -> AppContext:
    """Draw the shared sidebar and return the selection (called by the entry point every run)."""
    launch_root = launch_store_root()
    with st.sidebar:
        st.subheader("Run store")
        mode = st.radio("Store", ["Default bundle", "Another folder"], key=_kept("store_mode"),
                        horizontal=True, help=f"Default: {launch_root}")
        if mode == "Another folder":
            typed = st.text_input("Run store directory", key=_kept("store_path"),
                                  placeholder="/path/to/runs/mystore")
            root = Path(typed.strip()).expanduser() if typed.strip() else launch_root
        else:
            root = launch_root
        launch_default = root == launch_root
        problem = store_problem(root, launch_default=launch_default)
        if problem:
            st.error(problem[1])
        version = store_version(root)
        info = store_info(str(root), version) if problem is None else {}
        running = problem is None and background.is_running(root)
        default_bundle = problem is None and is_default_bundle(root, info)
        st.caption(f"{root}" + (" (default bundle)" if default_bundle else ""))

        st.subheader("Data source")
        mode_key = st.selectbox("Cohorts", list(DATA_MODES), format_func=DATA_MODES.get,
                                key=_kept("data_mode"))
        if mode_key == "store" and info.get("source_path"):
            data = store_cohorts(info)
        elif mode_key == "store" and default_bundle:  # before its first sweep: the synthetic default
            data = synthetic_cohorts(running)
            data.mode = "store"
        elif mode_key == "store":
            data = CohortSet(mode="store", label="cohorts of the run store",
                             notes=["This run store records no cohorts (no store.json with source folders); "
                                    "pick the synthetic default or your folders."])
        elif mode_key == "synthetic":
            data = synthetic_cohorts(running)
        else:
            mimic = st.text_input("MIMIC-IV folder (hosp/ inside)", key=_kept("data_mimic"))
            eicu = st.text_input("eICU folder", key=_kept("data_eicu"))
            data = folder_cohorts(mimic, eicu)
        for error in data.errors:
            st.error(error)
        for note in data.notes:
            st.caption(note)
        for cohort in data.cohorts.values():
            st.caption(f"{cohort.label}")

        st.subheader("Background training")
        if problem is None:
            message = _maybe_autotrain(root, info, default_bundle, running)
            if message:
                running = True
                st.info(message)
            (_running_status if running else _idle_status)(str(root), version)
            if not running:
                _offer_default_training(root, info, default_bundle, version)
    _keep_sidebar_values()
    return AppContext(store_root=root, store=RunStore(root) if problem is None else None,
                      store_problem=problem, launch_default=launch_default, default_bundle=default_bundle,
                      version=version, info=info, data=data, running=running)


def entry_sidebar() -> AppContext:
    """Draw the sidebar from the entry point (every run of every page) and hand the result on."""
    ctx = sidebar()
    st.session_state[CONTEXT_KEY] = ctx
    st.session_state[ENTRY_RUN_KEY] = st.session_state.get(ENTRY_RUN_KEY, 0) + 1
    return ctx


#: ``st.set_page_config`` of every run. An explicit emoji favicon also keeps Streamlit from using a
#: page's Material icon as the favicon, which the browser would fetch from Google's font servers.
PAGE_CONFIG = {"page_title": "HICD Explorer", "page_icon": ":deciduous_tree:", "layout": "wide"}


def navigation_pages() -> dict[str, list]:
    """The app's pages in their navigation sections (used by app.py; paths relative to it)."""
    return {
        "Data": [
            st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
            st.Page("pages/icd_tree.py", title="ICD-10-CM tree", icon=":material/account_tree:"),
        ],
        "Models": [
            st.Page("pages/level_ablation.py", title="Level ablation", icon=":material/stacked_line_chart:"),
            st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
            st.Page("pages/transfer.py", title="Transfer", icon=":material/swap_horiz:"),
        ],
        "Patients": [st.Page("pages/patient.py", title="Patient", icon=":material/person:")],
    }


def _legacy_pages_mode() -> bool:
    """Whether Streamlit still serves pages/ as a legacy page folder (until st.navigation has run in
    some session). Reads a Streamlit internal; if it moves, the only loss is the deep-link fix."""
    try:
        from streamlit.runtime.pages_manager import PagesManager

        return bool(PagesManager.uses_pages_directory)
    except (ImportError, AttributeError):
        return False


def context() -> AppContext:
    """The selection for the current run; call it once, at the top of a page.

    Normally the entry point drew the sidebar in this run and left its result. When it did not (a
    page script run on its own, as ``AppTest.switch_page`` does), the page draws the sidebar itself,
    so the selection, the widgets and their state are the same either way.
    """
    entry_run = st.session_state.get(ENTRY_RUN_KEY)
    if entry_run is None and _legacy_pages_mode():
        # A deep link (e.g. /patient) opened before any session ran app.py: Streamlit still treats
        # pages/ as a legacy page folder and ran this page without the entry point (file-name
        # navigation, no wide layout). Registering the app's navigation switches every session to
        # it; the rerun then goes through app.py and keeps the requested page.
        st.set_page_config(**PAGE_CONFIG)  # before navigation: else the page's icon becomes the favicon,
        st.navigation(navigation_pages())  # fetched from fonts.gstatic.com (a request off this machine)
        st.rerun()
    fresh = entry_run is not None and entry_run != st.session_state.get(SEEN_RUN_KEY)
    if fresh and CONTEXT_KEY in st.session_state:
        st.session_state[SEEN_RUN_KEY] = entry_run
        return st.session_state[CONTEXT_KEY]
    ctx = sidebar()
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


# --------------------------------------------------------------------------------- page pieces
def banner(ctx: AppContext, *, data: bool = True, results: bool = True) -> None:
    """The SYNTHETIC label on every page that shows synthetic data or results."""
    synthetic = (data and ctx.data.synthetic) or (results and bool(ctx.info.get("synthetic")))
    if synthetic:
        st.warning(SYNTHETIC_BANNER, icon=":material/science:")


def require_store(ctx: AppContext) -> bool:
    """A clear message instead of a traceback when there is no usable store."""
    if ctx.store is None:
        st.warning(f"No usable run store: {ctx.store_problem[1] if ctx.store_problem else ''} "
                   "Pick another folder in the sidebar.")
        return False
    return True


def training_note(ctx: AppContext, table: pd.DataFrame | None = None) -> None:
    """Say plainly what is still training (or missing) so an empty chart is never a mystery."""
    if ctx.store is None:
        return
    runs = listing(ctx.root_key, ctx.version, ctx.default_bundle)
    counts = listing_counts(runs)
    todo = missing_summary(runs)
    if ctx.running:
        st.info(f"Training in the background: {counts['finished']} of {len(runs)} expected runs finished. "
                f"Still to come: {todo or 'the remaining runs'}. This page fills in as they finish.",
                icon=":material/hourglass_top:")
    elif counts["missing"] or counts["failed"]:
        st.info(f"{counts['finished']} of {len(runs)} expected runs finished, {counts['failed']} failed, "
                f"{counts['missing']} not trained. Not trained: {todo}.", icon=":material/info:")


def downloads(key: str, data: pd.DataFrame, figure: Any | None = None, name: str | None = None) -> None:
    """CSV of a figure's data and a self-contained HTML of the chart; both built only on click."""
    from hicd_core.analysis.charts import figure_html

    name = name or key
    columns = st.columns([1, 1, 4])
    columns[0].download_button("CSV", data=lambda: data.to_csv(index=False).encode(),
                               file_name=f"{name}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                               icon=":material/download:")
    if figure is not None:
        columns[1].download_button("HTML", data=lambda: figure_html(figure).encode(),
                                   file_name=f"{name}.html", mime="text/html", key=f"{key}_html",
                                   on_click="ignore", icon=":material/download:")


def curve_controls(ctx: AppContext, names: list[str], columns: list[Any], *, key: str,
                   task_label: str = "Task", overlay_help: str
                   ) -> tuple[str, str, pd.DataFrame, pd.DataFrame | None]:
    """The task selectbox, metric radio and paper-overlay toggle of a per-setting results chart, drawn
    in the first three of ``columns`` (keys ``{key}_task``, ``{key}_metric``, ``{key}_paper``), and
    the data they select: ``(evaluation, metric, curve, paper)``. ``curve`` is :func:`curve` with its
    intervals; ``paper`` is the paper's values, or None when the overlay is off. When the paper
    reports nothing for the choice, an info says there is nothing to overlay."""
    evaluation = columns[0].selectbox(task_label, names, key=f"{key}_task")
    metric = columns[1].radio("Metric", list(METRIC_LABELS), format_func=METRIC_LABELS.get,
                              key=f"{key}_metric", horizontal=True)
    overlay = columns[2].toggle("Paper overlay", key=f"{key}_paper", help=overlay_help)
    table = curve(ctx.root_key, ctx.version, evaluation, metric)
    paper = paper_values(evaluation, metric) if overlay else None
    if paper is not None and paper.empty:
        st.info(f"The paper reports no {METRIC_LABELS[metric]} for {evaluation}; nothing to overlay.")
    return evaluation, metric, table, paper


def start_training(ctx: AppContext, **subset: Any) -> bool:
    """Start a background sweep of exactly these runs in the current store (False if one runs)."""
    if ctx.store is None:
        return False
    args = sweep_args(ctx.store, ctx.info, ctx.default_bundle, **subset)
    return background.start_sweep(ctx.store_root, args)



def neighbours_table(codes: list[str], matrix: np.ndarray, points: pd.DataFrame, code: str, k: int = 10
                     ) -> pd.DataFrame:
    """The ``k`` codes closest in cosine to ``code`` under one setting, with titles and chapters.

    ``points`` is the bundle's :func:`embedding_points` frame, which already labels every code row
    (neighbours are code rows only: graph ancestor nodes are never candidates)."""
    from hicd_core.experiments.embeddings import nearest_neighbours

    table = nearest_neighbours(matrix, codes, code, k=k)
    labels = points.drop_duplicates("code").set_index("code")
    table["chapter"] = labels["chapter"].reindex(table["code"]).to_numpy()
    table["title"] = labels["title"].reindex(table["code"]).to_numpy()
    return table


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours(root: str, run_id: str, code: str, k: int = 10) -> pd.DataFrame:
    bundle = embedding_bundle(root, run_id)
    if bundle is None:
        return pd.DataFrame(columns=["rank", "code", "cosine", "chapter", "title"])
    codes, matrix, points = bundle
    return neighbours_table(codes, matrix, points, code, k)


@st.cache_data(show_spinner="Computing integrated-gradients attributions over test samples ...",
               max_entries=16)
def mean_attributions(root: str, run_id: str, fingerprint: str, task: str, n: int, n_steps: int,
                      _cohort: Cohort) -> pd.DataFrame:
    """Mean attribution per tree node of a run over ``n`` test samples (one IG pass per patient)."""
    provider = attribution_provider()
    if provider is None:
        return pd.DataFrame(columns=["id", "mean_attribution"])
    return provider(RunStore(root), run_id, _cohort, task, attribution_samples(_cohort, task, n),
                    n_steps=n_steps)


@st.cache_resource(show_spinner=False, max_entries=32)
def umap_chart(root: str, run_id: str, code: str, title: str) -> Any:
    """The UMAP figure of a run with ``code`` starred (shared, never mutated: plotly_chart copies it)."""
    from hicd_core.analysis.charts import umap_figure

    bundle = embedding_bundle(root, run_id)
    return None if bundle is None else umap_figure(bundle[2], highlight=code, title=title)


def results_page(title: str, *, data: bool = True) -> tuple[AppContext, pd.DataFrame]:
    """The shared top of every results page: sidebar context, title, synthetic/paper banner, a clear
    stop when there is no usable run store, the still-training note, and the results table."""
    ctx = context()
    st.title(title)
    banner(ctx, data=data)
    if not require_store(ctx):
        st.stop()
    training_note(ctx)
    table = results(ctx.root_key, ctx.version)
    show_problem(table)
    return ctx, table
