"""The synthetic source site as a MEDS dataset, and the MIMIC-IV -> MEDS conversion it rests on.

Why: the MEDS reader must be tested on a dataset shaped like the MIMIC-IV MEDS ETL's output
(``MIMIC_IV_MEDS``), including the hundreds of millions of non-diagnosis rows it has to skip, with no
credentialed data. The same generated tables the CSV writer produces (same patients, admissions and
codes) are converted with the ETL's conventions (``docs/meds.md``):

* ``GENDER//F|M`` with a null time; ``MEDS_BIRTH`` on 1 January of anchor_year - anchor_age;
  ``MEDS_DEATH`` at the admission's ``deathtime``, else at ``dod`` (midnight);
* ``HOSPITAL_ADMISSION//<admission_type>//<admission_location>`` at ``admittime``,
  ``HOSPITAL_DISCHARGE//<discharge_location or UNK>`` at ``dischtime``;
* ``DIAGNOSIS//ICD//<9|10>//<undotted code>`` at the admission's ``dischtime``, in ``seq_num`` order;
* (synthetic only) ``LAB//<itemid>//<unit>`` rows with a ``numeric_value``, ``lab_ratio`` per
  diagnosis row, inside the admission, so a reader's code filter is exercised at realistic volume.

Rows are sorted by subject, then time (static rows first), then event kind, then source order.
:func:`mimic_to_meds` is public so tests can convert the real MIMIC-IV demo the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hicd_core.runtime import atomic_directory
from hicd_core.synthetic.helpers import _check_seed, _check_signal, _choice, _rng
from hicd_core.synthetic.layout import GENERATOR_NAME, GENERATOR_VERSION, MARKER, SCALES
from hicd_core.synthetic.mimic import _d_icd_diagnoses, _generate_source

#: Bumped whenever the same arguments would write different MEDS files.
MEDS_FORMAT_VERSION = "1"
MEDS_VERSION = "0.4.1"
SPLIT_FOLDERS = ("train", "tuning", "held_out")
#: Event order at equal times (static rows have no time and come first anyway).
_RANK = {"GENDER": 0, "MEDS_BIRTH": 1, "HOSPITAL_ADMISSION": 2, "LAB": 3, "HOSPITAL_DISCHARGE": 4,
         "DIAGNOSIS": 5, "MEDS_DEATH": 6}
_US_PER_MINUTE = 60_000_000
_N_LAB_ITEMS = 400
_UNITS = ("mg/dL", "mEq/L", "K/uL", "g/dL", "%", "IU/L", "sec", "mmol/L", "UNK")


def _joined(prefix: str, parts: list[pd.Series]) -> pd.Categorical:
    """``prefix + '//'.join(parts)`` per row, each string built once per distinct combination."""
    key = np.zeros(len(parts[0]), dtype=np.int64)
    uniques = []
    for part in parts:
        codes, values = pd.factorize(part.astype(object).fillna("UNK"))
        key = key * len(values) + codes
        uniques.append(np.asarray(values, dtype=object))
    inverse, distinct = pd.factorize(key)
    pieces, rest = [], np.asarray(distinct)
    for values in reversed(uniques):
        pieces.append(values[rest % len(values)])
        rest = rest // len(values)
    text = [prefix + "//".join(str(p) for p in combo) for combo in zip(*reversed(pieces), strict=True)]
    return pd.Categorical.from_codes(inverse, categories=pd.Index(text))


def _constant(text: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=pd.Index([text]))


def _block(subject: np.ndarray, time: np.ndarray, code: pd.Categorical, kind: str,
           hadm: np.ndarray | None = None) -> dict:
    n = len(subject)
    return {"subject_id": np.asarray(subject, dtype=np.int64), "time": np.asarray(time, "datetime64[us]"),
            "code": code, "hadm_id": np.full(n, -1, np.int64) if hadm is None else np.asarray(hadm, np.int64),
            "rank": np.full(n, _RANK[kind], np.int8)}


def _core_events(patients: pd.DataFrame, admissions: pd.DataFrame, diagnoses: pd.DataFrame) -> dict:
    """Every non-lab event as column arrays (``hadm_id`` -1 where none), in (subject, time, rank) order."""
    subject = patients["subject_id"].to_numpy(np.int64)
    gender = patients["gender"].notna().to_numpy()
    birth_year = (patients["anchor_year"] - patients["anchor_age"]).to_numpy(np.int64)
    birth = (birth_year - 1970).astype("datetime64[Y]").astype("datetime64[us]")
    deathtime = admissions.dropna(subset=["deathtime"]).groupby("subject_id")["deathtime"].max()
    death = patients["subject_id"].map(deathtime).fillna(patients["dod"]).to_numpy("datetime64[us]")
    dead = ~np.isnat(death)
    adm_subject, hadm = admissions["subject_id"].to_numpy(np.int64), admissions["hadm_id"].to_numpy(np.int64)
    disch = admissions["dischtime"].to_numpy("datetime64[us]")
    dx = diagnoses.sort_values(["hadm_id", "seq_num"], kind="stable")
    dx_disch = dx["hadm_id"].map(pd.Series(disch, index=hadm)).to_numpy("datetime64[us]")
    blocks = [
        _block(subject[gender], np.full(gender.sum(), np.datetime64("NaT"), "datetime64[us]"),
               _joined("GENDER//", [patients["gender"][gender]]), "GENDER"),
        _block(subject, birth, _constant("MEDS_BIRTH", len(subject)), "MEDS_BIRTH"),
        _block(adm_subject, admissions["admittime"].to_numpy("datetime64[us]"),
               _joined("HOSPITAL_ADMISSION//",
                       [admissions["admission_type"], admissions["admission_location"]]),
               "HOSPITAL_ADMISSION", hadm),
        _block(adm_subject, disch, _joined("HOSPITAL_DISCHARGE//", [admissions["discharge_location"]]),
               "HOSPITAL_DISCHARGE", hadm),
        _block(dx["subject_id"].to_numpy(np.int64), dx_disch,
               _joined("DIAGNOSIS//ICD//", [dx["icd_version"], dx["icd_code"]]), "DIAGNOSIS",
               dx["hadm_id"].to_numpy(np.int64)),
        _block(subject[dead], death[dead], _constant("MEDS_DEATH", int(dead.sum())), "MEDS_DEATH"),
    ]
    return _sorted(_concat(blocks))


def _concat(blocks: list[dict]) -> dict:
    out = {k: np.concatenate([b[k] for b in blocks]) for k in ("subject_id", "time", "hadm_id", "rank")}
    out["code"] = pd.api.types.union_categoricals([b["code"] for b in blocks])
    return out


def _sorted(events: dict) -> dict:
    """Rows by subject, time (static first), event rank, then their given order."""
    n = len(events["rank"])
    order = np.lexsort((np.arange(n), events["rank"], events["time"].astype(np.int64), events["subject_id"]))
    return {k: v[order] for k, v in events.items()}


def mimic_to_meds(patients: pd.DataFrame, admissions: pd.DataFrame, diagnoses: pd.DataFrame,
                  *, hadm_id: bool = True) -> pd.DataFrame:
    """MIMIC-IV ``patients``/``admissions``/``diagnoses_icd`` frames (times parsed) -> MEDS rows.

    Columns ``subject_id``, ``time``, ``code``, ``numeric_value`` and, with ``hadm_id=True``, the
    ETL's ``hadm_id`` extra column (null on static, birth and death rows).
    """
    events = _core_events(patients, admissions, diagnoses)
    frame = pd.DataFrame({"subject_id": events["subject_id"], "time": events["time"],
                          "code": events["code"].astype(str),
                          "numeric_value": np.full(len(events["rank"]), np.nan, np.float32)})
    if hadm_id:
        frame["hadm_id"] = pd.array(np.where(events["hadm_id"] < 0, None, events["hadm_id"]), dtype="Int64")
    return frame


def _lab_items() -> tuple[pd.Categorical, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed lab vocabulary: codes, popularity, and each item's value mean and sd (seed-independent)."""
    rng = _rng(0, "meds-lab-items")
    itemids = 50_800 + np.sort(rng.choice(3_000, _N_LAB_ITEMS, replace=False))
    units = np.asarray(_UNITS, dtype=object)[rng.integers(0, len(_UNITS), _N_LAB_ITEMS)]
    codes = pd.Categorical(pd.Index([f"LAB//{i}//{u}" for i, u in zip(itemids, units, strict=True)]))
    popularity = 1.0 / np.arange(1, _N_LAB_ITEMS + 1) ** 0.9
    return codes, popularity, rng.lognormal(2.5, 1.5, _N_LAB_ITEMS), rng.uniform(0.05, 0.4, _N_LAB_ITEMS)


