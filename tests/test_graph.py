"""HICD-Graph: graph construction checked by hand for all 8 settings, GCN, fine-tuning, artifacts.

The hand-made cohort has 8 TRAIN admissions over 8 categories from 3 chapters (plus val/test
admissions that would change every count if they leaked into the graph):

    V0: I21 I21 I25 E78   (I21.4 and I21.9 are one category: counted once)
    V1: I21 I25 XYZ       (XYZ is unresolved: dropped)
    V2: I50 I48 E11       V3: I50 I48       V4: E11 E78
    V5: J18 J44           V6: J18 J44 I50   V7: I21 E11
    V8: XYZ only          (no graph code: not one of the N = 8 admissions)

Admission counts n: I21 3, E11 3, I50 3, I25 2, E78 2, I48 2, J18 2, J44 2. With
PMI(a, b) = log(C_ab N / (n_a n_b)):

    J18-J44  log(2*8/4)  = log 4          I21-I25, I48-I50  log(2*8/6) = log(8/3)
    E78-I25  log(8/4)    = log 2          E78-I21, E11-I48, E11-E78, I50-J18, I50-J44  log(8/6) = log(4/3)
    E11-I50, E11-I21  log(8/9) < 0  (dropped)

Nine positive values; the 52nd percentile (linear interpolation at rank 0.52 * 8 = 4.16) is
log(4/3) + 0.16 (log 2 - log(4/3)), so the kept edges are the four with PMI >= log 2, normalised by
min-max over them: E78-I25 0, I21-I25 and I48-I50 log(4/3)/log 2, J18-J44 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hicd_core.cohort.schema import MIMIC_IV, TEST, TRAIN, VALIDATION, Cohort
from hicd_core.experiments.families import GraphFamily
from hicd_core.experiments.transfer import probe_transfer
from hicd_core.hierarchy import SETTINGS, Setting, normalize_codes
from hicd_core.models.common import ArtifactError, ProgressEvent
from hicd_core.models.graph_build import CodeGraph
from hicd_core.models.graph_model import (
    PRESETS,
    GCNEncoder,
    GraphConfig,
    PatientTransformer,
    graph_config,
    normalized_adjacency,
)
from hicd_core.models.graph_train import (
    TrainedGraph,
    build_graph,
    load_graph_model,
    train_gcn,
    train_graph_model,
    visit_index,
)

# ============================================================================ cohorts
SPLIT_CATEGORIES = [TRAIN, VALIDATION, TEST]


def make_cohort(visits: list[tuple[int, list[str]]], splits: dict[int, str], labels: dict[str, list[int]],
                site: str = MIMIC_IV, fingerprint: str = "hand") -> Cohort:
    """A Cohort following ``hicd_core.cohort.schema`` from (patient, codes) per visit, in time order.

    Codes are dotted ICD-10-CM strings, or ``9:<code>`` for ICD-9; hierarchy columns come from the
    real normaliser. Every visit is a sample of every task in ``labels``.
    """
    n_visits = len(visits)
    patient_of_visit = np.array([p for p, _ in visits], dtype=np.int64)
    order = np.argsort(patient_of_visit, kind="stable")
    assert np.array_equal(order, np.arange(n_visits)), "visits must be grouped by patient"
    visit_index = pd.Series(patient_of_visit).groupby(patient_of_visit).cumcount().to_numpy(np.int32)
    n_patients = int(patient_of_visit.max()) + 1
    split = pd.Categorical([splits[p] for p in range(n_patients)], categories=SPLIT_CATEGORIES)
    patients = pd.DataFrame({
        "patient_id": np.arange(n_patients, dtype=np.int64),
        "source_patient_id": pd.array([f"p{p}" for p in range(n_patients)], dtype="string"),
        "split": split, "sex": pd.Categorical(["F"] * n_patients),
        "n_visits": np.bincount(patient_of_visit, minlength=n_patients).astype(np.int32)})
    start = pd.Timestamp("2150-01-01") + pd.to_timedelta(visit_index.astype(np.int64) * 60, unit="D")
    visits_frame = pd.DataFrame({
        "visit_id": np.arange(n_visits, dtype=np.int64), "patient_id": patient_of_visit,
        "visit_index": visit_index,
        "source_visit_id": pd.array([str(v) for v in range(n_visits)], dtype="string"),
        "start": start, "end": start + pd.Timedelta(days=3), "start_minutes": visit_index * 86400.0,
        "end_minutes": visit_index * 86400.0 + 4320.0, "visit_type": pd.Categorical(["EW EMER."] * n_visits),
        "age": np.full(n_visits, 60.0, np.float32), "died": np.zeros(n_visits, bool),
        "site": pd.Categorical([site] * n_visits),
        "group_id": pd.array([str(v) for v in range(n_visits)], dtype="string")})
    rows = [(v, p, s, code) for v, (p, codes) in enumerate(visits) for s, code in enumerate(codes)]
    raw = [code.split(":", 1)[-1] for *_, code in rows]
    versions = [9 if code.startswith("9:") else 10 for *_, code in rows]
    normalized = normalize_codes(raw, versions)
    diagnoses = pd.DataFrame({
        "visit_id": np.array([r[0] for r in rows], np.int64),
        "patient_id": np.array([r[1] for r in rows], np.int64),
        "seq": np.array([r[2] for r in rows], np.int32), "raw_code": pd.Categorical(raw),
        "icd_version": np.array(versions, np.int8)})
    for column in ("icd10", "chapter", "block", "category", "status"):
        diagnoses[column] = normalized[column].to_numpy()
    tasks = {}
    for task, values in labels.items():
        tasks[task] = pd.DataFrame({
            "sample_id": np.arange(n_visits, dtype=np.int64), "patient_id": patient_of_visit,
            "visit_id": np.arange(n_visits, dtype=np.int64), "visit_index": visit_index,
            "label": np.asarray(values, np.int8),
            "split": pd.Categorical(np.asarray(split)[patient_of_visit], categories=SPLIT_CATEGORIES)})
    return Cohort(site=site, patients=patients, visits=visits_frame, diagnoses=diagnoses, tasks=tasks,
                  fingerprint=fingerprint, meta={"synthetic": True})


HAND_VISITS = [
    (0, ["I21.4", "I21.9", "I25.10", "E78.5"]), (0, ["I21.4", "I25.10", "XYZ"]),
    (1, ["I50.9", "I48.91", "E11.9"]), (1, ["I50.9", "I48.91"]), (2, ["E11.9", "E78.5"]),
    (3, ["J18.9", "J44.9"]), (3, ["J18.9", "J44.9", "I50.9"]), (4, ["I21.4", "E11.9"]), (5, ["XYZ"]),
    (6, ["I21.4", "J18.9"]), (6, ["I21.4", "J18.9"]), (7, ["E11.9", "J44.9"]),
]
HAND_SPLITS = {0: TRAIN, 1: TRAIN, 2: TRAIN, 3: TRAIN, 4: TRAIN, 5: TRAIN, 6: VALIDATION, 7: TEST}


@pytest.fixture(scope="module")
def hand_cohort() -> Cohort:
    return make_cohort(HAND_VISITS, HAND_SPLITS, {"readmission_30d": [0, 1] * 6})


LOG = math.log
PMI = {("J18", "J44"): LOG(4), ("I21", "I25"): LOG(8 / 3), ("I48", "I50"): LOG(8 / 3), ("E78", "I25"): LOG(2)}
THRESHOLD = LOG(4 / 3) + 0.16 * (LOG(2) - LOG(4 / 3))
WEIGHT = {("J18", "J44"): 1.0, ("I21", "I25"): LOG(4 / 3) / LOG(2), ("I48", "I50"): LOG(4 / 3) / LOG(2),
          ("E78", "I25"): 0.0}
COUNT = {("J18", "J44"): 2, ("I21", "I25"): 2, ("I48", "I50"): 2, ("E78", "I25"): 1}
ANCESTORS = {  # (G0 chapter, G1 block, G2 2-character prefix group) under the 'graph' scheme
    "E11": ("CHAP_IV", "BLOCK_E08-E13", "PREFIX_E1x"), "E78": ("CHAP_IV", "BLOCK_E70-E88", "PREFIX_E7x"),
    "I21": ("CHAP_IX", "BLOCK_I20-I25", "PREFIX_I2x"), "I25": ("CHAP_IX", "BLOCK_I20-I25", "PREFIX_I2x"),
    "I48": ("CHAP_IX", "BLOCK_I30-I5A", "PREFIX_I4x"), "I50": ("CHAP_IX", "BLOCK_I30-I5A", "PREFIX_I5x"),
    "J18": ("CHAP_X", "BLOCK_J09-J18", "PREFIX_J1x"), "J44": ("CHAP_X", "BLOCK_J40-J4A", "PREFIX_J4x"),
}
FREQUENCY = {"I21": 3, "E11": 3, "I50": 3, "I25": 2, "E78": 2, "I48": 2, "J18": 2, "J44": 2}


def named_edges(graph: CodeGraph, kind_prefix: str) -> pd.DataFrame:
    names = graph.nodes["name"].to_numpy()
    edges = graph.edges[graph.edges["kind"].str.startswith(kind_prefix)]
    out = edges.assign(a=names[edges["source"]], b=names[edges["target"]])
    return out


# ============================================================================ graph construction
@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_graph_by_hand_every_setting(hand_cohort: Cohort, setting: Setting) -> None:
    graph = build_graph(hand_cohort, setting)
    # Nodes: the 8 train categories (val/test-only codes never enter), then enabled ancestors.
    codes = graph.nodes[graph.nodes["kind"] == "code"]
    assert dict(zip(codes["name"], codes["frequency"], strict=True)) == FREQUENCY
    expected_ancestors = {anc[i] for anc in ANCESTORS.values() for i in range(3) if setting.bits[i]}
    ancestors = graph.nodes[graph.nodes["kind"] != "code"]
    assert set(ancestors["name"]) == expected_ancestors
    assert graph.nodes["node_id"].tolist() == list(range(graph.n_nodes))
    assert graph.meta["train_admissions"] == 8 and graph.meta["positive_pairs"] == 9
    assert graph.meta["pmi_threshold"] == pytest.approx(THRESHOLD)
    # Co-occurrence edges: identical in every setting.
    cooc = named_edges(graph, "cooccurrence")
    got = {(a, b): row for a, b, row in zip(cooc["a"], cooc["b"], cooc.itertuples(), strict=True)}
    assert set(got) == set(PMI)
    for pair, pmi in PMI.items():
        assert got[pair].pmi == pytest.approx(pmi)
        assert got[pair].weight == pytest.approx(WEIGHT[pair])
        assert got[pair].count == COUNT[pair]
    # Hierarchy edges: code -> each enabled ancestor, weight 1, level in the kind.
    hier = named_edges(graph, "hierarchy")
    expected = {(code, anc[i], f"hierarchy_G{i}") for code, anc in ANCESTORS.items() for i in range(3)
                if setting.bits[i]}
    assert set(zip(hier["a"], hier["b"], hier["kind"], strict=True)) == expected
    assert len(hier) == len(expected)
    assert (hier["weight"] == 1.0).all() and hier["pmi"].isna().all()
    # Ancestor frequency = train admissions holding any code below it.
    if setting.bits[0]:
        freq = dict(zip(ancestors["name"], ancestors["frequency"], strict=True))
        assert freq["CHAP_IX"] == 6 and freq["CHAP_IV"] == 4 and freq["CHAP_X"] == 2


def test_flat_graph_has_no_ancestor_nodes(hand_cohort: Cohort) -> None:
    graph = build_graph(hand_cohort, Setting.FLAT)
    assert set(graph.nodes["kind"]) == {"code"} and set(graph.edges["kind"]) == {"cooccurrence"}
    assert graph.n_nodes == 8 and len(graph.edges) == 4


def test_minmax_normalisation_and_percentile(hand_cohort: Cohort) -> None:
    graph = build_graph(hand_cohort, Setting.ALL)
    cooc = graph.edges[graph.edges["kind"] == "cooccurrence"]
    assert cooc["weight"].min() == 0.0 and cooc["weight"].max() == 1.0
    assert graph.edges["weight"].between(0.0, 1.0).all()
    # w = (pmi - min) / (max - min) over the kept edges.
    lo, hi = cooc["pmi"].min(), cooc["pmi"].max()
    np.testing.assert_allclose(cooc["weight"], (cooc["pmi"] - lo) / (hi - lo))
    # A higher percentile keeps fewer edges: rank 0.7 * 8 = 5.6 -> log 2 + 0.6 (log(8/3) - log 2).
    stricter = build_graph(hand_cohort, Setting.FLAT, percentile=70.0)
    assert stricter.meta["pmi_threshold"] == pytest.approx(LOG(2) + 0.6 * (LOG(8 / 3) - LOG(2)))
    assert set(map(tuple, named_edges(stricter, "cooc")[["a", "b"]].to_numpy())) == {
        ("J18", "J44"), ("I21", "I25"), ("I48", "I50")}
    # One kept edge: max == min -> weight 1.
    single = build_graph(hand_cohort, Setting.FLAT, percentile=99.0)
    assert single.edges["weight"].tolist() == [1.0]


def test_leaf_nodes_use_categories_as_g2(hand_cohort: Cohort) -> None:
    graph = build_graph(hand_cohort, Setting.ALL, node_level="leaf")
    codes = set(graph.nodes.loc[graph.nodes["kind"] == "code", "name"])
    assert {"I214", "I219", "I2510", "E785"} <= codes and "I21" not in codes
    g2 = named_edges(graph, "hierarchy_G2")
    assert set(zip(g2["a"], g2["b"], strict=True)) >= {("I214", "CAT_I21"), ("I219", "CAT_I21")}
    assert graph.scheme == "ontology"


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_unseen_codes_map_to_category_or_ancestors(hand_cohort: Cohort,
                                                    setting: Setting) -> None:
    graph, bits = build_graph(hand_cohort, setting), setting.bits
    assert graph.map_code("I21.4") == ["I21"]  # a seen category, whatever the leaf
    assert graph.map_code("I21.A1") == ["I21"]  # a leaf never seen in training
    assert graph.map_code("4280", version=9) == ["I50"]  # ICD-9 through the GEM
    # I35 was never seen: chapter IX and block I30-I5A exist, prefix group I3x does not.
    assert graph.map_code("I35.0") == [n for n, on in zip(("CHAP_IX", "BLOCK_I30-I5A"), bits, strict=False)
                                       if on]
    # J45 was never seen, but all three of its ancestors were.
    assert graph.map_code("J45.909") == [a for a, on in zip(ANCESTORS["J44"], bits, strict=True) if on]
    assert graph.map_code("S72.001A") == []  # chapter XIX never seen in training
    # Frame mapping (any site): unresolved rows get no node.
    frame = normalize_codes(["I21.4", "J45.909", "XYZ"])
    code_ids, ancestors = graph.map_frame(frame)
    assert code_ids.tolist() == [graph.node_id("I21"), -1, -1]
    assert (ancestors[2] == -1).all()
    assert [i >= 0 for i in ancestors[1]] == [bool(b) for b in bits]


def test_neighbourhood_export(hand_cohort: Cohort) -> None:
    graph = build_graph(hand_cohort, Setting.ALL)
    nodes, edges = graph.neighbourhood("I21", k=1)
    assert set(nodes["name"]) == {"I21", "I25", "CHAP_IX", "BLOCK_I20-I25", "PREFIX_I2x"}
    assert nodes.set_index("name")["hop"].to_dict()["I21"] == 0
    ids = set(nodes["node_id"])
    assert set(edges["source"]) <= ids and set(edges["target"]) <= ids
    assert len(edges) == 7  # I21-I25, and each of them to its 3 ancestors
    nodes2, _ = graph.neighbourhood("I21.4", k=2)  # any ICD code works; hop 2 reaches I48, I50, E78
    assert {"I48", "I50", "E78"} <= set(nodes2["name"]) and "CHAP_IV" not in set(nodes2["name"])  # hop 3
    capped, _ = graph.neighbourhood("I21", k=3, max_nodes=4)
    assert len(capped) == 4 and capped["hop"].max() <= 1
    with pytest.raises(KeyError, match="S72"):
        graph.neighbourhood("S72.001A")


def test_graph_json_round_trip(hand_cohort: Cohort) -> None:
    graph = build_graph(hand_cohort, Setting.G0_G2)
    back = CodeGraph.from_dict(json.loads(graph.to_json()))
    pd.testing.assert_frame_equal(back.nodes, graph.nodes)
    pd.testing.assert_frame_equal(back.edges, graph.edges)
    assert back.setting == Setting.G0_G2 and back.key == graph.key


def test_permuted_hierarchy_graph(hand_cohort: Cohort) -> None:
    """The permuted-hierarchy control keeps code nodes and co-occurrence edges; each category links
    to the ancestors of its donor category, so every ancestor keeps its number of members; the
    permutation survives the JSON round trip and maps other rows the same way."""
    real = build_graph(hand_cohort, Setting.ALL)
    graph = build_graph(hand_cohort, Setting.ALL, hierarchy="permuted", permutation_seed=5)
    assert graph.hierarchy == "permuted" and real.hierarchy == "real" and graph.key != real.key
    codes = real.nodes["kind"] == "code"
    pd.testing.assert_frame_equal(graph.nodes[codes], real.nodes[codes])
    pd.testing.assert_frame_equal(named_edges(graph, "cooc"), named_edges(real, "cooc"))
    donors = graph.permutation.donors
    assert sorted(donors) == sorted(ANCESTORS) and sorted(donors.values()) == sorted(ANCESTORS)
    assert any(donor != code and ANCESTORS[donor] != ANCESTORS[code] for code, donor in donors.items())
    for level, position in (("G0", 0), ("G1", 1), ("G2", 2)):
        edges = named_edges(graph, f"hierarchy_{level}")
        assert dict(zip(edges["a"], edges["b"], strict=True)) == {
            code: ANCESTORS[donor][position] for code, donor in donors.items()}
        real_edges = named_edges(real, f"hierarchy_{level}")
        assert sorted(edges["b"].value_counts()) == sorted(real_edges["b"].value_counts())
    assert build_graph(hand_cohort, Setting.G1, hierarchy="permuted", permutation_seed=5).permutation == \
        graph.permutation  # one permutation per seed, whatever the setting
    back = CodeGraph.from_dict(json.loads(graph.to_json()))
    assert back.permutation == graph.permutation and back.key == graph.key
    frame = normalize_codes(["I21.4", "J45.909"])
    np.testing.assert_array_equal(back.map_frame(frame)[1], graph.map_frame(frame)[1])
    assert graph.map_code("I21.4") == ["I21"]  # code nodes are the real categories
    assert graph.map_frame(frame)[1][0].tolist() == [graph.node_id(a) for a in ANCESTORS[donors["I21"]]]


def test_visit_tokens_and_windows(hand_cohort: Cohort) -> None:
    graph = build_graph(hand_cohort, Setting.ALL)
    index = visit_index(hand_cohort, graph)
    names = graph.nodes["name"].to_numpy()
    v0 = names[index.tokens[index.indptr[0]:index.indptr[1]]].tolist()
    # Codes in seq order, each once, then ancestors deduplicated across the visit's codes.
    assert v0[:3] == ["I21", "I25", "E78"]
    assert sorted(v0[3:]) == sorted({"CHAP_IX", "BLOCK_I20-I25", "PREFIX_I2x", "CHAP_IV", "BLOCK_E70-E88",
                                     "PREFIX_E7x"})
    # A 12-visit patient: windows hold the anchor and at most 9 earlier visits, in time order.
    long = make_cohort([(0, ["I21.4"])] * 12, {0: TRAIN}, {"t": [0] * 12})
    long_index = visit_index(long, graph)
    windows = long_index.windows(np.array([11, 3]), 10)
    assert windows[0].tolist() == list(range(2, 12))
    assert windows[1].tolist() == [0, 1, 2, 3] + [-1] * 6
    tokens, token_mask, visit_mask = long_index.batch(windows)
    assert tokens.shape[:2] == (2, 10) and visit_mask.sum(1).tolist() == [10, 4]
    assert token_mask[1, 4:].sum() == 0


# ============================================================================ models
def test_symmetric_gcn_matches_pyg_gcnconv() -> None:
    """The CSR kernel gives GCNConv(normalize=True, edge_weight)'s output and input gradients."""
    from torch_geometric.nn import GCNConv

    torch.manual_seed(0)
    pairs = torch.tensor([[0, 1, 2, 3, 0, 5], [1, 2, 3, 4, 4, 6]])
    weight = torch.rand(pairs.shape[1])
    both, w2 = torch.cat([pairs, pairs.flip(0)], 1), torch.cat([weight, weight])
    encoder = GCNEncoder(8, GraphConfig())
    ref1, ref2 = GCNConv(64, 128), GCNConv(128, 128)
    ref1.load_state_dict(encoder.conv1.state_dict())
    ref2.load_state_dict(encoder.conv2.state_dict())
    z = encoder(normalized_adjacency(both, w2, 8))
    z_ref = ref2(torch.relu(ref1(encoder.x, both, w2)), both, w2)
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-6)
    grad = torch.autograd.grad(z.square().sum(), encoder.x)[0]
    grad_ref = torch.autograd.grad(z_ref.square().sum(), encoder.x)[0]
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-5)


