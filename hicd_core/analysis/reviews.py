"""Clinician reviews of patient explanations, kept in a local SQLite file in the data directory.

Several reviewers may use one app (one Streamlit process, one thread per session) or several app
processes on one data directory, so every call opens its own connection, the database runs in WAL
mode (readers never block the writer) with a busy timeout (a writer waits for another instead of
failing), and each insert is one short transaction. Reviews hold de-identified indices only
(``patient_index`` = the cohort's dense ``patient_id``), never source identifiers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hicd_core.runtime import data_dir, safe_csv

DB_NAME = "reviews.sqlite"
VERDICTS = ("plausible", "implausible", "unsure")
COLUMNS = ("id", "reviewer", "run_id", "model", "setting", "task", "patient_index", "sample_id", "verdict",
           "comment", "created_at")
MAX_REVIEWER, MAX_COMMENT = 100, 5000
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    run_id TEXT NOT NULL,
    model TEXT NOT NULL,
    setting TEXT NOT NULL,
    task TEXT NOT NULL,
    patient_index INTEGER NOT NULL,
    sample_id INTEGER,
    verdict TEXT NOT NULL CHECK (verdict IN ('plausible', 'implausible', 'unsure')),
    comment TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_patient ON reviews (patient_index);
"""


class ReviewError(ValueError):
    """A review that cannot be stored as given (the message says which field and why)."""


def db_path(path: Path | str | None = None) -> Path:
    """``$HICD_DATA_DIR/reviews.sqlite`` unless a path is given (tests, other stores)."""
    return Path(path) if path is not None else data_dir() / DB_NAME


#: ``HICD_REVIEW_JOURNAL``: ``wal``, ``delete`` (rollback journal) or ``auto`` (the default: WAL unless the
#: database lies on a network file system or SQLite refuses WAL there).
JOURNAL_ENV = "HICD_REVIEW_JOURNAL"
JOURNAL_MODES = ("auto", "wal", "delete")
#: File systems on which WAL's shared-memory index does not work across machines (SQLite's own advice).
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "afs", "lustre", "glusterfs",
              "ceph", "fuse.glusterfs", "fuse.ceph", "davfs", "fuse.davfs2")


