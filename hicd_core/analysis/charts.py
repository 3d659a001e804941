"""Figure builders for the app: tidy frames in, ``plotly.graph_objects.Figure`` (or HTML) out.

Every builder is pure so it is unit-tested on small frames (AppTest cannot look inside a plotly
chart). Colours and orders are fixed module constants, so a model, a chapter or a relationship has
the same colour on every page and in every downloaded file.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hicd_core.hierarchy import SETTINGS, Setting, chapter_order, chapter_titles, setting_rank

MODEL_NAMES = {"bert": "HICD-BERT", "graph": "HICD-Graph", "counts-lr": "counts-LR (baseline)",
               "counts-gbm": "counts-GBM (baseline)"}
MODEL_COLOURS = {"bert": "#1F77B4", "graph": "#D62728", "counts-lr": "#7F7F7F", "counts-gbm": "#2CA02C"}
METRIC_LABELS = {"auroc": "AUROC", "auprc": "AUPRC", "macro_f1": "macro-F1"}
#: Label of every overlay of the published numbers (they come from real MIMIC-IV / eICU data).
PAPER_LABEL = "paper (MIMIC-IV/eICU)"
#: Heatmap mark of a comparison that is never starred (a run of it has a degenerate threshold).
UNSTARRED_MARK = "†"
#: x-axis order of every level chart: none, G0, G1, G2, G0+G1, G0+G2, G1+G2, all.
SETTING_TICKS = [s.label for s in SETTINGS]
LEVEL_ORDER_CAPTION = ("x axis: the 8 hierarchy settings in the paper's order: none (the flat model), "
                       "one level (G0 chapter, G1 block, G2 category), two levels, and all three.")

#: 22 chapters then UNK, always in this order and colour (plotly Dark24 without its near-black).
CHAPTERS = tuple(chapter_order())
_PALETTE = ("#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100", "#750D86", "#EB663B",
            "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16",
            "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63")
CHAPTER_COLOURS = {**dict(zip(CHAPTERS[:-1], _PALETTE, strict=True)), CHAPTERS[-1]: "#B0B0B0"}

RELATIONSHIP_LABELS = {"same_category": "same category", "same_chapter": "same chapter, other category",
                       "different_chapter": "different chapter"}
RELATIONSHIP_COLOURS = {"same_category": "#2E91E5", "same_chapter": "#1CA71C", "different_chapter": "#B0B0B0"}

#: How each HICD-Graph edge kind is drawn in the network view (colour, dashes, legend text).
EDGE_STYLES = {
    "cooccurrence": {"color": "#8C8C8C", "dashes": False, "label": "co-occurrence (PMI)"},
    "hierarchy_G0": {"color": "#E45756", "dashes": True, "label": "hierarchy: chapter (G0)"},
    "hierarchy_G1": {"color": "#4C78A8", "dashes": True, "label": "hierarchy: block (G1)"},
    "hierarchy_G2": {"color": "#54A24B", "dashes": True, "label": "hierarchy: G2 ancestor"},
}


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, model)


def figure_html(figure: go.Figure) -> str:
    """A self-contained HTML file of a figure (plotly.js inlined, nothing fetched from a CDN)."""
    return figure.to_html(include_plotlyjs=True, full_html=True)


def _setting_axis(figure: go.Figure) -> None:
    """All 8 settings on the x axis in the fixed order, even where a setting has no value yet."""
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=SETTING_TICKS)


# ------------------------------------------------------------------------------------ level curves
def level_curve_figure(curve: pd.DataFrame, metric: str, paper: pd.DataFrame | None = None) -> go.Figure:
    """Metric per hierarchy setting, one line per model, with interval error bars.

    ``curve``: columns ``model``, ``setting`` ('000'...), ``value``, ``ci_low``, ``ci_high`` (NaN: no
    interval) and optionally ``interval`` (how the interval was made, shown on hover). ``paper``:
    ``model``, ``setting``, ``value`` -- drawn dashed and labelled as the paper's MIMIC-IV/eICU numbers.
    """
    figure = go.Figure()
    label = METRIC_LABELS.get(metric, metric)
    for model in sorted(curve["model"].unique(), key=lambda m: (m not in MODEL_NAMES, m)):
        # All 8 settings, NaN where a setting has no run yet: the line breaks there instead of
        # drawing across settings that are still training.
        rows = curve[curve["model"] == model].set_index("setting").reindex(list(SETTINGS))
        rows = rows.reset_index().rename(columns={"index": "setting"})
        value = rows["value"].to_numpy(float)
        upper = np.nan_to_num(rows["ci_high"].to_numpy(float) - value, nan=0.0)
        lower = np.nan_to_num(value - rows["ci_low"].to_numpy(float), nan=0.0)
        interval = (rows["interval"] if "interval" in rows else pd.Series("", index=rows.index)).fillna("")
        figure.add_trace(go.Scatter(
            x=SETTING_TICKS, y=value, mode="lines+markers",
            name=model_name(model), legendgroup=model,
            line={"color": MODEL_COLOURS.get(model), "width": 2}, marker={"size": 8},
            error_y={"type": "data", "array": upper, "arrayminus": lower, "visible": True, "thickness": 1.2},
            customdata=np.stack([rows["setting"].to_numpy(object), rows["ci_low"].to_numpy(float),
                                 rows["ci_high"].to_numpy(float), interval.to_numpy(object)], axis=1),
            hovertemplate=(f"<b>{model_name(model)}</b> %{{x}}<br>{label} %{{y:.4f}}"
                           "<br>95% interval %{customdata[1]:.4f} to %{customdata[2]:.4f}"
                           "<br>%{customdata[3]}<extra></extra>")))
    if paper is not None and not paper.empty:
        for model in sorted(paper["model"].unique()):
            rows = paper[paper["model"] == model].copy()
            rows = rows.assign(rank=rows["setting"].map(setting_rank)).sort_values("rank")
            figure.add_trace(go.Scatter(
                x=[Setting(s).label for s in rows["setting"]], y=rows["value"], mode="lines+markers",
                name=f"{PAPER_LABEL}: {model_name(model)}", legendgroup=f"paper-{model}",
                line={"color": MODEL_COLOURS.get(model), "dash": "dash", "width": 1.5},
                marker={"symbol": "x", "size": 8}, opacity=0.6,
                customdata=rows[["setting"]].to_numpy(object),
                hovertemplate=(f"<b>{PAPER_LABEL}</b> {model_name(model)} %{{x}}<br>{label} %{{y:.4f}}"
                               "<extra></extra>")))
    _setting_axis(figure)
    figure.update_layout(yaxis_title=label, xaxis_title="hierarchy setting", height=420,
                         margin={"t": 30, "l": 10, "r": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


# ---------------------------------------------------------------------------- difference heatmap
def delta_heatmap_figure(cells: pd.DataFrame, metric: str, alpha: float = 0.05,
                         p_label: str = "Holm-corrected p") -> go.Figure:
    """Difference to the flat model per (row, setting), ``*`` where ``p < alpha``.

    ``cells``: columns ``row`` (e.g. ``HICD-BERT``), ``setting`` (a non-flat key), ``delta`` and
    ``p`` (already the corrected or the raw p-value, whichever the user picked); optional
    ``markable`` (False: never starred, marked :data:`UNSTARRED_MARK` instead, e.g. a macro-F1
    comparison with a degenerate-threshold run) and ``note`` (the reason, shown on hover).
    """
    settings = [s for s in SETTINGS if not s.is_flat]
    rows = list(dict.fromkeys(cells["row"]))
    z = np.full((len(rows), len(settings)), np.nan)
    p = np.full_like(z, np.nan)
    markable = np.ones(z.shape, dtype=bool)
    notes = np.full(z.shape, "", dtype=object)
    for cell in cells.itertuples():
        if cell.setting in settings:
            at = rows.index(cell.row), settings.index(cell.setting)
            z[at], p[at] = cell.delta, cell.p
            markable[at] = bool(getattr(cell, "markable", True))
            notes[at] = str(getattr(cell, "note", "") or "")
    text = np.full(z.shape, "", dtype=object)
    for i, j in np.ndindex(z.shape):
        if np.isfinite(z[i, j]):
            mark = "*" if np.isfinite(p[i, j]) and p[i, j] < alpha else ""
            text[i, j] = f"{z[i, j]:+.3f}{mark if markable[i, j] else UNSTARRED_MARK}"
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    label = METRIC_LABELS.get(metric, metric)
    figure = go.Figure(go.Heatmap(
        z=z, x=[Setting(s).label for s in settings], y=rows, text=text, texttemplate="%{text}",
        customdata=p, hovertext=notes, colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit,
        colorbar={"title": {"text": f"Δ {label}"}},
        hovertemplate=f"%{{y}} %{{x}}<br>Δ {label} vs flat %{{z:+.4f}}<br>{p_label} %{{customdata:.3g}}"
                      "<br>%{hovertext}<extra></extra>"))
    figure.update_layout(height=120 + 45 * len(rows), margin={"t": 10, "l": 10, "r": 10, "b": 10},
                         xaxis_title="hierarchy setting (minus flat)")
    figure.update_yaxes(autorange="reversed")
    return figure


# -------------------------------------------------------------------------------------- embeddings
def umap_figure(points: pd.DataFrame, highlight: str | None = None, title: str = "") -> go.Figure:
    """2-D map of code embeddings, one trace per chapter in the fixed chapter order and colour.

    ``points``: columns ``x``, ``y``, ``code``, ``title``, ``chapter``. ``customdata`` carries
    (code, title, chapter) so a selection turns into a code list. ``highlight`` adds a star on that
    code (same code on both maps of the embeddings page). Traces are built as plain dicts from
    numpy arrays and the customdata is a fixed-width str array: plotly validates object arrays
    element by element, which made a 5,000-code map take a second.
    """
    kind = "scattergl" if len(points) > 1500 else "scatter"
    titles = chapter_titles()
    x = points["x"].to_numpy(float)
    y = points["y"].to_numpy(float)
    chapters = points["chapter"].astype(str).to_numpy(str)
    codes = points["code"].astype(str).to_numpy(str)
    custom = np.column_stack([codes, points["title"].astype(str).to_numpy(str), chapters]) if len(points) \
        else np.empty((0, 3), dtype=str)
    present = set(chapters.tolist())
    traces = []
    for chapter in [c for c in CHAPTERS if c in present] + sorted(present - set(CHAPTERS)):
        rows = chapters == chapter
        traces.append({
            "type": kind, "x": x[rows], "y": y[rows], "mode": "markers", "name": chapter,
            "marker": {"size": 6, "color": CHAPTER_COLOURS.get(chapter, "#B0B0B0"), "opacity": 0.8},
            "customdata": custom[rows],
            "hovertemplate": ("<b>%{customdata[0]}</b> %{customdata[1]}<br>chapter %{customdata[2]}"
                              f" ({html_lib.escape(titles.get(chapter, '')[:50])})<extra></extra>")})
    hit = codes == str(highlight) if highlight is not None else np.zeros(len(codes), bool)
    if hit.any():
        traces.append({
            "type": "scatter", "x": x[hit], "y": y[hit], "mode": "markers+text",
            "name": f"selected: {highlight}", "text": codes[hit], "textposition": "top center",
            "customdata": custom[hit],
            "marker": {"symbol": "star", "size": 18, "color": "#FFD700",
                       "line": {"color": "#000000", "width": 1.5}},
            "hovertemplate": "<b>%{customdata[0]}</b> %{customdata[1]}<extra>selected</extra>"})
    figure = go.Figure(data=traces)
    figure.update_layout(title={"text": title, "x": 0.01}, height=480, legend_title_text="chapter",
                         margin={"t": 40, "l": 10, "r": 10, "b": 10})
    figure.update_xaxes(showticklabels=False, title="")
    figure.update_yaxes(showticklabels=False, title="")
    return figure


def relationship_bars_figure(table: pd.DataFrame) -> go.Figure:
    """Mean pairwise cosine per relationship (same category / same chapter / different chapter) across
    settings. ``table``: index or column ``setting`` plus the three relationship columns (and
    optional ``std_<relationship>`` columns, shown on hover)."""
    frame = table.reset_index() if "setting" not in table.columns else table.copy()
    frame = frame.assign(rank=frame["setting"].map(setting_rank)).sort_values("rank")
    x = [Setting(s).label for s in frame["setting"]]
    figure = go.Figure()
    for name, label in RELATIONSHIP_LABELS.items():
        if name not in frame:
            continue
        spread = frame.get(f"std_{name}", pd.Series(np.nan, index=frame.index)).to_numpy(float)
        figure.add_trace(go.Bar(x=x, y=frame[name], name=label, marker_color=RELATIONSHIP_COLOURS[name],
                                customdata=spread,
                                hovertemplate=f"{label} %{{x}}<br>mean cosine %{{y:.4f}}"
                                              "<br>SD over pairs %{customdata:.3f}<extra></extra>"))
    _setting_axis(figure)
    figure.update_layout(barmode="group", yaxis_title="mean pairwise cosine", height=400,
                         margin={"t": 20, "l": 10, "r": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


def chapter_heatmap_figure(wide: pd.DataFrame) -> go.Figure:
    """Chapter x setting mean intra-chapter cosine (the paper's per-chapter heatmap layout).

    ``wide``: index chapters, columns setting keys ('000'...); settings are put in the fixed order.
    """
    settings = [s for s in SETTINGS if s in wide.columns]
    chapters = [c for c in CHAPTERS if c in wide.index] + [c for c in wide.index if c not in CHAPTERS]
    values = wide.loc[chapters, settings].to_numpy(float)
    titles = chapter_titles()
    hover = np.array([[titles.get(c, "")[:60]] * len(settings) for c in chapters], dtype=object)
    figure = go.Figure(go.Heatmap(
        z=values, x=[Setting(s).label for s in settings], y=chapters, colorscale="Viridis",
        text=np.vectorize(lambda v: "" if not np.isfinite(v) else f"{v:.2f}")(values),
        texttemplate="%{text}", customdata=hover, colorbar={"title": {"text": "mean cosine"}},
        hovertemplate="chapter %{y}: %{customdata}<br>%{x}: %{z:.3f}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_layout(height=max(300, 26 * len(chapters) + 80),
                         margin={"t": 10, "l": 10, "r": 10, "b": 10})
    return figure


def tightness_auroc_figure(joined: pd.DataFrame, measure: str = "tightness") -> go.Figure:
    """Cluster tightness against AUROC per setting (``tightness_vs_auroc`` output), with Spearman's rho."""
    frame = joined.reset_index() if "setting" not in joined.columns else joined.copy()
    spearman = joined.attrs.get("spearman", {})
    rho = spearman.get("rho", float("nan"))
    labels = [Setting(s).label for s in frame["setting"]]
    figure = go.Figure(go.Scatter(
        x=frame[measure], y=frame["auroc"], mode="markers+text", text=labels, textposition="top center",
        marker={"size": 11, "color": "#511CFB"}, customdata=frame[["setting"]].to_numpy(object),
        hovertemplate=f"%{{text}}<br>{measure} %{{x:.4f}}<br>AUROC %{{y:.4f}}<extra></extra>"))
    rho_text = "n/a" if not np.isfinite(rho) else f"{rho:+.2f}"
    figure.update_layout(title={"text": f"Spearman rho = {rho_text} (n = {spearman.get('n', len(frame))})",
                                "x": 0.01},
                         xaxis_title=measure.replace("_", " "), yaxis_title="test AUROC", height=400,
                         margin={"t": 40, "l": 10, "r": 10, "b": 10})
    return figure


# ---------------------------------------------------------------------------------------- transfer
def transfer_figure(table: pd.DataFrame, metric: str = "auroc", paper: pd.DataFrame | None = None
                    ) -> go.Figure:
    """Transfer probe results per setting, bars per model with 95% intervals; optional paper bars.

    ``table``: ``model``, ``setting``, ``value``, ``ci_low``, ``ci_high``. ``paper``: ``model``,
    ``setting``, ``value`` (the paper's eICU Table 3), drawn hatched and labelled as the paper's.
    """
    figure = go.Figure()
    label = METRIC_LABELS.get(metric, metric)
    values = [table["ci_low"], table["ci_high"], table["value"]]
    for model in sorted(table["model"].unique()):
        rows = table[table["model"] == model].copy()
        rows = rows.assign(rank=rows["setting"].map(setting_rank)).sort_values("rank")
        value = rows["value"].to_numpy(float)
        figure.add_trace(go.Bar(
            x=[Setting(s).label for s in rows["setting"]], y=value, name=model_name(model),
            offsetgroup=model, marker_color=MODEL_COLOURS.get(model),
            error_y={"type": "data", "array": np.nan_to_num(rows["ci_high"].to_numpy(float) - value),
                     "arrayminus": np.nan_to_num(value - rows["ci_low"].to_numpy(float)), "visible": True},
            customdata=rows[["ci_low", "ci_high"]].to_numpy(float),
            hovertemplate=(f"{model_name(model)} %{{x}}<br>{label} %{{y:.4f}}"
                           "<br>95% CI %{customdata[0]:.4f} to %{customdata[1]:.4f}<extra></extra>")))
        if paper is not None and not paper.empty and model in set(paper["model"]):
            prow = paper[paper["model"] == model]
            prow = prow.assign(rank=prow["setting"].map(setting_rank)).sort_values("rank")
            values.append(prow["value"])
            figure.add_trace(go.Bar(
                x=[Setting(s).label for s in prow["setting"]], y=prow["value"],
                name=f"{PAPER_LABEL}: {model_name(model)}", offsetgroup=f"paper-{model}",
                marker={"color": MODEL_COLOURS.get(model), "opacity": 0.45, "pattern": {"shape": "/"}},
                hovertemplate=(f"{PAPER_LABEL} {model_name(model)} %{{x}}<br>{label} %{{y:.4f}}"
                               "<extra></extra>")))
    finite = pd.concat(values).to_numpy(float)
    finite = finite[np.isfinite(finite)]
    low = max(0.0, float(finite.min()) - 0.05) if finite.size else 0.0
    high = min(1.0, float(finite.max()) + 0.05) if finite.size else 1.0
    _setting_axis(figure)
    figure.update_layout(barmode="group", yaxis={"title": label, "range": [low, high]}, height=420,
                         margin={"t": 20, "l": 10, "r": 10, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return figure


def coverage_figure(coverage: pd.DataFrame) -> go.Figure:
    """Share of target-site diagnosis occurrences by how they relate to the source's codes."""
    figure = go.Figure(go.Bar(
        x=coverage["share"], y=coverage["overlap"], orientation="h", marker_color="#00A08B",
        customdata=coverage[["occurrences"]].to_numpy(),
        text=[f"{s:.1%}" for s in coverage["share"]], textposition="auto",
        hovertemplate="%{y}: %{x:.1%} (%{customdata[0]:,} occurrences)<extra></extra>"))
    figure.update_layout(xaxis={"title": "share of target occurrences", "tickformat": ".0%"},
                         height=260, margin={"t": 10, "l": 10, "r": 10, "b": 10})
    figure.update_yaxes(autorange="reversed")
    return figure


# ------------------------------------------------------------------------------------- cohort tables
def dataset_text(summary: dict) -> str:
    """A MEDS dataset's name, version and MEDS version from its dataset.json ('' for other sources)."""
    dataset = summary.get("dataset") or {}
    parts = [str(dataset[key]) for key in ("dataset_name", "dataset_version") if dataset.get(key)]
    if dataset.get("meds_version"):
        parts.append(f"MEDS {dataset['meds_version']}")
    return " · ".join(parts)


def cohort_summary_table(summaries: Mapping[str, dict]) -> pd.DataFrame:
    """One column per site: the counts a reader checks first (from ``cohort_summary``)."""
    rows = {
        "source": lambda s: str(s.get("source", s.get("site", ""))),
        "dataset": dataset_text,
        "split": lambda s: str(s.get("split_source", "")),
        "patients": lambda s: f"{s['patients']:,}",
        "visits": lambda s: f"{s['visits']:,}",
        "diagnosis rows": lambda s: f"{s['diagnosis_rows']:,}",
        "distinct source codes": lambda s: f"{s['distinct_codes']:,}",
        "distinct ICD-10-CM codes": lambda s: f"{s['distinct_icd10_codes']:,}",
        "ICD-9 share of rows": lambda s: f"{s['icd9_share']:.1%}",
        "ICD-9 rows mapped to ICD-10-CM": lambda s: "no ICD-9 rows" if not np.isfinite(
            s["icd9_mapping_coverage"]) else f"{s['icd9_mapping_coverage']:.1%}",
        "all rows resolved": lambda s: f"{s['mapping_coverage']:.1%}",
        "visits per patient (mean)": lambda s: f"{s['visits_per_patient']['mean']:.2f}",
        "codes per visit (mean)": lambda s: f"{s['codes_per_visit']['mean']:.2f}",
        "code set": lambda s: str(s.get("code_set_year") or ""),
        "synthetic": lambda s: "SYNTHETIC" if s.get("synthetic") else "no",
    }
    table = pd.DataFrame({site: {name: fmt(summary) for name, fmt in rows.items()}
                          for site, summary in summaries.items()})
    table.index.name = "measure"
    return table


def data_quality_table(summaries: Mapping[str, dict]) -> pd.DataFrame:
    """Every row a loader dropped, distrusted or noted, by site and reason (non-zero counts only)."""
    rows = [{"site": site, "what": name.replace("_", " "), "rows": int(count)}
            for site, summary in summaries.items() for name, count in summary.get("problems", {}).items()
            if count]
    return pd.DataFrame(rows, columns=["site", "what", "rows"])


def task_prevalence_table(summaries: Mapping[str, dict]) -> pd.DataFrame:
    """Samples and positive rate per task and split, for every site."""
    rows = []
    for site, summary in summaries.items():
        for task, info in summary["tasks"].items():
            row = {"site": site, "task": task, "samples": info["n"], "positive rate": info["positive_rate"]}
            for split, part in info["by_split"].items():
                row[f"{split} positive rate"] = part["positive_rate"]
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ graph network (pyvis)
_EXTERNAL_TAGS = (
    re.compile(r"<!--.*?-->", re.S),  # pyvis' commented-out ../node_modules links
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.S | re.I),
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>", re.S | re.I),
)


def strip_external_resources(page: str) -> str:
    """Remove ``<link href=http...>`` / ``<script src=http...>`` (pyvis' bootstrap CDN) so the page
    loads nothing from outside: the network view must work offline and leak nothing (conventions B.7)."""
    for pattern in _EXTERNAL_TAGS:
        page = pattern.sub("", page)
    return page


def _layout(nodes: pd.DataFrame, edges: pd.DataFrame, scale: float = 450.0) -> dict[int, tuple[float, float]]:
    """Deterministic spring layout (seeded), so the browser needs no physics simulation."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(nodes["node_id"].tolist())
    graph.add_weighted_edges_from((int(s), int(t), 0.2 + float(w)) for s, t, w in
                                  edges[["source", "target", "weight"]].itertuples(index=False))
    positions = nx.spring_layout(graph, seed=0, weight="weight", iterations=60)
    return {int(k): (float(v[0]) * scale, float(v[1]) * scale) for k, v in positions.items()}


def network_legend_html() -> str:
    items = "".join(
        f'<span style="margin-right:14px"><span style="display:inline-block;width:26px;'
        f'border-top:3px {"dashed" if s["dashes"] else "solid"} {s["color"]};vertical-align:middle">'
        f'</span> {s["label"]}</span>' for s in EDGE_STYLES.values())
    return (f'<div id="hicd-legend" style="font:12px sans-serif;padding:4px 6px">{items}'
            '<span>node colour = ICD-10-CM chapter, size = train admissions; star = selected code'
            '</span></div>')


def graph_network_html(nodes: pd.DataFrame, edges: pd.DataFrame, height: int = 560) -> str:
    """A self-contained pyvis page of a :meth:`CodeGraph.neighbourhood` (nodes with ``hop``).

    Edge kinds differ by colour and dashes (legend on top); node colour is the chapter, size the
    log frequency; the centre (hop 0) is a star. Positions are precomputed and physics is off, so
    it renders at once. External ``<link>``/``<script src>`` tags are stripped.
    """
    from pyvis.network import Network

    net = Network(height=f"{height}px", width="100%", cdn_resources="in_line", directed=False)
    positions = _layout(nodes, edges)
    for row in nodes.itertuples():
        chapter = str(row.chapter) if isinstance(row.chapter, str) and row.chapter else "UNK"
        is_centre = int(getattr(row, "hop", 1)) == 0
        net.add_node(int(row.node_id), label=str(row.name), shape="star" if is_centre else "dot",
                     color=CHAPTER_COLOURS.get(chapter, "#B0B0B0"),
                     size=float(10 + 4 * np.log1p(max(float(row.frequency), 0.0)))
                     * (1.5 if is_centre else 1),
                     title=f"{row.name} ({row.kind}): {str(row.title)[:80]} | chapter {chapter} | "
                           f"train admissions {int(row.frequency):,}",
                     x=positions[int(row.node_id)][0], y=positions[int(row.node_id)][1], physics=False)
    for edge in edges.itertuples():
        style = EDGE_STYLES.get(str(edge.kind), EDGE_STYLES["cooccurrence"])
        pmi = "" if not np.isfinite(edge.pmi) else f", PMI {edge.pmi:.2f}"
        net.add_edge(int(edge.source), int(edge.target), color=style["color"], dashes=style["dashes"],
                     width=float(1 + 3 * edge.weight),
                     title=f"{style['label']}: weight {edge.weight:.2f}{pmi}")
    net.toggle_physics(False)
    page = strip_external_resources(net.generate_html())
    return page.replace("<body>", "<body>" + network_legend_html(), 1)