def test_presets_sit_next_to_the_config() -> None:
    assert graph_config("cpu") == GraphConfig() and set(PRESETS) == {"cpu", "paper"}
    paper = graph_config("paper")  # paper Tables 8 and 9
    assert (paper.gcn_epochs, paper.gcn_lr, paper.lr, paper.max_epochs) == (400, 0.005, 2e-5, 15)
    assert paper is not PRESETS["paper"]  # a copy: GraphConfig is mutable
    with pytest.raises(ValueError, match="unknown HICD-Graph preset"):
        graph_config("tiny")
    scaled = GraphFamily()._config("paper", 0.5)
    assert (scaled.gcn_epochs, scaled.max_epochs, scaled.lr) == (200, 8, 2e-5)
    assert paper.patience is None and graph_config("cpu").patience == 2  # paper: all 15 epochs run


@pytest.mark.parametrize(("patience", "epochs_run"), [(0, 2), (None, 4)])
def test_patience_none_never_stops_early(hand_cohort: Cohort, patience: int | None, epochs_run: int) -> None:
    """lr 0: validation AUROC never improves after epoch 1, so patience 0 stops after epoch 2, and
    ``None`` (the paper preset) runs every epoch and keeps the best-validation weights."""
    config = GraphConfig(gcn_epochs=1, max_epochs=4, patience=patience, lr=0.0)
    model = train_graph_model(hand_cohort, "readmission_30d", Setting.FLAT, seed=0, device="cpu",
                              config=config)
    assert len(model.metrics["history"]) == epochs_run


