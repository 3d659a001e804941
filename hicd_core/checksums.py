"""Tamper evidence for artifact folders: a sha256 manifest written with the files, checked on read.

A run directory or a model directory gets ``manifest.json`` (relative path -> size and sha256 of
every file in it) as the last step of its atomic write. Readers check a folder against it before
trusting anything in it, or check the one file they read (:func:`read_verified`). A flipped byte, a
truncated or deleted file, or a missing manifest is then a named :class:`DamagedArtifactError`
instead of a silently different number. A pure helper (standard library only), usable from every
layer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
_CHUNK = 1 << 22


class DamagedArtifactError(ValueError):
    """A file of an artifact folder is missing, changed or unreadable (the message names it)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a folder: the file (relative to the folder) and what is wrong with it."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> dict[str, dict]:
    """Record size and sha256 of every file under ``folder`` (except hidden files and the manifest
    itself) in ``folder/manifest.json``. Call it last, inside the folder's atomic write."""
    folder = Path(folder)
    entries = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == MANIFEST or path.name.startswith("."):
            continue
        entries[relative] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    (folder / MANIFEST).write_text(json.dumps({"files": entries}, indent=1, sort_keys=True))
    return entries


def read_manifest(folder: Path) -> dict[str, dict]:
    """The manifest's entries; :class:`DamagedArtifactError` when it is missing or not valid."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DamagedArtifactError(path, "missing: the folder's files cannot be checked (written by an "
                                         "older version, or damaged)")
    try:
        entries = json.loads(path.read_text())["files"]
        if not isinstance(entries, dict) or not all(
                isinstance(e, dict) and {"size", "sha256"} <= set(e) for e in entries.values()):
            raise ValueError("entries are not {size, sha256} records")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DamagedArtifactError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc
    return entries


def verify_folder(folder: Path, required: tuple[str, ...] = ()) -> list[Problem]:
    """Every problem of ``folder`` against its manifest (empty when it verifies).

    ``required`` names files that must be listed (a manifest written without them is incomplete).
    """
    folder = Path(folder)
    try:
        entries = read_manifest(folder)
    except DamagedArtifactError as exc:
        return [Problem(MANIFEST, exc.reason)]
    problems = [Problem(name, "not in the manifest (incomplete write)") for name in required
                if name not in entries]
    for name, entry in sorted(entries.items()):
        path = folder / name
        if not path.is_file():
            problems.append(Problem(name, "missing"))
        elif path.stat().st_size != entry["size"]:
            problems.append(Problem(name, f"size {path.stat().st_size} bytes, expected {entry['size']} "
                                          "(truncated or replaced)"))
        elif sha256_file(path) != entry["sha256"]:
            problems.append(Problem(name, "content does not match its checksum (changed on disk)"))
    return problems


def read_verified(folder: Path, name: str) -> bytes:
    """The bytes of ``folder/name`` after checking them against the folder's manifest."""
    folder = Path(folder)
    entry = read_manifest(folder).get(name)
    if entry is None:
        raise DamagedArtifactError(folder / name, f"not listed in {MANIFEST}")
    try:
        payload = (folder / name).read_bytes()
    except OSError as exc:
        raise DamagedArtifactError(folder / name, f"unreadable ({exc.strerror or exc})") from exc
    if len(payload) != entry["size"] or sha256_bytes(payload) != entry["sha256"]:
        raise DamagedArtifactError(folder / name, "content does not match its checksum (changed on disk)")
    return payload


def verify_or_raise(folder: Path, required: tuple[str, ...] = ()) -> None:
    """:func:`verify_folder`, raising the first problem as a :class:`DamagedArtifactError`."""
    problems = verify_folder(folder, required)
    if problems:
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DamagedArtifactError(Path(folder) / first.file, first.reason + more)
