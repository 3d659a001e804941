"""Code embeddings: two hierarchy settings side by side on UMAP maps, nearest neighbours of one code,
and how tightly each setting packs codes of the same category and chapter."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hicd_app import cache, widgets
from hicd_core.analysis import charts
from hicd_core.experiments.embeddings import TIGHTNESS_COLUMNS
from hicd_core.experiments.families import has_embeddings
from hicd_core.hierarchy import SETTINGS, Setting

ctx, results = widgets.results_page("Code embeddings", data=False)
task_runs = results[results["kind"] == "task"] if not results.empty else results
if task_runs.empty:
    st.info("No finished task runs in this store yet; embeddings appear as runs finish.")
    st.stop()

# The counts baselines have no code embeddings (one weight per feature): nothing to map.
models = sorted({m for m in task_runs["model"] if has_embeddings(m)}, key=lambda m: (m != "graph", m))
if not models:
    st.info("The finished task runs are count baselines only, which have no code embeddings; the maps appear "
            "as HICD-BERT or HICD-Graph runs finish.")
    st.stop()
controls = st.columns(3)
model = controls[0].selectbox("Model", models, format_func=charts.model_name, key="emb_model",
                              help="The paper analyses HICD-Graph's GCN code embeddings; HICD-BERT's are its "
                                   "code embedding plus the enabled hierarchy embeddings.")
part = task_runs[task_runs["model"] == model]
task = controls[1].selectbox("Task", sorted(set(part["task"])), key="emb_task")
part = part[part["task"] == task]
seed = controls[2].selectbox("Seed", sorted(set(part["seed"])), key="emb_seed")
part = part[part["seed"] == seed]
run_of = dict(zip(part["setting"], part["run_id"], strict=True))
settings = [s for s in SETTINGS if s in run_of]


@st.fragment
def maps_panel() -> None:
    """Two settings side by side with the same code highlighted; reruns only itself."""
    st.subheader("UMAP of code embeddings, coloured by chapter")
    left_default = settings.index("000") if "000" in settings else 0
    right_default = settings.index("011") if "011" in settings else len(settings) - 1
    pick = st.columns(2)
    chosen = [pick[0].selectbox("Left map", settings, index=left_default,
                                format_func=lambda s: Setting(s).label, key="emb_left"),
              pick[1].selectbox("Right map", settings, index=right_default,
                                format_func=lambda s: Setting(s).label, key="emb_right")]
    bundles = {s: cache.embedding_bundle(ctx.root_key, run_of[s]) for s in chosen}
    missing = [Setting(s).label for s, bundle in bundles.items() if bundle is None]
    if missing:
        st.info(f"These runs of seed {seed} stored no embeddings: {', '.join(missing)}. A sweep stores them "
                "for its lowest seed only unless run with `--embeddings all` (older sweeps, or "
                "`--embeddings none`, stored none); pick that seed above.")
        return
    shared = sorted(set(bundles[chosen[0]][2]["code"]) & set(bundles[chosen[1]][2]["code"]))
    if not shared:
        st.info("The two runs share no code.")
        return
    titles = dict(zip(bundles[chosen[0]][2]["code"], bundles[chosen[0]][2]["title"], strict=True))
    default = shared.index("I21") if "I21" in shared else 0
    code = st.selectbox("Highlight a code (type to search)", shared, index=default, key="emb_code",
                        format_func=lambda c: f"{c} — {titles.get(c, '')[:70]}")
    columns = st.columns(2)
    for column, setting, side in zip(columns, chosen, ("left", "right"), strict=True):
        _, _, points = bundles[setting]
        with column:
            figure = cache.umap_chart(ctx.root_key, run_of[setting], code,
                                          f"{charts.model_name(model)}, {Setting(setting).label}")
            st.plotly_chart(figure, key=f"emb_umap_{side}", width="stretch")
            widgets.downloads(f"emb_umap_{side}", points, figure, name=f"umap_{model}_{setting}")
            st.markdown(f"**Nearest neighbours of {code} under {Setting(setting).label}**")
            near = cache.neighbours(ctx.root_key, run_of[setting], code, 10)
            st.dataframe(near, width="stretch", hide_index=True,
                         column_config={"cosine": st.column_config.NumberColumn(format="%.3f")})
    st.caption("How to read it: each dot is a code, placed so that codes with similar embeddings (cosine) "
               "are close; colour is the ICD-10-CM chapter (22 chapters + UNK, same colours everywhere). "
               "The star is the highlighted code on both maps. UMAP distances between far-apart groups are "
               "not meaningful; the neighbour tables give the exact cosine similarities.")


@st.fragment
def tightness_panel() -> None:
    """Relationship similarities, the per-chapter heatmap and tightness vs AUROC across settings."""
    _, problem = cache.finished_runs(ctx.root_key, ctx.version)
    widgets.show_problem(problem)
    frames = cache.tightness(ctx.root_key, ctx.version, model, task, int(seed))
    if frames is None:
        st.info("No stored embedding summaries for these runs.")
        return
    tight, wide = frames
    figures = cache.tightness_figures(ctx.root_key, ctx.version, model, task, int(seed))
    st.subheader("Cosine similarity by relationship, across settings")
    bars = figures["bars"]
    st.plotly_chart(bars, key="emb_bars", width="stretch")
    st.caption("How to read it: mean cosine similarity over all pairs of codes in the same 3-character "
               "category, in the same chapter but another category, and in different chapters (the paper's "
               "Fig. 4). A hierarchy that organises the space raises the first two bars more than the third. "
               f"{charts.LEVEL_ORDER_CAPTION}")
    widgets.downloads("emb_bars", tight.reset_index(), bars, name=f"relationship_similarity_{model}")

    if figures["heatmap"] is not None:
        st.subheader("Mean similarity within each chapter")
        heatmap = figures["heatmap"]
        st.plotly_chart(heatmap, key="emb_chapters", width="stretch")
        st.caption("How to read it: each cell is the mean cosine between codes of one chapter under one "
                   "setting (the paper's per-chapter heatmap). Brighter = the chapter's codes sit closer "
                   "together.")
        widgets.downloads("emb_chapters", wide.reset_index(names="chapter"), heatmap,
                            name=f"chapter_similarity_{model}")

    st.subheader("Tightness vs AUROC")
    measure = st.selectbox("Tightness measure", list(TIGHTNESS_COLUMNS), key="emb_measure",
                           help="tightness = same category − different chapter; chapter contrast = same "
                                "chapter − different chapter; silhouette uses chapters as clusters.")
    auroc = pd.Series(dict(zip(part["setting"], part["auroc"].astype(float), strict=True)))
    joined, scatter = cache.tightness_scatter(ctx.root_key, ctx.version, model, task, int(seed), measure,
                                              auroc)
    st.plotly_chart(scatter, key="emb_scatter", width="stretch")
    st.caption("How to read it: one point per setting. The paper claims the settings with the tightest "
               "clusters also reach the best AUROC; a positive Spearman rho supports that. With 8 points or "
               "fewer, rho is weak evidence.")
    widgets.downloads("emb_scatter", joined.reset_index(), scatter, name=f"tightness_vs_auroc_{model}")


maps_panel()
tightness_panel()
