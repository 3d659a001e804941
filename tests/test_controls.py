"""Controls and run design: the 3-seed seed-major default bundle, the null and permuted-hierarchy
presets, paper-faithful options and their run ids, the synthetic signal's location and label, and the
null control's false-positive rate under the across-seed test."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hicd_core import CODE_VERSION
from hicd_core.experiments.spec import PRESETS, RunSpec, SweepPreset, load_preset
from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs, resolve_cohorts, run_groups
from hicd_core.hierarchy import SETTINGS, Setting
from hicd_core.runtime import stable_hash

FP = "source-fingerprint"


# ------------------------------------------------------------------------------------ run design
def test_default_bundle_trains_three_seeds_seed_major() -> None:
    preset = PRESETS["default"]
    assert preset.seeds == (0, 1, 2) and PRESETS["tiny"].seeds == (0,)
    runs = preset.runs("cpu")
    assert len(runs) == 3 * (3 * 2 * 8 + 3 * 8)  # per seed: 3 models x 2 tasks x 8 settings + transfer
    seeds = [r.seed for r in runs]
    assert seeds == sorted(seeds)  # every run of seed 0 before any of seed 1
    for seed in preset.seeds:
        mine = [r for r in runs if r.seed == seed]
        kinds = [r.kind for r in mine]
        assert kinds == sorted(kinds, key=lambda k: k == "transfer")  # a seed's probes after its task runs
        assert {(r.model, r.setting) for r in mine if r.kind == "transfer"} == {
            (m, s) for m in ("bert", "graph", "counts-lr") for s in SETTINGS}


def test_run_groups_keep_seed_major_order() -> None:
    """Groups of one pretraining: seed first (the preset's seed order), then the real tree before the
    control, then the costliest first; task runs before the probes that read them."""
    preset = PRESETS["control"].with_overrides(seeds=(2, 0, 1))
    todo = [(f"id{i}", spec) for i, spec in enumerate(preset.runs("cpu"))]
    groups = run_groups(todo)
    assert sum(len(g) for g in groups) == len(todo)
    order = [(g[0][1].seed, g[0][1].hierarchy) for g in groups]
    rank = {2: 0, 0: 1, 1: 2}
    keys = [(rank[seed], tree != "real") for seed, tree in order]
    assert keys == sorted(keys)
    for group in groups:
        assert len({spec.shared_key for _, spec in group}) == 1
        kinds = [spec.kind for _, spec in group]
        assert kinds == sorted(kinds, key=lambda k: k == "transfer")
    first_seed = [g for g in groups if g[0][1].seed == 2 and g[0][1].hierarchy == "real"]
    models = [g[0][1].model for g in first_seed]
    # the seconds-long counts baseline first (a first picture at once), then bert (~3x the cost), then graph
    assert models == sorted(models, key=lambda m: (not m.startswith("counts-"), m != "bert"))


def _old_key(spec: RunSpec, fingerprint: str) -> str:
    """The run key before ``hierarchy`` / ``mask_hierarchy`` existed."""
    fields = {k: v for k, v in asdict(spec).items() if k not in ("hierarchy", "mask_hierarchy")}
    return stable_hash(fields, fingerprint, CODE_VERSION)[:10]


def test_run_ids_of_the_variants() -> None:
    base = RunSpec(model="bert", setting=Setting.G1_G2, task="readmission_30d", seed=0, preset="cpu",
                   scheme="ontology")
    assert base.key(FP) == _old_key(base, FP)  # runs stored before the variants keep their ids
    permuted = replace(base, hierarchy="permuted")
    masked = replace(base, mask_hierarchy=True)
    ids = {spec.run_id(FP) for spec in (base, permuted, masked, replace(permuted, mask_hierarchy=True))}
    assert len(ids) == 4
    assert "-permuted-" in permuted.run_id(FP) and "-maskh-" in masked.run_id(FP)
    assert base.shared_key != permuted.shared_key != masked.shared_key
    assert base.shared_key == ("bert", Setting.G1_G2, 0, "cpu", "ontology", 1.0)  # shared folders kept
    # The flat setting has no hierarchy to permute or mask: one run, the real tree's.
    flat = replace(base, setting=Setting.FLAT)
    for variant in (replace(flat, hierarchy="permuted"), replace(flat, mask_hierarchy=True)):
        assert variant == flat and variant.run_id(FP) == flat.run_id(FP)
    graph = replace(base, model="graph", scheme="graph", mask_hierarchy=True)
    assert not graph.mask_hierarchy  # HICD-Graph has no MLM
    with pytest.raises(ValueError, match="hierarchy must be"):
        replace(base, hierarchy="shuffled")
    assert RunSpec(**asdict(permuted)) == permuted  # run.json round trip


def test_control_null_and_paper_presets() -> None:
    control = PRESETS["control"].runs("cpu")
    task_runs = [r for r in control if r.kind == "task"]
    assert sum(r.hierarchy == "permuted" for r in task_runs) == 3 * 3 * 2 * 7  # every non-flat setting
    assert sum(r.setting.is_flat for r in task_runs) == 3 * 3 * 2  # flat once per model/task/seed
    assert len(set(control)) == len(control)
    default_ids = {r.run_id(FP, "t") for r in PRESETS["default"].runs("cpu")}
    assert default_ids <= {r.run_id(FP, "t") for r in control}  # the control extends the default store
    null = PRESETS["null"]
    assert null.hierarchy_signal == 0.0 and null.cohort == "synthetic" and null.seeds == (0, 1, 2)
    assert replace(null, name="default", hierarchy_signal=None, description=PRESETS["default"].description
                   ) == PRESETS["default"]  # the default design, another data set
    paper = PRESETS["paper"]
    assert paper.schemes["bert"] == "prefix" and PRESETS["default"].schemes["bert"] == "ontology"
    for name in PRESETS:  # JSON round trip, as the app hands presets to its background sweep
        preset = PRESETS[name]
        assert SweepPreset.from_dict(
            {k: v for k, v in __import__("json").loads(preset.to_json()).items() if k != "name"},
            name) == preset
    for bad, field in (({"hierarchies": ["real", "fake"]}, "hierarchies"), ({"mask_hierarchy": "yes"},
                       "mask_hierarchy"), ({"hierarchy_signal": 1.5}, "hierarchy_signal")):
        with pytest.raises(ValueError, match=field):
            SweepPreset.from_dict(bad, "bad")


def _parse(*argv: str):
    from hicd_core.cli import build_parser
    from hicd_core.cli.sweep import preset_from_args

    return preset_from_args(build_parser().parse_args(["sweep", *argv]))


def test_cli_options_reach_the_preset() -> None:
    preset = _parse("--preset", "paper", "--bert-scheme", "ontology", "--mask-hierarchy",
                    "--hierarchy", "real,permuted")
    assert preset.schemes == {"bert": "ontology", "graph": "graph"} and preset.mask_hierarchy
    assert preset.hierarchies == ("real", "permuted") and preset.model_preset == "paper"
    assert _parse("--bert-scheme", "prefix").schemes["bert"] == "prefix"
    assert _parse("--preset", "null").hierarchy_signal == 0.0
    assert _parse("--hierarchy-signal", "0.3").hierarchy_signal == 0.3
    runs = _parse("--mask-hierarchy", "--models", "bert").runs("cpu")
    assert all(r.mask_hierarchy for r in runs if not r.setting.is_flat)
    with pytest.raises(ValueError, match="hierarchy"):
        _parse("--hierarchy", "shuffled")
    with pytest.raises(SystemExit):
        _parse("--bert-scheme", "graph")  # HICD-BERT's schemes only
    with pytest.raises(ValueError, match="synthetic cohort only"):
        resolve_cohorts("mimic-iv:/nowhere", "none", hierarchy_signal=0.0)


def test_synthetic_location_per_signal(isolated_data_dir: Path) -> None:
    from hicd_core.cli.sweep import _own_store_name
    from hicd_core.synthetic import DEFAULT_HIERARCHY_SIGNAL, default_root

    root = isolated_data_dir / "synthetic"
    assert default_root() == root / "seed0"  # the default's path is what it always was
    assert default_root(1500) == default_root(1500, 0, DEFAULT_HIERARCHY_SIGNAL) == root / "seed0-n1500"
    assert default_root(1500, 0, 0.0) == root / "seed0-n1500-signal0"
    assert default_root(None, 1, 0.25) == root / "seed1-signal0.25"
    with pytest.raises(ValueError, match="hierarchy_signal"):
        default_root(None, 0, 2.0)
    assert _own_store_name(None) is None and _own_store_name(0.7) is None
    assert _own_store_name(0.0) == "null" and _own_store_name(0.3) == "signal0.3"


def test_banner_states_the_signal() -> None:
    from hicd_app.widgets import signal_note

    assert signal_note(None) == ""
    note = signal_note(0.7)
    assert "hierarchy_signal 0.7" in note and "70%" in note and "30% in the code alone" in note
    assert "null control" in signal_note(0.0) and "null control" not in note


# ----------------------------------------------------------------------- permuted control, end to end
def test_permuted_control_sweep_end_to_end(small_source_cohort, tmp_path: Path) -> None:
    """Both models train the control; the flat run is shared; the report keeps the control apart and
    compares it with the real tree's flat run; the control section's tables fill in."""
    from hicd_core.analysis import controls_view
    from hicd_core.experiments import report
    from hicd_core.experiments.runstore import RunStore

    store = RunStore(tmp_path / "store")
    # The deep models (the counts baseline's control is tested in tests/test_counts.py, in seconds).
    preset = load_preset("tiny").with_overrides(models=("bert", "graph"), settings=("000", "011"),
                                                hierarchies=("real", "permuted"), transfer=False,
                                                epochs_scale=0.15)
    cohorts = Cohorts(small_source_cohort, None)
    specs = expected_runs(preset, cohorts, "cpu")
    assert len(specs) == 2 * 3  # per model: flat, real 011, permuted 011
    outcome = Sweep(store, cohorts, device="cpu", embeddings=False).run(specs, workers=1)
    assert set(outcome.values()) == {"finished"}, [store.failure(k) for k in outcome]
    for run_id, spec in specs.items():
        config = __import__("json").loads((store.run_dir(run_id) / "model" / "config.json").read_text())
        if spec.model == "bert":
            assert config["hierarchy"] == spec.hierarchy
    results = report.results(store)
    evaluations = set(results["evaluation"])
    assert evaluations == {"readmission_30d", "readmission_30d [permuted hierarchy]"}
    comparison = report.comparisons(store, n_resamples=50)
    permuted = comparison[comparison["evaluation"] == "readmission_30d [permuted hierarchy]"]
    assert set(permuted["setting"]) == {"011"} and set(permuted["model"]) == {"bert", "graph"}
    real = comparison[comparison["evaluation"] == "readmission_30d"].set_index("model")
    # Both trees are compared with the same (real tree's) flat run.
    assert (permuted.set_index("model")["auroc_flat"] == real["auroc_flat"]).all()
    assert controls_view.control_evaluations(results) == ["readmission_30d"]
    summary = controls_view.control_summary(report.across_seeds(comparison), "readmission_30d")
    assert len(summary) == 2 and summary["delta_auroc_permuted"].notna().all()
    np.testing.assert_allclose(summary["real_minus_permuted"],
                               summary["delta_auroc_real"] - summary["delta_auroc_permuted"])
    direct = controls_view.real_vs_permuted(results, "readmission_30d", store.predictions)
    assert len(direct) == 2 and (direct["method"] == "one seed: DeLong").all()
    np.testing.assert_allclose(direct["diff"], direct["auroc_real"] - direct["auroc_permuted"], atol=1e-12)
    assert direct["p_value"].between(0, 1).all()


def test_real_vs_permuted_across_seeds_by_hand() -> None:
    """Several seeds: the across-seed test of real minus permuted equals stats.across_seed_test on
    the per-seed AUROC differences with the DeLong cross-seed covariance, computed here by hand."""
    from hicd_core.analysis import controls_view
    from hicd_core.stats import across_seed_test, auroc
    from hicd_core.stats.delong import _delong_components

    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    preds, rows = {}, []
    for seed in range(3):
        for tree in ("real", "permuted"):
            prob = 1 / (1 + np.exp(-(y * (0.8 if tree == "real" else 0.5) + rng.normal(size=n))))
            run_id = f"{tree}-{seed}"
            preds[run_id] = pd.DataFrame({"sample_id": np.arange(n), "patient_id": np.arange(n), "label": y,
                                          "prob": prob})
            rows.append({"run_id": run_id, "model": "graph", "setting": "111", "seed": seed,
                         "hierarchy": tree,
                         "base_evaluation": "readmission_30d", "threshold": 0.5, "auroc": auroc(y, prob)})
    results = pd.DataFrame(rows)
    direct = controls_view.real_vs_permuted(results, "readmission_30d", preds.__getitem__)
    order = [f"{tree}-{seed}" for seed in range(3) for tree in ("real", "permuted")]
    _, cov = _delong_components(y, np.vstack([preds[r]["prob"].to_numpy() for r in order]))
    contrast = np.zeros((3, 6))
    for seed in range(3):
        contrast[seed, 2 * seed], contrast[seed, 2 * seed + 1] = 1, -1
    dcov = contrast @ cov @ contrast.T
    cross = (dcov.sum() - np.trace(dcov)) / 6
    diffs = results[results["hierarchy"] == "real"]["auroc"].to_numpy() - results[
        results["hierarchy"] == "permuted"]["auroc"].to_numpy()
    expected = across_seed_test(diffs, cross)
    row = direct.iloc[0]
    assert row["n_seeds"] == 3 and row["method"].startswith("Obuchowski")
    assert row["diff"] == pytest.approx(expected["diff"])
    assert row["p_value"] == pytest.approx(expected["p_value"])
    assert row["ci_low"] == pytest.approx(expected["ci_low"])