FAST = GraphConfig(gcn_epochs=60, max_epochs=3, patience=1, batch_size=64, lr=1e-3)  # val AUROC 0.651


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny; on a shared 2-core machine OpenMP's spin-waiting makes 2 threads ~10x
    slower than 1 (measured), so this module trains single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def source_cohort(small_source_cohort: Cohort) -> Cohort:
    """The shared synthetic MIMIC-IV-layout cohort (conftest; hierarchy signal 0.9)."""
    return small_source_cohort


@pytest.fixture(scope="module")
def target_cohort(small_target_cohort: Cohort) -> Cohort:
    """Another site (eICU layout): some of its categories never occur at the source."""
    return small_target_cohort


@pytest.fixture(scope="module")
def trained(source_cohort: Cohort):
    events: list[ProgressEvent] = []
    model = train_graph_model(source_cohort, "readmission_30d", Setting.ALL, seed=0, device="cpu",
                              config=FAST, progress=events.append)
    return model, events


def test_link_prediction_beats_chance(trained) -> None:
    model, _ = trained
    assert model.metrics["link_auc"] > 0.7, model.metrics["pretrain_history"][-1]
    evaluated = [p["epoch"] for p in model.metrics["pretrain_history"] if "link_auc" in p]
    assert evaluated == list(range(10, FAST.gcn_epochs + 1, 10))
    nodes, embeddings = model.node_embeddings()
    assert embeddings.shape == (len(nodes), 128) and np.isfinite(embeddings).all()


