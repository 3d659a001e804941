"""The run store: one directory per run, a results table across runs, and a listing that tells
finished, failed and missing runs apart.

Layout under the store root (``$HICD_DATA_DIR/runs/<name>`` by default)::

    store.json                      cohort fingerprints and labels (synthetic or not)
    runs/<run_id>/                  written atomically: appears complete or not at all
        run.json                    the RunSpec, cohort fingerprints, code-set year, versions, timings
        metrics.json                test-split metrics (+ threshold, validation metrics)
        predictions.parquet         per-sample test predictions (sample_id, patient_id, label, prob)
        model/                      the model artifact (config.json + model.safetensors + metrics.json)
        embeddings.npy, embedding_codes.json, umap.npy   code embeddings and their 2-D map
    shared/<key>/                   reusable pretraining (HICD-BERT MLM encoder, HICD-Graph GCN)
    failed/<run_id>.json            the error of a failed run (removed when it later succeeds)
    results.parquet                 one row per finished run (rebuilt atomically after each run)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from hicd_core.experiments.spec import RunSpec
from hicd_core.runtime import atomic_write_json, atomic_write_parquet, data_dir

RUN_FILE, METRICS_FILE, PREDICTIONS_FILE = "run.json", "metrics.json", "predictions.parquet"


def default_store_root(name: str = "default") -> Path:
    return data_dir() / "runs" / name


class RunStore:
    """A directory of runs. Safe to read while a sweep writes to it (every write is atomic)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def shared_dir(self, key: str) -> Path:
        return self.root / "shared" / key

    def is_finished(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / RUN_FILE).is_file()

    def failure(self, run_id: str) -> dict | None:
        path = self.root / "failed" / f"{run_id}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def mark_failed(self, run_id: str, spec: RunSpec, error: str) -> None:
        atomic_write_json(self.root / "failed" / f"{run_id}.json", {"spec": asdict(spec), "error": error})

    def clear_failure(self, run_id: str) -> None:
        path = self.root / "failed" / f"{run_id}.json"
        if path.exists():
            os.unlink(path)

    def write_store_info(self, info: dict) -> None:
        atomic_write_json(self.root / "store.json", info)

    def store_info(self) -> dict:
        path = self.root / "store.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def finished_runs(self) -> list[dict]:
        """``run.json`` + ``metrics.json`` of every finished run, sorted by run id."""
        if not self.runs_dir.is_dir():
            return []
        records = []
        for path in sorted(self.runs_dir.iterdir()):
            if path.name.startswith(".") or not (path / RUN_FILE).is_file():
                continue  # .tmp-* directories are interrupted writes, never finished runs
            run = json.loads((path / RUN_FILE).read_text())
            metrics_path = path / METRICS_FILE
            run["metrics"] = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
            records.append(run)
        return records

    def listing(self, expected: dict[str, RunSpec] | None = None) -> pd.DataFrame:
        """Status of every expected run (``finished``/``failed``/``missing``) plus any extra finished."""
        rows = []
        finished = {run["run_id"]: run for run in self.finished_runs()}
        for run_id, spec in (expected or {}).items():
            status = "finished" if run_id in finished else ("failed" if self.failure(run_id) else "missing")
            failure = self.failure(run_id) if status == "failed" else None
            rows.append({"run_id": run_id, **asdict(spec), "status": status,
                         "error": (failure or {}).get("error", "")})
        for run_id, run in finished.items():
            if expected is None or run_id not in expected:
                rows.append({"run_id": run_id, **run["spec"], "status": "finished", "error": ""})
        return pd.DataFrame(rows)

    def predictions(self, run_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.run_dir(run_id) / PREDICTIONS_FILE)

    def results_table(self) -> pd.DataFrame:
        """One row per finished run: spec fields, test metrics, timings and provenance."""
        rows = []
        for run in self.finished_runs():
            metrics = run.get("metrics", {})
            test = metrics.get("test", {})
            rows.append({
                "run_id": run["run_id"], **run["spec"],
                **{k: test.get(k) for k in ("auroc", "auprc", "positive_rate", "macro_f1", "brier", "ece",
                                            "n", "n_pos")},
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
