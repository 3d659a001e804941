"""MEDS reader: a MEDS root (``data/**/*.parquet`` + ``metadata/``) -> raw admissions and diagnoses.

Why it reads the way it does (the rules in full, the code table and the limits: ``docs/meds.md``):

* **Only what it needs.** A full MIMIC-IV in MEDS holds hundreds of millions of lab, medication and
  chart rows and a few million diagnosis and admission rows. Each shard is scanned with
  ``pyarrow.dataset`` (``subject_id``, ``time``, ``code``, and ``hadm_id`` when present), ``code`` read
  as a dictionary: the code table's prefixes are tested on each batch's dictionary and rows are kept
  by an integer gather, so an unwanted row costs its decoding and no string work.
* **Admissions** pair ``HOSPITAL_ADMISSION`` with ``HOSPITAL_DISCHARGE`` rows by ``hadm_id``, else by
  time (:func:`_pair_by_time`); the visits frame is then built by the MIMIC readers' own
  :func:`~hicd_core.cohort.mimic.admission_visits`. **Diagnoses** join their admission by ``hadm_id``,
  else by discharge time (the ETL stamps codes at discharge); their order is the row order (MEDS has
  no ``seq_num``). Timezone-aware times are converted to UTC and made naive.
* **Splits** come from ``metadata/subject_splits.parquet`` when present; ``codes.parquet`` is not
  needed (facts are parsed from the code strings), so a partial one is fine.

Every dropped row is counted in ``problems``: for the diagnosis rows (codes of kind diagnosis or
looking like one), rows kept + the ``diagnosis_rows_*`` counts = rows read.
"""

from __future__ import annotations

import json
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from hicd_core.cohort.build import RawCohort
from hicd_core.cohort.io import CohortInputError, file_digest
from hicd_core.cohort.meds_codes import (
    ADMISSION,
    BIRTH,
    CODE_PATTERNS,
    DEATH,
    DIAGNOSIS,
    DIAGNOSIS_LIKE,
    DIED_LOCATIONS,
    DISCHARGE,
    SEX,
    UNKNOWN_DIAGNOSIS,
    CodePattern,
    check_patterns,
    classify_codes,
    scan_prefixes,
)
from hicd_core.cohort.mimic import admission_visits
from hicd_core.cohort.schema import TEST, TRAIN, VALIDATION
from hicd_core.cohort.tasks import EMERGENCY_TYPES
from hicd_core.runtime import stable_hash

REQUIRED = ("subject_id", "time", "code")
#: MEDS split names -> ours.
SPLIT_NAMES = {"train": TRAIN, "tuning": VALIDATION, "held_out": TEST}
_BATCH_ROWS = 1 << 20
_FORMAT = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns={"code"}))


def _shards(root: Path) -> list[Path]:
    if not root.is_dir():
        raise CohortInputError(f"MEDS root {root} does not exist (expected a folder with data/, metadata/)")
    files = sorted(p for p in (root / "data").rglob("*.parquet") if p.is_file())
    if not files:
        raise CohortInputError(f"MEDS root {root} has no data shards: expected parquet files under "
                               f"{root / 'data'} (e.g. data/train/0.parquet) with columns "
                               f"{', '.join(REQUIRED)}")
    return files


def _column(table: pa.Table, name: str, target: pa.DataType, path: Path) -> pa.Array:
    """One column cast to the reader's type; a clear error naming the shard and column."""
    column = table.column(name)
    try:
        return pc.cast(column, target, safe=name != "time")  # tz-aware -> UTC naive; ns -> us truncates
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CohortInputError(f"{path}: cannot read column {name} ({column.type}) as {target}: {exc}") \
            from exc


def _normalised(rows: pa.RecordBatch, path: Path) -> pa.Table:
    """Kept rows in the reader's types (hadm_id null where the shard has none)."""
    table = pa.Table.from_batches([rows])
    hadm = (_column(table, "hadm_id", pa.int64(), path) if "hadm_id" in table.column_names
            else pa.nulls(len(table), pa.int64()))
    return pa.table({"subject_id": _column(table, "subject_id", pa.int64(), path),
                     "time": _column(table, "time", pa.timestamp("us"), path),
                     "code": _column(table, "code", pa.string(), path), "hadm_id": hadm})


