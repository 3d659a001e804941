"""Clinician review sessions: a facilitator's fixed, seeded item list, reviewers' answers, export/import.

The tables live in the same SQLite file as :mod:`hicd_core.analysis.reviews` and use its connection
(a fresh connection per call, busy timeout, WAL or a rollback journal where WAL cannot work). Every
answer is one upsert keyed by (session, origin, reviewer, item), so two reviewers saving at the same
instant both land and a reviewer who changes an answer replaces their own. ``origin`` is the id of
the data directory an answer was given in: sessions held at two sites are pooled by exporting one
and importing it into the other, and importing the same file twice adds nothing.

Items hold de-identified indices only (the cohort's dense ``patient_index`` and ``sample_id``).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from hicd_core.analysis.review_items import ITEM_COLUMNS, SELECTIONS
from hicd_core.analysis.reviews import MAX_COMMENT, MAX_REVIEWER, VERDICTS, ReviewError, connect

PREFERENCES = ("A", "B", "both", "neither")
PREFERENCE_WORDS = {"A": "A is more clinically plausible", "B": "B is more clinically plausible",
                    "both": "both equally plausible", "neither": "neither is plausible"}
MAX_ITEMS, MAX_TITLE = 200, 200
EXPORT_FORMAT = "hicd-review-session/1"
#: Session ids: short, case-insensitive, without look-alike characters (0/O, 1/I/L).
ID_ALPHABET, ID_LENGTH = "ABCDEFGHJKMNPQRSTUVWXYZ23456789", 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS review_sessions (
    session_id TEXT PRIMARY KEY,
    content_id TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS review_items (
    session_id TEXT NOT NULL REFERENCES review_sessions (session_id),
    position INTEGER NOT NULL,
    sample_id INTEGER NOT NULL,
    patient_index INTEGER NOT NULL,
    label INTEGER NOT NULL,
    stratum TEXT NOT NULL,
    flat_prob REAL,
    setting_prob REAL,
    disagreement REAL,
    a_is_flat INTEGER NOT NULL,
    PRIMARY KEY (session_id, position)
);
CREATE TABLE IF NOT EXISTS review_answers (
    session_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    position INTEGER NOT NULL,
    preference TEXT CHECK (preference IN ('A', 'B', 'both', 'neither')),
    verdict_a TEXT CHECK (verdict_a IN ('plausible', 'implausible', 'unsure')),
    verdict_b TEXT CHECK (verdict_b IN ('plausible', 'implausible', 'unsure')),
    comment TEXT NOT NULL DEFAULT '',
    answered_at TEXT NOT NULL,
    PRIMARY KEY (session_id, origin, reviewer, position)
);
"""
ANSWER_COLUMNS = ("session_id", "origin", "reviewer", "position", "preference", "verdict_a", "verdict_b",
                  "comment", "answered_at")


@dataclass(frozen=True)
class SessionConfig:
    """What a facilitator chose. ``store_root`` stays local (never exported); the rest travels.

    Attributes:
        title: a free name for the session. model / task / seed: the runs compared.
        setting: the hierarchical setting compared with flat (``000``). selection: a key of
            :data:`~hicd_core.analysis.review_items.SELECTIONS`. n_items, rng_seed: the item list.
        blinded: A/B without setting names. hide_risk: blinded and without risk numbers.
        flat_run / setting_run: the two run ids. cohort_fingerprint: the cohort the items index.
    """

    title: str
    model: str
    task: str
    seed: int
    setting: str
    selection: str
    n_items: int
    rng_seed: int
    blinded: bool
    hide_risk: bool
    flat_run: str
    setting_run: str
    cohort_fingerprint: str
    store_root: str = ""

    def shared(self) -> dict[str, Any]:
        """The fields that travel with an export (no local path)."""
        out = asdict(self)
        out.pop("store_root")
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def clean_reviewer(name: object) -> str:
    """A reviewer name, stripped; raises :class:`ReviewError` with a clear message."""
    text = " ".join(str(name or "").split())
    if not text:
        raise ReviewError("Your name is required to join a session (it may not be blank).")
    if len(text) > MAX_REVIEWER:
        raise ReviewError(f"Your name is {len(text)} characters long; at most {MAX_REVIEWER} are allowed.")
    return text


def clean_comment(comment: object) -> str:
    text = str(comment or "").strip()
    if len(text) > MAX_COMMENT:
        raise ReviewError(f"The comment is {len(text):,} characters long; at most {MAX_COMMENT:,} are "
                          "allowed. Shorten it and save again.")
    return text


def normalise_id(session_id: object) -> str:
    """A typed session id, upper-cased and stripped (ids are case-insensitive)."""
    return "".join(str(session_id or "").split()).upper()


