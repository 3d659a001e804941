"""Every app page through AppTest on the finished ``tiny_store`` bundle, plus the messages for a
wrong folder, a half-finished store and an empty one, and the background-training controls.

Training is never started for real here: ``background.start_sweep`` is replaced by a recorder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hicd_app import context
from hicd_core import synthetic
from hicd_core.analysis import charts, embedding_view
from hicd_core.experiments import background
from hicd_core.experiments.spec import PRESETS, SweepPreset


def load_preset_json(preset: SweepPreset) -> SweepPreset:
    return SweepPreset.from_dict(json.loads(preset.to_json()), preset.name)

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 180


def view(name: str) -> str:
    """A page script's path as AppTest.switch_page wants it (relative to app.py)."""
    return f"hicd_app/views/{name}.py"


def _texts(at: AppTest) -> str:
    """All visible text of a run (titles, headers, markdown, captions, alerts, metric labels)."""
    parts = []
    kinds = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success")
    for kind in kinds:
        parts += [str(element.value) for element in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def _open(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    if page is not None:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, SweepPreset]]:
    """Record start_sweep calls instead of starting a training process."""
    recorded: list[tuple[Path, SweepPreset]] = []

    def fake_start(root: Path, preset: SweepPreset) -> bool:
        recorded.append((Path(root), preset))
        return True

    monkeypatch.setattr(background, "start_sweep", fake_start)
    return recorded


@pytest.fixture
def app_env(tiny_store, monkeypatch: pytest.MonkeyPatch, calls):
    monkeypatch.setenv(context.STORE_ENV, str(tiny_store.root))
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "1")
    return tiny_store


def test_overview(app_env) -> None:
    at = _open()
    text = _texts(at)
    assert at.title[0].value == "Overview"
    assert "SYNTHETIC" in text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Finished runs"] == "16"  # 4 settings x 2 models x (task + transfer)
    assert metrics["Not trained yet"] == "16"  # the other 4 settings of the same grid
    assert metrics["Failed runs"] == "0"
    assert "Not trained: " in text and "G0+G1" in text
    assert any(m.label.startswith("HICD-BERT · readmission_30d") for m in at.metric)  # headline
    assert len(at.dataframe) >= 3  # cohort summary, tasks, headline
    assert "Patients" in metrics or any(m.label == "Patients" for m in at.metric)


def test_level_ablation_interactions(app_env, calls) -> None:
    at = _open(view("level_ablation"))
    assert at.title[0].value == "Level ablation"
    assert "SYNTHETIC" in _texts(at)
    assert at.subheader[0].value == "AUROC by hierarchy setting: readmission_30d"
    assert "DeLong 95% CI" in _texts(at)
    at.radio(key="abl_metric").set_value("macro_f1").run()
    assert at.subheader[0].value == "macro-F1 by hierarchy setting: readmission_30d"
    assert "bootstrap 95% CI" in _texts(at)
    transfer = next(o for o in at.selectbox(key="abl_task").options if "->" in o)
    at.selectbox(key="abl_task").set_value(transfer).run()
    assert at.subheader[0].value == f"macro-F1 by hierarchy setting: {transfer}"
    assert charts.PAPER_LABEL not in _texts(at)
    at.toggle(key="abl_paper").set_value(True).run()
    assert charts.PAPER_LABEL in _texts(at)
    assert "Holm corrects" in _texts(at)
    at.radio(key="abl_marks").set_value("raw p").run()
    assert "uncorrected, as the paper marks it" in _texts(at)
    at.radio(key="abl_metric").set_value("auprc").run()
    assert "The paper reports no AUPRC" in _texts(at)
    assert not at.exception

    # Training what is missing: the button starts a background sweep of exactly those runs.
    assert at.multiselect(key="abl_train_settings").value == ["100", "010", "110", "101"]
    button = at.button(key="abl_train")
    assert not button.disabled
    button.click().run()
    assert not at.exception
    root, preset = calls[-1]
    assert root == app_env.root
    assert preset.settings == ("100", "010", "110", "101")
    assert preset.tasks == ("readmission_30d",)
    assert preset.seeds == (0,)
    assert preset.epochs_scale == 0.34  # the model sizes of the store's runs, so the new runs compare
    assert preset.cohort.startswith("mimic-iv:")
    assert load_preset_json(preset) == preset  # what the background process reads back
    assert "Training started in the background" in _texts(at)


