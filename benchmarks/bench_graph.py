"""HICD-Graph benchmarks: graph build (default and full MIMIC-IV scale), GCN, transformer, 8 settings.

Run one or all::

    .venv/bin/python -m benchmarks graph_build_full gcn_epoch      # the harness (child processes)
    .venv/bin/python -m benchmarks.bench_graph                      # all of them here, JSON per line

``BENCHMARKS`` maps a name to a function returning a dict of figures. The default cohort is the
project's synthetic default (``hicd_core.synthetic``: 12,000 patients, ~17k admissions).
The full-scale diagnoses table (430k admissions, 4.8M rows, ~1,900 categories: MIMIC-IV size) is
generated with numpy here in a few seconds (real ICD-10-CM categories, Zipf popularity, two theme
blocks per patient so that co-occurrence has structure). Timings taken on a shared machine are
noisy: each figure records the CPU seconds of this process next to the wall time.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import Clock, default_cohort
from hicd_core.cohort.schema import MIMIC_IV, TEST, TRAIN, VALIDATION, Cohort
from hicd_core.hierarchy import SETTINGS, Setting
from hicd_core.hierarchy.icd10 import tree_frame


# ============================================================================ synthetic data
def _vocabulary(n_categories: int, rng: np.random.Generator) -> pd.DataFrame:
    """Real ICD-10-CM categories (with chapter, block and one billable leaf each), Zipf popularity."""
    tree = tree_frame()
    cats = tree[tree["kind"] == "category"][["code", "chapter", "block"]].reset_index(drop=True)
    leaves = tree[tree["billable"]].drop_duplicates("category").set_index("category")["code"]
    cats["leaf"] = cats["code"].map(leaves).fillna(cats["code"])
    cats = cats.iloc[np.sort(rng.choice(len(cats), size=min(n_categories, len(cats)), replace=False))]
    cats = cats.reset_index(drop=True)
    weight = 1.0 / (rng.permutation(len(cats)) + 10.0) ** 1.1
    cats["p"] = weight / weight.sum()
    return cats


def synthetic_diagnoses(n_visits: int, n_patients: int, mean_codes: float, n_categories: int, seed: int = 0,
                        theme_share: float = 0.6) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Diagnosis rows for ``n_visits`` admissions, fully vectorised (no per-visit Python loop).

    Each patient has two theme blocks; each code is drawn from one of them (probability
    ``theme_share``, uniformly within the block) or from the global Zipf popularity.
    Returns (rows with visit_id/patient_id/seq/icd10/chapter/block/category, patient of each visit,
    vocabulary).
    """
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(n_categories, rng)
    patient_of_visit = np.sort(rng.integers(0, n_patients, n_visits))
    n_codes = 1 + rng.poisson(mean_codes - 1, n_visits)
    visit_of_row = np.repeat(np.arange(n_visits), n_codes)
    n_rows = len(visit_of_row)
    block_ids, blocks = pd.factorize(vocab["block"])
    order = np.argsort(block_ids, kind="stable")
    block_start = np.searchsorted(block_ids[order], np.arange(len(blocks)))
    block_size = np.bincount(block_ids, minlength=len(blocks))
    block_p = np.bincount(block_ids, weights=vocab["p"].to_numpy(), minlength=len(blocks))
    themes = rng.choice(len(blocks), size=(n_patients, 2), p=block_p / block_p.sum())
    theme = themes[patient_of_visit[visit_of_row], rng.integers(0, 2, n_rows)]
    themed = order[block_start[theme] + (rng.random(n_rows) * block_size[theme]).astype(np.int64)]
    global_pick = rng.choice(len(vocab), size=n_rows, p=vocab["p"].to_numpy())
    cat = np.where(rng.random(n_rows) < theme_share, themed, global_pick)
    seq = np.arange(n_rows) - np.repeat(np.cumsum(n_codes) - n_codes, n_codes)
    def column(values: pd.Series) -> pd.Categorical:
        labels = pd.Categorical(values.astype(str).to_numpy())
        return pd.Categorical.from_codes(labels.codes[cat], labels.categories)

    rows = pd.DataFrame({
        "visit_id": visit_of_row.astype(np.int64),
        "patient_id": patient_of_visit[visit_of_row].astype(np.int64),
        "seq": seq.astype(np.int32),
        "raw_code": column(vocab["leaf"]),
        "icd_version": np.full(n_rows, 10, np.int8),
        "icd10": column(vocab["leaf"]),
        "chapter": column(vocab["chapter"]),
        "block": column(vocab["block"]),
        "category": column(vocab["code"]),
        "status": pd.Categorical.from_codes(np.zeros(n_rows, np.int8), ["valid"]),
    })
    return rows, patient_of_visit, vocab