def test_finetuning_beats_chance_and_reports_progress(trained) -> None:
    model, events = trained
    assert model.metrics["validation"]["auroc"] > 0.6
    assert 0.01 <= model.threshold <= 0.99
    stages = {e.stage for e in events}
    assert stages == {"gcn", "transformer"}
    assert [e.step for e in events if e.stage == "gcn"] == list(range(1, FAST.gcn_epochs + 1))
    assert model.metrics["best_epoch"] >= 1 and model.metrics["link_auc"] > 0.5
    # The metric keys both models share (hicd_core.models.common's docstring).
    m = model.metrics
    assert {"history", "best_epoch", "stopped_epoch", "threshold", "validation", "test", "task", "setting",
            "pos_weight", "seconds", "pretrain_history", "pretrain_seconds"} <= set(m)
    assert set(m["history"][0]) == {"epoch", "train_loss", "val_auroc", "lr", "seconds"}
    assert len(m["history"]) == m["stopped_epoch"] >= m["best_epoch"]
    assert [e.metrics["val_auroc"] for e in events if e.stage == "transformer"] == [
        row["val_auroc"] for row in m["history"]]


def test_predict_encode_and_transfer(trained, source_cohort: Cohort, target_cohort: Cohort) -> None:
    model, _ = trained
    test = model.predict(source_cohort, "readmission_30d", split=TEST)
    samples = source_cohort.tasks["readmission_30d"]
    assert test["sample_id"].tolist() == samples.loc[samples["split"] == TEST, "sample_id"].tolist()
    assert test["prob"].between(0, 1).all()
    # Target codes whose category never occurs in source training still reach the graph.
    code_ids, ancestors = model.graph.map_frame(target_cohort.diagnoses)
    unseen = (code_ids < 0) & target_cohort.diagnoses["icd10"].notna().to_numpy()
    assert unseen.any() and (ancestors[unseen] >= 0).any(axis=1).mean() > 0.9
    ids, vectors = model.encode(target_cohort, "icu_readmission")
    assert vectors.shape == (len(target_cohort.tasks["icu_readmission"]), 128) and np.isfinite(vectors).all()
    assert len(ids) == len(vectors)
    # The probe encodes every sample once and splits: the same vectors as one call per split.
    position = {sample_id: row for row, sample_id in enumerate(ids)}
    for split in (TRAIN, VALIDATION, TEST):
        split_ids, split_vectors = model.encode(target_cohort, "icu_readmission", split)
        np.testing.assert_allclose(vectors[[position[i] for i in split_ids]], split_vectors, atol=1e-5)
    metrics, predictions = probe_transfer(model, target_cohort, "icu_readmission")
    test_ids = target_cohort.tasks["icu_readmission"].query("split == @TEST")["sample_id"].tolist()
    assert predictions["sample_id"].tolist() == test_ids and 0 <= metrics["test"]["auroc"] <= 1
    nodes, embeddings = model.node_embeddings()
    assert embeddings.shape == (len(nodes), 128)