def test_embeddings_page(app_env) -> None:
    at = _open(view("embeddings"))
    assert at.title[0].value == "Code embeddings"
    assert "SYNTHETIC" in _texts(at)
    assert at.selectbox(key="emb_model").value == "graph"
    assert at.selectbox(key="emb_left").value == "000" and at.selectbox(key="emb_right").value == "011"
    code = at.selectbox(key="emb_code").value
    heads = [m.value for m in at.markdown if m.value.startswith("**Nearest neighbours")]
    assert heads == [f"**Nearest neighbours of {code} under none (flat)**",
                     f"**Nearest neighbours of {code} under G1+G2**"]
    subheaders = [s.value for s in at.subheader]
    assert "Cosine similarity by relationship, across settings" in subheaders
    summaries = embedding_view.stored_embedding_summaries(app_env.finished_runs(), "graph",
                                                          "readmission_30d", 0)
    tight, wide = embedding_view.tightness_frames(summaries)  # what the bars and heatmap draw
    assert list(tight.index) == ["000", "001", "011", "111"] and tight["tightness"].notna().all()
    assert wide.notna().any().all()
    assert "Tightness vs AUROC" in subheaders
    at.selectbox(key="emb_right").set_value("111").run()
    assert any(m.value == f"**Nearest neighbours of {code} under G0+G1+G2**" for m in at.markdown)
    other = next(c for c in at.selectbox(key="emb_code").options if not c.startswith(code))
    at.selectbox(key="emb_code").set_value(other.split(" — ")[0]).run()
    assert not at.exception
    assert any(f"Nearest neighbours of {other.split(' — ')[0]} under" in m.value for m in at.markdown)
    at.selectbox(key="emb_model").set_value("bert").run()
    assert not at.exception and at.selectbox(key="emb_model").value == "bert"


def test_transfer_page(app_env) -> None:
    at = _open(view("transfer"))
    assert at.title[0].value == "Transfer"
    text = _texts(at)
    assert "SYNTHETIC" in text and "Code coverage behind the transfer" in text
    assert "Probe AUROC on the target site, per setting" in text
    assert "DeLong" in text and charts.PAPER_LABEL not in text
    at.toggle(key="tr_paper").set_value(True).run()
    assert "published eICU numbers" in _texts(at)
    at.radio(key="tr_metric").set_value("macro_f1").run()
    assert "Probe macro-F1 on the target site, per setting" in _texts(at)
    assert not at.exception
    assert len(at.dataframe) >= 2  # difference to flat + coverage


def test_tree_page_cohort_colours_search_and_graph(app_env) -> None:
    at = _open(view("icd_tree"))
    assert at.title[0].value == "ICD-10-CM tree"
    assert "SYNTHETIC" in _texts(at)
    assert at.selectbox(key="tree_site").value == "mimic-iv"
    assert "diagnosis occurrences in the cohort" in _texts(at)
    at.selectbox(key="tree_colour").set_value("outcome rate").run()
    assert "share of positive readmission_30d samples" in _texts(at)
    at.text_input(key="tree_search").input("I21").run()
    assert not at.exception
    text = _texts(at)
    assert "Acute myocardial infarction" in text and "I20-I25" in text
    labels = [m.label for m in at.metric]
    assert "Occurrences in cohort" in labels and "Patients" in labels and "readmission_30d rate" in labels
    # The graph around the selected category, for the chosen setting.
    assert at.text_input(key="tree_graph_code").value == "I21"
    assert "nodes around I21" in _texts(at) and "G0+G1+G2" in _texts(at)
    at.selectbox(key="tree_graph_setting").set_value("000").run()
    assert "setting none (flat)" in _texts(at)
    at.text_input(key="tree_graph_code").input("ZZZ9").run()
    assert not at.exception and "Try a category" in _texts(at)
    at.text_input(key="tree_search").input("zzzz no such words").run()
    assert any("No ICD-10-CM code or title matches" in i.value for i in at.info)


def test_tree_mean_attribution_colour(app_env) -> None:
    at = _open(view("icd_tree"))
    at.selectbox(key="tree_colour").set_value("mean attribution").run()
    assert not at.exception
    assert "press Compute" in _texts(at)  # integrated gradients only on request
    runs = app_env.results_table()
    graph_run = runs[(runs["model"] == "graph") & (runs["kind"] == "task") & (runs["setting"] == "111")]
    at.selectbox(key="tree_attr_run").set_value(graph_run["run_id"].item())
    at.select_slider(key="tree_attr_n").set_value(10)
    at.button(key="tree_attr_go").click().run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "press Compute" not in text and "could not be computed" not in text
    assert "mean integrated-gradients attribution" in text
    at.selectbox(key="tree_site").set_value("eicu").run()  # not the cohort the runs were trained on
    assert "Mean attributions are not available for this cohort" in _texts(at)


def test_wrong_store_folder_gives_messages(app_env, tmp_path: Path) -> None:
    at = _open(view("level_ablation"))
    at.radio(key="store_mode").set_value("Another folder").run()
    at.text_input(key="store_path").input(str(tmp_path / "does-not-exist")).run()
    assert not at.exception
    assert any("No folder at" in e.value for e in at.error)
    assert any("No usable run store" in w.value for w in at.warning)
    (tmp_path / "notes.txt").write_text("not a store")
    at.text_input(key="store_path").input(str(tmp_path)).run()
    assert any("is not a run store" in e.value for e in at.error)
    for page in (view("overview"), view("embeddings"), view("transfer"), view("icd_tree")):
        at.switch_page(page).run()
        assert not at.exception, page