def full_scale_cohort(seed: int = 0) -> Cohort:
    """Just enough of a Cohort for graph building at full MIMIC-IV scale (no tasks)."""
    n_visits, n_patients = 430_000, 180_000
    mean_codes = 4_800_000 / n_visits
    rows, patient_of_visit, _ = synthetic_diagnoses(n_visits, n_patients, mean_codes, 1_900, seed)
    rng = np.random.default_rng(seed)
    patients = pd.DataFrame({"patient_id": np.arange(n_patients, dtype=np.int64),
                             "split": pd.Categorical.from_codes(rng.choice(3, n_patients, p=[0.8, 0.1, 0.1]),
                                                                [TRAIN, VALIDATION, TEST])})
    visits = pd.DataFrame({"visit_id": np.arange(n_visits, dtype=np.int64), "patient_id": patient_of_visit})
    return Cohort(site=MIMIC_IV, patients=patients, visits=visits, diagnoses=rows, tasks={},
                  fingerprint=f"bench-full-{seed}", meta={"synthetic": True})


# ============================================================================ measuring
class PeakRSS:
    """Peak resident memory above the starting point while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """torch intra-op threads for the block (None: leave as is). On a shared machine OpenMP
    spin-waiting makes 2 threads up to ~10x slower than 1 for these small models."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1)}


def _timed_build(cohort: Cohort, setting: tuple[int, int, int], **kwargs: Any) -> dict[str, Any]:
    from hicd_core.models.graph_train import build_graph

    build_graph(cohort, setting, **kwargs)  # warm (tree cache, imports)
    with PeakRSS() as mem, Clock() as took:
        graph = build_graph(cohort, setting, **kwargs)
    return {**took.figures(), "peak_extra_mb": round(mem.extra_mb, 1), "nodes": graph.n_nodes,
            "edges": len(graph.edges),
            "cooccurrence_edges": int((graph.edges["kind"] == "cooccurrence").sum()),
            "train_admissions": graph.meta["train_admissions"]}


# ============================================================================ benchmarks
def bench_graph_build_default() -> dict[str, Any]:
    cohort = default_cohort()
    return {"admissions": len(cohort.visits), "rows": len(cohort.diagnoses), **machine(),
            "all_levels": _timed_build(cohort, Setting.ALL), "flat": _timed_build(cohort, Setting.FLAT),
            "leaf_all_levels": _timed_build(cohort, Setting.ALL, node_level="leaf")}


def bench_graph_build_full() -> dict[str, Any]:
    with Clock() as generated:
        cohort = full_scale_cohort()
    return {"admissions": len(cohort.visits), "rows": len(cohort.diagnoses),
            "categories": int(cohort.diagnoses["category"].nunique()), "generate": generated.figures(),
            **machine(),
            "all_levels": _timed_build(cohort, Setting.ALL), "flat": _timed_build(cohort, Setting.FLAT)}


def bench_gcn_learning_curve(epochs: int = 400) -> dict[str, Any]:
    """Held-out link AUC every 10 epochs on the default cohort (one input to ``gcn_epochs``)."""
    from hicd_core.models.graph_train import build_graph, train_gcn

    out: dict[str, Any] = machine()
    with threads(1):
        for setting in (Setting.FLAT, Setting.ALL):
            graph = build_graph(default_cohort(), setting)
            with Clock() as took:
                result = train_gcn(graph, seed=0, device="cpu", epochs=epochs)
            points = {p["epoch"]: round(p["link_auc"], 4) for p in result.history if "link_auc" in p}
            out[setting.key] = {"cpu_ms_per_epoch": round(1000 * took.cpu / epochs, 1),
                                         "auc_by_epoch": points, "nodes": graph.n_nodes,
                                         "edges": len(graph.edges)}
    return out


def bench_gcn_epochs_downstream(task: str = "readmission_30d", epochs: tuple[int, ...] = (0, 100, 400)
                                ) -> dict[str, Any]:
    """Validation AUROC of the fine-tuned model against GCN pretraining length (the other input)."""
    from hicd_core.models.graph_model import GraphConfig
    from hicd_core.models.graph_train import build_graph, train_gcn, train_graph_model

    cohort = default_cohort()
    val_samples = int((cohort.tasks[task]["split"] == VALIDATION).sum())
    out: dict[str, Any] = {"task": task, "val_samples": val_samples, **machine()}
    with threads(1):
        for setting in (Setting.FLAT, Setting.ALL):
            graph = build_graph(cohort, setting)
            for n_epochs in epochs:
                config = GraphConfig(gcn_epochs=n_epochs)
                gcn = train_gcn(graph, seed=0, device="cpu", config=config)
                model = train_graph_model(cohort, task, setting, seed=0, device="cpu", gcn=gcn, config=config)
                out[f"{setting.key}_gcn{n_epochs}"] = {
                    "link_auc": round(gcn.link_auc, 4),
                    "val_auroc": round(model.metrics["validation"]["auroc"], 4)}
    return out