def instance_id(path: Path | str | None = None) -> str:
    """This data directory's origin id (made once): answers given here carry it."""
    with connect(path, schema=_SCHEMA) as conn:
        found = conn.execute("SELECT value FROM review_meta WHERE key = 'instance'").fetchone()
        if found is None:  # first use only: a read per page view must not take the write lock
            conn.execute("INSERT OR IGNORE INTO review_meta (key, value) VALUES ('instance', ?)",
                         (secrets.token_hex(8),))
            found = conn.execute("SELECT value FROM review_meta WHERE key = 'instance'").fetchone()
        return str(found[0])


def _content_id(shared: dict[str, Any], items: pd.DataFrame) -> str:
    payload = json.dumps({"config": shared, "items": _items_records(items)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _items_records(items: pd.DataFrame) -> list[dict[str, Any]]:
    frame = items[list(ITEM_COLUMNS)].copy()
    frame["a_is_flat"] = frame["a_is_flat"].astype(bool)
    return [{k: (round(v, 12) if isinstance(v, float) else v) for k, v in row.items()}
            for row in json.loads(frame.to_json(orient="records"))]


def _insert_session(conn: sqlite3.Connection, session_id: str, content_id: str, config: dict[str, Any],
                    items: pd.DataFrame, created_at: str) -> None:
    conn.execute("INSERT INTO review_sessions (session_id, content_id, config, created_at) "
                 "VALUES (?, ?, ?, ?)",
                 (session_id, content_id, json.dumps(config, sort_keys=True), created_at))
    conn.executemany(
        "INSERT INTO review_items (session_id, position, sample_id, patient_index, label, stratum, "
        "flat_prob, setting_prob, disagreement, a_is_flat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(session_id, int(r["position"]), int(r["sample_id"]), int(r["patient_index"]), int(r["label"]),
          str(r["stratum"]), r["flat_prob"], r["setting_prob"], r["disagreement"], int(bool(r["a_is_flat"])))
         for r in _items_records(items)])


def _results_code() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(8))


def results_unlocked(config: dict[str, Any], code: object) -> bool:
    """Whether ``code`` opens the results of a session: a blinded session's decoded answers (which
    side each reviewer preferred, item by item) would unblind a reviewer still at work, so the
    Reviews page asks for the code the facilitator was given. Unblinded sessions need none."""
    expected = str(config.get("results_code") or "")
    if not config.get("blinded") or not expected:
        return True
    return secrets.compare_digest(normalise_id(code), expected)


def create_session(config: SessionConfig, items: pd.DataFrame, *, path: Path | str | None = None) -> str:
    """Store a new session with its fixed item list; returns its short id."""
    title = str(config.title or "").strip()
    if len(title) > MAX_TITLE:
        raise ReviewError(f"The session title is longer than {MAX_TITLE} characters.")
    if config.selection not in SELECTIONS:
        raise ReviewError(f"selection must be one of {', '.join(SELECTIONS)}")
    if items.empty or len(items) > MAX_ITEMS:
        raise ReviewError(f"a session holds 1 to {MAX_ITEMS} items; got {len(items)}")
    shared = {**config.shared(), "title": title, "n_items": len(items)}
    local = {**shared, "store_root": config.store_root, "results_code": _results_code()}
    with connect(path, schema=_SCHEMA) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for _ in range(20):
                session_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
                taken = conn.execute("SELECT 1 FROM review_sessions WHERE session_id = ?",
                                     (session_id,)).fetchone()
                if taken is None:
                    break
            created = _now()
            # The content id covers the id and the time too: two sessions with the same settings are two.
            content = _content_id({**shared, "session_id": session_id, "created_at": created}, items)
            _insert_session(conn, session_id, content, local, items, created)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return session_id


