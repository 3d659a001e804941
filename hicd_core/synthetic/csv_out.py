"""CSV output: tables as gzipped CSV in the real files' dialect, byte-identical for equal content.

Why: the files must look like the official exports (minimal quoting, empty fields for missing
values) and equal arguments must give equal bytes (the gzip header carries no name and mtime 0),
while full scale still writes in seconds (pyarrow formatting overlapped with compression).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hicd_core.synthetic.layout import Table

_QUOTE_NEEDED = r'[",\r\n]'
_CHUNK_ROWS = 400_000


def _quote(text: pa.Array) -> pa.Array:
    """CSV minimal quoting (as Python's csv and the real files): quote fields with , " or newlines.

    >>> _quote(pa.array(["428.0, I50.9", 'say "hi" now', None, "plain"])).to_pylist()
    ['"428.0, I50.9"', '"say ""hi"" now"', '', 'plain']
    """
    text = text.fill_null("")
    needs = pc.match_substring_regex(text, _QUOTE_NEEDED)
    if not pc.any(needs).as_py():
        return text
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, text)


def _column_text(values: object, start: int, stop: int, cache: dict[int, pa.Array]) -> pa.Array:
    """Rows ``start:stop`` of one column as quoted CSV text (missing -> empty)."""
    if isinstance(values, pd.Categorical):
        key = id(values)
        if key not in cache:
            cache[key] = _quote(pa.array(np.asarray(values.categories, dtype=object), type=pa.string()))
        codes = values.codes[start:stop]
        return cache[key].take(pa.array(codes.astype(np.int32), mask=codes < 0)).fill_null("")
    if isinstance(values, pa.Array | pa.ChunkedArray):
        chunk = values.slice(start, stop - start)
        if isinstance(chunk, pa.ChunkedArray):
            chunk = chunk.combine_chunks()
        return _quote(chunk.cast(pa.string()))
    array = np.asarray(values)[start:stop]
    if array.dtype.kind in "iub":
        return pa.array(array.astype(np.int64)).cast(pa.string())
    return _quote(pa.array(array, type=pa.string(), from_pandas=True))


def _lines_bytes(lines: pa.Array) -> memoryview:
    """The concatenated UTF-8 of a string array (its data buffer between the first and last offset)."""
    offsets_buffer, data_buffer = lines.buffers()[1], lines.buffers()[2]
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)[lines.offset: lines.offset + len(lines) + 1]
    return memoryview(data_buffer)[int(offsets[0]): int(offsets[-1])]


class _HashingSink(io.RawIOBase):
    """Binary sink that hashes what passes through, so checksums cost no second read."""

    def __init__(self, handle: io.BufferedWriter) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        return self._handle.write(data)


def _write_csv_gz(table: Table, path: Path, level: int) -> str:
    """Write one table as gzipped CSV; return the sha256 of the .gz bytes.

    Rows are formatted in chunks by pyarrow kernels and compressed on a second thread (zlib releases
    the GIL), so formatting and compression overlap. The gzip header carries no file name and mtime
    0: equal content gives equal bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(table)
    n = len(next(iter(table.values()))) if table else 0
    cache: dict[int, pa.Array] = {}
    with open(path, "wb") as raw:
        sink = _HashingSink(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=level, mtime=0) as gz, \
                ThreadPoolExecutor(max_workers=1) as pool:
            gz.write((",".join(columns) + "\n").encode())
            pending = None
            for start in range(0, n, _CHUNK_ROWS):
                stop = min(start + _CHUNK_ROWS, n)
                texts = [_column_text(table[c], start, stop, cache) for c in columns]
                lines = pc.binary_join_element_wise(*texts, ",") if len(texts) > 1 else texts[0]
                lines = pc.binary_join_element_wise(lines, "", "\n")
                data = _lines_bytes(lines)
                if pending is not None:
                    pending.result()
                pending = pool.submit(gz.write, data)
            if pending is not None:
                pending.result()
        raw.flush()
        os.fsync(raw.fileno())
    return sink.digest.hexdigest()
