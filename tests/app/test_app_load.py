"""Load behaviour of the app that a change can break (no timings here: those are in
``benchmarks/bench_browser.py`` ``concurrent_sessions``).

* Shared, read-only results are computed once per server process, not once per session: two
  AppTest sessions on the same store call the engine once.
* The first start takes the long-lived heap out of the garbage collector and turns off Streamlit's
  forced full collection after every run (0.3-0.8 s with the GIL held per page view on the default
  bundle), unless the user configured it.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import streamlit as st
from streamlit import config
from streamlit.config_option import ConfigOption
from streamlit.testing.v1 import AppTest

from hicd_app import context, startup
from hicd_core.experiments import background, report

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 180
GC_OPTION = "runner.postScriptGC"


@pytest.fixture
def app_env(tiny_store, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(context.STORE_ENV, str(tiny_store.root))
    monkeypatch.setenv(context.NO_AUTOTRAIN_ENV, "1")
    monkeypatch.setattr(background, "start_sweep", lambda root, preset: True)
    return tiny_store


def _counted(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Replace ``module.name`` by a wrapper that counts its calls."""
    calls: list[int] = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_shared_results_are_computed_once_across_sessions(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    st.cache_data.clear()
    results = _counted(monkeypatch, report, "results")
    comparisons = _counted(monkeypatch, report, "comparisons")
    seen = []
    for _ in range(2):  # two browser sessions: two independent AppTests on one server process
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
        assert not at.exception, at.exception
        assert any("Headline" in header.value for header in at.header)
        seen.append((len(results), len(comparisons)))
    first, second = seen
    assert min(first) >= 1  # the first session computed them (comparisons reads results itself)
    assert second == first  # the second session reused them: no engine call of its own


def _built_once_targets(page: str) -> list[tuple[object, str]]:
    """The engine functions that draw a page's shared figures and tables."""
    from hicd_core.analysis import charts, patient_view, results_view
    from hicd_core.experiments import store_status

    note = [(store_status, "missing_summary"), (store_status, "listing_counts")]  # every page's note
    return note + {
        "level_ablation": [(charts, "level_curve_figure"), (charts, "delta_heatmap_figure"),
                           (results_view, "across_seed_table"), (results_view, "numbers_table")],
        "transfer": [(charts, "transfer_figure"), (results_view, "across_seed_table")],
        "embeddings": [(charts, "relationship_bars_figure"), (charts, "chapter_heatmap_figure"),
                       (charts, "tightness_auroc_figure")],
        "patient": [(patient_view, "candidate_labels"), (patient_view, "component_heatmap"),
                    (patient_view, "component_bars"), (patient_view, "totals_figure"),
                    (patient_view, "rollup_sunburst"), (patient_view, "rollup_comparison")],
    }[page]


@pytest.mark.parametrize("page", ["level_ablation", "transfer", "embeddings", "patient"])
def test_shared_figures_and_tables_are_built_once_across_sessions(app_env, page: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages' figures and tables are the same for every session: the second session's view builds
    none of them again (each took 0.05-0.3 s with the GIL held, per view; under 10 concurrent sessions
    the Patient page's list labels and attribution figures and the Embeddings page's similarity
    figures were the largest page costs left in the profile)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    counted = {f"{module.__name__}.{name}": _counted(monkeypatch, module, name)
               for module, name in _built_once_targets(page)}
    seen = []
    for _ in range(2):
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.switch_page(f"hicd_app/views/{page}.py").run()
        assert not at.exception, at.exception
        seen.append({name: len(calls) for name, calls in counted.items()})
    first, second = seen
    built = [name for name, n in first.items() if n and "store_status" not in name]
    assert built, first  # the page drew something from the engine
    assert second == first, (first, second)


def test_first_start_spares_the_collector(app_env) -> None:
    startup._server.clear()  # a fresh process's first start
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert config.get_option(GC_OPTION) is False
    assert gc.get_freeze_count() > 0


def test_a_configured_post_script_gc_is_respected() -> None:
    before = config.get_option(GC_OPTION), config.get_where_defined(GC_OPTION)
    try:
        config.set_option(GC_OPTION, True, "a user's config.toml")
        startup._spare_the_collector()
        assert config.get_option(GC_OPTION) is True
    finally:
        value, where = before
        config.set_option(GC_OPTION, value, where if where != ConfigOption.DEFAULT_DEFINITION else
                          ConfigOption.DEFAULT_DEFINITION)