def get_session(session_id: str, *, path: Path | str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """(config with ``session_id`` / ``created_at``, items in order); raises ReviewError when unknown."""
    sid = normalise_id(session_id)
    if not re.fullmatch(r"[A-Z0-9]{1,16}", sid):  # never echo arbitrary text back into a page
        raise ReviewError(f"That is not a session id: an id is {ID_LENGTH} letters and digits, as the "
                          "facilitator gave it.")
    with connect(path, schema=_SCHEMA) as conn:
        row = conn.execute("SELECT config, created_at FROM review_sessions WHERE session_id = ?",
                           (sid,)).fetchone()
        if row is None:
            raise ReviewError(f"No review session with id {sid!r} in this data directory. Check the id "
                              "the facilitator gave you.")
        items = pd.read_sql_query("SELECT * FROM review_items WHERE session_id = ? ORDER BY position",
                                  conn, params=(sid,))
    items["a_is_flat"] = items["a_is_flat"].astype(bool)
    return {**json.loads(row[0]), "session_id": sid, "created_at": row[1]}, items.drop(columns="session_id")


def list_sessions(*, path: Path | str | None = None) -> pd.DataFrame:
    """Every session, newest first: id, title, model, task, setting, items, reviewers, answers."""
    with connect(path, schema=_SCHEMA) as conn:
        rows = conn.execute(
            "SELECT s.session_id, s.config, s.created_at, "
            "(SELECT COUNT(DISTINCT origin || '/' || reviewer) FROM review_answers a WHERE a.session_id = "
            "s.session_id), (SELECT COUNT(*) FROM review_answers a WHERE a.session_id = s.session_id) "
            "FROM review_sessions s ORDER BY s.created_at DESC, s.session_id").fetchall()
    out = []
    for sid, config, created, reviewers, answers in rows:
        c = json.loads(config)
        out.append({"session_id": sid, "title": c.get("title", ""), "model": c["model"], "task": c["task"],
                    "setting": c["setting"], "selection": c["selection"], "items": c["n_items"],
                    "blinded": bool(c["blinded"]), "reviewers": reviewers, "answers": answers,
                    "created_at": created})
    return pd.DataFrame(out, columns=["session_id", "title", "model", "task", "setting", "selection", "items",
                                      "blinded", "reviewers", "answers", "created_at"])


def save_answer(session_id: str, reviewer: str, position: int, *, preference: str | None = None,
                verdict_a: str | None = None, verdict_b: str | None = None, comment: str = "",
                path: Path | str | None = None) -> None:
    """Store (or replace) one reviewer's answer to one item, in one short transaction."""
    name = clean_reviewer(reviewer)
    text = clean_comment(comment)
    if preference is not None and preference not in PREFERENCES:
        raise ReviewError(f"the answer must be one of {', '.join(PREFERENCES)}; got {preference!r}")
    for verdict in (verdict_a, verdict_b):
        if verdict is not None and verdict not in VERDICTS:
            raise ReviewError(f"a verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    if preference is None and verdict_a is None and verdict_b is None:
        raise ReviewError("Choose which explanation is more clinically plausible before saving.")
    config, items = get_session(session_id, path=path)
    if int(position) not in set(items["position"].astype(int)):
        raise ReviewError(f"session {config['session_id']} has no item {int(position) + 1}")
    origin = instance_id(path)
    with connect(path, schema=_SCHEMA) as conn:
        conn.execute(
            "INSERT INTO review_answers (session_id, origin, reviewer, position, preference, verdict_a, "
            "verdict_b, comment, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, "
            "origin, reviewer, position) DO UPDATE SET preference = excluded.preference, verdict_a = "
            "excluded.verdict_a, verdict_b = excluded.verdict_b, comment = excluded.comment, answered_at = "
            "excluded.answered_at",
            (config["session_id"], origin, name, int(position), preference, verdict_a, verdict_b, text,
             _now()))


def answers(session_id: str, *, reviewer: str | None = None, path: Path | str | None = None) -> pd.DataFrame:
    """A session's answers joined to its items, with ``prefers`` decoded to flat / hierarchy / both /
    neither and ``rater`` (the reviewer, with the site for answers imported from elsewhere)."""
    config, items = get_session(session_id, path=path)
    local = instance_id(path)
    sql = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM review_answers WHERE session_id = ?"
    params: list[Any] = [config["session_id"]]
    if reviewer is not None:
        sql += " AND reviewer = ? AND origin = ?"
        params += [clean_reviewer(reviewer), local]
    with connect(path, schema=_SCHEMA) as conn:
        frame = pd.DataFrame(conn.execute(sql + " ORDER BY position, reviewer", params).fetchall(),
                             columns=list(ANSWER_COLUMNS))
    frame = frame.merge(items[["position", "sample_id", "patient_index", "label", "stratum", "a_is_flat"]],
                        on="position", how="left")
    a_flat = frame["a_is_flat"].astype(bool)
    side = {"A": "flat", "B": "hierarchy"}
    frame["prefers"] = [
        (side[p] if flat else {"A": "hierarchy", "B": "flat"}[p]) if p in ("A", "B") else p
        for p, flat in zip(frame["preference"], a_flat, strict=True)]
    frame["verdict_flat"] = frame["verdict_a"].where(a_flat, frame["verdict_b"])
    frame["verdict_setting"] = frame["verdict_b"].where(a_flat, frame["verdict_a"])
    frame["rater"] = [r if o == local else f"{r} (site {o[:6]})"
                      for r, o in zip(frame["reviewer"], frame["origin"], strict=True)]
    return frame


def progress(session_id: str, reviewer: str, *, path: Path | str | None = None) -> set[int]:
    """Positions this reviewer (here) has answered: the worklist's marks and where to resume."""
    done = answers(session_id, reviewer=reviewer, path=path)
    return set(done["position"].astype(int))


# ----------------------------------------------------------------------------- export / import
def export_session(session_id: str, *, path: Path | str | None = None) -> bytes:
    """The session as JSON bytes: config (no local path), items, every answer with its origin."""
    config, items = get_session(session_id, path=path)
    with connect(path, schema=_SCHEMA) as conn:
        content = conn.execute("SELECT content_id FROM review_sessions WHERE session_id = ?",
                               (config["session_id"],)).fetchone()[0]
        rows = conn.execute(f"SELECT {', '.join(ANSWER_COLUMNS)} FROM review_answers WHERE session_id = ? "
                            "ORDER BY origin, reviewer, position", (config["session_id"],)).fetchall()
    shared = {k: v for k, v in config.items()
              if k not in ("store_root", "session_id", "created_at", "results_code")}
    payload = {"format": EXPORT_FORMAT, "session_id": config["session_id"], "content_id": content,
               "created_at": config["created_at"], "config": shared, "items": _items_records(items),
               "answers": [dict(zip(ANSWER_COLUMNS[1:], row[1:], strict=True)) for row in rows]}
    return json.dumps(payload, indent=1, sort_keys=True).encode("utf-8")


_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")


def _check_shared(session_id: str, config: dict[str, Any]) -> None:
    """An imported session's id and fields are shown on pages: only plain tokens are accepted."""
    from hicd_core.hierarchy import Setting

    if not re.fullmatch(r"[A-Z0-9]{4,16}", session_id):
        raise ReviewError(f"the export's session id {session_id[:20]!r} is not a session id")
    for field in ("model", "task", "flat_run", "setting_run"):
        if not _NAME.match(str(config.get(field, ""))):
            raise ReviewError(f"the export's {field} is missing or not a plain name")
    try:
        Setting(str(config.get("setting")))
    except ValueError as exc:
        raise ReviewError(f"the export's setting {config.get('setting')!r} is not a hierarchy "
                          "setting") from exc
    if config.get("selection") not in SELECTIONS:
        raise ReviewError("the export's selection is not one this version knows")
    if len(str(config.get("title") or "")) > MAX_TITLE:
        raise ReviewError(f"the export's title is longer than {MAX_TITLE} characters")


def import_session(data: bytes | str, *, path: Path | str | None = None) -> dict[str, int | str]:
    """Merge an exported session into this data directory. Returns ``{"session_id", "new_session",
    "added", "updated", "results_code"}`` (the code that opens its results here); the same file
    imported twice adds and updates nothing."""
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReviewError(f"not a review-session export (JSON could not be read: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise ReviewError(f"not a review-session export (expected format {EXPORT_FORMAT!r})")
    try:
        sid, content = normalise_id(payload["session_id"]), str(payload["content_id"])
        items = pd.DataFrame(payload["items"], columns=list(ITEM_COLUMNS))
        config = dict(payload["config"])
        rows = [(sid, str(a["origin"]), clean_reviewer(a["reviewer"]), int(a["position"]),
                 a.get("preference"), a.get("verdict_a"), a.get("verdict_b"), clean_comment(a.get("comment")),
                 str(a["answered_at"])) for a in payload["answers"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ReviewError(f"the export is incomplete or damaged ({type(exc).__name__}: {exc})") from exc
    _check_shared(sid, config)
    positions = set(items["position"].astype(int))
    if any(r[3] not in positions for r in rows):
        raise ReviewError("the export has answers to items the session does not hold")
    added = updated = 0
    with connect(path, schema=_SCHEMA) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute("SELECT content_id FROM review_sessions WHERE session_id = ?",
                                 (sid,)).fetchone()
            new = found is None
            if new:
                config.pop("results_code", None)  # each data directory has its own
                local = {**config, "store_root": "", "results_code": _results_code()}
                _insert_session(conn, sid, content, local, items, str(payload.get("created_at") or _now()))
            elif found[0] != content:
                raise ReviewError(f"a different session with id {sid} already exists here; not merged")
            for row in rows:
                old = conn.execute(
                    "SELECT preference, verdict_a, verdict_b, comment, answered_at FROM review_answers WHERE "
                    "session_id = ? AND origin = ? AND reviewer = ? AND position = ?", row[:4]).fetchone()
                if old is None:
                    added += 1
                elif tuple(old) != row[4:] and str(old[4]) < row[8]:  # a newer answer replaces an older one
                    updated += 1
                else:
                    continue
                conn.execute("INSERT OR REPLACE INTO review_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    code = str(get_session(sid, path=path)[0].get("results_code") or "")
    return {"session_id": sid, "new_session": int(new), "added": added, "updated": updated,
            "results_code": code}
