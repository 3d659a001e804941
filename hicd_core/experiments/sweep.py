"""The level-ablation sweep: runs any subset of settings x models x tasks x seeds, resumably.

* Every run is keyed by its spec + cohort fingerprint(s) + code version (``RunSpec.run_id``); a
  finished run is never redone.
* A run directory is written to a temporary sibling and renamed in one step, so a sweep killed at
  any moment leaves no half-written run; the next sweep redoes that run from scratch.
* One failed run is recorded under ``failed/`` and the sweep carries on with the others.
* Task-independent pretraining (HICD-BERT MLM, HICD-Graph GCN) is done once per (model, setting,
  seed) and shared by the tasks; the HICD-BERT encoder is also persisted under ``shared/``.
* Where the groups run is an executor's job (:mod:`hicd_core.experiments.executors`): this machine's
  worker processes by default, a Slurm job array with :mod:`hicd_core.experiments.slurm`.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hicd_core.checksums import write_manifest
from hicd_core.cohort import ADMISSIONS, EICU, MIMIC_IV, TEST, VALIDATION, VISIT_KIND, Cohort, load_cohort
from hicd_core.cohort.store import read_cohort
from hicd_core.experiments.executors import (  # noqa: F401  (cpu_cores, resolve_workers: public here too)
    Executor,
    LocalExecutor,
    cpu_cores,
    overall_and_eta,
    resolve_workers,
)
from hicd_core.experiments.families import FAMILIES, resolve_model_preset, split_predictions
from hicd_core.experiments.runstore import METRICS_FILE, PREDICTIONS_FILE, RUN_FILE, RunStore
from hicd_core.experiments.spec import EMBEDDING_SCOPES, RunSpec, SweepPreset
from hicd_core.experiments.transfer import add_calibration, probe_transfer
from hicd_core.models.common import ProgressEvent, cpu_has_native_bf16, pick_device
from hicd_core.runtime import atomic_directory, library_versions, seed_everything, stable_hash
from hicd_core.stats import binary_metrics


@dataclass
class SweepEvent:
    """Progress of a sweep, for the CLI bars and the app. Fractions are in [0, 1]."""

    run_id: str
    run_index: int          # 0-based among runs still to do
    n_runs: int             # runs to do in this sweep (finished ones excluded)
    stage: str              # pretrain / finetune / gcn / transformer / evaluate / transfer / done / failed
    run_fraction: float
    overall_fraction: float
    eta_seconds: float | None
    message: str = ""


SweepCallback = Callable[[SweepEvent], None]


@dataclass
class Cohorts:
    source: Cohort
    target: Cohort | None

    def reloadable(self) -> bool:
        """Every cohort came from a folder, so a worker process can read it again."""
        return all(c.meta.get("cache_folder") or c.meta.get("source_path")
                   for c in (self.source, self.target) if c is not None)

    def descriptor(self) -> dict[str, Any]:
        """What a worker process needs to read the same cohorts: the parsed-cohort cache when there
        is one (no re-hashing of the source files), else the source folder; checked by fingerprint."""
        def one(cohort: Cohort | None) -> dict | None:
            if cohort is None:
                return None
            return {"site": cohort.site, "cache": cohort.meta.get("cache_folder"),
                    "path": cohort.meta.get("source_path"), "fingerprint": cohort.fingerprint,
                    "split_seed": int(cohort.meta.get("params", {}).get("split_seed", 0))}
        return {"source": one(self.source), "target": one(self.target)}

    @classmethod
    def from_descriptor(cls, descriptor: dict[str, Any]) -> Cohorts:
        def one(entry: dict | None) -> Cohort | None:
            if entry is None:
                return None
            cache = Path(entry["cache"]) if entry["cache"] else None
            if cache is not None and (cache / "meta.json").is_file():
                cohort = read_cohort(cache)
            else:
                cohort = load_cohort(entry["site"], entry["path"], split_seed=entry["split_seed"])
            if cohort.fingerprint != entry["fingerprint"]:
                raise RuntimeError(f"{entry['path']} changed while the sweep ran (fingerprint "
                                   f"{cohort.fingerprint} != {entry['fingerprint']})")
            return cohort
        return cls(one(descriptor["source"]), one(descriptor["target"]))


def resolve_cohorts(cohort: str = "synthetic", target: str | None = None, patients: int | None = None,
                    hierarchy_signal: float | None = None) -> Cohorts:
    """``synthetic`` (the synthetic default's source) or ``KIND:PATH`` for a source of hospital
    admissions (``mimic-iv``, ``mimic-iii``, ``meds``); the target is ``eicu:PATH``, ``none``, or (None)
    the synthetic default's eICU-layout target with a synthetic source and no target otherwise.
    ``hierarchy_signal`` picks the synthetic data's signal (None: the default); it is an error with
    any other cohort, whose outcomes are what they are."""
    sources = [kind for kind, visits in VISIT_KIND.items() if visits == ADMISSIONS]
    target_cohort = None
    if target is not None and target != "none":
        tkind, _, tpath = target.partition(":")
        if tkind != EICU or not tpath.strip():
            raise ValueError(f"--target must be 'eicu:PATH' or 'none', got {target!r}")
        target_cohort = load_cohort(EICU, tpath)
    if hierarchy_signal is not None and cohort != "synthetic":
        raise ValueError(f"hierarchy_signal {hierarchy_signal} applies to the synthetic cohort only, not to "
                         f"{cohort!r}")
    if cohort == "synthetic":
        from hicd_core.synthetic import ensure_default

        root = ensure_default(patients, hierarchy_signal=hierarchy_signal)
        if target is None:
            target_cohort = load_cohort(EICU, root / "eicu")
        return Cohorts(load_cohort(MIMIC_IV, root / "mimic-iv"), target_cohort)
    kind, _, path = cohort.partition(":")
    if kind not in sources or not path.strip():
        raise ValueError(f"--cohort must be 'synthetic' or KIND:PATH with KIND one of {', '.join(sources)}; "
                         f"got {cohort!r}")
    return Cohorts(load_cohort(kind, path), target_cohort)


def expected_runs(preset: SweepPreset, cohorts: Cohorts, device: str = "auto") -> dict[str, RunSpec]:
    model_preset = resolve_model_preset(preset.model_preset, device)
    runs = preset.runs(model_preset)
    if cohorts.target is None:
        runs = [r for r in runs if r.kind != "transfer"]
    target_fp = cohorts.target.fingerprint if cohorts.target is not None else None
    return {r.run_id(cohorts.source.fingerprint, target_fp): r for r in runs}


def _embedding_outputs(family: Any, trained: Any, folder: Path, seed: int) -> dict:
    from hicd_core.experiments import embeddings as analysis

    codes, matrix = family.embeddings(trained)
    matrix = np.asarray(matrix, dtype=np.float32)
    np.save(folder / "embeddings.npy", matrix, allow_pickle=False)
    (folder / "embedding_codes.json").write_text(json.dumps(codes))
    labels = analysis.code_labels(codes)
    # ``summary`` is a tightness_table entry (relationship similarities + silhouette) plus the
    # per-chapter intra-chapter similarity the paper's heatmap shows.
    summary = analysis.embedding_summary(matrix, labels, seed=seed)
    summary["chapters"] = analysis.chapter_similarity(matrix, labels).to_dict(orient="records")
    projection = analysis.umap_2d(matrix, seed=seed)
    np.save(folder / "umap.npy", np.asarray(projection.coords, dtype=np.float32), allow_pickle=False)
    summary["projection"] = projection.method
    return summary


def run_groups(todo: list[tuple[str, RunSpec]]) -> list[list[tuple[str, RunSpec]]]:
    """Runs that share a pretraining, in order (task runs before the transfer probes that read
    them). Seed-major like the preset: every group of the first seed (in ``todo``'s seed order)
    before any of the next, so a complete one-seed picture finishes first; within a seed the real
    tree before the permuted-hierarchy control, then the seconds-long counts groups (a first picture at
    once), then the costliest groups first so parallel workers finish together."""
    groups: dict[tuple, list[tuple[str, RunSpec]]] = {}
    seed_rank: dict[int, int] = {}
    for run_id, spec in todo:
        groups.setdefault(spec.shared_key, []).append((run_id, spec))
        seed_rank.setdefault(spec.seed, len(seed_rank))
    ordered = [sorted(group, key=lambda item: item[1].kind == "transfer") for group in groups.values()]
    # The counts baseline's groups take seconds, so they go first: the app's first complete picture
    # (a counts-lr level curve) appears almost at once. Then HICD-BERT (~3x a HICD-Graph group on CPU:
    # bench_bert / bench_graph), then HICD-Graph.
    return sorted(ordered, key=lambda g: (seed_rank[g[0][1].seed], g[0][1].hierarchy != "real",
                                          _cost_rank(g[0][1].model), -len(g)))


def _cost_rank(model: str) -> int:
    return 0 if model.startswith("counts-") else 1 if model == "bert" else 2


def embedding_seeds(scope: str | bool | tuple, specs: dict[str, RunSpec]) -> bool | tuple[int, ...]:
    """``True`` (every run), ``False`` (none) or the seeds whose task runs get the analysis."""
    if isinstance(scope, bool | tuple):
        return scope
    if scope not in EMBEDDING_SCOPES:
        raise ValueError(f"embeddings must be one of {', '.join(EMBEDDING_SCOPES)}, got {scope!r}")
    if scope == "first-seed":
        return (min(spec.seed for spec in specs.values()),) if specs else False
    return scope == "all"


class Sweep:
    """Runs a list of specs against cohorts into a store, reusing pretraining across tasks.

    ``embeddings`` is an :data:`EMBEDDING_SCOPES` name, or what :func:`embedding_seeds` resolved it
    to (how it reaches worker processes and Slurm tasks)."""

    def __init__(self, store: RunStore, cohorts: Cohorts, device: str = "auto",
                 callback: SweepCallback | None = None,
                 embeddings: str | bool | tuple = "first-seed") -> None:
        self.store, self.cohorts, self.device = store, cohorts, device
        self.callback = callback or (lambda event: None)
        self.embeddings = embeddings
        self._prepared: dict[tuple, Any] = {}
        self._trained: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    def _shared_dir(self, spec: RunSpec) -> Path:
        return self.store.shared_dir(stable_hash(*spec.shared_key, self.cohorts.source.fingerprint))

    def _prepared_for(self, spec: RunSpec, progress) -> Any:
        key = spec.shared_key
        if key not in self._prepared:
            family = FAMILIES[spec.model]
            self._prepared[key] = family.prepare(
                self.cohorts.source, spec.setting, seed=spec.seed, preset=spec.preset, scheme=spec.scheme,
                device=self.device, epochs_scale=spec.epochs_scale, shared_dir=self._shared_dir(spec),
                progress=progress, hierarchy=spec.hierarchy, mask_hierarchy=spec.mask_hierarchy)
        return self._prepared[key]

    def _source_model(self, spec: RunSpec) -> Any:
        """The trained source-task model a transfer run probes (memory, else the store)."""
        source_spec = replace(spec, kind="task", target_task=None, encoder="finetuned")
        run_id = source_spec.run_id(self.cohorts.source.fingerprint)
        if spec.encoder == "mlm":
            return self._prepared_for(source_spec, None)
        if run_id in self._trained:
            return self._trained[run_id]
        if not self.store.is_finished(run_id):
            raise RuntimeError(f"transfer needs the finished source run {run_id}")
        return FAMILIES[spec.model].load(self.store.run_dir(run_id) / "model", self.device)

    def _record(self, spec: RunSpec, run_id: str, seconds: float, device: str) -> dict:
        cohort = self.cohorts.source
        target = self.cohorts.target
        return {"run_id": run_id, "spec": asdict(spec), "seconds": round(seconds, 2), "device": device,
                "source_fingerprint": cohort.fingerprint,
                "target_fingerprint": target.fingerprint if target is not None and spec.kind == "transfer"
                else None,
                "synthetic": cohort.synthetic, "code_set_year": cohort.meta.get("code_set_year"),
                "library_versions": library_versions(), "finished_at": time.time(),
                # Whether bf16 ran (on CPU only with bf16 units; models.common.use_bf16): the same
                # run trains in fp32 on other CPUs, to float noise of the same result.
                "cpu_bf16_units": cpu_has_native_bf16()}

    def _wants_embeddings(self, spec: RunSpec) -> bool:
        wanted = embedding_seeds(self.embeddings, {"run": spec})
        return wanted is True or (isinstance(wanted, tuple) and spec.seed in wanted)

    # ------------------------------------------------------------------ one run
    def run_one(self, spec: RunSpec, run_id: str, progress) -> None:
        start = time.perf_counter()
        seed_everything(spec.seed)
        device = str(pick_device(self.device))
        family = FAMILIES[spec.model]
        with atomic_directory(self.store.run_dir(run_id)) as tmp:
            if spec.kind == "transfer":
                if self.cohorts.target is None:
                    raise RuntimeError("transfer run without a target cohort")
                encoder = self._source_model(spec)
                progress(ProgressEvent("transfer", 0, 1))
                # A family with its own transfer (the counts baseline: sparse features, and the source
                # model applied as is) uses it; the deep models' frozen encoder gets the shared probe.
                transfer = getattr(family, "transfer", None) or (
                    lambda enc, target, task, seed: probe_transfer(enc, target, task, seed=seed))
                metrics, predictions = transfer(encoder, self.cohorts.target, spec.target_task, spec.seed)
            else:
                prepared = self._prepared_for(spec, progress)
                trained = family.train(prepared, self.cohorts.source, spec.task, spec.setting, seed=spec.seed,
                                       preset=spec.preset, device=self.device, epochs_scale=spec.epochs_scale,
                                       progress=progress)
                progress(ProgressEvent("evaluate", 0, 1))
                val = split_predictions(trained, self.cohorts.source, spec.task, VALIDATION)
                predictions = split_predictions(trained, self.cohorts.source, spec.task, TEST)
                threshold = float(trained.threshold)
                metrics = {"test": binary_metrics(predictions["label"], predictions["prob"], threshold),
                           "validation": binary_metrics(val["label"], val["prob"], trained.threshold),
                           "threshold": float(trained.threshold),
                           "training": getattr(trained, "metrics", {})}
                add_calibration(metrics, val, predictions)
                trained.save(tmp / "model")
                if self._wants_embeddings(spec) and getattr(family, "has_embeddings", True):
                    progress(ProgressEvent("embeddings", 0, 1))
                    metrics["embeddings"] = _embedding_outputs(family, trained, tmp, spec.seed)
                self._trained[run_id] = trained
            predictions.to_parquet(tmp / PREDICTIONS_FILE, index=False)
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=float))
            record = self._record(spec, run_id, time.perf_counter() - start, device)
            (tmp / RUN_FILE).write_text(json.dumps(record, indent=2, default=str))
            write_manifest(tmp)  # last: every file of the run, checked whenever the run is read

    # ------------------------------------------------------------------ the sweep
    def forget_group(self) -> None:
        """Drop the in-memory pretraining and models: one group's are never needed by the next."""
        self._prepared.clear()
        self._trained.clear()

    def run(self, specs: dict[str, RunSpec], workers: int | str = 1,
            executor: Executor | None = None) -> dict[str, str]:
        """Run every unfinished spec; returns run_id -> 'finished' | 'skipped' | 'failed' (or, for an
        executor that returns before the runs end, 'submitted' | 'queued').

        ``executor`` says where the runs execute (default: :class:`LocalExecutor` with ``workers``:
        > 1 or ``auto`` spreads groups of runs over that many processes, each with an equal share of
        the cores; cohorts that did not come from a folder run in this process).
        """
        source, target = self.cohorts.source, self.cohorts.target
        info = {"source": source.label, "source_fingerprint": source.fingerprint,
                "synthetic": source.synthetic,
                "target": target.label if target is not None else None,
                "target_fingerprint": target.fingerprint if target is not None else None,
                "code_set_year": source.meta.get("code_set_year"),
                # Where the cohorts came from, so a viewer can reload them (load_cohort is cached by
                # content hash; a moved or changed source shows up as a fingerprint mismatch).
                "source_site": source.site, "source_path": source.meta.get("source_path"),
                "source_split_seed": source.meta.get("params", {}).get("split_seed", 0),
                "target_site": target.site if target is not None else None,
                "target_path": target.meta.get("source_path") if target is not None else None,
                # The synthetic generator's share of outcome risk in the hierarchy (pages state it).
                "hierarchy_signal": (source.meta.get("synthetic_params") or {}).get("hierarchy_signal")
                if source.synthetic else None}
        self.store.write_store_info(info)
        # Resolved over every expected run (not only the unfinished ones), so a resumed sweep keeps
        # the same first seed.
        self.embeddings = embedding_seeds(self.embeddings, specs)
        todo = [(run_id, spec) for run_id, spec in specs.items() if not self.store.is_finished(run_id)]
        outcome = {run_id: "skipped" for run_id in specs if self.store.is_finished(run_id)}
        outcome.update((executor or LocalExecutor(workers)).run(self, todo))
        return outcome

    def _run_todo(self, todo: list[tuple[str, RunSpec]], write_table: bool = True) -> dict[str, str]:
        """Run ``todo`` one after another in this process."""
        outcome: dict[str, str] = {}
        sweep_start = time.perf_counter()
        for index, (run_id, spec) in enumerate(todo):
            def progress(event: ProgressEvent, index: int = index, run_id: str = run_id) -> None:
                overall, eta = overall_and_eta(index + event.fraction, len(todo), sweep_start)
                metrics = ", ".join(f"{k} {v:.3g}" for k, v in list(event.metrics.items())[:3])
                self.callback(SweepEvent(run_id, index, len(todo), event.stage, event.fraction, overall, eta,
                                         metrics))

            progress(ProgressEvent("start", 0, 1))
            try:
                self.run_one(spec, run_id, progress)
            except Exception as exc:  # one failed run must not stop the others
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.store.mark_failed(run_id, spec, detail + "\n" + traceback.format_exc(limit=6))
                outcome[run_id] = "failed"
                self.callback(SweepEvent(run_id, index, len(todo), "failed", 1.0, (index + 1) / len(todo),
                                         None, detail))
                continue
            self.store.clear_failure(run_id)
            if write_table:
                self.store.write_results_table()
            outcome[run_id] = "finished"
            self.callback(SweepEvent(run_id, index, len(todo), "done", 1.0, (index + 1) / len(todo), None))
        return outcome
