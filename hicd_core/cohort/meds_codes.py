"""The MEDS code table: which ``code`` strings the MEDS reader uses, and what it takes from them.

Why a table: ETLs spell the same facts differently (the MIMIC-IV MEDS ETL writes
``DIAGNOSIS//ICD//10//I214``, OMOP-style ETLs ``ICD10CM/I21.4``), so the spelling lives in one
documented, overridable place (``docs/meds.md``) instead of string slicing spread over the reader.
Each :class:`CodePattern` names a literal ``prefix`` (what the scan keeps, tested on each shard's
code dictionary) and a ``regex`` that must match the whole code; its named groups carry the values:

=============  ====================================================================================
kind           groups
=============  ====================================================================================
diagnosis      ``code`` (the ICD code, dotted or not), ``version`` (9/10) unless ``icd_version`` fixes it
admission      ``type`` (the admission type, e.g. ``EW EMER.``), optionally ``location``
discharge      ``location`` (``DIED`` marks an in-hospital death, :data:`DIED_LOCATIONS`)
sex            ``sex``
birth, death   none (the row's ``time`` is the fact)
=============  ====================================================================================

The first pattern (in table order) whose prefix and regex both match decides a code's kind. Codes
that match none but start with a :data:`DIAGNOSIS_LIKE` prefix are counted as unknown diagnosis codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hicd_core.cohort.io import CohortInputError

DIAGNOSIS, ADMISSION, DISCHARGE = "diagnosis", "admission", "discharge"
BIRTH, DEATH, SEX = "birth", "death", "sex"
#: Kind given to codes that look like diagnoses but match no pattern (counted, never used).
UNKNOWN_DIAGNOSIS = "unknown_diagnosis"
#: kind -> the named group that carries its value (None: the row's time is the value).
VALUE_GROUP = {DIAGNOSIS: "code", ADMISSION: "type", DISCHARGE: "location", SEX: "sex",
               BIRTH: None, DEATH: None}
#: Every kind a code can get ('' = not used by the reader).
KINDS = ("", *VALUE_GROUP, UNKNOWN_DIAGNOSIS)
#: Discharge locations that mean the patient died in hospital (MIMIC-IV's ``discharge_location``).
DIED_LOCATIONS = frozenset({"DIED"})


@dataclass(frozen=True)
class CodePattern:
    """One row of the code table (see the module docstring for the groups each kind needs)."""

    prefix: str
    regex: str
    kind: str
    icd_version: int | None = None


#: The default table: the MIMIC-IV MEDS ETL (``MIMIC_IV_MEDS``) plus the OMOP-style ICD spellings.
CODE_PATTERNS: tuple[CodePattern, ...] = (
    CodePattern("DIAGNOSIS//ICD//", r"DIAGNOSIS//ICD//(?P<version>9|10)//(?P<code>[^/]+)", DIAGNOSIS),
    CodePattern("ICD9CM/", r"ICD9CM/(?P<code>[^/]+)", DIAGNOSIS, icd_version=9),
    CodePattern("ICD10CM/", r"ICD10CM/(?P<code>[^/]+)", DIAGNOSIS, icd_version=10),
    CodePattern("HOSPITAL_ADMISSION//", r"HOSPITAL_ADMISSION//(?P<type>.*?)(?://(?P<location>.*))?",
                ADMISSION),
    CodePattern("HOSPITAL_DISCHARGE", r"HOSPITAL_DISCHARGE(?://(?P<location>.*))?", DISCHARGE),
    CodePattern("MEDS_BIRTH", r"MEDS_BIRTH", BIRTH),
    CodePattern("MEDS_DEATH", r"MEDS_DEATH", DEATH),
    CodePattern("GENDER//", r"GENDER//(?P<sex>.+)", SEX),
)
#: Codes starting with one of these are diagnoses in intent: counted when no pattern reads them.
DIAGNOSIS_LIKE: tuple[str, ...] = ("DIAGNOSIS",)


def check_patterns(patterns: tuple[CodePattern, ...]) -> None:
    """A clear error for a table the reader cannot use (unknown kind, missing group, bad regex)."""
    if not any(p.kind == DIAGNOSIS for p in patterns):
        raise CohortInputError("the MEDS code table has no diagnosis pattern")
    for p in patterns:
        if p.kind not in VALUE_GROUP:
            raise CohortInputError(f"MEDS code pattern {p.regex!r}: unknown kind {p.kind!r}; "
                                   f"expected one of {', '.join(VALUE_GROUP)}")
        try:
            groups = set(re.compile(p.regex).groupindex)
            pc.match_substring_regex(pa.array([""]), p.regex)  # what the reader runs: RE2
        except (re.error, pa.ArrowInvalid) as exc:
            raise CohortInputError(f"MEDS code pattern {p.regex!r} is not a valid (RE2) regex: {exc}") \
                from exc
        needed = {VALUE_GROUP[p.kind]} - {None}
        if p.kind == DIAGNOSIS and p.icd_version is None:
            needed.add("version")
        if needed - groups:
            raise CohortInputError(f"MEDS code pattern {p.regex!r} ({p.kind}) lacks the named group(s) "
                                   f"{', '.join(sorted(needed - groups))}")


def scan_prefixes(patterns: tuple[CodePattern, ...], diagnosis_like: tuple[str, ...]) -> tuple[str, ...]:
    """Every prefix the scan keeps (pattern prefixes and the diagnosis-like ones)."""
    return tuple(dict.fromkeys([p.prefix for p in patterns] + list(diagnosis_like)))


def classify_codes(codes: pa.Array, patterns: tuple[CodePattern, ...],
                   diagnosis_like: tuple[str, ...]) -> pd.DataFrame:
    """Per *distinct* code: ``kind`` (categorical over :data:`KINDS`; '' when unused), ``icd_version``
    (0 when none) and ``value`` (the kind's group). Runs as Arrow kernels (RE2 regexes) on the distinct
    codes, so a custom pattern must avoid what RE2 lacks (look-arounds, back-references).

    >>> classify_codes(pa.array(["DIAGNOSIS//ICD//10//I214", "ICD9CM/428.0", "LAB//50912//mg/dL",
    ...     "DIAGNOSIS//SNOMED//22298006", "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM"]),
    ...     CODE_PATTERNS, DIAGNOSIS_LIKE).astype({"kind": str}).to_dict("list")
    {'kind': ['diagnosis', 'diagnosis', '', 'unknown_diagnosis', 'admission'],
     'icd_version': [10, 9, 0, 0, 0], 'value': ['I214', '428.0', nan, nan, 'EW EMER.']}
    """
    n = len(codes)
    kind = np.zeros(n, dtype=np.int8)
    version = np.zeros(n, dtype=np.int16)
    value = np.full(n, None, dtype=object)
    pending = np.ones(n, dtype=bool)
    for pattern in patterns:
        starts = pc.fill_null(pc.starts_with(codes, pattern.prefix), False).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(pending & starts)
        if not len(rows):
            continue
        anchored = f"^(?:{pattern.regex})$"
        subset = codes.take(pa.array(rows))
        hit = pc.match_substring_regex(subset, anchored).to_numpy(zero_copy_only=False)
        rows, subset = rows[hit], subset.filter(pa.array(hit))
        kind[rows], pending[rows] = KINDS.index(pattern.kind), False
        group = VALUE_GROUP[pattern.kind]
        if len(rows) and re.compile(pattern.regex).groupindex:
            found = pc.extract_regex(subset, anchored)
            if group is not None:
                value[rows] = found.field(group).to_numpy(zero_copy_only=False)
            if pattern.kind == DIAGNOSIS and pattern.icd_version is None:
                given = pd.to_numeric(pd.Series(found.field("version").to_numpy(zero_copy_only=False)),
                                      errors="coerce")
                version[rows] = given.fillna(-1).to_numpy()
        if pattern.kind == DIAGNOSIS and pattern.icd_version is not None:
            version[rows] = pattern.icd_version
    if diagnosis_like:
        looks = reduce(pc.or_, [pc.fill_null(pc.starts_with(codes, p), False) for p in diagnosis_like])
        kind[pending & looks.to_numpy(zero_copy_only=False)] = KINDS.index(UNKNOWN_DIAGNOSIS)
    return pd.DataFrame({"kind": pd.Categorical.from_codes(kind, categories=KINDS), "icd_version": version,
                         "value": value})
