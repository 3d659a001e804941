"""Property-based tests (Hypothesis): random bytes, random column sets and random code strings thrown
at the loaders and the ``codes`` command. Nothing may raise anything but a clear ``CohortInputError``
(or, for the CLI, a one-line error), and every diagnosis row read is either kept or counted."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hicd_core import cli
from hicd_core.cohort import CohortInputError, load_cohort
from hicd_core.cohort.eicu import parse_icd9code
from hicd_core.hierarchy import normalize_codes

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
#: What counts a dropped diagnosis row of the MIMIC-IV reader and of the assembly step.
DIAGNOSIS_COUNTS = ("diagnosis_rows_empty_code", "diagnosis_rows_missing_hadm_id",
                    "diagnosis_rows_bad_icd_version", "diagnosis_rows_exact_duplicate",
                    "diagnosis_rows_unknown_visit")

cells = st.one_of(st.just(""), st.integers(-5, 99999).map(str), st.text(max_size=8),
                  st.sampled_from(["I214", "4280", "E", "V", "0", "99999999", "2180-01-01 10:00:00",
                                   "-5", "2180-13-45", "EW EMER.", "URGENT", "=cmd", "1e9", "NaN"]))


def _csv(columns: list[str], rows: list[list[str]]) -> str:
    quote = lambda v: '"' + v.replace('"', '""') + '"'  # noqa: E731
    return "\n".join([",".join(columns), *(",".join(quote(v) for v in row) for row in rows)]) + "\n"


def _write(folder: Path, name: str, text: str, gz: bool) -> None:
    path = folder / (f"{name}.csv.gz" if gz else f"{name}.csv")
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8", "surrogatepass"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")


@st.composite
def mimic_tables(draw):
    n_adm, n_diag = draw(st.integers(0, 6)), draw(st.integers(0, 12))
    subjects = draw(st.lists(st.sampled_from(["1", "2", "3", "", "x"]), min_size=n_adm, max_size=n_adm))
    hadms = draw(st.lists(st.sampled_from(["10", "11", "12", "13", "", "zz"]), min_size=n_adm,
                          max_size=n_adm))
    admissions = [[s, h, draw(cells), draw(cells), draw(cells)] for s, h in zip(subjects, hadms, strict=True)]
    diagnoses = [[draw(st.sampled_from(["1", "2", ""])), draw(st.sampled_from(["10", "11", "12", "", "99"])),
                  draw(cells), draw(cells), draw(st.sampled_from(["9", "10", "", "11", "x"]))]
                 for _ in range(n_diag)]
    patients = [[s, draw(cells), draw(cells), draw(cells)] for s in ("1", "2", "2", "")]
    extra = draw(st.sampled_from([[], ["note"]]))
    drop = draw(st.sampled_from([None, "icd_code", "admittime", "anchor_year"]))
    return admissions, diagnoses, patients, extra, drop, draw(st.booleans())


@SETTINGS
@given(tables=mimic_tables())
def test_mimic_iv_loader_never_raises_and_accounts_for_every_row(tmp_path_factory, tables) -> None:
    admissions, diagnoses, patients, extra, drop, gz = tables
    hosp = tmp_path_factory.mktemp("hosp")
    specs = {"admissions": (["subject_id", "hadm_id", "admittime", "dischtime", "admission_type"],
                            admissions),
             "diagnoses_icd": (["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"], diagnoses),
             "patients": (["subject_id", "anchor_age", "anchor_year", "gender"], patients)}
    for name, (columns, rows) in specs.items():
        keep = [i for i, c in enumerate(columns) if c != drop]
        _write(hosp, name, _csv([columns[i] for i in keep] + extra,
                                [[row[i] for i in keep] + ["e"] * len(extra) for row in rows]), gz)
    try:
        cohort = load_cohort("mimic-iv", hosp, use_cache=False)
    except CohortInputError as exc:
        assert str(exc)  # a clear, named error is a fine answer to nonsense
        return
    problems = cohort.meta["problems"]
    assert len(cohort.diagnoses) + sum(problems.get(k, 0) for k in DIAGNOSIS_COUNTS) == len(diagnoses)


@SETTINGS
@given(payload=st.binary(max_size=400), gz=st.booleans(), name=st.sampled_from(["admissions", "patients"]))
def test_random_bytes_in_a_table_give_a_clear_error(tmp_path_factory, payload: bytes, gz: bool,
                                                     name: str) -> None:
    hosp = tmp_path_factory.mktemp("hosp")
    good = {"admissions": "subject_id,hadm_id,admittime,dischtime,admission_type\n1,10,2180-01-01 00:00:00,"
                          "2180-01-02 00:00:00,URGENT\n",
            "patients": "subject_id,anchor_age,anchor_year\n1,50,2180\n",
            "diagnoses_icd": "subject_id,hadm_id,seq_num,icd_code,icd_version\n1,10,1,I214,10\n"}
    for table, text in good.items():
        _write(hosp, table, text, False)
    (hosp / f"{name}.csv").unlink()
    (hosp / (f"{name}.csv.gz" if gz else f"{name}.csv")).write_bytes(payload)
    try:
        load_cohort("mimic-iv", hosp, use_cache=False)
    except CohortInputError as exc:
        assert str(exc)


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=30),
       versions=st.lists(st.sampled_from([9, 10]), min_size=30, max_size=30))
def test_code_normalisation_gives_every_string_a_status(values: list, versions: list[int]) -> None:
    frame = normalize_codes(pd.Series(values, dtype=object), versions[: len(values)])
    assert len(frame) == len(values) and frame["status"].notna().all()
    for value in values:
        code, _, kind = parse_icd9code(value)
        assert kind in ("empty", "icd9", "icd10", "pair") and (code is None) == (kind == "empty")


@SETTINGS
@given(codes=st.lists(st.text(min_size=1, max_size=12).filter(lambda s: not s.startswith("-")), min_size=1,
                      max_size=5), icd9=st.booleans())
def test_codes_command_answers_any_string(codes: list[str], icd9: bool, capsys) -> None:
    argv = ["codes", *codes, "--json"] + (["--icd9"] if icd9 else [])
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse usage errors exit cleanly
        code = exc.code
    assert code in (0, 1, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_the_property_tests_can_fail(tmp_path: Path) -> None:
    """The accounting identity really constrains the loader: a known drop is seen in the counts."""
    hosp = tmp_path / "hosp"
    hosp.mkdir()
    _write(hosp, "admissions", "subject_id,hadm_id,admittime,dischtime,admission_type\n"
           "1,10,2180-01-01 00:00:00,2180-01-02 00:00:00,URGENT\n", False)
    _write(hosp, "patients", "subject_id,anchor_age,anchor_year\n1,50,2180\n", False)
    _write(hosp, "diagnoses_icd", "subject_id,hadm_id,seq_num,icd_code,icd_version\n1,10,1,I214,10\n"
           "1,10,1,I214,10\n1,,2,I10,10\n1,10,3,,10\n", False)
    cohort = load_cohort("mimic-iv", hosp, use_cache=False)
    problems = cohort.meta["problems"]
    assert len(cohort.diagnoses) == 1
    assert problems["diagnosis_rows_exact_duplicate"] == 1 and problems["diagnosis_rows_missing_hadm_id"] == 1
    assert problems["diagnosis_rows_empty_code"] == 1
    with pytest.raises(CohortInputError):
        load_cohort("mimic-iv", tmp_path / "nowhere", use_cache=False)
