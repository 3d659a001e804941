"""Every page on a run store with damaged files: a clear message naming the run and the file, the
rest of the page still works, and no page raises."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hicd_app import context
from hicd_core.experiments.runstore import RunStore

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ("overview", "icd_tree", "level_ablation", "embeddings", "transfer", "patient")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 32] = bytes(b ^ 0xFF for b in data[middle: middle + 32])
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged_store(tiny_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RunStore, list[str]]:
    store = RunStore(shutil.copytree(tiny_store.root, tmp_path / "store"))
    table = store.results_table()
    task = table[table["kind"] == "task"].set_index(["model", "setting"])["run_id"]
    flat_bert, graph_all = task[("bert", "000")], task[("graph", "111")]
    _flip(store.run_dir(flat_bert) / "predictions.parquet")
    _flip(store.run_dir(graph_all) / "model" / "model.safetensors")
    monkeypatch.setenv(context.STORE_ENV, str(store.root))
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "1")
    return store, [flat_bert, graph_all]


def test_pages_name_the_damage_and_keep_working(damaged_store) -> None:
    _, damaged = damaged_store
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Damaged runs"] == "2" and metrics["Finished runs"] == "14"
    errors = " ".join(e.value for e in at.error)
    assert damaged[0] in errors and "predictions.parquet" in errors and "sweep" in errors
    at.button(key="overview_verify").click().run()
    assert not at.exception
    assert any("2 damaged file(s)" in e.value for e in at.error)
    for page in PAGES[1:]:
        at.switch_page(f"hicd_app/views/{page}.py").run()
        assert not at.exception, (page, at.exception)
