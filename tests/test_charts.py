"""Figure builders, tested directly on small frames (no Streamlit run)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from hicd_core.analysis import charts, results_view
from hicd_core.hierarchy import SETTINGS


def _curve() -> pd.DataFrame:
    return pd.DataFrame({
        "model": ["graph", "graph", "bert", "bert", "bert"],
        "setting": ["011", "000", "111", "000", "001"],
        "value": [0.70, 0.66, 0.64, 0.60, 0.62],
        "ci_low": [0.65, 0.61, 0.60, 0.55, np.nan],
        "ci_high": [0.75, 0.71, 0.68, 0.65, np.nan],
        "interval": ["DeLong"] * 5,
    })


def test_level_curve_traces_order_and_error_bars() -> None:
    figure = charts.level_curve_figure(_curve(), "auroc")
    assert [t.name for t in figure.data] == ["HICD-BERT", "HICD-Graph"]
    bert = figure.data[0]
    assert list(bert.x) == charts.SETTING_TICKS  # all 8 settings in the paper's order, not input order
    present = [i for i, v in enumerate(bert.y) if np.isfinite(v)]
    assert [charts.SETTING_TICKS[i] for i in present] == ["none (flat)", "G2", "G0+G1+G2"]
    assert np.isnan(bert.y[1])  # G0 not trained: a gap in the line, not a line across it
    assert bert.line.color == charts.MODEL_COLOURS["bert"]
    assert bert.error_y.array[0] == pytest.approx(0.05) and bert.error_y.array[3] == 0  # NaN CI -> no bar
    assert [bert.customdata[i, 0] for i in present] == ["000", "001", "111"]
    assert list(figure.layout.xaxis.categoryarray) == charts.SETTING_TICKS
    assert charts.SETTING_TICKS[0] == "none (flat)" and charts.SETTING_TICKS[-1] == "G0+G1+G2"
    assert figure.layout.yaxis.title.text == "AUROC"


def test_level_curve_paper_overlay_is_labelled() -> None:
    paper = results_view.paper_values("readmission_30d", "auroc")
    assert len(paper) == 16 and set(paper["model"]) == {"bert", "graph"}
    figure = charts.level_curve_figure(_curve(), "auroc", paper)
    overlay = [t for t in figure.data if t.name.startswith(charts.PAPER_LABEL)]
    assert len(overlay) == 2 and overlay[0].line.dash == "dash"
    assert "MIMIC-IV/eICU" in overlay[0].name
    bert = overlay[0]
    assert len(bert.x) == 8 and bert.y[0] == pytest.approx(0.6808)  # Table 1, HICD-BERT, none
    assert results_view.paper_values("readmission_30d", "auprc").empty  # the paper reports no AUPRC
    assert len(results_view.paper_values("readmission_30d -> icu_readmission", "macro_f1")) == 16


def test_delta_heatmap_marks_and_p_values() -> None:
    cells = pd.DataFrame({"row": ["HICD-BERT", "HICD-BERT", "HICD-Graph"], "setting": ["001", "111", "001"],
                          "delta": [0.012, -0.004, 0.02], "p": [0.01, 0.4, np.nan]})
    trace = charts.delta_heatmap_figure(cells, "auroc").data[0]
    assert list(trace.x) == [s.label for s in SETTINGS[1:]]
    assert list(trace.y) == ["HICD-BERT", "HICD-Graph"]
    g2 = list(trace.x).index("G2")
    assert trace.text[0][g2] == "+0.012*" and trace.text[0][-1] == "-0.004" and trace.text[1][g2] == "+0.020"
    assert trace.customdata[0][g2] == pytest.approx(0.01)
    assert trace.zmid == 0 and trace.zmax == pytest.approx(0.02)


def test_umap_figure_chapter_colours_hover_and_highlight() -> None:
    points = pd.DataFrame({"x": [0.0, 1, 2, 3], "y": [0.0, 1, 2, 3], "code": ["I21", "E11", "I10", "XYZ"],
                           "title": ["AMI", "T2DM", "HTN", "?"], "chapter": ["IX", "IV", "IX", "UNK"]})
    figure = charts.umap_figure(points, highlight="E11")
    names = [t.name for t in figure.data]
    assert names == ["IV", "IX", "UNK", "selected: E11"]  # fixed chapter order, UNK last
    assert figure.data[1].marker.color == charts.CHAPTER_COLOURS["IX"]
    assert figure.data[2].marker.color == "#B0B0B0"
    assert list(figure.data[1].customdata[0]) == ["I21", "AMI", "IX"]
    star = figure.data[-1]
    assert star.marker.symbol == "star" and list(star.x) == [1.0]
    assert len(charts.CHAPTER_COLOURS) == 23 and len(set(charts.CHAPTER_COLOURS.values())) == 23
    assert len(charts.umap_figure(points, highlight="NOPE").data) == 3


def test_relationship_chapter_and_tightness_figures() -> None:
    tight = pd.DataFrame({"setting": ["011", "000"], "same_category": [0.4, 0.3],
                          "same_chapter": [0.35, 0.28],
                          "different_chapter": [0.2, 0.16]}).set_index("setting")
    bars = charts.relationship_bars_figure(tight)
    assert [t.name for t in bars.data] == list(charts.RELATIONSHIP_LABELS.values())
    assert list(bars.data[0].x) == ["none (flat)", "G1+G2"] and list(bars.data[0].y) == [0.3, 0.4]
    wide = pd.DataFrame({"000": [0.1, 0.2], "011": [0.3, np.nan]}, index=["UNK", "IX"])
    heat = charts.chapter_heatmap_figure(wide).data[0]
    assert list(heat.y) == ["IX", "UNK"] and list(heat.x) == ["none (flat)", "G1+G2"]
    assert heat.text[0][1] == "" and heat.text[1][1] == "0.30"
    joined = pd.DataFrame({"setting": ["000", "011", "111"], "tightness": [0.1, 0.2, 0.15],
                           "auroc": [0.6, 0.7, 0.65]}).set_index("setting")
    joined.attrs["spearman"] = {"rho": 1.0, "n": 3}
    scatter = charts.tightness_auroc_figure(joined)
    assert list(scatter.data[0].text) == ["none (flat)", "G1+G2", "G0+G1+G2"]
    assert "+1.00" in scatter.layout.title.text


def test_transfer_figure_intervals_and_paper_bars() -> None:
    table = pd.DataFrame({"model": ["bert", "bert"], "setting": ["111", "000"], "value": [0.58, 0.55],
                          "ci_low": [0.53, 0.50], "ci_high": [0.63, 0.60]})
    paper = results_view.paper_values("readmission_30d -> icu_readmission", "auroc")
    figure = charts.transfer_figure(table, "auroc", paper)
    assert [t.name for t in figure.data] == ["HICD-BERT", f"{charts.PAPER_LABEL}: HICD-BERT"]
    assert list(figure.data[0].x) == ["none (flat)", "G0+G1+G2"]
    assert figure.data[0].error_y.array[0] == pytest.approx(0.05)
    assert figure.data[1].marker.pattern.shape == "/" and len(figure.data[1].y) == 8
    low, high = figure.layout.yaxis.range
    assert low < 0.5 and high > 0.63


def test_coverage_and_cohort_tables(small_source_cohort, small_target_cohort) -> None:
    from hicd_core.cohort import cohort_summary
    from hicd_core.experiments.transfer import code_coverage

    coverage = code_coverage(small_source_cohort, small_target_cohort)
    figure = charts.coverage_figure(coverage)
    assert list(figure.data[0].y) == coverage["overlap"].tolist()
    summaries = {c.site: cohort_summary(c) for c in (small_source_cohort, small_target_cohort)}
    table = charts.cohort_summary_table(summaries)
    assert list(table.columns) == ["mimic-iv", "eicu"]
    assert table.loc["synthetic", "mimic-iv"] == "SYNTHETIC"
    assert table.loc["patients", "mimic-iv"] == f"{len(small_source_cohort.patients):,}"
    tasks = charts.task_prevalence_table(summaries)
    assert {"readmission_30d", "icu_readmission"} <= set(tasks["task"])
    assert tasks["positive rate"].between(0, 1).all()


def test_figure_html_is_self_contained() -> None:
    page = charts.figure_html(charts.level_curve_figure(_curve(), "auroc"))
    assert not re.search(r"<script\b[^>]*\bsrc\s*=\s*[\"']https?:", page, re.I)  # plotly.js is inlined
    assert "Plotly.newPlot" in page


def _graph_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    nodes = pd.DataFrame({"node_id": [0, 1, 2], "name": ["I21", "I25", "CHAP_IX"],
                          "kind": ["code", "code", "chapter"], "level": ["code", "code", "G0"],
                          "code": ["I21", "I25", "IX"], "title": ["AMI", "CIHD", "Circulatory"],
                          "frequency": [10, 5, 15], "chapter": ["IX", "IX", "IX"], "hop": [0, 1, 1]})
    edges = pd.DataFrame({"source": [0, 0], "target": [1, 2], "kind": ["cooccurrence", "hierarchy_G0"],
                          "weight": [0.5, 1.0], "pmi": [1.2, np.nan], "count": [3, 0]})
    return nodes, edges


def test_graph_network_html_offline_with_legend() -> None:
    nodes, edges = _graph_tables()
    page = charts.graph_network_html(nodes, edges)
    # No external <script src> or <link href> of any kind remains (pyvis links bootstrap from a CDN).
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link\b[^>]*\bhref\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert "node_modules" not in page and "vis-network" in page  # the library itself is inlined
    assert 'id="hicd-legend"' in page
    for style in charts.EDGE_STYLES.values():
        assert style["label"] in page
    assert '"dashes": true' in page and '"shape": "star"' in page
    assert '"enabled": false' in page  # physics off: positions come from the seeded layout


def test_strip_external_resources() -> None:
    page = ('<head><link href="https://cdn.example/x.css" rel="stylesheet"/>'
            '<script src="https://cdn.example/x.js" integrity="abc"></script>'
            '<!-- <script src="../node_modules/vis.js"></script> --><script>var a = 1;</script></head>')
    out = charts.strip_external_resources(page)
    assert out == "<head><script>var a = 1;</script></head>"


def test_delta_heatmap_does_not_star_a_degenerate_comparison() -> None:
    """A macro-F1 comparison with a run that predicts one class only gets the dagger, not a star,
    whatever its p-value, and the reason is on hover."""
    cells = pd.DataFrame({"row": ["HICD-BERT (3 seeds)"] * 2, "setting": ["001", "111"],
                          "delta": [0.073, 0.02],
                          "p": [0.014, 0.01], "markable": [False, True],
                          "note": ["none (flat) predicts no test sample positive (degenerate threshold)",
                                   ""]})
    trace = charts.delta_heatmap_figure(cells, "macro_f1").data[0]
    g2 = list(trace.x).index("G2")
    assert trace.text[0][g2] == f"+0.073{charts.UNSTARRED_MARK}" and trace.text[0][-1] == "+0.020*"
    assert "degenerate threshold" in trace.hovertext[0][g2] and "%{hovertext}" in trace.hovertemplate
