"""Shared fixtures: an isolated data dir, the real MIMIC-IV demo, and small synthetic cohorts.

The MIMIC-IV demo is read from ``../shared/data/mimic-iv-demo`` (relative to the repo root) and
never copied into the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO.parent / "shared" / "data" / "mimic-iv-demo"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session gets its own HICD_DATA_DIR, so tests never read a user's run store."""
    import os

    path = tmp_path_factory.mktemp("hicd_data")
    old = os.environ.get("HICD_DATA_DIR")
    os.environ["HICD_DATA_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HICD_DATA_DIR", None)
    else:
        os.environ["HICD_DATA_DIR"] = old


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    if not (DEMO / "hosp").is_dir():
        pytest.skip(f"MIMIC-IV demo not found at {DEMO}")
    return DEMO


@pytest.fixture(scope="session")
def demo_cohort(demo_dir: Path):
    from hicd_core.cohort import load_cohort

    return load_cohort("mimic-iv", demo_dir)


@pytest.fixture(scope="session")
def small_synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small two-site synthetic dataset with a strong hierarchy signal (seconds to write)."""
    from hicd_core.synthetic import write_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, seed=0, hierarchy_signal=0.9, n_source_patients=2500, n_target_patients=1200)
    return out


@pytest.fixture(scope="session")
def small_source_cohort(small_synthetic_dir: Path):
    from hicd_core.cohort import load_cohort

    return load_cohort("mimic-iv", small_synthetic_dir / "mimic-iv")


@pytest.fixture(scope="session")
def small_target_cohort(small_synthetic_dir: Path):
    from hicd_core.cohort import load_cohort

    return load_cohort("eicu", small_synthetic_dir / "eicu")


#: The settings of the tiny fixture bundle (flat, one single level, two levels, all levels).
TINY_SETTINGS = ("000", "001", "011", "111")


@pytest.fixture(scope="session")
def tiny_store(small_source_cohort, small_target_cohort, tmp_path_factory: pytest.TempPathFactory):
    """A finished miniature run store: 4 settings x both models x readmission_30d + transfer.

    Built once per session with the ``tiny`` preset (short training) on the small synthetic cohorts,
    by two worker processes (the CLI's CPU default; ``test_parallel_sweep_matches_sequential`` checks
    it against an in-process run). App and report tests read it like any run store copied from a GPU
    server.
    """
    from hicd_core.experiments.runstore import RunStore
    from hicd_core.experiments.spec import load_preset
    from hicd_core.experiments.sweep import Cohorts, Sweep, expected_runs

    store = RunStore(tmp_path_factory.mktemp("tiny_store"))
    # The deep models only: the counts baseline builds its own store in tests/test_counts.py.
    preset = load_preset("tiny").with_overrides(models=("bert", "graph"), settings=TINY_SETTINGS)
    cohorts = Cohorts(small_source_cohort, small_target_cohort)
    specs = expected_runs(preset, cohorts, "cpu")
    outcome = Sweep(store, cohorts, device="cpu").run(specs, workers=2)
    failed = {k: store.failure(k)["error"] for k, v in outcome.items() if v == "failed"}
    assert not failed, failed
    return store