def _scan(files: list[Path], prefixes: tuple[str, ...]) -> tuple[pa.Table, int]:
    """The rows whose code starts with one of ``prefixes``, from every shard; and the rows scanned."""
    parts, scanned = [], 0
    for path in files:
        try:
            dataset = ds.dataset(path, format=_FORMAT)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CohortInputError(f"cannot read MEDS shard {path}: {exc}") from exc
        names = dataset.schema.names
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            hint = " (MEDS before 0.3 named it patient_id)" if "patient_id" in names else ""
            raise CohortInputError(f"MEDS shard {path} lacks column(s) {', '.join(missing)}{hint}; "
                                   f"expected {', '.join(REQUIRED)} (found {', '.join(names)})")
        time_type = dataset.schema.field("time").type
        if not (pa.types.is_timestamp(time_type) or pa.types.is_date(time_type)):
            raise CohortInputError(f"{path}: column time is {time_type}, expected timestamp[us]")
        columns = [*REQUIRED, *(["hadm_id"] if "hadm_id" in names else [])]
        try:
            for batch in dataset.to_batches(columns=columns, batch_size=_BATCH_ROWS):
                scanned += batch.num_rows
                code = batch.column("code")
                if not pa.types.is_dictionary(code.type):
                    code = pc.dictionary_encode(code)
                wanted = reduce(pc.or_, [pc.starts_with(code.dictionary, p) for p in prefixes])
                rows = batch.filter(wanted.take(code.indices))
                if rows.num_rows:
                    parts.append(_normalised(rows, path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise CohortInputError(f"cannot read MEDS shard {path}: {exc}") from exc
    if not parts:
        return pa.table({"subject_id": pa.array([], pa.int64()), "time": pa.array([], pa.timestamp("us")),
                         "code": pa.array([], pa.string()), "hadm_id": pa.array([], pa.int64())}), scanned
    return pa.concat_tables(parts), scanned


def _events(table: pa.Table, patterns: tuple[CodePattern, ...], diagnosis_like: tuple[str, ...]
            ) -> tuple[pd.DataFrame, pd.Index]:
    """Kept rows as a frame (``subject``, ``time``, ``hadm``, ``kind``, ``version``, ``value_id``) in
    read order, and the distinct values ``value_id`` points into (ICD codes, admission types, ...)."""
    code = pc.dictionary_encode(table.column("code")).combine_chunks()
    index = code.indices.to_numpy(zero_copy_only=False)
    classes = classify_codes(code.dictionary, patterns, diagnosis_like)
    value_ids, values = pd.factorize(classes["value"])
    hadm = table.column("hadm_id")
    frame = pd.DataFrame({
        "subject": table.column("subject_id").to_numpy(),
        "time": table.column("time").to_numpy(zero_copy_only=False).astype("datetime64[us]"),
        "hadm": pc.fill_null(hadm, 0).to_numpy(),
        "has_hadm": hadm.is_valid().to_numpy(zero_copy_only=False),
        "kind": pd.Categorical.from_codes(classes["kind"].cat.codes.to_numpy()[index],
                                          dtype=classes["kind"].dtype),
        "version": classes["icd_version"].to_numpy()[index],
        "value_id": value_ids[index],
    })
    return frame, pd.Index(values)


def _lookup(subject: np.ndarray, key: np.ndarray, table_subject: np.ndarray, table_key: np.ndarray
            ) -> np.ndarray:
    """Row of ``(table_subject, table_key)`` matching each ``(subject, key)``: -1 none, -2 several."""
    index = pd.Index(table_key)
    if not len(index):
        return np.full(len(key), -1, dtype=np.int64)
    if index.is_unique:  # hadm_id: one hash lookup, then the subject must agree
        pos = index.get_indexer(key)
        pos[(pos >= 0) & (table_subject[pos.clip(0)] != subject)] = -1
        return pos.astype(np.int64)
    table = pd.DataFrame({"subject": table_subject, "key": table_key, "pos": np.arange(len(table_key))})
    several = table.duplicated(["subject", "key"], keep=False).to_numpy()
    table.loc[several, "pos"] = -2
    table = table.drop_duplicates(["subject", "key"])
    found = pd.DataFrame({"subject": subject, "key": key}).merge(table, on=["subject", "key"], how="left")
    return found["pos"].fillna(-1).to_numpy(np.int64)


def _pair_by_time(adm: pd.DataFrame, dis: pd.DataFrame) -> pd.DataFrame:
    """Admissions without hadm_id: each takes the subject's first discharge strictly after its admit
    (when two reach one discharge, the later admission keeps it); one left over takes an unused
    discharge at its exact admit time (a zero-length stay). A discharge at the very minute of the
    next admit therefore closes the earlier stay, as in MIMIC-IV's back-to-back transfers."""
    adm = adm.assign(a_row=np.arange(len(adm))).sort_values("time", kind="stable")
    dis = pd.DataFrame({"subject": dis["subject"].to_numpy(), "time": dis["time"].to_numpy(),
                        "disch": dis["time"].to_numpy(), "disch_value": dis["value_id"].to_numpy(),
                        "d_row": np.arange(len(dis))}).sort_values("time", kind="stable")
    first = pd.merge_asof(adm, dis, on="time", by="subject", direction="forward", allow_exact_matches=False)
    first = first.dropna(subset=["d_row"]).sort_values("time", kind="stable")
    first = first.drop_duplicates("d_row", keep="last")
    left_adm = adm[~adm["a_row"].isin(first["a_row"])]
    left_dis = dis[~dis["d_row"].isin(first["d_row"])].drop(columns="time")
    exact = left_adm.merge(left_dis, left_on=["subject", "time"], right_on=["subject", "disch"])
    exact = exact.drop_duplicates("a_row").drop_duplicates("d_row")
    paired = pd.concat([first, exact], ignore_index=True).astype({"disch_value": np.int64})
    return paired.sort_values(["subject", "time"], kind="stable").drop(columns=["a_row", "d_row"])


def _pair_admissions(ev: pd.DataFrame, values: pd.Index, problems: dict[str, int]) -> pd.DataFrame:
    """Admission rows paired with their discharge rows (by hadm_id where given, else by time)."""
    parts = {}
    for kind in (ADMISSION, DISCHARGE):
        rows = ev[ev["kind"] == kind]
        placed = rows["time"].notna()
        problems[f"{kind}_rows_null_time"] = int((~placed).sum())
        rows = rows[placed]
        with_id = rows[rows["has_hadm"]]
        duplicate = with_id.duplicated("hadm")  # hadm_id is unique dataset-wide, as in MIMIC-IV
        problems[f"{kind}_rows_duplicate_hadm_id"] = int(duplicate.sum())
        parts[kind] = (with_id[~duplicate], rows[~rows["has_hadm"]])
    (adm_id, adm_time), (dis_id, dis_time) = parts[ADMISSION], parts[DISCHARGE]
    discharge_columns = {"time": "disch", "value_id": "disch_value"}
    by_id = adm_id.merge(dis_id[["subject", "hadm", "time", "value_id"]].rename(columns=discharge_columns),
                         on=["subject", "hadm"])
    by_time = _pair_by_time(adm_time, dis_time)
    base = int(by_id["hadm"].max()) + 1 if len(by_id) else 0
    by_id["by_id"] = True
    by_time = by_time.assign(hadm=base + np.arange(len(by_time), dtype=np.int64), by_id=False)
    visits = pd.concat([by_id, by_time], ignore_index=True)
    problems["admissions_without_discharge"] = len(adm_id) + len(adm_time) - len(visits)
    problems["discharges_without_admission"] = len(dis_id) + len(dis_time) - len(visits)
    if visits.empty:
        raise CohortInputError("no admissions: no HOSPITAL_ADMISSION row could be paired with a "
                               "HOSPITAL_DISCHARGE row (see the code table in docs/meds.md)")
    visits["visit_type"] = _value(values, visits["value_id"], "UNKNOWN")
    visits["died_location"] = np.isin(_value(values, visits["disch_value"], ""), list(DIED_LOCATIONS))
    return visits


def _value(values: pd.Index, ids: pd.Series, missing: str) -> np.ndarray:
    """``values[ids]`` with ``missing`` where a code carried no value (id -1)."""
    return np.append(values.to_numpy(object), missing)[ids.to_numpy(np.int64)]


def _first_time(ev: pd.DataFrame, kind: str, problems: dict[str, int]) -> pd.Series:
    """Earliest time of a per-subject fact (birth, death), indexed by subject; null times counted."""
    rows = ev[ev["kind"] == kind]
    problems[f"{kind}_rows_null_time"] = int(rows["time"].isna().sum())
    return rows.dropna(subset=["time"]).groupby("subject")["time"].min()


def _visits(ev: pd.DataFrame, values: pd.Index, problems: dict[str, int]) -> pd.DataFrame:
    """The paired admissions as the visits frame, built by the MIMIC readers' own
    :func:`~hicd_core.cohort.mimic.admission_visits` (same ids, minutes, emergency rule), with the
    MEDS age and in-hospital death rules; plus the columns :func:`_diagnoses` matches on."""
    paired = _pair_admissions(ev, values, problems).reset_index(drop=True)
    subjects = paired["subject"].to_numpy()
    birth = _first_time(ev, BIRTH, problems)
    death = _first_time(ev, DEATH, problems).reindex(subjects).to_numpy()
    admit, disch = paired["time"].to_numpy(), paired["disch"].to_numpy()
    died = (death >= admit) & (death <= disch) | paired["died_location"].to_numpy(bool)
    admissions = pd.DataFrame({"subject_id": subjects, "hadm_id": paired["hadm"].to_numpy(),
                               "admittime": admit, "dischtime": disch,
                               "admission_type": paired["visit_type"].to_numpy(object),
                               "hospital_expire_flag": died.astype(np.int8)})  # the MEDS death rule

    def age_at(kept: pd.DataFrame, admit: pd.Series) -> pd.Series:
        born = pd.Series(birth.reindex(kept["subject_id"].to_numpy()).to_numpy(), index=kept.index)
        return admit.dt.year - born.dt.year

    known = pd.DataFrame({"subject_id": subjects})
    visits = admission_visits(admissions, known, age_at, EMERGENCY_TYPES, problems)
    problems["admissions_unknown_birth"] = int(visits["age"].isna().sum())
    # hadm_id is unique after pairing, so admission_visits drops no row: the paired columns line up.
    return visits.assign(_subject=subjects, _disch=disch, _by_id=paired["by_id"].to_numpy(bool))


def _diagnoses(ev: pd.DataFrame, values: pd.Index, visits: pd.DataFrame, problems: dict[str, int]
               ) -> pd.DataFrame:
    """Diagnosis rows placed in their admission (by hadm_id, else by discharge time); misses counted."""
    kind = ev["kind"]
    problems["diagnosis_rows_unknown_code_pattern"] = int((kind == UNKNOWN_DIAGNOSIS).sum())
    dx = ev[kind == DIAGNOSIS]
    bad_version = ~np.isin(dx["version"].to_numpy(), (9, 10))
    problems["diagnosis_rows_bad_icd_version"] = int(bad_version.sum())
    dx = dx[~bad_version]
    has_id = dx["has_hadm"].to_numpy()
    subject = dx["subject"].to_numpy()
    pos = np.full(len(dx), -1, dtype=np.int64)
    by_id = np.flatnonzero(visits["_by_id"].to_numpy())  # hadm_id rows look among hadm_id admissions only
    found = _lookup(subject[has_id], dx["hadm"].to_numpy()[has_id], visits["_subject"].to_numpy()[by_id],
                    visits["source_visit_id"].to_numpy()[by_id])
    pos[has_id] = np.where(found >= 0, by_id[found.clip(0)], found)
    timed = ~has_id & dx["time"].notna().to_numpy()
    problems["diagnosis_rows_null_time"] = int((~has_id & ~timed).sum())
    pos[timed] = _lookup(subject[timed], dx["time"].to_numpy()[timed].astype(np.int64),
                         visits["_subject"].to_numpy(), visits["_disch"].to_numpy().astype("datetime64[us]")
                         .astype(np.int64))
    problems["diagnosis_rows_ambiguous_admission"] = int((pos == -2).sum())
    problems["diagnosis_rows_no_admission"] = int(((pos == -1) & (has_id | timed)).sum())
    keep = pos >= 0
    pos = pos[keep]
    value_ids = dx["value_id"].to_numpy()[keep]
    used = np.zeros(len(values), dtype=bool)
    used[value_ids] = True  # the codes' categories, without sorting millions of ids
    order = np.argsort(pos, kind="stable")  # rows are nearly grouped by admission already: cheap
    seq = np.empty(len(pos), dtype=np.int32)
    seq[order] = _position_in_run(pos[order])  # row order: MEDS has no seq_num
    return pd.DataFrame({
        "source_visit_id": visits["source_visit_id"].to_numpy()[pos],
        "seq": seq,
        "raw_code": pd.Categorical.from_codes((np.cumsum(used) - 1)[value_ids],
                                              categories=values[used].astype(str)),
        "icd_version": dx["version"].to_numpy()[keep].astype(np.int8),
    })


def _position_in_run(sorted_keys: np.ndarray) -> np.ndarray:
    """0-based position of each element inside its run of equal values.

    >>> _position_in_run(np.array([3, 3, 5, 7, 7, 7])).tolist()
    [0, 1, 0, 0, 1, 2]
    """
    n = len(sorted_keys)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if n else np.zeros(0, np.int64)
    return (np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))).astype(np.int32)