def bench_gcn_epoch() -> dict[str, Any]:
    """GCN epoch time (all levels) at default and full scale, with 1 and 2 torch threads."""
    from hicd_core.models.graph_train import build_graph, train_gcn

    out: dict[str, Any] = machine()
    for name, cohort in (("default", default_cohort()), ("full", full_scale_cohort())):
        graph = build_graph(cohort, Setting.ALL)
        out[name] = {"nodes": graph.n_nodes, "edges": len(graph.edges)}
        for n in (1, 2):
            with threads(n), Clock() as took:
                train_gcn(graph, seed=0, device="cpu", epochs=20)
            out[name][f"threads{n}"] = {"wall_ms": round(50 * took.wall, 1),
                                        "cpu_ms": round(50 * took.cpu, 1)}
    return out


def bench_transformer_throughput() -> dict[str, Any]:
    """Training and inference samples/s of the patient transformer (all levels, default cohort)."""
    import torch

    from hicd_core.models.graph_model import GraphConfig, PatientTransformer
    from hicd_core.models.graph_train import build_graph, visit_index

    cohort = default_cohort()
    graph = build_graph(cohort, Setting.ALL)
    config = GraphConfig()
    with Clock() as indexed:
        index = visit_index(cohort, graph)
    samples = cohort.tasks["readmission_30d"]
    windows = index.windows(samples["visit_id"].to_numpy(), config.max_visits)
    out: dict[str, Any] = {"batch_size": config.batch_size, "visit_index": indexed.figures(), **machine(),
                           "mean_tokens_per_visit": round(float(np.diff(index.indptr).mean()), 1),
                           "mean_visits_per_sample": round(float((windows >= 0).sum(1).mean()), 2)}
    for n in (1, 2):
        model = PatientTransformer(graph.n_nodes, config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, fused=True)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        n_batches, bs = 60, config.batch_size
        with threads(n), Clock() as trained:
            for i in range(n_batches):
                batch = index.batch(windows[i * bs:(i + 1) * bs])
                tokens, token_mask, visit_mask = (torch.from_numpy(a) for a in batch)
                loss = loss_fn(model(tokens, token_mask, visit_mask), torch.zeros(len(tokens)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        with threads(n), Clock() as inferred, torch.no_grad():
            for lo in range(0, 8192, 512):
                batch = index.batch(windows[lo:lo + 512])
                model(*(torch.from_numpy(a) for a in batch))
        out[f"threads{n}"] = {"train_samples_per_s": round(n_batches * bs / trained.wall),
                              "train_samples_per_cpu_s": round(n_batches * bs / trained.cpu),
                              "inference_samples_per_s": round(8192 / inferred.wall)}
    return out


def bench_all_settings(cohort: Cohort | None = None, task: str = "readmission_30d",
                       n_threads: int | None = 1) -> dict[str, Any]:
    """All 8 settings trained end to end (graph, GCN, transformer) with the default config."""
    from hicd_core.models.graph_train import train_graph_model

    cohort = cohort or default_cohort()
    rows = {}
    with threads(n_threads) as used, Clock() as total:
        for setting in SETTINGS:
            with Clock() as took:
                model = train_graph_model(cohort, task, setting, seed=0, device="cpu")
            rows[setting.key] = {
                **took.figures(), "gcn_s": round(model.metrics["pretrain_seconds"], 1),
                "link_auc": round(model.metrics["link_auc"], 4),
                "val_auroc": round(model.metrics["validation"]["auroc"], 4),
                "best_epoch": model.metrics["best_epoch"], "epochs": model.metrics["stopped_epoch"]}
    return {"total": total.figures(), "threads": used, "task": task, "samples": len(cohort.tasks[task]),
            **machine(), "settings": rows}


BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "graph_build_default": bench_graph_build_default,
    "graph_build_full": bench_graph_build_full,
    "gcn_learning_curve": bench_gcn_learning_curve,
    "gcn_epochs_downstream": bench_gcn_epochs_downstream,
    "gcn_epoch": bench_gcn_epoch,
    "transformer_throughput": bench_transformer_throughput,
    "graph_all_settings": bench_all_settings,
}


if __name__ == "__main__":
    for name in sys.argv[1:] or list(BENCHMARKS):
        print(json.dumps({"benchmark": name, **BENCHMARKS[name]()}), flush=True)
