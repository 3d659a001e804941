"""The run store: one directory per run, a results table across runs, and a listing that tells
finished, failed and missing runs apart.

Layout under the store root (``$HICD_DATA_DIR/runs/<name>`` by default)::

    store.json                      cohort fingerprints and labels (synthetic or not)
    runs/<run_id>/                  written atomically: appears complete or not at all
        manifest.json               size + sha256 of every file below, written last (checksums.py)
        run.json                    the RunSpec, cohort fingerprints, code-set year, versions, timings
        metrics.json                test-split metrics (+ threshold, validation metrics)
        predictions.parquet         per-sample test predictions (sample_id, patient_id, label, prob =
                                    the raw model output; prob_calibrated = Platt-recalibrated on validation,
                                    absent in runs written before recalibration existed)
        model/                      the model artifact (config.json + model.safetensors + metrics.json)
        embeddings.npy, embedding_codes.json, umap.npy   code embeddings and their 2-D map
    shared/<key>/                   reusable pretraining (HICD-BERT MLM encoder, HICD-Graph GCN)
    failed/<run_id>.json            the error of a failed run (removed when it later succeeds)
    results.parquet                 one row per finished run (rebuilt atomically after each run)

A run counts as finished only when every file it needs is there and matches the checksums recorded
when it was written. A run that does not verify is *damaged*: listed with the file and the reason,
left out of every result and comparison, and redone by the next sweep. A damaged ``run.json`` or
``failed/*.json`` affects that run only; a damaged ``store.json`` raises :class:`StoreFileError`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from hicd_core.checksums import DamagedArtifactError, Problem, read_manifest, read_verified, verify_folder
from hicd_core.experiments.spec import RunSpec
from hicd_core.runtime import atomic_write_json, atomic_write_parquet, data_dir

RUN_FILE, METRICS_FILE, PREDICTIONS_FILE = "run.json", "metrics.json", "predictions.parquet"
#: Files every finished run has; task runs also have their model.
REQUIRED_FILES = (RUN_FILE, METRICS_FILE, PREDICTIONS_FILE)
MODEL_FILES = ("model/config.json",)  # the model directory verifies its own weights (save_artifact)
REDO_HINT = "re-run it with `python -m hicd_core sweep` (a sweep redoes damaged runs)"


class StoreFileError(ValueError):
    """A store-level file (``store.json``) is unreadable; the message names it and what to do."""


@dataclass(frozen=True)
class DamagedRun:
    """A run directory that does not verify: which file, what is wrong, and what to do."""

    run_id: str
    file: str
    reason: str

    @property
    def message(self) -> str:
        return f"run {self.run_id}: {self.file} {self.reason}; {REDO_HINT}"


def _load_json(payload: bytes, what: str) -> dict:
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedArtifactError(Path(what), f"is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise DamagedArtifactError(Path(what), "does not hold a JSON object")
    return value


def default_store_root(name: str = "default") -> Path:
    return data_dir() / "runs" / name


class RunStore:
    """A directory of runs. Safe to read while a sweep writes to it (every write is atomic)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._verified: dict[str, tuple[tuple, list[Problem]]] = {}

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def shared_dir(self, key: str) -> Path:
        return self.root / "shared" / key

    def run_problems(self, run_id: str) -> list[Problem]:
        """What is wrong with a run directory (empty when it verifies). Hashing is remembered per
        process for as long as no file of the run changes size or modification time."""
        folder = self.run_dir(run_id)
        try:
            stats = ((p.relative_to(folder).as_posix(), p.stat()) for p in folder.rglob("*") if p.is_file())
            signature = tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats))
        except OSError as exc:
            return [Problem(".", f"unreadable ({exc.strerror or exc})")]
        known = self._verified.get(run_id)
        if known is not None and known[0] == signature:
            return known[1]
        problems = verify_folder(folder, REQUIRED_FILES)
        if not problems:  # every listed file verified; a task run must also have listed its model
            try:
                spec = _load_json(read_verified(folder, RUN_FILE), RUN_FILE)["spec"]
                listed = read_manifest(folder)
                if spec.get("kind", "task") == "task":
                    problems = [Problem(name, "missing from the run (incomplete write)")
                                for name in MODEL_FILES if name not in listed]
            except (DamagedArtifactError, KeyError, AttributeError, TypeError) as exc:
                problems = [Problem(RUN_FILE, f"unusable ({exc})")]
        self._verified[run_id] = (signature, problems)
        return problems

    def is_finished(self, run_id: str) -> bool:
        """The run directory exists and every file verifies (a damaged run is not finished)."""
        return self.run_dir(run_id).is_dir() and not self.run_problems(run_id)

    def failure(self, run_id: str) -> dict | None:
        path = self.root / "failed" / f"{run_id}.json"
        if not path.is_file():
            return None
        try:
            return _load_json(path.read_bytes(), str(path))
        except (OSError, DamagedArtifactError) as exc:
            return {"spec": {}, "error": f"{path.name} is unreadable ({exc}); the run failed or was damaged"}

    def mark_failed(self, run_id: str, spec: RunSpec, error: str) -> None:
        atomic_write_json(self.root / "failed" / f"{run_id}.json", {"spec": asdict(spec), "error": error})

    def clear_failure(self, run_id: str) -> None:
        path = self.root / "failed" / f"{run_id}.json"
        if path.exists():
            os.unlink(path)

    def write_store_info(self, info: dict) -> None:
        atomic_write_json(self.root / "store.json", info)

    def store_info(self) -> dict:
        """``store.json`` (empty before the first sweep); :class:`StoreFileError` when unreadable."""
        path = self.root / "store.json"
        if not path.is_file():
            return {}
        try:
            return _load_json(path.read_bytes(), str(path))
        except (OSError, DamagedArtifactError) as exc:
            raise StoreFileError(f"{path} is damaged ({exc}); it records the store's cohorts: run a sweep "
                                 "on this store to rewrite it") from exc

    def scan(self) -> tuple[list[dict], list[DamagedRun]]:
        """(finished runs, damaged runs). A finished run is ``run.json`` with its ``metrics``, read from
        verified bytes; every other run directory is damaged, with the file and the reason."""
        if not self.runs_dir.is_dir():
            return [], []
        finished, damaged = [], []
        for path in sorted(self.runs_dir.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue  # .tmp-* directories are interrupted writes, never finished runs
            problems = self.run_problems(path.name)
            if not problems:
                try:
                    run = _load_json(read_verified(path, RUN_FILE), RUN_FILE)
                    run["metrics"] = _load_json(read_verified(path, METRICS_FILE), METRICS_FILE)
                    finished.append(run)
                    continue
                except DamagedArtifactError as exc:  # changed between the check and the read
                    problems = [Problem(exc.path.name, exc.reason)]
            damaged += [DamagedRun(path.name, p.file, p.reason) for p in problems[:1]]
        return finished, damaged

    def finished_runs(self) -> list[dict]:
        """``run.json`` + ``metrics.json`` of every finished (verified) run, sorted by run id."""
        return self.scan()[0]

    def damaged_runs(self) -> list[DamagedRun]:
        return self.scan()[1]

    def listing(self, expected: dict[str, RunSpec] | None = None) -> pd.DataFrame:
        """Status of every expected run (``finished``/``damaged``/``failed``/``missing``) plus any
        other finished or damaged run directory."""
        rows = []
        finished_list, damaged_list = self.scan()
        finished = {run["run_id"]: run for run in finished_list}
        damaged = {item.run_id: item for item in damaged_list}
        for run_id, spec in (expected or {}).items():
            if run_id in finished:
                status, error = "finished", ""
            elif run_id in damaged:
                status, error = "damaged", damaged[run_id].message
            else:
                failure = self.failure(run_id)
                status, error = ("failed", failure.get("error", "")) if failure else ("missing", "")
            rows.append({"run_id": run_id, **asdict(spec), "status": status, "error": error})
        for run_id, run in finished.items():
            if expected is None or run_id not in expected:
                rows.append({"run_id": run_id, **run["spec"], "status": "finished", "error": ""})
        for run_id, item in damaged.items():
            if expected is None or run_id not in expected:
                rows.append({"run_id": run_id, "status": "damaged", "error": item.message})
        return pd.DataFrame(rows)

    def predictions(self, run_id: str) -> pd.DataFrame:
        """A run's test predictions, read from bytes checked against the run's manifest."""
        return pd.read_parquet(io.BytesIO(read_verified(self.run_dir(run_id), PREDICTIONS_FILE)))

    def results_table(self) -> pd.DataFrame:
        """One row per finished run: spec fields, test metrics, timings and provenance.

        ``brier`` / ``ece`` are of the raw (uncalibrated) probabilities, the paper recipe's;
        ``brier_calibrated`` / ``ece_calibrated`` of the Platt-recalibrated ones (NaN for runs written
        before recalibration existed). ``degenerate_threshold`` flags a run whose validation-chosen
        threshold puts every test sample on one side (predicted-positive rate 0 or 1): its macro-F1
        is that of a constant classifier.
        """
        rows = []
        for run in self.finished_runs():
            metrics = run.get("metrics", {})
            test = metrics.get("test", {})
            predicted = test.get("predicted_positive_rate")
            rows.append({
                "run_id": run["run_id"], **run["spec"],
                **{k: test.get(k) for k in ("auroc", "auprc", "positive_rate", "macro_f1", "brier", "ece",
                                            "n", "n_pos")},
                "brier_calibrated": test.get("brier_calibrated", float("nan")),
                "ece_calibrated": test.get("ece_calibrated", float("nan")),
                "calibration": metrics.get("calibration", {}).get("method", "none"),
                "predicted_positive_rate": predicted,
                "degenerate_threshold": predicted is not None and predicted in (0, 1),
                "threshold": metrics.get("threshold"),
                "val_auroc": metrics.get("validation", {}).get("auroc"),
                "train_seconds": run.get("seconds"), "source_fingerprint": run.get("source_fingerprint"),
                "target_fingerprint": run.get("target_fingerprint"),
                "code_set_year": run.get("code_set_year"),
                "synthetic": run.get("synthetic"), "device": run.get("device"),
            })
        return pd.DataFrame(rows)

    def write_results_table(self) -> pd.DataFrame:
        table = self.results_table()
        if not table.empty:
            atomic_write_parquet(self.root / "results.parquet", table)
        return table
