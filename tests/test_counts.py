"""The counts baseline: roll-up features by hand, exact contributions, transfer through ancestors,
artifacts, and a tiny sweep through the report and the patient explanation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core.cohort.schema import Cohort
from hicd_core.hierarchy import SETTINGS, Setting
from hicd_core.hierarchy.bulk import normalize_codes
from hicd_core.models.counts import build_vocab, rollup_matrix, sample_features, visit_features

# (patient, split, [visit codes...]); "XYZ" does not resolve to any ICD-10-CM code.
TINY = [
    (0, "train", [["I214", "E119"], ["I219", "I214"]]),
    (1, "train", [["E119", "I10"]]),
    (2, "val", [["I219", "E780"]]),
    (3, "test", [["I213"], ["XYZ"]]),
]


def tiny_cohort(rows: list = TINY, fingerprint: str = "tiny") -> Cohort:
    """A hand-made cohort: one sample per visit of task ``t`` (label = visit index parity)."""
    visits, diagnoses = [], []
    for patient, _, patient_visits in rows:
        for index, codes in enumerate(patient_visits):
            visit_id = len(visits)
            visits.append({"visit_id": visit_id, "patient_id": patient, "visit_index": index})
            diagnoses += [
                {"visit_id": visit_id, "patient_id": patient, "seq": seq, "raw_code": code}
                for seq, code in enumerate(codes)
            ]
    diag = pd.DataFrame(diagnoses)
    norm = normalize_codes(diag["raw_code"].tolist(), [10] * len(diag))
    diag = pd.concat([diag, norm[["icd10", "chapter", "block", "category", "status"]]], axis=1)
    diag["icd_version"] = np.int8(10)
    patients = pd.DataFrame({"patient_id": [r[0] for r in rows], "split": [r[1] for r in rows]})
    visits = pd.DataFrame(visits)
    samples = visits.merge(patients, on="patient_id").assign(
        label=lambda f: (f["visit_index"] % 2).astype(np.int8)
    )
    samples.insert(0, "sample_id", np.arange(len(samples)))
    return Cohort(
        site="mimic-iv",
        patients=patients,
        visits=visits,
        diagnoses=diag,
        tasks={"t": samples},
        fingerprint=fingerprint,
    )


#: Every feature of every sample of TINY under setting 111, counted by hand. Train vocabulary: codes
#: E119 (2), I214 (2), I10 (1), I219 (1) after [UNK]; nodes from train only (IV, IX; E08-E13, I10-I1A,
#: I20-I25; E11, I10, I21). E780 (val) and I213 (test) are unseen codes: [UNK] plus their seen ancestors.
HAND = {
    0: {
        "code:I214": 1,
        "code:E119": 1,
        "G0:IX": 1,
        "G0:IV": 1,
        "G1:I20-I25": 1,
        "G1:E08-E13": 1,
        "G2:I21": 1,
        "G2:E11": 1,
    },
    1: {
        "code:I214": 2,
        "code:E119": 1,
        "code:I219": 1,
        "G0:IX": 3,
        "G0:IV": 1,
        "G1:I20-I25": 3,
        "G1:E08-E13": 1,
        "G2:I21": 3,
        "G2:E11": 1,
    },
    2: {
        "code:E119": 1,
        "code:I10": 1,
        "G0:IV": 1,
        "G0:IX": 1,
        "G1:E08-E13": 1,
        "G1:I10-I1A": 1,
        "G2:E11": 1,
        "G2:I10": 1,
    },
    3: {"code:I219": 1, "code:[UNK]": 1, "G0:IX": 1, "G0:IV": 1, "G1:I20-I25": 1, "G2:I21": 1},
    4: {"code:[UNK]": 1, "G0:IX": 1, "G1:I20-I25": 1, "G2:I21": 1},
    5: {"code:[UNK]": 2, "G0:IX": 1, "G1:I20-I25": 1, "G2:I21": 1},
}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_features_by_hand_for_every_setting(setting: Setting) -> None:
    cohort = tiny_cohort()
    assert build_vocab(cohort, setting).codes == ["[UNK]", "E119", "I214"]  # MIN_COUNT 2: I10, I219 -> [UNK]
    vocab = build_vocab(cohort, setting, min_count=1)
    assert vocab.codes == ["[UNK]", "E119", "I214", "I10", "I219"]
    names = vocab.feature_names()
    assert len(names) == vocab.n_features == 5 + sum({"G0": 2, "G1": 3, "G2": 3}[lv] for lv in setting.levels)
    matrix = sample_features(visit_features(cohort, vocab), cohort.tasks["t"]).toarray()
    for sample, counts in HAND.items():
        expected = np.zeros(len(names))
        for name, value in counts.items():
            level = name.split(":")[0]
            if level == "code" or level in setting.levels:
                expected[names.index(name)] = value
        np.testing.assert_array_equal(matrix[sample], expected, err_msg=f"sample {sample}, setting {setting}")


def test_rollup_matrix_by_hand() -> None:
    vocab = build_vocab(tiny_cohort(), Setting.ALL, min_count=1)
    codes = ["I214", "I213", "E119", "E780", "Z999"]  # I213 / E780 unseen: ancestors only where seen
    g2 = rollup_matrix(vocab, codes, "G2").toarray()
    assert vocab.nodes["G2"] == ["G2:E11", "G2:I10", "G2:I21"]
    np.testing.assert_array_equal(g2, [[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    g0 = rollup_matrix(vocab, codes, "G0").toarray()
    np.testing.assert_array_equal(g0, [[0, 1], [0, 1], [1, 0], [1, 0], [0, 0]])  # E780 is in chapter IV
    # The roll-up block of the features equals code-occurrence counts x this matrix (sample 1).
    occurrences = np.array([[2, 0, 1, 0, 0]])  # I214 twice, E119 once (I219 adds its own I21 below)
    assert (occurrences @ g2).tolist() == [[1, 0, 2]]


def test_contributions_sum_to_the_logit_and_round_trip(small_source_cohort, tmp_path: Path) -> None:
    from hicd_core.analysis.counts_attributions import counts_attributions
    from hicd_core.models.counts_train import load_counts, prepare_features, train_counts

    prepared = prepare_features(small_source_cohort, Setting.ALL)
    model = train_counts(prepared, small_source_cohort, "readmission_30d", estimator="lr", seed=0)
    test = model.predict(small_source_cohort, "readmission_30d", "test")
    assert test["prob"].between(0, 1).all() and model.metrics["validation"]["auroc"] > 0.55
    ids = test["sample_id"].to_numpy()[:5]
    for attr in counts_attributions(model, small_source_cohort, "readmission_30d", ids):
        logit = float(test.set_index("sample_id").loc[attr.sample_id, "logit"])
        assert attr.logit == pytest.approx(logit, abs=1e-9)
        assert attr.table["attr_total"].sum() == pytest.approx(logit - attr.baseline_logit, abs=1e-9)
        assert abs(attr.delta) < 1e-9 and set(attr.components) == {"code", "G0", "G1", "G2"}
    loaded = load_counts(model.save(tmp_path / "model"))
    again = loaded.predict(small_source_cohort, "readmission_30d", "test")
    np.testing.assert_array_equal(again["logit"].to_numpy(), test["logit"].to_numpy())
    assert loaded.threshold == model.threshold and loaded.vocab.to_json() == model.vocab.to_json()
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib") for p in (tmp_path / "model").iterdir())


def test_gbm_trees_predict_like_sklearn_and_round_trip(
    small_source_cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from hicd_core.models.counts_train import (
        _dump_trees,
        load_counts,
        prepare_features,
        train_counts,
        trees_logit,
    )

    rng = np.random.default_rng(0)
    x = rng.poisson(0.7, size=(400, 12)).astype(np.float64)
    y = (x[:, 0] + x[:, 3] + rng.normal(size=400) > 1.5).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=15, random_state=0, early_stopping=False).fit(x, y)
    np.testing.assert_allclose(trees_logit(_dump_trees(clf, 15), x), clf.decision_function(x), atol=1e-9)
    from hicd_core.models import counts_train

    monkeypatch.setattr(counts_train, "GBM_MAX_ITER", 12)  # the round trip, not the model's quality
    prepared = prepare_features(small_source_cohort, Setting.G2)
    model = train_counts(prepared, small_source_cohort, "readmission_30d", estimator="gbm", seed=0)
    assert 1 <= model.metrics["chosen"]["n_trees"] <= 12
    test = model.predict(small_source_cohort, "readmission_30d", "test")
    loaded = load_counts(model.save(tmp_path / "gbm"))
    np.testing.assert_array_equal(
        loaded.predict(small_source_cohort, "readmission_30d", "test")["logit"], test["logit"]
    )


def test_transfer_reads_unseen_codes_through_their_ancestors(
    small_source_cohort, small_target_cohort
) -> None:
    from hicd_core.models.counts_train import CountsModel, transfer_counts

    source = tiny_cohort()
    vocab = build_vocab(source, Setting.G2, min_count=1)
    coef = np.zeros(vocab.n_features)
    coef[vocab.feature_names().index("G2:I21")] = 1.5
    model = CountsModel("lr", vocab, {"coef": coef, "intercept": np.array([-1.0])})
    # Another site whose codes are all unseen at the source: only the category reaches the model.
    target = tiny_cohort([(0, "train", [["I213", "I211"]]), (1, "test", [["E785"]])], fingerprint="target")
    pred = model.predict(target, "t")
    assert pred["logit"].tolist() == [pytest.approx(-1.0 + 2 * 1.5), pytest.approx(-1.0)]
    _ids, x = model.encode(target, "t")
    assert x[0, 0] == 2  # both codes are [UNK] at the code level
    # End to end on the synthetic two sites: probe and the source model as is, both labelled.
    from hicd_core.models.counts_train import prepare_features, train_counts

    trained = train_counts(
        prepare_features(small_source_cohort, Setting.ALL), small_source_cohort, "readmission_30d", seed=0
    )
    metrics, predictions = transfer_counts(trained, small_target_cohort, "icu_readmission")
    assert "probe" in metrics["protocol"] and "as is" in metrics["source_model_direct"]["protocol"]
    assert 0 < metrics["target_unk_code_share"] < 1
    assert {"prob", "prob_source_model", "prob_calibrated"} <= set(predictions.columns)
    assert 0 <= metrics["test"]["auroc"] <= 1 and 0 <= metrics["source_model_direct"]["test"]["auroc"] <= 1


def test_tiny_counts_sweep_through_report_and_patient(
    small_source_cohort, small_target_cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hicd_core.analysis import attributions as attr_lib
    from hicd_core.experiments import report
    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.spec import PRESETS, load_preset
    from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs

    assert "counts-lr" in PRESETS["default"].models and "counts-gbm" not in PRESETS["default"].models
    store = RunStore(tmp_path / "store")
    preset = load_preset("tiny").with_overrides(
        models=("counts-lr",), settings=Setting.parse_list("000,011,111")
    )
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    specs = expected_runs(preset, cohorts, "cpu")
    assert {spec.scheme for spec in specs.values()} == {"ontology"} and len(specs) == 6
    outcome = Sweep(store, cohorts, device="cpu").run(specs, workers=1)
    assert set(outcome.values()) == {"finished"}, [store.failure(k) for k in outcome]
    table = report.results(store)
    assert set(table["model"]) == {"counts-lr"} and set(table["kind"]) == {"task", "transfer"}
    compared = report.comparisons(store, n_resamples=50)
    assert len(compared) == 2 * 2 and not report.across_seeds(compared).empty
    for run_id, spec in specs.items():
        folder = store.run_dir(run_id)
        assert not (folder / "embeddings.npy").exists()
        metrics = json.loads((folder / "metrics.json").read_text())
        if spec.kind == "transfer":
            assert "source_model_direct" in metrics
    runs = {spec.setting.key: run_id for run_id, spec in specs.items() if spec.kind == "task"}
    sample = int(store.predictions(runs["111"])["sample_id"].iloc[0])
    patient = attr_lib.explain_patient(store, runs, small_source_cohort, "readmission_30d", sample)
    assert patient.model == "counts-lr" and set(patient.attributions) == {"000", "011", "111"}
    for attr in patient.attributions.values():
        assert abs(attr.delta) < 1e-9
        assert attr.prob == pytest.approx(
            float(patient.risks.set_index("setting").loc[attr.setting, "stored_prob"])
        )
    tree = attr_lib.rollup_tree(patient.attributions["111"])
    assert tree.loc[tree["id"] == attr_lib.ROLLUP_ROOT, "value"].item() == pytest.approx(
        patient.attributions["111"].attr_sum
    )
    from hicd_core.analysis.patient_view import rollup_comparison

    side = rollup_comparison(tree, tree)  # what the page shows beside a deep model's integrated gradients
    assert (side["integrated gradients"] == side["counts-lr exact"]).all() and set(side["level"]) <= {
        "chapter",
        "block",
        "category",
    }
    # The Patient page shows the exact shares (no integrated-gradients convergence caveat).
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("HICD_STORE", str(store.root))
    monkeypatch.setenv("HICD_NO_AUTOTRAIN", "1")
    page = Path(__file__).resolve().parents[1] / "hicd_app" / "views" / "patient.py"
    at = AppTest.from_file(str(page), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="pt_model").value == "counts-lr" and len(at.metric) == 3
    assert any(s.value.startswith("Convergence check: Exact") for s in at.success)
    # Level ablation and Transfer draw the counts line; Transfer lists both transfer readings.
    from hicd_core.analysis.results_view import counts_transfer_table

    direct = counts_transfer_table(store.finished_runs(), "readmission_30d")
    assert len(direct) == 3 and direct["source model as is AUROC"].between(0, 1).all()
    views = Path(__file__).resolve().parents[1] / "hicd_app" / "views"
    for name in ("level_ablation.py", "transfer.py", "embeddings.py"):
        at = AppTest.from_file(str(views / name), default_timeout=120).run()
        assert not at.exception, (name, at.exception)
    assert any("count baselines only" in i.value for i in at.info)  # embeddings: nothing to map


def test_c_search_on_a_subsample(small_source_cohort) -> None:
    """Above ``subsample`` training samples C is searched on a subsample and the chosen C is refitted on
    all (what keeps full MIMIC-IV scale fast)."""
    from hicd_core.models.counts_train import CountsModel, _split, fit_logistic, prepare_features

    prepared = prepare_features(small_source_cohort, Setting.G2)
    model = CountsModel("lr", prepared.vocab, {})
    model.remember(small_source_cohort, prepared.visits)
    _, x_train, y_train = _split(model, small_source_cohort, "readmission_30d", "train")
    _, x_val, y_val = _split(model, small_source_cohort, "readmission_30d", "val")
    fit = fit_logistic(x_train, y_train, x_val, y_val, seed=0, subsample=800)
    chosen = max(fit["grid"], key=lambda row: row["val_auroc"])
    assert {row["samples"] for row in fit["grid"]} == {800}
    assert fit["C"] == chosen["C"] and x_train.shape[0] > 800
    assert len(fit["coef"]) == prepared.vocab.n_features and 0 <= fit["score"] <= 1


def test_permuted_hierarchy_control_for_counts(small_source_cohort, tmp_path: Path) -> None:
    """The permuted-hierarchy control reaches the count model (HICD-BERT's code permutation, same seed):
    its own evaluation, compared with the real tree's flat run."""
    from hicd_core.analysis import controls_view
    from hicd_core.experiments import report
    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs

    store = RunStore(tmp_path / "store")
    preset = load_preset("tiny").with_overrides(
        models=("counts-lr",), settings=("000", "011"), hierarchies=("real", "permuted"), transfer=False
    )
    specs = expected_runs(preset, Cohorts(small_source_cohort, None), "cpu")
    assert len(specs) == 3  # flat, real 011, permuted 011
    outcome = Sweep(store, Cohorts(small_source_cohort, None), device="cpu").run(specs, workers=1)
    assert set(outcome.values()) == {"finished"}, [store.failure(k) for k in outcome]
    for run_id, spec in specs.items():
        config = json.loads((store.run_dir(run_id) / "model" / "config.json").read_text())
        assert config["hierarchy"] == spec.hierarchy
    results = report.results(store)
    assert set(results["evaluation"]) == {"readmission_30d", "readmission_30d [permuted hierarchy]"}
    summary = controls_view.control_summary(
        report.across_seeds(report.comparisons(store, n_resamples=50)), "readmission_30d"
    )
    assert len(summary) == 1 and summary["delta_auroc_permuted"].notna().all()
