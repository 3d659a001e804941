"""The ICD-10-CM hierarchy engine against known codes, the GEMs, the real demo and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from hicd_core.hierarchy import (
    RESOLVED,
    InvalidCodeError,
    attach_counts,
    chapter_order,
    code_set_year,
    coverage_report,
    icd10,
    level_ids,
    levels_of_code,
    lookup,
    normalize_codes,
    search_nodes,
    tree_nodes,
)
from hicd_core.hierarchy.icd10 import UNKNOWN
from hicd_core.hierarchy.levels import HierarchyPermutation, permute_hierarchy

KNOWN = [  # code, chapter, block, category
    ("I21.4", "IX", "I20-I25", "I21"),
    ("E11.9", "IV", "E08-E13", "E11"),
    ("S72.001A", "XIX", "S70-S79", "S72"),
    ("T36.0X1A", "XIX", "T36-T50", "T36"),
    ("Z99.2", "XXI", "Z77-Z99", "Z99"),
    ("U07.1", "XXII", "U00-U49", "U07"),
    ("F32.A", "V", "F30-F39", "F32"),
    ("O80", "XV", "O80-O82", "O80"),
    ("P07.31", "XVI", "P05-P08", "P07"),
    ("C50.911", "II", "C50-C50", "C50"),
    ("D57.1", "III", "D55-D59", "D57"),
]


@pytest.mark.parametrize(("code", "chapter", "block", "category"), KNOWN)
def test_known_codes(code: str, chapter: str, block: str, category: str) -> None:
    for form in (code, code.replace(".", "")):
        info = lookup(form)
        assert (info.chapter, info.block, info.category) == (chapter, block, category)
        assert info.valid and info.status == "valid"
        assert info.description and info.chapter_title and info.category_title


def test_chapter_title_and_code_set_year() -> None:
    info = lookup("I214")
    assert info.chapter_title.startswith("Diseases of the circulatory system")
    assert info.block_title.startswith("Ischemic heart diseases")
    assert code_set_year() == "ICD-10-CM FY2026"


def test_every_chapter_reachable() -> None:
    nodes = tree_nodes()
    chapters = nodes[nodes["level"] == "chapter"]["code"].tolist()
    assert chapters == chapter_order()[:-1]
    reached = set(nodes[nodes["level"] == "code"]["chapter"])
    assert reached == set(chapters)
    # Every node's parent exists, and the tree is complete (chapters -> blocks -> categories -> codes).
    ids = set(nodes["id"])
    assert set(nodes.loc[nodes["parent"] != "", "parent"]) <= ids
    assert nodes["level"].value_counts()["category"] == 1918


def test_non_billable_header_and_extension() -> None:
    assert not lookup("I21").valid
    assert lookup("S72001A").valid


def test_schemes_for_paper_example() -> None:
    assert levels_of_code("S72.001A", "prefix") == ("G0:S", "G1:S7", "G2:S72")
    assert levels_of_code("S72.001A", "graph") == ("G0:XIX", "G1:S70-S79", "G2:S7x")
    assert levels_of_code("S72.001A", "ontology") == ("G0:XIX", "G1:S70-S79", "G2:S72")
    with pytest.raises(ValueError, match="unknown level scheme"):
        levels_of_code("I214", "nonsense")


def test_level_ids_for_unknown_codes() -> None:
    # normalize_codes keeps no raw string, so an unresolved code has nothing to take prefixes of.
    frame = level_ids(normalize_codes(["XYZ", "I214", None]), "prefix")
    assert frame["G0"].astype(str).tolist() == ["G0:UNK", "G0:I", "G0:UNK"]


def test_prefix_scheme_needs_no_ontology() -> None:
    """Under ``prefix`` a code this release lacks still gets its string prefixes (cohort diagnoses
    carry ``raw_code``); ICD-9 codes the GEMs cannot map and empty codes stay UNK; the ontology
    schemes have nothing to say about an unknown code."""
    raw = ["XYZ12", "I21.4", "E8700", "", "u99.9"]
    versions = [10, 10, 9, 10, 10]
    frame = normalize_codes(raw, versions).assign(raw_code=pd.Categorical(raw), icd_version=versions)
    assert frame["icd10"].isna().tolist() == [True, False, True, True, True]
    prefix = level_ids(frame, "prefix").astype(str)
    assert prefix.iloc[0].tolist() == ["G0:X", "G1:XY", "G2:XYZ"]
    assert prefix.iloc[1].tolist() == ["G0:I", "G1:I2", "G2:I21"]
    assert prefix.iloc[2].tolist() == ["G0:UNK", "G1:UNK", "G2:UNK"]  # ICD-9: its prefixes are not ICD-10's
    assert prefix.iloc[3].tolist() == ["G0:UNK", "G1:UNK", "G2:UNK"]
    assert prefix.iloc[4].tolist() == ["G0:U", "G1:U9", "G2:U99"]  # cleaned (undotted, upper-case)
    ontology = level_ids(frame, "ontology").astype(str)
    assert ontology.iloc[0].tolist() == ["G0:UNK", "G1:UNK", "G2:UNK"]
    assert levels_of_code("XYZ12", "prefix") == ("G0:X", "G1:XY", "G2:XYZ")
    assert levels_of_code("XYZ12", "graph") == ("G0:UNK", "G1:UNK", "G2:UNK")


# ------------------------------------------------------------------------------ permuted hierarchy
def _units(kind: str = "extended", chapters: tuple[str, ...] = ("IX", "X", "XI")) -> pd.DataFrame:
    """One row per unit (codes of a few chapters, or categories) with its real tree position."""
    tree = icd10.tree_frame()
    rows = tree[(tree["kind"] == kind) | ((kind == "extended") & tree["billable"])]
    rows = rows[rows["chapter"].isin(chapters)].drop_duplicates("code")
    rows = rows.rename(columns={"code": "key"})
    return rows[["key", "chapter", "block", "category"]].reset_index(drop=True)


@pytest.mark.parametrize("kind", ["extended", "category"])
def test_permutation_keeps_group_sizes_and_assigns_every_unit(kind: str) -> None:
    units = _units(kind)
    permuted = permute_hierarchy(units, seed=3)
    assert permuted["key"].tolist() == units["key"].tolist()  # the units themselves are untouched
    assert not permuted[["chapter", "block", "category"]].isna().any().any()
    assert (permuted[["chapter", "block", "category"]] != UNKNOWN).all().all()
    for level in ("chapter", "block", "category"):  # every group keeps its number of units
        assert permuted[level].value_counts().sort_index().equals(units[level].value_counts().sort_index())
    # Still a tree: each permuted category sits in one block, each block in one chapter, and the path
    # is the donor's real one.
    assert (permuted.groupby("category")["block"].nunique() == 1).all()
    assert (permuted.groupby("block")["chapter"].nunique() == 1).all()
    real = units.set_index("key")
    donors = real.loc[permuted["donor"], ["chapter", "block", "category"]].to_numpy()
    assert (donors == permuted[["chapter", "block", "category"]].to_numpy()).all()
    assert sorted(permuted["donor"]) == sorted(units["key"])  # a bijection


def test_permutation_is_deterministic_and_unlike_the_real_tree() -> None:
    units = _units()
    first = permute_hierarchy(units, seed=3)
    assert first.equals(permute_hierarchy(units, seed=3))
    shuffled = units.sample(frac=1.0, random_state=1)  # row order does not change who gets what
    again = permute_hierarchy(shuffled, seed=3).set_index("key").loc[first["key"]].reset_index()
    assert again[["key", "donor", "category"]].equals(first[["key", "donor", "category"]])
    other = permute_hierarchy(units, seed=4)
    assert (other["donor"] != first["donor"]).mean() > 0.99
    # Different from the real tree at every level (kept only by chance: ~1 / number of groups).
    for level, most in (("category", 0.05), ("block", 0.1), ("chapter", 0.5)):
        assert (first[level] == units[level]).mean() < most, level


def test_permutation_level_ids_and_round_trip() -> None:
    """Every scheme's ids come from the donor; the object survives JSON; a unit outside the permuted
    set (another site's code) gets a deterministic donor from the set; unknown codes stay UNK."""
    codes = ["I214", "I219", "S72001A", "E119", "J449", "N179"]
    frame = normalize_codes(codes)
    units = frame.rename(columns={"icd10": "key"})[["key", "chapter", "block", "category"]].astype(str)
    permutation = HierarchyPermutation.build(units, seed=0)
    assert sorted(permutation.donors) == sorted(codes)
    restored = HierarchyPermutation.from_json(json.loads(json.dumps(permutation.to_json())))
    assert restored == permutation
    for scheme in ("ontology", "prefix", "graph"):
        ids = level_ids(frame, scheme, permutation).astype(str)
        for row, code in enumerate(codes):
            assert tuple(ids.iloc[row]) == levels_of_code(permutation.donors[code], scheme)
        real = level_ids(frame, scheme).astype(str)
        for level in ("G0", "G1", "G2"):  # the same groups, the same sizes, other members
            assert sorted(ids[level].value_counts()) == sorted(real[level].value_counts())
    outside = permutation.donor("K219")
    assert outside in codes and outside == restored.donor("K219")
    unknown = normalize_codes(["XYZ"])
    assert level_ids(unknown, "ontology", permutation).astype(str).iloc[0].tolist() == [
        "G0:UNK", "G1:UNK", "G2:UNK"]
    assert HierarchyPermutation.from_json(None) is None


@pytest.mark.parametrize(("icd9", "family"), [("41401", "I251"), ("4280", "I509"), ("25000", "E119"),
                                              ("V4581", "Z95"), ("7999", "R69")])
def test_icd9_examples(icd9: str, family: str) -> None:
    info = lookup(icd9, version=9)
    assert info.icd10.startswith(family)
    assert info.status == "mapped"


def test_icd9_one_to_many_keeps_all_targets() -> None:
    info = lookup("7999", version=9)
    assert set(info.gem_targets) == {"R69", "R99"}


@pytest.mark.parametrize(("icd9", "category"), [("585", "N18"), ("2874", "D69")])
def test_icd9_fallback_is_approximate(icd9: str, category: str) -> None:
    info = lookup(icd9, version=9)
    assert info.category == category
    assert info.status == "approximate"


def test_icd9_no_map_is_kept_and_counted() -> None:
    # E8700 (cut during surgery): NoDx in the forward GEM and named by no backward-GEM row, nor are
    # its E870 siblings -- ICD-10-CM codes it as a complication per body system.
    frame = normalize_codes(["E8700"], 9)
    assert frame["status"].iloc[0] == "unmapped" and frame["chapter"].iloc[0] == "UNK"


@pytest.mark.parametrize(("icd9", "category", "chapter"), [
    ("E9342", "T45", "XIX"), ("E9352", "T40", "XIX"), ("E9331", "T45", "XIX"), ("E8654", "T62", "XIX"),
    ("E912", "T17", "XIX"), ("70722", "L89", "XII")])
def test_icd9_forward_no_map_resolves_through_backward_gem(icd9: str, category: str, chapter: str) -> None:
    """The forward GEM says NoDx; the backward GEM names ICD-10-CM codes that map back to the code."""
    row = normalize_codes([icd9], 9).iloc[0]
    assert (row["status"], row["rule"]) == ("approximate", "backward-gem")
    assert (row["category"], row["chapter"]) == (category, chapter)


def test_backward_gem_pick_is_majority_category_initial_encounter() -> None:
    # E9352 (other opiates, adverse effect) <- T400X5A/S, T402X5A/S, ... all in T40: first is 'A'.
    assert lookup("E9352", version=9).icd10 == "T400X5A"
    # Late effects have only sequela candidates and keep them.
    assert lookup("E9292", version=9).icd10.endswith("S")


@pytest.mark.parametrize(("icd9", "category", "rule"), [("E9347", "T45", "backward-category"),
                                                        ("E927", "T73", "backward-descendants")])
def test_icd9_backward_relatives(icd9: str, category: str, rule: str) -> None:
    """Named by neither GEM: the backward candidates of its ICD-9 descendants or category siblings."""
    row = normalize_codes([icd9], 9).iloc[0]
    assert (row["status"], row["rule"], row["category"]) == ("approximate", rule, category)


def test_demo_icd9_coverage(demo_dir) -> None:
    diag = pd.read_csv(demo_dir / "hosp" / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    icd9 = diag.loc[diag["icd_version"] == 9, "icd_code"].drop_duplicates()
    frame = normalize_codes(icd9, 9)
    covered = frame["status"].astype(str).isin(RESOLVED).mean()
    assert covered >= 0.95, covered
    icd10 = diag.loc[diag["icd_version"] == 10, "icd_code"].drop_duplicates()
    assert normalize_codes(icd10, 10)["status"].astype(str).isin(RESOLVED).all()


def test_icd9_chapter_coverage_target(demo_dir) -> None:
    """>= 99.5 % of distinct real ICD-9 codes get an ICD-10-CM chapter (the demo's and the dictionary's)."""
    hosp = demo_dir / "hosp"
    used = pd.read_csv(hosp / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    listed = pd.read_csv(hosp / "d_icd_diagnoses.csv.gz", dtype={"icd_code": str})
    for frame, n in ((used, 740), (listed, 14_666)):
        codes = frame.loc[frame["icd_version"] == 9, "icd_code"].drop_duplicates()
        assert len(codes) == n
        with_chapter = (normalize_codes(codes, 9)["chapter"].astype(str) != "UNK").mean()
        assert with_chapter >= 0.995, (n, with_chapter)


MALFORMED = ["", None, "  ", "i21.4", " I21.4 ", "I21..4", "4280", "XYZ", "123456789", "S030XXA"]


def test_malformed_inputs_are_flagged_not_raised() -> None:
    frame = normalize_codes(MALFORMED, 10)
    assert frame["status"].astype(str).tolist() == [
        "empty", "empty", "empty", "valid", "valid", "valid", "looks_icd9", "invalid", "invalid",
        "approximate"]
    assert (frame.loc[frame["status"].isin(["empty", "invalid", "looks_icd9"]), "chapter"] == "UNK").all()
    assert str(frame["icd10"].iloc[9]) == "S030"


@pytest.mark.parametrize("bad", ["", "XYZ", "123456789", "4280"])
def test_single_lookup_of_invalid_code_names_it(bad: str) -> None:
    with pytest.raises(InvalidCodeError, match=repr(bad).replace("\\", "\\\\")):
        lookup(bad)


def test_coverage_report_counts_everything() -> None:
    codes = ["I214", "4280", "XYZ", "", "585", "E8700"]
    versions = [10, 9, 10, 10, 9, 9]
    report = coverage_report(codes, versions)
    assert report["occurrences"].sum() == len(codes)
    by = {(r.source_version, r.status): r.occurrences for r in report.itertuples()}
    assert by[(9, "mapped")] == 1 and by[(9, "approximate")] == 1 and by[(9, "unmapped")] == 1
    assert by[(10, "valid")] == 1 and by[(10, "invalid")] == 1 and by[(10, "empty")] == 1


def test_bulk_matches_single_lookup_and_keeps_positions() -> None:
    codes = pd.Series(["I214", "E119", "I214", "XYZ"] * 1000)
    frame = normalize_codes(codes)
    assert len(frame) == 4000
    assert frame["icd10"].iloc[4].__str__() == "I214" and frame["status"].iloc[3] == "invalid"


def test_attach_counts_rolls_up() -> None:
    nodes = tree_nodes("code")
    counted = attach_counts(nodes, pd.Series({"I214": 3, "I219": 2, "E119": 5}))
    by_id = counted.set_index("id")["count"]
    assert by_id["CA:I21"] == 5 and by_id["BL:I20-I25"] == 5 and by_id["CH:IX"] == 5
    assert by_id["CH:IV"] == 5 and by_id["CO:I214"] == 3


def test_search_by_code_and_words() -> None:
    assert search_nodes("I21")["code"].iloc[0] == "I21"
    hits = search_nodes("myocardial infarction", max_level="category")
    assert "I21" in hits["code"].tolist()


def test_cli_codes_json_and_unknowns() -> None:
    out = subprocess.run([sys.executable, "-m", "hicd_core", "codes", "I21.4", "XYZ", "--json"],
                         capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert {"input", "icd10", "chapter", "block", "category", "valid"} <= set(rows[0])
    assert rows[0]["chapter"] == "IX" and rows[1]["icd10"] is None and rows[1]["status"] == "invalid"


def test_cli_codes_icd9_text() -> None:
    out = subprocess.run([sys.executable, "-m", "hicd_core", "codes", "--icd9", "4280"],
                         capture_output=True, text=True, check=True)
    assert "I50.9" in out.stdout and "gem" in out.stdout