def network_filesystem(path: Path) -> bool:
    """Whether ``path`` lies on a network file system (by the longest matching mount in /proc/mounts;
    False where the mount table cannot be read)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    target, best, fstype = str(Path(path).resolve()), -1, ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, fstype = len(point), parts[2]
    return fstype.lower() in NETWORK_FS


def journal_choice(path: Path, requested: str | None = None) -> str:
    """``wal`` or ``delete`` for the database at ``path``: the requested mode, else ``$HICD_REVIEW_JOURNAL``,
    else ``auto`` (rollback journaling on a network file system, where WAL's shared memory fails)."""
    mode = (requested or os.environ.get(JOURNAL_ENV) or "auto").strip().lower()
    if mode not in JOURNAL_MODES:
        raise ReviewError(f"{JOURNAL_ENV} must be one of {', '.join(JOURNAL_MODES)}; got {mode!r}")
    if mode == "auto":
        return "delete" if network_filesystem(path.parent) else "wal"
    return mode


def _set_journal(conn: sqlite3.Connection, wanted: str) -> str:
    """Switch the database to ``wanted`` (``wal`` / ``delete``) once and return the mode in force.

    Changing the journal mode needs an exclusive lock and SQLite answers "database is locked" at once,
    without the busy handler, when another connection holds the database meanwhile (first use by
    several writers): so retry until the busy timeout. Where WAL cannot work SQLite keeps the old mode
    (or fails with an I/O error): fall back to the rollback journal then.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            current = conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
            if current != wanted:
                current = conn.execute(f"PRAGMA journal_mode = {wanted.upper()}").fetchone()[0].lower()
            if wanted == "wal" and current != "wal":  # refused: e.g. a VFS without shared memory
                current = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0].lower()
            return current
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                if wanted == "wal":  # WAL failed outright (shared memory, locking): rollback journal
                    wanted = "delete"
                    continue
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Kept for callers of the earlier name: WAL with the same retry and fallback."""
    _set_journal(conn, "wal")


@contextlib.contextmanager
def connect(path: Path | str | None = None, *, schema: str = "", journal: str | None = None
            ) -> Iterator[sqlite3.Connection]:
    """A fresh connection per call (sqlite3 connections must not be shared across threads) in
    autocommit mode, with a busy timeout, the journal mode of :func:`journal_choice` and the review
    schema plus ``schema`` (the review sessions' tables live in the same file)."""
    target = db_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = _set_journal(conn, journal_choice(target, journal))
        # WAL is durable enough with NORMAL; the rollback journal needs FULL not to lose a commit.
        conn.execute(f"PRAGMA synchronous = {'NORMAL' if mode == 'wal' else 'FULL'}")
        conn.executescript(_SCHEMA + schema)
        yield conn
    finally:
        conn.close()


_connect = connect


def _clean_reviewer(reviewer: object) -> str:
    name = str(reviewer or "").strip()
    if not name:
        raise ReviewError("reviewer name is required (it may not be empty or blank)")
    if len(name) > MAX_REVIEWER:
        raise ReviewError(f"reviewer name is longer than {MAX_REVIEWER} characters")
    return name


def _clean_verdict(verdict: object) -> str:
    value = str(verdict or "").strip().lower()
    if value not in VERDICTS:
        raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    return value


def add_review(reviewer: str, run_id: str, model: str, setting: str, task: str, patient_index: int,
               verdict: str, comment: str = "", *, sample_id: int | None = None,
               path: Path | str | None = None) -> int:
    """Store one review (one short transaction) and return its id. Raises :class:`ReviewError`."""
    name = _clean_reviewer(reviewer)
    value = _clean_verdict(verdict)
    text = str(comment or "").strip()
    if len(text) > MAX_COMMENT:
        raise ReviewError(f"comment is longer than {MAX_COMMENT} characters")
    for field, content in (("run_id", run_id), ("model", model), ("setting", setting), ("task", task)):
        if not str(content or "").strip():
            raise ReviewError(f"{field} is required")
    try:
        index = int(patient_index)
    except (TypeError, ValueError) as exc:
        raise ReviewError(f"patient_index must be an integer, got {patient_index!r}") from exc
    created = datetime.now(UTC).isoformat(timespec="seconds")
    row = (name, str(run_id), str(model), str(setting), str(task), index,
           None if sample_id is None else int(sample_id), value, text, created)
    with _connect(path) as conn:
        # BEGIN IMMEDIATE takes the write lock up front, so a busy database waits (busy_timeout)
        # here rather than failing half-way through the transaction.
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                "INSERT INTO reviews (reviewer, run_id, model, setting, task, patient_index, sample_id, "
                "verdict, comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(cursor.lastrowid or 0)


def list_reviews(patient_index: int | None = None, *, run_id: str | None = None,
                 run_ids: Iterable[str] | None = None, model: str | None = None, task: str | None = None,
                 reviewer: str | None = None, path: Path | str | None = None) -> pd.DataFrame:
    """Reviews (newest first), optionally for one patient / run / model / task / reviewer.

    ``run_ids`` keeps reviews of any of these runs only (an empty collection matches none). A
    patient index is dense per cohort and restarts in every cohort, so "patient 42" names a person
    only together with the runs (whose ids carry the cohort fingerprint) it was reviewed under.
    """
    where: list[str] = []
    params: list[object] = []
    for column, value in (("patient_index", patient_index), ("run_id", run_id), ("model", model),
                          ("task", task), ("reviewer", reviewer)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(int(value) if column == "patient_index" else str(value))
    if run_ids is not None:
        ids = list(dict.fromkeys(str(r) for r in run_ids))
        where.append(f"run_id IN ({', '.join('?' * len(ids))})" if ids else "0")
        params.extend(ids)
    sql = f"SELECT {', '.join(COLUMNS)} FROM reviews"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC"
    with _connect(path) as conn:
        rows = conn.execute(sql, params).fetchall()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"id": "int64", "patient_index": "int64"}) if len(frame) else frame


def export_csv(path: Path | str | None = None, **filters: object) -> bytes:
    """Every review (or a filtered subset, see :func:`list_reviews`) as UTF-8 CSV bytes."""
    frame = list_reviews(path=path, **filters)  # type: ignore[arg-type]
    return safe_csv(frame.sort_values("id", kind="stable"), index=False).encode("utf-8")


def verdict_counts(path: Path | str | None = None, **filters: object) -> pd.Series:
    """Number of reviews per verdict (all three verdicts present, zeros included)."""
    frame = list_reviews(path=path, **filters)  # type: ignore[arg-type]
    counts = frame["verdict"].value_counts() if len(frame) else pd.Series(dtype="int64")
    return counts.reindex(list(VERDICTS), fill_value=0).astype("int64")