def test_half_finished_store_without_results_table(app_env, tmp_path: Path) -> None:
    """A store copied mid-sweep: a few runs, no results.parquet; pages explain, nothing breaks."""
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(app_env.root / "store.json", half / "store.json")
    kept = [p for p in sorted((app_env.root / "runs").iterdir()) if p.name.startswith("bert-000-")
            or p.name.startswith("graph-011-")]
    for path in kept:
        shutil.copytree(path, half / "runs" / path.name)
    at = _open()
    at.radio(key="store_mode").set_value("Another folder").run()
    at.text_input(key="store_path").input(str(half)).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Finished runs"] == "2" and metrics["Not trained yet"] == "14"
    assert "A headline needs the flat (000) run" in _texts(at)
    for page in (view("level_ablation"), view("embeddings"), view("transfer"), view("icd_tree")):
        at.switch_page(page).run()
        assert not at.exception, page
    at.switch_page(view("transfer")).run()
    assert "No transfer runs in this store yet" in _texts(at)
    at.switch_page(view("level_ablation")).run()
    assert "No comparison yet" in _texts(at)


def test_empty_user_store_offers_a_button_and_never_autotrains(tiny_store, monkeypatch, calls,
                                                               tmp_path: Path) -> None:
    monkeypatch.setenv(context.STORE_ENV, str(tiny_store.root))
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "0")  # auto-start allowed, yet not for these stores
    empty = tmp_path / "mine"
    empty.mkdir()
    at = _open(view("level_ablation"))
    at.radio(key="store_mode").set_value("Another folder").run()
    at.text_input(key="store_path").input(str(empty)).run()
    assert not at.exception
    assert "No finished runs in this store yet" in _texts(at)
    assert calls == []  # neither the tiny store nor the user's folder was trained automatically
    # A folder outside the data directory is written to only after the user confirms that exact path.
    assert at.button(key="train_default").disabled
    confirm = next(box for box in at.checkbox if box.key.startswith("train_default_confirm_"))
    assert str(empty.resolve()) in confirm.label
    confirm.check().run()
    at.button(key="train_default").click().run()
    assert calls == [(empty, PRESETS["default"])]


def test_first_launch_on_default_bundle_autostarts_once(monkeypatch, calls, tmp_path: Path) -> None:
    root = tmp_path / "default-bundle"
    monkeypatch.setenv(context.STORE_ENV, str(root))
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "0")  # explicitly on (off by default under pytest)
    monkeypatch.setattr(synthetic, "default_root", lambda *a, **k: tmp_path / "no-synthetic-yet")
    monkeypatch.setattr(background, "is_running", lambda store_root: False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["data_mode"] = "folders"  # keep the test from generating the synthetic default
    at.run()
    assert not at.exception, at.exception
    assert calls == [(root, PRESETS["default"])]
    assert "Started training the default bundle" in _texts(at)
    at.run()
    assert len(calls) == 1  # once per server process, never a restart loop
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "1")
    other = tmp_path / "other-bundle"
    monkeypatch.setenv(context.STORE_ENV, str(other))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["data_mode"] = "folders"
    at.run()
    assert len(calls) == 1  # HICD_NO_AUTOTRAIN=1 disables it
    assert at.button(key="train_default")  # ... and offers a button instead


def test_autotrain_off_by_default_under_pytest(monkeypatch) -> None:
    monkeypatch.delenv(context.NO_AUTOTRAIN_ENV, raising=False)
    assert context.autotrain_disabled()  # a test that forgets the flag never spawns training
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "0")
    assert not context.autotrain_disabled()
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "1")
    assert context.autotrain_disabled()


def test_wrong_data_folders_give_errors(app_env, tmp_path: Path) -> None:
    at = _open()
    at.selectbox(key="data_mode").set_value("folders").run()
    assert "Name the MIMIC-IV root or its hosp/ folder" in _texts(at)
    at.text_input(key="data_source").input(str(tmp_path / "missing")).run()
    assert any("MIMIC-IV: no folder at" in e.value for e in at.error)
    (tmp_path / "empty-site").mkdir()
    at.text_input(key="data_eicu").input(str(tmp_path / "empty-site")).run()
    assert any("eICU folder" in e.value and "cannot be used" in e.value for e in at.error)
    assert not at.exception
    assert "No cohort is loaded" in _texts(at)


@pytest.mark.parametrize("bad", ["/tmp/with\x00nul", "/tmp/" + "x" * 300 + "/store", "~/" + "é" * 200])
def test_odd_paths_give_messages_not_crashes(app_env, bad: str) -> None:
    at = _open(view("level_ablation"))
    at.radio(key="store_mode").set_value("Another folder").run()
    at.text_input(key="store_path").input(bad).run()
    assert not at.exception, at.exception
    assert at.error and any("No usable run store" in w.value for w in at.warning)
    at.switch_page(view("overview")).run()
    at.selectbox(key="data_mode").set_value("folders").run()
    at.text_input(key="data_source").input(bad).run()
    at.text_input(key="data_eicu").input(bad).run()
    assert not at.exception, at.exception
    assert sum("MIMIC-IV" in e.value or "eICU" in e.value for e in at.error) >= 2
