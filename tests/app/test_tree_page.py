"""The ICD tree: figure builders directly, and the page through AppTest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from hicd_core.analysis import tree_view

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_tree_table_whole_classification() -> None:
    table = tree_view.tree_table()
    assert table["id"].iloc[0] == tree_view.ROOT_ID
    levels = table["level"].value_counts()
    assert levels["chapter"] == 22 and levels["category"] > 1800
    sizes = table.set_index("id")["size"]
    # branchvalues="total" requires a parent to be at least the sum of its children.
    child_sums = table[table["parent"] != ""].groupby("parent")["size"].sum()
    assert (sizes.loc[child_sums.index] >= child_sums - 1e-9).all()


def test_tree_table_focus_with_codes_and_cohort_counts() -> None:
    counts = pd.Series({"I214": 5, "I219": 1, "I10": 7})
    table = tree_view.tree_table(code_counts=counts, focus="BL:I20-I25", include_codes=True)
    assert set(table["id"]) == {"BL:I20-I25", "CA:I21", "CO:I214", "CO:I219"}
    assert table.set_index("id")["size"]["BL:I20-I25"] == 6


@pytest.mark.parametrize("kind", ["sunburst", "icicle"])
def test_tree_figure(kind: str) -> None:
    table = tree_view.tree_table(focus="CH:IX")
    figure = tree_view.tree_figure(table, kind=kind)
    trace = figure.data[0]
    assert trace.type == kind
    assert len(trace.ids) == len(table) and trace.customdata[0][0] == "CH:IX"
    with pytest.raises(ValueError):
        tree_view.tree_figure(table, kind="pie")


def test_tree_page_renders_and_search_changes_it(monkeypatch) -> None:
    monkeypatch.setenv("HICD_NO_AUTOTRAIN", "1")  # never start background training from a test
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("hicd_app/views/icd_tree.py").run()
    assert not at.exception
    assert at.title[0].value == "ICD-10-CM tree"
    assert not at.markdown or "I214" not in " ".join(m.value for m in at.markdown)
    at.text_input(key="tree_search").input("I21.4").run()
    assert not at.exception
    path = " ".join(m.value for m in at.markdown)
    assert "Acute myocardial infarction" in path and "I20-I25" in path
    at.text_input(key="tree_search").input("zzzz no such words").run()
    assert any("No ICD-10-CM code or title matches" in i.value for i in at.info)
