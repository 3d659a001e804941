"""Strict input validation up front (issue 13, section 2-3): presets, selections, options, paths,
exports and stray files each give a one-line error or a safe result, never a traceback or a silent
reinterpretation. Each test fails on the code before the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hicd_core import cli
from hicd_core.analysis import reviews
from hicd_core.experiments.spec import SweepPreset, load_preset
from hicd_core.hierarchy import Setting

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("content", "named"), [
    ("[1, 2]", "JSON object"), ('{"modelz": ["bert"]}', "modelz"), ('{"seeds": 5}', "seeds"),
    ('{"seeds": [-1]}', "seeds"), ('{"epochs_scale": 0}', "epochs_scale"),
    ('{"epochs_scale": -2}', "epochs_scale"),
    ('{"synthetic_patients": 0}', "synthetic_patients"), ('{"models": ["gpt"]}', "models"),
    ('{"settings": ["012"]}', "settings"), ('{"tasks": []}', "tasks"), ('{"transfer": "yes"}', "transfer"),
    ('{"model_preset": "huge"}', "model_preset"), ('{"schemes": {"bert": "mine"}}', "schemes"), ("{", "JSON"),
])
def test_bad_preset_files_are_rejected_naming_the_key(tmp_path: Path, capsys, content: str,
                                                       named: str) -> None:
    path = tmp_path / "preset.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=named):
        load_preset(str(path))
    assert cli.main(["sweep", "--preset", str(path), "--store", str(tmp_path / "s"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and named in err and "Traceback" not in err


def test_a_valid_preset_round_trips(tmp_path: Path) -> None:
    preset = load_preset("tiny").with_overrides(seeds=(0, 2), settings=Setting.parse_list("000,111"))
    path = tmp_path / "mine.json"
    path.write_text(preset.to_json())
    assert load_preset(str(path)) == preset


@pytest.mark.parametrize("argv", [
    ["sweep", "--settings", ","], ["sweep", "--settings", "0x1"], ["sweep", "--seeds", ","],
    ["sweep", "--models", ""], ["sweep", "--tasks", "nope"], ["report", "--resamples", "0"],
    ["report", "--resamples", "-3"], ["sweep", "--target", "eicu:"], ["sweep", "--cohort", "mimic-iv:"],
])
def test_empty_or_bad_selections_are_errors(argv: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    from hicd_core.experiments import sweep

    def never(*args, **kwargs):  # an accepted bad selection must not start training the default bundle
        raise AssertionError(f"{argv} was accepted and started a sweep")

    monkeypatch.setattr(sweep.Sweep, "run", never)
    code = None
    try:
        code = cli.main([*argv, "--store", str(tmp_path / "s")])
    except SystemExit as exc:  # argparse's own usage error
        code = exc.code
    assert code not in (0, None)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_synthetic_cohort_honours_an_explicit_target(small_synthetic_dir: Path) -> None:
    from hicd_core.experiments.sweep import resolve_cohorts

    cohorts = resolve_cohorts("synthetic", f"eicu:{small_synthetic_dir / 'eicu'}", patients=1500)
    assert cohorts.target is not None
    assert cohorts.target.meta["source_path"] == str(small_synthetic_dir / "eicu")
    assert resolve_cohorts("synthetic", "none", patients=1500).target is None


def test_codes_works_with_a_data_dir_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**os.environ, "HICD_DATA_DIR": str(blocker / "data")}
    out = subprocess.run([sys.executable, "-m", "hicd_core", "codes", "I21.4", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert json.loads(out.stdout)[0]["icd10"] == "I21.4"


def test_building_hicd_graph_leaves_no_file_in_the_temp_folder(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = ("from hicd_core.models.graph_model import SymmetricGCNConv; "
            "SymmetricGCNConv(4, 4); SymmetricGCNConv(4, 2)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert sorted(p.name for p in tmp_path.rglob("*.py")) == []  # (torch may make its own cache folder)


def test_review_export_neutralises_spreadsheet_formulas(tmp_path: Path) -> None:
    db = tmp_path / "reviews.sqlite"
    reviews.add_review("=cmd|' /C calc'!A0", "run-1", "bert", "011", "readmission_30d", 3, "plausible",
                       "=HYPERLINK(\"http://example.invalid\",\"x\")", sample_id=7, path=db)
    reviews.add_review("Dr A", "run-1", "bert", "011", "readmission_30d", 4, "implausible", "@SUM(1)",
                       sample_id=8, path=db)
    text = reviews.export_csv(path=db).decode()
    frame = pd.read_csv(__import__("io").StringIO(text))
    for value in [*frame["reviewer"], *frame["comment"]]:
        assert not str(value).startswith(("=", "+", "-", "@")), value
    assert "'=HYPERLINK" in text and "'@SUM(1)" in text


def test_sweep_preset_is_checked_when_built_in_code_too() -> None:
    with pytest.raises(ValueError, match="epochs_scale"):
        SweepPreset(name="x", epochs_scale=0)


def test_source_paths_are_checked_before_anything_is_hashed(tmp_path: Path, monkeypatch) -> None:
    from hicd_core.cohort import CohortInputError, load_cohort, store

    def no_hashing(paths):  # a wrong folder must be refused before any byte is read
        raise AssertionError(f"hashed {len(paths)} files")

    monkeypatch.setattr(store, "file_digest", no_hashing)
    with pytest.raises(CohortInputError, match="empty"):
        load_cohort("mimic-iv", "")
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(CohortInputError, match="is not a folder"):
        load_cohort("mimic-iv", tmp_path / "a.csv")
    with pytest.raises(CohortInputError, match="missing table"):
        load_cohort("mimic-iv", "/")  # the file system root: named as missing tables, not hashed
    with pytest.raises(CohortInputError, match="split-seed"):
        load_cohort("eicu", tmp_path, split_seed=-1)


def test_a_damaged_cohort_cache_is_rebuilt(small_synthetic_dir: Path) -> None:
    from hicd_core.cohort import load_cohort

    first = load_cohort("eicu", small_synthetic_dir / "eicu")
    cache = Path(first.meta["cache_folder"])
    visits = cache / "visits.parquet"
    intact = visits.read_bytes()
    visits.write_bytes(intact[:-64])
    again = load_cohort("eicu", small_synthetic_dir / "eicu")
    assert again.fingerprint == first.fingerprint and len(again.visits) == len(first.visits)
    assert visits.read_bytes() == intact  # the damaged entry was noticed and written again


def test_cohort_cli_names_the_bad_option(capsys, tmp_path: Path) -> None:
    assert cli.main(["cohort", "--source", "mimic-iv", "--path", ""]) == 2
    assert "--path is empty" in capsys.readouterr().err
    assert cli.main(["cohort", "--source", "eicu", "--path", str(tmp_path), "--split-seed", "-2"]) == 1
    assert "--split-seed" in capsys.readouterr().err
