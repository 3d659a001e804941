"""The Patient page through AppTest, run on its own (it draws the shared sidebar itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hicd_core.analysis import patient_view as view

PAGE = str(Path(__file__).resolve().parents[2] / "hicd_app" / "views" / "patient.py")
TASK = "readmission_30d"


def _page(monkeypatch: pytest.MonkeyPatch, store_root: Path) -> AppTest:
    monkeypatch.setenv("HICD_STORE", str(store_root))
    monkeypatch.setenv("HICD_NO_AUTOTRAIN", "1")
    return AppTest.from_file(PAGE, default_timeout=120)


def test_patient_page_missing_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = _page(monkeypatch, tmp_path / "nowhere").run()
    assert not at.exception
    assert any("No run store" in i.value for i in at.info)


def test_patient_page(monkeypatch: pytest.MonkeyPatch, tiny_store, small_source_cohort) -> None:
    at = _page(monkeypatch, tiny_store.root).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Patient explanations"
    assert any("SYNTHETIC" in w.value for w in at.warning)
    labels = [m.label for m in at.metric]
    assert len(labels) == 4 and labels[0] == "none (flat)" and "G0+G1+G2" in labels[-1]
    assert all(0.0 <= float(m.value) <= 1.0 for m in at.metric)
    assert all(m.proto.help.startswith("calibrated risk (Platt scaling") for m in at.metric)
    assert any(c.value.startswith("Risks are calibrated probabilities") for c in at.caption)
    heading = at.subheader[0].value
    assert heading.startswith("Patient ")

    picker = at.selectbox(key="pt_sample")
    current = picker.value
    first_run = view.runs_by_setting(view.task_runs(tiny_store), "bert", TASK, 0)["000"]
    cands = view.test_candidates(tiny_store, first_run, small_source_cohort, TASK)
    other = int(cands.loc[cands["sample_id"] != current, "sample_id"].iloc[-1])
    picker.set_value(other).run()
    assert not at.exception, at.exception
    assert at.subheader[0].value != heading and f"sample {other}" in at.subheader[0].value
    metric_values = [m.value for m in at.metric]
    assert len(metric_values) == 4

    at.text_input(key="review_name").input("Dr Page Test")
    at.radio(key="review_verdict").set_value("implausible")
    at.text_area(key="review_comment").input("G2 drives it")
    at.button(key="review_save").click().run()
    assert not at.exception, at.exception
    assert any("Review saved" in s.value for s in at.success)
    shown = at.dataframe[-1].value
    assert "Dr Page Test" in shown["reviewer"].tolist() and "implausible" in shown["verdict"].tolist()

    at.text_input(key="review_name").input("")
    at.button(key="review_save").click().run()
    assert any("reviewer name is required" in e.value for e in at.error)


def test_deep_explanation_beside_the_exact_counts_lr_one(monkeypatch: pytest.MonkeyPatch, tiny_store,
                                                          small_source_cohort, small_target_cohort,
                                                          tmp_path: Path) -> None:
    """A store with HICD-BERT and counts-lr runs of the same settings: the Patient page puts counts-lr's
    exact shares next to HICD-BERT's integrated gradients, per tree node."""
    import shutil

    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs

    store = RunStore(shutil.copytree(tiny_store.root, tmp_path / "store"))
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    settings = ("000", "001", "011", "111")  # tiny_store's (conftest.TINY_SETTINGS)
    preset = load_preset("tiny").with_overrides(models=("counts-lr",), settings=settings, transfer=False)
    specs = expected_runs(preset, cohorts, "cpu")
    outcome = Sweep(store, cohorts, device="cpu", embeddings="none").run(specs)
    assert set(outcome.values()) == {"finished"}, outcome
    at = _page(monkeypatch, store.root).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="pt_model").value == "bert"
    assert any("Beside the exact explanation of the counts-lr baseline" in m.value for m in at.markdown)
    compared = [frame.value for frame in at.dataframe if "counts-lr exact" in frame.value.columns]
    assert compared and len(compared[0]) > 0 and compared[0]["counts-lr exact"].notna().any()
    assert any("counts-lr's exact shares" in c.value for c in at.caption)
