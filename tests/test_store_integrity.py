"""A tamper-evident run store: every artifact kind truncated, flipped and deleted on a copy of the
tiny store; report, verify and the sweep respond with a named message, and no damaged number reaches
a comparison. Also the pieces: manifests, verified reads, a damaged store.json or failure record."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hicd_core.checksums import DamagedArtifactError, read_verified, verify_folder, write_manifest
from hicd_core.experiments import report
from hicd_core.experiments.runstore import RunStore, StoreFileError
from hicd_core.experiments.store_status import verify_store

REPO = Path(__file__).resolve().parents[1]
KINDS = ("predictions.parquet", "metrics.json", "run.json", "manifest.json", "model/model.safetensors",
         "model/config.json", "embeddings.npy")


def _flip(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - n // 2)
    for i in range(start, min(len(data), start + n)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage(path: Path, how: str) -> None:
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        _flip(path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hicd_core", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def store_copy(tiny_store, tmp_path: Path) -> RunStore:
    shutil.copytree(tiny_store.root, tmp_path / "store")
    return RunStore(tmp_path / "store")


def _flat_run(store: RunStore) -> str:
    table = store.results_table()
    row = table[(table["model"] == "bert") & (table["kind"] == "task") & (table["setting"] == "000")]
    return row["run_id"].item()


# ----------------------------------------------------------------------------------- the pieces
def test_manifest_catches_flips_truncation_and_deletion(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub" / "b.json").write_text("{}")
    write_manifest(tmp_path)
    assert verify_folder(tmp_path) == [] and read_verified(tmp_path, "a.bin") == b"x" * 100
    _flip(tmp_path / "a.bin", 4)
    assert [p.file for p in verify_folder(tmp_path)] == ["a.bin"]
    with pytest.raises(DamagedArtifactError, match="does not match its checksum"):
        read_verified(tmp_path, "a.bin")
    (tmp_path / "sub" / "b.json").unlink()
    assert {p.file: p.reason for p in verify_folder(tmp_path)}["sub/b.json"] == "missing"
    (tmp_path / "manifest.json").write_text("{not json")
    assert verify_folder(tmp_path)[0].file == "manifest.json"
    assert verify_folder(tmp_path, required=("a.bin",))[0].reason.startswith("unreadable")


def test_every_tiny_store_run_verifies(tiny_store) -> None:
    finished, damaged = tiny_store.scan()
    assert len(finished) == 16 and damaged == []
    assert verify_store(tiny_store).empty


# ------------------------------------------------------------------ flipped predictions: the issue
def test_flipped_flat_predictions_never_reach_a_comparison(store_copy: RunStore) -> None:
    flat = _flat_run(store_copy)
    before = report.comparisons(store_copy, n_resamples=50)
    assert ((before["model"] == "bert") & (before["evaluation"] == "readmission_30d")).any()
    _flip(store_copy.run_dir(flat) / "predictions.parquet")
    fresh = RunStore(store_copy.root)
    assert not fresh.is_finished(flat)
    [damaged] = fresh.damaged_runs()
    assert damaged.run_id == flat and damaged.file == "predictions.parquet"
    assert "sweep" in damaged.message  # says what to do
    assert flat not in set(report.results(fresh)["run_id"])
    after = report.comparisons(fresh, n_resamples=50)
    # Without its flat run, the group is not compared at all (rather than against damaged numbers).
    assert not ((after["model"] == "bert") & (after["evaluation"] == "readmission_30d")).any()
    listing = fresh.listing()
    assert listing.set_index("run_id").loc[flat, "status"] == "damaged"
    with pytest.raises(DamagedArtifactError):
        fresh.predictions(flat)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_artifact_kind_damaged_is_named(store_copy: RunStore, kind: str, how: str) -> None:
    flat = _flat_run(store_copy)
    path = store_copy.run_dir(flat) / kind
    assert path.is_file(), kind
    _damage(path, how)
    fresh = RunStore(store_copy.root)
    damaged = {d.run_id: d for d in fresh.damaged_runs()}
    assert flat in damaged and damaged[flat].file == kind, damaged
    assert len(fresh.finished_runs()) == 15
    problems = verify_store(fresh)
    assert f"runs/{flat}/{kind}" in set(problems["path"])


def test_report_and_verify_cli_on_a_damaged_store(store_copy: RunStore) -> None:
    flat = _flat_run(store_copy)
    _flip(store_copy.run_dir(flat) / "model" / "model.safetensors")
    out = _cli("verify", "--store", str(store_copy.root))
    assert out.returncode == 1 and f"runs/{flat}/model/model.safetensors" in out.stdout
    assert "Traceback" not in out.stderr
    rep = _cli("report", "--store", str(store_copy.root), "--resamples", "20")
    assert rep.returncode == 0, rep.stderr  # the rest is reported
    assert f"DAMAGED run {flat}: model/model.safetensors" in rep.stderr
    (store_copy.root / "store.json").write_text('{"truncated": ')
    rep = _cli("report", "--store", str(store_copy.root), "--resamples", "20", "--json")
    assert rep.returncode == 0 and "store.json is damaged" in rep.stderr
    assert json.loads(rep.stdout)["damaged"][0]["run_id"] == flat
    ok = _cli("verify", "--store", str(RunStore(store_copy.root).root))
    assert ok.returncode == 1 and "store.json" in ok.stdout


def test_flipped_weights_never_load(store_copy: RunStore) -> None:
    from hicd_core.experiments.families import FAMILIES
    from hicd_core.models.common import ArtifactError

    flat = _flat_run(store_copy)
    model_dir = store_copy.run_dir(flat) / "model"
    FAMILIES["bert"].load(model_dir, "cpu")  # loads while intact
    _flip(model_dir / "model.safetensors", 16)
    with pytest.raises(ArtifactError, match=r"model\.safetensors.*checksum"):
        FAMILIES["bert"].load(model_dir, "cpu")


def test_damaged_store_json_and_failure_record_never_abort(store_copy: RunStore) -> None:
    (store_copy.root / "store.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(StoreFileError, match=r"store\.json is damaged"):
        store_copy.store_info()
    (store_copy.root / "failed").mkdir(exist_ok=True)
    (store_copy.root / "failed" / "bert-xyz.json").write_text("[1, 2")
    assert "unreadable" in store_copy.failure("bert-xyz")["error"]
    assert len(store_copy.finished_runs()) == 16  # the runs themselves are fine
    paths = set(verify_store(store_copy)["path"])
    assert {"store.json", "failed/bert-xyz.json"} <= paths


def test_a_run_without_required_files_is_not_finished(store_copy: RunStore) -> None:
    flat = _flat_run(store_copy)
    folder = store_copy.run_dir(flat)
    (folder / "metrics.json").unlink()
    write_manifest(folder)  # even a manifest rewritten without it: metrics.json is required
    fresh = RunStore(store_copy.root)
    assert not fresh.is_finished(flat)
    assert fresh.damaged_runs()[0].file == "metrics.json"
