"""Embedding views: UMAP points with titles and chapters, nearest-neighbour tables, and the
tightness tables a sweep's stored embedding summaries give (what the Embeddings page draws)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from hicd_core.experiments.runstore import RunStore
from hicd_core.hierarchy import describe


def embedding_points(codes: list[str], coords: np.ndarray) -> pd.DataFrame:
    """UMAP coordinates with each code's title and chapter (graph ancestor nodes left out)."""
    from hicd_core.experiments.embeddings import code_labels

    labels = code_labels(codes)
    frame = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "code": labels["code"],
                          "chapter": labels["chapter"], "kind": labels["kind"]})
    frame = frame[frame["kind"] == "code"].drop(columns="kind")
    frame["title"] = [describe(str(code).replace(".", "")) for code in frame["code"]]
    return frame.reset_index(drop=True)


def stored_embedding_summaries(runs: list[dict], model: str, evaluation_task: str, seed: int
                               ) -> dict[str, dict]:
    """setting -> the embedding summary the sweep stored (relationship means, silhouette, chapters)."""
    out = {}
    for run in runs:
        spec = run["spec"]
        if (spec["kind"], spec["model"], spec["task"], spec["seed"]) != ("task", model, evaluation_task,
                                                                          seed):
            continue
        summary = run.get("metrics", {}).get("embeddings")
        if summary:
            out[spec["setting"]] = summary
    return out


def tightness_frames(summaries: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tightness table per setting, chapter x setting mean cosine) from stored summaries."""
    from hicd_core.experiments.embeddings import chapter_similarity_wide, tightness_table

    per_setting = {}
    chapters = {}
    for setting, summary in summaries.items():
        # Current sweeps store a flat tightness-table entry; early ones nested it under "relationship".
        relationship = dict(summary.get("relationship", summary))
        relationship["silhouette"] = summary.get("silhouette",
                                                 summary.get("silhouette_by_chapter", float("nan")))
        per_setting[setting] = relationship
        if summary.get("chapters"):
            chapters[setting] = pd.DataFrame(summary["chapters"])
    tight = tightness_table(per_setting)
    for name in ("same_category", "same_chapter", "different_chapter"):
        tight[f"std_{name}"] = [float(per_setting[s].get(f"std_{name}", np.nan)) for s in tight.index]
    wide = chapter_similarity_wide(chapters) if chapters else pd.DataFrame()
    return tight, wide


def neighbours_table(codes: list[str], matrix: np.ndarray, points: pd.DataFrame, code: str, k: int = 10
                     ) -> pd.DataFrame:
    """The ``k`` codes closest in cosine to ``code`` under one setting, with titles and chapters.

    ``points`` is the bundle's :func:`embedding_points` frame, which already labels every code row
    (neighbours are code rows only: graph ancestor nodes are never candidates)."""
    from hicd_core.experiments.embeddings import nearest_neighbours

    table = nearest_neighbours(matrix, codes, code, k=k)
    labels = points.drop_duplicates("code").set_index("code")
    table["chapter"] = labels["chapter"].reindex(table["code"]).to_numpy()
    table["title"] = labels["title"].reindex(table["code"]).to_numpy()
    return table


def load_embedding_bundle(store: RunStore, run_id: str) -> tuple[list[str], np.ndarray, pd.DataFrame] | None:
    """(codes, embedding matrix, UMAP points) a sweep stored for a run; None when it stored none."""
    folder = store.run_dir(run_id)
    try:
        codes = json.loads((folder / "embedding_codes.json").read_text())
        matrix = np.load(folder / "embeddings.npy", allow_pickle=False)
        coords = np.load(folder / "umap.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return codes, matrix, embedding_points(codes, coords)