def test_final_split_predictions_are_reused_and_equal_a_fresh_pass(trained, source_cohort: Cohort) -> None:
    """The sweep's evaluation reuses the probabilities training computed with the kept weights: the
    same numbers a new forward pass gives (a copy of the model without them recomputes)."""
    from dataclasses import fields

    model, _ = trained
    assert "_split_predictions" in model.__dict__
    fresh = TrainedGraph(**{f.name: getattr(model, f.name) for f in fields(model)})
    for split in (VALIDATION, TEST):
        kept = model.predict(source_cohort, "readmission_30d", split)
        pd.testing.assert_frame_equal(kept, fresh.predict(source_cohort, "readmission_30d", split))
    assert "_split_predictions" not in fresh.__dict__
    assert {split for _, _, split, _ in model.__dict__["_split_predictions"]} == {VALIDATION, TEST}


def test_attribution_gradients_reach_token_embeddings(trained, source_cohort: Cohort) -> None:
    model, _ = trained
    _, tokens, token_mask, visit_mask = model.batch(source_cohort, "readmission_30d", split=VALIDATION)
    net: PatientTransformer = model.model
    embeddings = net.node_embedding(tokens[:8]).detach().requires_grad_(True)
    logits = net.forward_from_embeddings(embeddings, token_mask[:8], visit_mask[:8])
    torch.testing.assert_close(logits, net(tokens[:8], token_mask[:8], visit_mask[:8]))
    (grad,) = torch.autograd.grad(logits.sum(), embeddings)
    per_token = grad.abs().sum(-1)
    assert (per_token[token_mask[:8]] > 0).all() and (per_token[~token_mask[:8]] == 0).all()