def _labs(rng: np.random.Generator, admissions: pd.DataFrame, ratio: float) -> dict:
    """About ``ratio`` lab rows per diagnosis row of each admission, at whole minutes inside it."""
    codes, popularity, mean, sd = _lab_items()
    count = rng.poisson(ratio * admissions["n_codes"].to_numpy())
    row = np.repeat(np.arange(len(admissions)), count)
    admit = admissions["admittime"].to_numpy("datetime64[us]").astype(np.int64)[row]
    span = admissions["dischtime"].to_numpy("datetime64[us]").astype(np.int64)[row] - admit
    minutes = (rng.random(len(row)) * (span // _US_PER_MINUTE)).astype(np.int64)
    item = _choice(rng, len(row), popularity)
    lab_code = pd.Categorical.from_codes(item, dtype=codes.dtype)
    events = _block(admissions["subject_id"].to_numpy(np.int64)[row],
                    (admit + minutes * _US_PER_MINUTE).astype("datetime64[us]"), lab_code, "LAB",
                    admissions["hadm_id"].to_numpy(np.int64)[row])
    events["numeric_value"] = (mean[item] * (1 + sd[item] * rng.standard_normal(len(row)))).astype(np.float32)
    return events


def _times(values: pa.Array, fmt: str) -> np.ndarray:
    return pc.strptime(values, format=fmt, unit="us", error_is_null=True).to_numpy(zero_copy_only=False)


def _frames(tables: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The generator's MIMIC-IV tables (text times) as frames with parsed times."""
    stamp = "%Y-%m-%d %H:%M:%S"
    p, a, d = tables["patients"], tables["admissions"], tables["diagnoses_icd"]
    patients = pd.DataFrame({"subject_id": p["subject_id"], "gender": p["gender"],
                             "anchor_age": p["anchor_age"], "anchor_year": p["anchor_year"],
                             "dod": _times(p["dod"], "%Y-%m-%d")})
    admissions = pd.DataFrame({
        "subject_id": a["subject_id"], "hadm_id": a["hadm_id"], "admittime": _times(a["admittime"], stamp),
        "dischtime": _times(a["dischtime"], stamp), "deathtime": _times(a["deathtime"], stamp),
        "admission_type": a["admission_type"], "admission_location": a["admission_location"],
        "discharge_location": a["discharge_location"]})
    diagnoses = pd.DataFrame({k: d[k] for k in ("subject_id", "hadm_id", "seq_num", "icd_code",
                                                "icd_version")})
    return patients, admissions, diagnoses


def _subject_splits(rng: np.random.Generator, subjects: np.ndarray) -> np.ndarray:
    """MEDS split name per subject: a seeded 80/10/10 patient split."""
    split = np.full(len(subjects), 0, dtype=np.int64)
    order = rng.permutation(len(subjects))
    n_train, n_tuning = round(0.8 * len(subjects)), round(0.1 * len(subjects))
    split[order[n_train:n_train + n_tuning]] = 1
    split[order[n_train + n_tuning:]] = 2
    return split


def _write_shard(events: dict, path: Path) -> int:
    n = len(events["rank"])
    hadm = events["hadm_id"]
    code = pa.DictionaryArray.from_arrays(pa.array(events["code"].codes.astype(np.int32)),
                                          pa.array(np.asarray(events["code"].categories, dtype=object)))
    value = events.get("numeric_value")
    table = pa.table({
        "subject_id": pa.array(events["subject_id"], pa.int64()),
        "time": pa.array(events["time"], pa.timestamp("us")),
        "code": code.cast(pa.string()),
        "numeric_value": pa.array(np.full(n, np.nan, np.float32) if value is None else value,
                                  pa.float32(), from_pandas=True),
        "text_value": pa.nulls(n, pa.large_string()),
        "hadm_id": pa.array(hadm, pa.int64(), mask=hadm < 0),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return n


def _codes_table(diagnoses: pd.DataFrame) -> pa.Table:
    """``codes.parquet``: the diagnosis codes used, with titles and ``ICD{v}CM/{dotted}`` parents.

    Deliberately partial (no lab, admission or demographic codes), like the public demo conversion.
    """
    used = diagnoses[["icd_version", "icd_code"]].astype(str).drop_duplicates()
    titles = pd.DataFrame(_d_icd_diagnoses()).astype({"icd_version": str})
    used = used.merge(titles, on=["icd_version", "icd_code"], how="left")
    used = used.sort_values(["icd_version", "icd_code"])
    code = used["icd_code"]
    cut = np.where((used["icd_version"] == "9") & code.str.startswith("E"), 4, 3)
    dotted = [c if len(c) <= k else f"{c[:k]}.{c[k:]}" for c, k in zip(code, cut, strict=True)]
    return pa.table({
        "code": "DIAGNOSIS//ICD//" + used["icd_version"] + "//" + code,
        "description": used["long_title"].astype(object).where(used["long_title"].notna(), None),
        "parent_codes": [[f"ICD{v}CM/{d}"] for v, d in zip(used["icd_version"], dotted, strict=True)],
    })


def write_synthetic_meds(out_dir: Path | str, seed: int = 0, scale: str = "default",
                         hierarchy_signal: float = 0.7, *, n_source_patients: int | None = None,
                         lab_ratio: float = 20.0, subjects_per_shard: int = 10_000) -> dict:
    """Write the synthetic source site as a MEDS root; return a small summary.

    Layout: ``data/{train,tuning,held_out}/<i>.parquet`` (``subjects_per_shard`` subjects each),
    ``metadata/dataset.json`` (``meds_version`` 0.4.1), ``metadata/codes.parquet`` (diagnosis codes
    only), ``metadata/subject_splits.parquet`` and the ``SYNTHETIC.json`` marker. Same arguments, same
    bytes. ``lab_ratio`` lab rows per diagnosis row (0: none). A folder holding ``data/`` but no marker
    is refused (it may be real data).
    """
    seed, signal = _check_seed(seed), _check_signal(hierarchy_signal)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    n = SCALES[scale][0] if n_source_patients is None else int(n_source_patients)
    if n < 1 or lab_ratio < 0 or subjects_per_shard < 1:
        raise ValueError("n_source_patients and subjects_per_shard must be positive, lab_ratio >= 0")
    out_dir = Path(out_dir)
    if (out_dir / "data").exists() and not (out_dir / MARKER).is_file():
        raise FileExistsError(f"{out_dir} holds data/ but no {MARKER}; refusing to overwrite what may be "
                              "real data")
    tables, stats = _generate_source(seed, signal, n)
    patients, admissions, diagnoses = _frames(tables)
    per_admission = diagnoses["hadm_id"].value_counts()
    admissions["n_codes"] = admissions["hadm_id"].map(per_admission).fillna(0).to_numpy()
    core = _core_events(patients, admissions, diagnoses)
    subjects = patients["subject_id"].to_numpy(np.int64)  # sorted and unique (the generator's ids)
    split = _subject_splits(_rng(seed, "meds-splits"), subjects)
    shard = np.zeros(len(subjects), dtype=np.int64)
    shard_names = []
    for s, name in enumerate(SPLIT_FOLDERS):
        members = np.flatnonzero(split == s)
        shard[members] = len(shard_names) + np.arange(len(members)) // subjects_per_shard
        shard_names += [f"data/{name}/{i}.parquet" for i in range(-(-len(members) // subjects_per_shard))]
    row_shard = shard[np.searchsorted(subjects, core["subject_id"])]
    order = np.argsort(row_shard, kind="stable")
    core = {k: v[order] for k, v in core.items()}
    bounds = np.searchsorted(row_shard[order], np.arange(len(shard_names) + 1))
    adm_shard = shard[np.searchsorted(subjects, admissions["subject_id"].to_numpy(np.int64))]
    lab_rng = _rng(seed, "meds-labs")
    files, lab_rows = {}, 0
    with atomic_directory(out_dir) as tmp:
        for i, rel in enumerate(shard_names):
            events = {k: v[bounds[i]:bounds[i + 1]] for k, v in core.items()}
            events["numeric_value"] = np.full(len(events["rank"]), np.nan, np.float32)
            if lab_ratio > 0:
                labs = _labs(lab_rng, admissions[adm_shard == i], lab_ratio)
                lab_rows += len(labs["rank"])
                events = _sorted({**_concat([events, labs]),
                                  "numeric_value": np.concatenate([events["numeric_value"],
                                                                   labs["numeric_value"]])})
            files[rel] = _write_shard(events, tmp / rel)
        (tmp / "metadata").mkdir()
        dataset = {"dataset_name": "HICD synthetic MIMIC-IV (MEDS)", "meds_version": MEDS_VERSION,
                   "dataset_version": f"{GENERATOR_VERSION}.{MEDS_FORMAT_VERSION}-seed{seed}-n{n}",
                   "etl_name": "hicd_core.synthetic.meds", "etl_version": MEDS_FORMAT_VERSION}
        (tmp / "metadata" / "dataset.json").write_text(json.dumps(dataset, indent=2, sort_keys=True) + "\n")
        pq.write_table(_codes_table(diagnoses), tmp / "metadata" / "codes.parquet")
        pq.write_table(pa.table({"subject_id": pa.array(subjects, pa.int64()),
                                 "split": pa.array(np.asarray(SPLIT_FOLDERS, dtype=object)[split])}),
                       tmp / "metadata" / "subject_splits.parquet")
        marker = {"synthetic": True, "generator": GENERATOR_NAME, "generator_version": GENERATOR_VERSION,
                  "format": "meds", "meds_format_version": MEDS_FORMAT_VERSION, "seed": seed, "scale": scale,
                  "hierarchy_signal": signal, "n_source_patients": n, "lab_ratio": lab_ratio,
                  "files": files, "summary": {"source": stats},
                  "note": "SYNTHETIC data from a documented generative model (docs/synthetic.md); "
                          "no real patients."}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return {"synthetic": True, "format": "meds", "out_dir": str(out_dir), "seed": seed, "scale": scale,
            "hierarchy_signal": signal, "source": stats, "rows": sum(files.values()),
            "diagnosis_rows": len(diagnoses), "lab_rows": lab_rows, "shards": len(files)}
