"""The paper's published Tables 1-3 (see :mod:`hicd_core.stats`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hicd_core.stats.metrics import PAPER_RESULTS_PATH


# ----------------------------------------------------------------------------------- paper numbers
def load_paper_results(path: Path | str | None = None) -> pd.DataFrame:
    """The paper's final Tables 1-3 (96 rows): table, task, model, setting, metric, value, significant,
    best, dataset, source. ``setting`` stays a 3-character string ('000' ... '111').

    >>> df = load_paper_results()
    >>> row = df.query("table == 1 and model == 'bert' and setting == '000' and metric == 'auroc'")
    >>> df.shape, row["value"].item()
    ((96, 10), 0.6808)
    """
    df = pd.read_csv(PAPER_RESULTS_PATH if path is None else path, dtype={"setting": str, "source": str})
    for col in ("significant", "best"):
        if df[col].dtype != bool:
            df[col] = df[col].astype(str).str.lower().map({"true": True, "false": False}).astype(bool)
    return df
