"""What every sub-command shares: the one-line error type and the run-store options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hicd_core.experiments.runstore import RunStore

STORE_HELP = "run store directory (default: $HICD_DATA_DIR/runs/<--store-name>)"


class CliError(Exception):
    """An error to print as one line (exit status 2: the command line itself is wrong)."""


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help=STORE_HELP)
    parser.add_argument("--store-name", default="default")


def open_store(args: argparse.Namespace) -> RunStore:
    from hicd_core.experiments.runstore import RunStore, default_store_root

    return RunStore(Path(args.store) if args.store else default_store_root(args.store_name))


def positive_int(option: str):
    """An argparse type: an integer of at least 1, else an error naming ``option``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option} must be at least 1, got {value}")
        return value
    return parse


def _json_ready(value: Any) -> Any:
    """``value`` with every missing or non-finite number as None and numpy / pandas scalars as Python's."""
    import math

    import numpy as np
    import pandas as pd

    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        if pd.isna(value):  # pd.NA, pd.NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def strict_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259) for ``--json`` outputs: NaN and infinities become ``null``, never the
    ``NaN`` tokens Python's json writes by default, which jq and JavaScript reject."""
    import json

    return json.dumps(_json_ready(value), indent=indent, allow_nan=False)
