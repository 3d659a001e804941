"""The sweep engine: idempotence, failure isolation, kill-and-resume, report and CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core.experiments import families, report
from hicd_core.experiments.runstore import RunStore
from hicd_core.experiments.spec import RunSpec, load_preset
from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs
from hicd_core.hierarchy import Setting

REPO = Path(__file__).resolve().parents[1]


class _CountModel:
    """A deterministic stand-in model (risk = share of codes in chapter IX) to test sweep mechanics."""

    def __init__(self, setting: str, fail: bool = False) -> None:
        self.setting, self.threshold, self.metrics = setting, 0.3, {}
        if fail:
            raise RuntimeError(f"planned failure for {setting}")

    def predict(self, cohort, task, split=None) -> pd.DataFrame:
        samples = cohort.tasks[task]
        if split:
            samples = samples[samples["split"] == split]
        diag = cohort.diagnoses
        share = (diag["chapter"].astype(str) == "IX").groupby(diag["patient_id"]).mean()
        bump = int(self.setting, 2) / 100
        prob = share.reindex(samples["patient_id"]).fillna(0).to_numpy() * 0.8 + bump
        return pd.DataFrame({"sample_id": samples["sample_id"].to_numpy(), "prob": prob})

    def encode(self, cohort, task, split=None):
        samples = cohort.tasks[task]
        samples = samples[samples["split"] == split] if split else samples
        vectors = np.stack([samples["visit_index"].to_numpy(float), np.ones(len(samples))], axis=1)
        return samples["sample_id"].to_numpy(), vectors

    def save(self, path: Path) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "config.json").write_text(json.dumps({"setting": self.setting}))


class _FakeFamily:
    name = "bert"

    def __init__(self, fail_setting: str | None = None) -> None:
        self.fail_setting, self.trained = fail_setting, []

    def prepare(self, cohort, setting, **kwargs):
        return setting

    def train(self, prepared, cohort, task, setting, **kwargs):
        self.trained.append((setting, task))
        return _CountModel(setting, fail=setting == self.fail_setting)

    def load(self, path, device):
        return _CountModel(json.loads((Path(path) / "config.json").read_text())["setting"])

    def embeddings(self, trained):
        return [], np.zeros((0, 2))


def _specs(cohorts: Cohorts) -> dict[str, RunSpec]:
    preset = load_preset("tiny").with_overrides(models=("bert",), settings=Setting.parse_list("000,001,011"))
    return expected_runs(preset, cohorts, "cpu")


def test_sweep_isolates_failures_and_never_redoes_finished_runs(
        small_source_cohort, small_target_cohort, tmp_path: Path, monkeypatch) -> None:
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    failing = _FakeFamily(fail_setting="001")
    monkeypatch.setitem(families.FAMILIES, "bert", failing)
    import hicd_core.experiments.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "FAMILIES", families.FAMILIES)
    store = RunStore(tmp_path / "store")
    specs = _specs(cohorts)
    outcome = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs)
    statuses = sorted(outcome.values())
    # 001 fails; its transfer then fails too (no source model); the others finish.
    assert statuses.count("failed") == 2 and statuses.count("finished") == 4
    listing = store.listing(specs)
    assert set(listing["status"]) == {"finished", "failed"}
    assert "planned failure" in listing.loc[listing["status"] == "failed", "error"].iloc[0]

    healthy = _FakeFamily()
    monkeypatch.setitem(families.FAMILIES, "bert", healthy)
    again = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs)
    assert sorted(again.values()).count("skipped") == 4
    assert healthy.trained == [("001", "readmission_30d")]  # only the failed run is redone
    assert (store.listing(specs)["status"] == "finished").all()
    assert store.failure(next(iter(specs))) is None
    table = store.results_table()
    assert len(table) == 6 and table["auroc"].notna().all()
    assert (store.root / "results.parquet").is_file()


def test_sweep_redoes_a_damaged_run(small_source_cohort, small_target_cohort, tmp_path: Path,
                                    monkeypatch) -> None:
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    first = _FakeFamily()
    monkeypatch.setitem(families.FAMILIES, "bert", first)
    store = RunStore(tmp_path / "store")
    specs = _specs(cohorts)
    Sweep(store, cohorts, device="cpu", embeddings=False).run(specs)
    damaged_id = next(run_id for run_id, spec in specs.items()
                      if spec.setting == "011" and spec.kind == "task")
    path = store.run_dir(damaged_id) / "predictions.parquet"
    path.write_bytes(path.read_bytes()[:-40])  # truncated
    assert not RunStore(store.root).is_finished(damaged_id)
    again = _FakeFamily()
    monkeypatch.setitem(families.FAMILIES, "bert", again)
    outcome = Sweep(RunStore(store.root), cohorts, device="cpu", embeddings=False).run(specs)
    assert outcome[damaged_id] == "finished" and again.trained == [("011", "readmission_30d")]
    assert RunStore(store.root).damaged_runs() == []


def test_report_comparisons_against_flat(small_source_cohort, small_target_cohort, tmp_path: Path,
                                         monkeypatch) -> None:
    monkeypatch.setitem(families.FAMILIES, "bert", _FakeFamily())
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    store = RunStore(tmp_path / "store")
    Sweep(store, cohorts, device="cpu", embeddings=False).run(_specs(cohorts))
    compared = report.comparisons(store, n_resamples=200)
    assert set(compared["setting"]) == {"001", "011"}
    assert {"p_auroc", "p_auroc_holm", "p_macro_f1_holm", "delta_auprc"} <= set(compared.columns)
    # The fake's settings only shift every probability by a constant: AUROC is unchanged.
    task_rows = compared[compared["evaluation"] == "readmission_30d"]
    assert np.allclose(task_rows["delta_auroc"], 0.0)
    assert (compared["p_auroc_holm"] >= compared["p_auroc"] - 1e-12).all()
    best = report.headline(compared)
    assert set(best["evaluation"]) == {"readmission_30d", "readmission_30d -> icu_readmission"}


def test_parallel_sweep_matches_sequential(tiny_store, small_source_cohort, small_target_cohort,
                                           tmp_path: Path) -> None:
    """The fixture store was trained by two worker processes; the same runs trained here, one after
    another with the workers' thread count, give the same test predictions (to float noise: bf16
    kernels need not reduce in the same order in a fresh process)."""
    import torch

    from hicd_core.experiments.sweep import cpu_cores

    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    preset = load_preset("tiny").with_overrides(models=("bert", "graph"), settings=Setting.parse_list("011"),
                                                transfer=False)
    specs = expected_runs(preset, cohorts, "cpu")
    assert len(specs) == 2 and all(tiny_store.is_finished(run_id) for run_id in specs)
    store = RunStore(tmp_path / "sequential")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cpu_cores() // 2))
    try:
        outcome = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs, workers=1)
    finally:
        torch.set_num_threads(threads)
    assert set(outcome.values()) == {"finished"}
    for run_id in specs:
        parallel = pd.read_parquet(tiny_store.run_dir(run_id) / "predictions.parquet")
        sequential = pd.read_parquet(store.run_dir(run_id) / "predictions.parquet")
        pd.testing.assert_frame_equal(parallel.drop(columns="prob"), sequential.drop(columns="prob"))
        assert np.abs(parallel["prob"] - sequential["prob"]).max() < 1e-4, run_id


def test_tiny_sweep_end_to_end(tiny_store) -> None:
    """All four fixture settings x both real models x readmission + transfer finished, with the
    test predictions, model directories, embeddings and UMAP a viewer needs."""
    table = report.results(tiny_store)
    assert len(table) == 16
    assert set(table["model"]) == {"bert", "graph"} and set(table["kind"]) == {"task", "transfer"}
    assert table["auroc"].between(0, 1).all()
    task_runs = table[table["kind"] == "task"]
    assert (task_runs["auroc"] > 0.55).mean() >= 0.75, task_runs[["run_id", "auroc"]]
    for run_id in task_runs["run_id"]:
        folder = tiny_store.run_dir(run_id)
        for name in ("run.json", "metrics.json", "predictions.parquet", "model/model.safetensors",
                     "embeddings.npy", "umap.npy"):
            assert (folder / name).is_file(), (run_id, name)
        run = json.loads((folder / "run.json").read_text())
        assert run["code_set_year"].startswith("ICD-10-CM") and "torch" in run["library_versions"]
    compared = report.comparisons(tiny_store, n_resamples=100)
    assert len(compared) == 2 * 2 * 3  # 2 models x (task, transfer) x 3 non-flat settings


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hicd_core", *args], capture_output=True, text=True,
                          cwd=REPO, **kwargs)


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_results(small_synthetic_dir: Path, tiny_store, tmp_path: Path
                                                  ) -> None:
    store_dir = tmp_path / "store"
    args = [sys.executable, "-m", "hicd_core", "sweep", "--preset", "tiny", "--models", "graph",
            "--settings", "000,001", "--cohort", f"mimic-iv:{small_synthetic_dir / 'mimic-iv'}",
            "--target", f"eicu:{small_synthetic_dir / 'eicu'}", "--device", "cpu", "--store", str(store_dir),
            "--quiet"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    runs = store_dir / "runs"
    deadline = time.time() + 600
    while time.time() < deadline:  # kill it while the second run is being written
        finished = [p for p in runs.glob("*") if (p / "run.json").is_file()] if runs.is_dir() else []
        if finished and any(p.name.startswith(".tmp-") for p in runs.iterdir()):
            break
        if process.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    store = RunStore(store_dir)
    # Nothing half-written looks finished.
    for path in runs.iterdir():
        assert path.name.startswith(".tmp-") or (path / "run.json").is_file()
    before = len(store.finished_runs())
    assert before >= 1
    resumed = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    table = store.results_table().set_index("run_id")
    assert len(table) == 4
    assert not [p for p in runs.iterdir() if p.name.startswith(".tmp-")]
    # The same runs in the uninterrupted fixture sweep give identical results.
    reference = tiny_store.results_table().set_index("run_id")
    common = table.index.intersection(reference.index)
    assert len(common) == 4
    columns = ["auroc", "auprc", "macro_f1", "brier", "threshold"]
    pd.testing.assert_frame_equal(table.loc[common, columns], reference.loc[common, columns])


def test_cli_help_and_bad_arguments() -> None:
    for command in ("codes", "synth", "cohort", "sweep", "report"):
        out = _cli(command, "--help")
        assert out.returncode == 0 and "usage" in out.stdout
    bad = _cli("sweep", "--settings", "0x1")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "0x1" in bad.stderr
    bad = _cli("sweep", "--preset", "nope")
    assert bad.returncode != 0 and "unknown preset" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("sweep", "--models", "gpt")
    assert bad.returncode != 0 and "gpt" in bad.stderr


def test_cli_report(tiny_store) -> None:
    out = _cli("report", "--store", str(tiny_store.root), "--json", "--resamples", "100")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["runs"]) == 16 and data["comparisons"] and data["info"]["synthetic"] is True
    text = _cli("report", "--store", str(tiny_store.root), "--resamples", "100")
    assert "SYNTHETIC" in text.stdout and "Holm" in text.stdout
    empty = _cli("report", "--store", "/nonexistent/store")
    assert empty.returncode != 0 and "no finished runs" in empty.stderr


def test_status_file_tracks_parallel_runs(tmp_path: Path) -> None:
    """With worker processes several runs are in progress; the status file lists each until done."""
    from hicd_core.experiments.background import StatusWriter, read_status
    from hicd_core.experiments.sweep import SweepEvent

    writer = StatusWriter(tmp_path / "status.json", min_interval=0.0)
    writer(SweepEvent("bert-000", 0, 4, "pretrain", 0.3, 0.1, None))
    writer(SweepEvent("graph-000", 1, 4, "gcn", 0.5, 0.2, None))
    status = read_status(tmp_path)
    assert set(status["active"]) == {"bert-000", "graph-000"}
    writer(SweepEvent("bert-000", 0, 4, "done", 1.0, 0.4, None))
    status = read_status(tmp_path)
    assert list(status["active"]) == ["graph-000"] and status["finished"] == ["bert-000"]
    assert status["active"]["graph-000"] == {"stage": "gcn", "fraction": 0.5}


def test_parallel_sweep_survives_a_killed_worker(small_source_cohort, small_target_cohort,
                                                 tmp_path: Path) -> None:
    """A worker killed mid-run breaks the process pool; the sweep retries the groups it took down
    (one process each) instead of failing every run that was still queued."""
    import multiprocessing
    import threading

    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    preset = load_preset("tiny").with_overrides(models=("graph",), settings=Setting.parse_list("000,001"),
                                                transfer=False)
    specs = expected_runs(preset, cohorts, "cpu")
    store = RunStore(tmp_path / "store")
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        Sweep(store, cohorts, device="cpu", embeddings=False).run(specs, workers=2)))
    thread.start()
    deadline = time.time() + 300
    killed = False
    seen: list = []
    while time.time() < deadline and thread.is_alive() and not killed:
        workers = multiprocessing.active_children()
        seen.append(len(workers))
        started = (store.root / "runs").is_dir() and any((store.root / "runs").iterdir())
        if workers and started:  # a pool worker is mid-run: kill the newest
            os.kill(workers[-1].pid, signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    thread.join(timeout=600)
    assert killed, f"no worker to kill: the sweep finished before a worker started a run {seen[-5:]} {result}"
    assert set(result.values()) == {"finished"}, result
    assert len(store.results_table()) == len(specs)


def test_parallel_sweep_does_not_rerun_the_callers_main_script(small_source_cohort, small_target_cohort,
                                                              tmp_path: Path, monkeypatch) -> None:
    """Spawned workers would re-run a ``__main__`` file (a script without a main guard, or a page
    AppTest installed there); the sweep spawns them with an empty ``__main__`` instead."""
    import types

    script = tmp_path / "caller.py"
    script.write_text("raise SystemExit('the caller script ran again inside a worker')\n")
    caller = types.ModuleType("__main__")
    caller.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", caller)
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    preset = load_preset("tiny").with_overrides(models=("graph",), settings=Setting.parse_list("000"),
                                                transfer=False)
    specs = expected_runs(preset, cohorts, "cpu")
    store = RunStore(tmp_path / "store")
    outcome = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs, workers=2)
    assert set(outcome.values()) == {"finished"}, [store.failure(r) for r in outcome]
    assert sys.modules["__main__"] is caller


def test_embedding_analysis_scope_defaults_to_the_first_seed(tmp_path: Path) -> None:
    """The embedding analysis (16% of a seed's CPU time) runs for the sweep's lowest seed unless asked
    for all; resolved over every expected run, so a resumed sweep keeps the same seed."""
    from hicd_core.experiments.sweep import embedding_seeds

    specs = {f"r{seed}{task}": RunSpec(model="bert", setting=Setting("011"), task=task, seed=seed,
                                       preset="cpu", scheme="ontology")
             for seed in (2, 1, 3) for task in ("readmission_30d", "emergency_next")}
    assert embedding_seeds("first-seed", specs) == (1,)
    assert embedding_seeds("all", specs) is True and embedding_seeds("none", specs) is False
    assert embedding_seeds((1,), {}) == (1,)  # already resolved (how workers and Slurm tasks get it)
    with pytest.raises(ValueError, match="embeddings must be one of"):
        embedding_seeds("some", specs)
    sweep = Sweep(RunStore(tmp_path / "store"), None)  # type: ignore[arg-type]
    sweep.embeddings = embedding_seeds(sweep.embeddings, specs)
    wanted = [sweep._wants_embeddings(spec) for spec in specs.values()]
    assert wanted == [False, False, True, True, False, False]
    assert "--embeddings" in _cli("sweep", "--help").stdout
