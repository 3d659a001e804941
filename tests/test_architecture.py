"""The house rules a refactor could silently break: the engine runs without the UI, the CLI has no
import circle and shows a broken sub-command's real error, and the settings have one type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Makes ``import streamlit`` fail in the child process, as on a machine without the UI installed.
BLOCK_STREAMLIT = """
import importlib.abc, sys
class BlockStreamlit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "streamlit" or name.startswith("streamlit."):
            raise ImportError(f"streamlit is blocked in this test ({name})")
sys.meta_path.insert(0, BlockStreamlit())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_STREAMLIT + code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_every_engine_module_imports_without_streamlit() -> None:
    out = _run("""
import importlib, pkgutil, hicd_core
names = [m.name for m in pkgutil.walk_packages(hicd_core.__path__, "hicd_core.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
assert "streamlit" not in sys.modules
print(len(names))
""")
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 40  # every module of the engine was imported


def test_cli_help_without_streamlit() -> None:
    out = _run("""
import runpy
sys.argv = ["hicd_core", "--help"]
try:
    runpy.run_module("hicd_core", run_name="__main__")
except SystemExit as exc:
    assert exc.code == 0, exc.code
assert "streamlit" not in sys.modules
""")
    assert out.returncode == 0, out.stderr[-2000:]
    for command in ("codes", "synth", "cohort", "sweep", "report", "verify", "export-meds"):
        assert command in out.stdout


def test_engine_source_never_imports_streamlit() -> None:
    offenders = [str(path.relative_to(REPO)) for path in (REPO / "hicd_core").rglob("*.py")
                 if "import streamlit" in path.read_text() or "from streamlit" in path.read_text()]
    assert offenders == []


def test_a_command_whose_module_fails_to_import_says_why(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import importlib

    from hicd_core import cli

    real = importlib.import_module

    def broken(name: str, *args, **kwargs):
        if name == "hicd_core.cli.sweep":
            raise ImportError("No module named 'somelib'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    assert cli.main(["sweep", "--preset", "tiny"]) == 2  # listed, not "invalid choice"
    err = capsys.readouterr().err
    assert "the sweep command cannot be loaded: No module named 'somelib'" in err
    assert cli.main(["codes", "I21.4"]) == 0  # the other commands still work


def test_no_module_outside_levels_defines_the_setting_order() -> None:
    order = '"000", "100", "010", "001", "110", "101", "011", "111"'
    found = [str(path.relative_to(REPO)) for folder in ("hicd_core", "hicd_app")
             for path in (REPO / folder).rglob("*.py") if order in path.read_text()]
    assert found == []  # hierarchy/levels.py spells it as the Setting members, once