def test_save_load_round_trip_is_exact(trained, source_cohort: Cohort, tmp_path: Path) -> None:
    model, _ = trained
    model.save(tmp_path / "m")
    loaded = load_graph_model(tmp_path / "m", expect={"setting": Setting.ALL, "task": "readmission_30d"})
    before = model.predict(source_cohort, "readmission_30d", split=VALIDATION)
    after = loaded.predict(source_cohort, "readmission_30d", split=VALIDATION)
    assert np.array_equal(before["prob"].to_numpy(), after["prob"].to_numpy())  # bit-identical
    assert np.array_equal(model.encode(source_cohort, "readmission_30d", split=TEST)[1],
                          loaded.encode(source_cohort, "readmission_30d", split=TEST)[1])
    assert loaded.threshold == model.threshold
    assert np.array_equal(loaded.node_embeddings()[1], model.node_embeddings()[1])
    pd.testing.assert_frame_equal(loaded.graph.edges, model.graph.edges)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["setting"] == "111" and config["scheme"] == "graph"
    assert config["code_set_year"].startswith("ICD-10-CM") and "torch" in config["library_versions"]
    assert config["cohort_fingerprint"] == source_cohort.fingerprint
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["threshold"] == model.threshold and metrics["pretrain_history"] and "link_auc" in metrics