def _patients(ev: pd.DataFrame, values: pd.Index, splits: pd.Series | None, problems: dict[str, int]
              ) -> pd.DataFrame:
    """Every subject with a kept row: sex (first ``GENDER`` row), death (earliest ``MEDS_DEATH``), split."""
    subjects = pd.Index(pd.unique(ev["subject"]))
    sex_rows = ev[ev["kind"] == SEX].drop_duplicates("subject")
    sex = pd.Series(_value(values, sex_rows["value_id"], ""), index=sex_rows["subject"].to_numpy())
    death = _first_time(ev, DEATH, problems)
    patients = pd.DataFrame({"source_patient_id": subjects.astype(str),  # reindex: hash lookups, not map()
                             "sex": sex.reindex(subjects).fillna("").to_numpy(object),
                             "death": death.reindex(subjects).to_numpy()})
    if splits is not None:
        patients["split"] = splits.reindex(subjects).to_numpy(object)
    return patients


def _subject_splits(path: Path, problems: dict[str, int]) -> pd.Series | None:
    """``subject_splits.parquet`` as subject -> train/val/test (None when absent); odd rows counted."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CohortInputError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in ("subject_id", "split") if c not in table.column_names]
    if missing:
        raise CohortInputError(f"{path} lacks column(s) {', '.join(missing)}; expected subject_id, split")
    frame = pd.DataFrame({"subject": _column(table, "subject_id", pa.int64(), path).to_numpy(),
                          "split": table.column("split").to_pandas().astype(object)})
    mapped = frame["split"].map(SPLIT_NAMES)
    problems["subject_splits_unknown_name"] = int(mapped.isna().sum())
    frame = frame.assign(split=mapped).dropna(subset=["split"])
    duplicate = frame.duplicated("subject")
    problems["subject_splits_duplicate_subject"] = int(duplicate.sum())
    return frame[~duplicate].set_index("subject")["split"]


def _dataset(path: Path) -> dict:
    """Name and versions from ``metadata/dataset.json`` (MEDS 0.3.x and 0.4.x share these keys)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CohortInputError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CohortInputError(f"{path} must hold a JSON object (dataset_name, dataset_version, "
                               "meds_version)")
    return {key: data.get(key) for key in ("dataset_name", "dataset_version", "meds_version")}