def test_corrupt_or_mismatched_artifacts_fail_clearly(trained, tmp_path: Path) -> None:
    model, _ = trained
    path = model.save(tmp_path / "m")
    with pytest.raises(ArtifactError, match="setting"):
        load_graph_model(path, expect={"setting": "000"})
    weights = path / "model.safetensors"
    payload = weights.read_bytes()
    weights.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ArtifactError, match="corrupted or truncated"):
        load_graph_model(path)
    weights.write_bytes(payload)
    (path / "graph.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="graph"):
        load_graph_model(path)
    (path / "graph.json").unlink()
    with pytest.raises(ArtifactError, match=r"graph\.json is missing"):
        load_graph_model(path)
    with pytest.raises(ArtifactError, match="missing"):
        load_graph_model(tmp_path / "nowhere")


def test_reused_gcn_gives_the_same_model(source_cohort: Cohort) -> None:
    config = GraphConfig(gcn_epochs=10, max_epochs=1)
    fresh = train_graph_model(source_cohort, "readmission_30d", Setting.G1, seed=3, device="cpu",
                              config=config)
    gcn = train_gcn(build_graph(source_cohort, Setting.G1), seed=3, device="cpu", config=config)
    embeddings, history, link_auc = gcn  # unpacks like a tuple
    assert len(history) == 10 and embeddings.shape[1] == 128 and 0.0 <= link_auc <= 1.0
    reused = train_graph_model(source_cohort, "readmission_30d", Setting.G1, seed=3, device="cpu", gcn=gcn)
    np.testing.assert_array_equal(fresh.predict(source_cohort, "readmission_30d")["prob"],
                                  reused.predict(source_cohort, "readmission_30d")["prob"])
    with pytest.raises(ValueError, match="another graph"):
        train_graph_model(source_cohort, "readmission_30d", Setting.ALL, device="cpu", gcn=gcn)