def meds_files(path: Path) -> list[Path]:
    """The files a MEDS root is read from: its data shards and the metadata the reader uses."""
    root = Path(path)
    metadata = root / "metadata"
    return _shards(root) + [p for p in (metadata / "dataset.json", metadata / "subject_splits.parquet")
                            if p.is_file()]


def read_meds(path: Path, patterns: tuple[CodePattern, ...] = CODE_PATTERNS,
              diagnosis_like: tuple[str, ...] = DIAGNOSIS_LIKE) -> RawCohort:
    """Read a MEDS root into raw frames for :func:`hicd_core.cohort.build.assemble_cohort`.

    ``patterns`` / ``diagnosis_like`` replace the code table (:mod:`hicd_core.cohort.meds_codes`); a
    non-default table is part of the digest, so its cohort never shares a fingerprint with the default's.
    """
    root = Path(path)
    check_patterns(tuple(patterns))
    files = _shards(root)
    problems: dict[str, int] = {}
    metadata = root / "metadata"
    dataset = _dataset(metadata / "dataset.json")
    splits = _subject_splits(metadata / "subject_splits.parquet", problems)
    table, scanned = _scan(files, scan_prefixes(tuple(patterns), tuple(diagnosis_like)))
    ev, values = _events(table, tuple(patterns), tuple(diagnosis_like))
    if not (ev["kind"] == DIAGNOSIS).any():
        prefixes = ", ".join(p.prefix for p in patterns if p.kind == DIAGNOSIS)
        unknown = int((ev["kind"] == UNKNOWN_DIAGNOSIS).sum())
        hint = (f"; {unknown:,} rows start with {', '.join(diagnosis_like)} but match no pattern: extend "
                "the code table (docs/meds.md)") if unknown else ""
        raise CohortInputError(f"MEDS root {root} holds no diagnosis codes: none of the {scanned:,} rows in "
                               f"{len(files)} shard(s) has a code starting with {prefixes}{hint}")
    visits = _visits(ev, values, problems)
    diagnoses = _diagnoses(ev, values, visits, problems)
    if diagnoses.empty:
        raise CohortInputError(f"MEDS root {root}: no diagnosis row could be placed in an admission "
                               f"(counts: { {k: v for k, v in problems.items() if v} })")
    digest = file_digest(meds_files(root))
    if tuple(patterns) != CODE_PATTERNS or tuple(diagnosis_like) != DIAGNOSIS_LIKE:
        digest = stable_hash(digest, [vars(p) for p in patterns], list(diagnosis_like))
    meta = {"dataset": dataset,
            "meds_scan": {"shards": len(files), "rows": scanned, "rows_selected": len(ev)}}
    return RawCohort(visits.drop(columns=["_subject", "_disch", "_by_id"]), diagnoses,
                     _patients(ev, values, splits, problems), problems, digest, meta)
