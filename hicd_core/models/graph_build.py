"""HICD-Graph's diagnosis graph: ICD-10-CM codes linked by co-occurrence (PMI) and by the hierarchy.

Nodes are the ICD-10-CM 3-character categories seen in the TRAIN split (the paper's vocabulary;
``node_level="leaf"`` uses full codes instead), plus one node per ancestor of an ENABLED level:

=====  ==========================  ===================  ======================================
level  ancestor ('graph' scheme)   node name            ``node_level="leaf"`` ('ontology')
=====  ==========================  ===================  ======================================
G0     chapter                     ``CHAP_IX``          chapter ``CHAP_IX``
G1     official block              ``BLOCK_I20-I25``    block ``BLOCK_I20-I25``
G2     2-character prefix group    ``PREFIX_I2x``       3-character category ``CAT_I21``
=====  ==========================  ===================  ======================================

Horizontal (co-occurrence) edges come from TRAIN admissions only. With ``X`` the binary
admission x code incidence matrix (``X[v, a] = 1`` when admission ``v`` holds code ``a``), ``N`` the
number of train admissions holding at least one graph code, ``n_a = sum_v X[v, a]`` and the
co-occurrence counts ``C = X^T X`` (one sparse product, so full MIMIC-IV builds in seconds)::

    P(a) = n_a / N            P(a, b) = C[a, b] / N
    PMI(a, b) = log( P(a, b) / (P(a) P(b)) ) + eps = log( C[a, b] N / (n_a n_b) ) + eps   (eps = 0)

Only pairs with ``PMI > 0`` are candidates, and of those only the ones strictly above the
``percentile``-th percentile of the positive PMI values (numpy's linear interpolation; paper: 52)
are kept. Vertical edges link each code node to each of its enabled ancestors with raw weight 1.0
(leaf -> ancestor only; no ancestor-ancestor edges, the literal reading of the paper).

Edge weights for the GCN lie in [0, 1]. The two edge families are normalised separately, because
a joint min-max over {PMI values} U {1.0} would put the hierarchy edges wherever 1.0 happens to
fall among the PMI values (below the kept minimum on real data, i.e. weight 0, silencing the
hierarchy)::

    w_cooc(a, b) = (PMI(a, b) - min_kept PMI) / (max_kept PMI - min_kept PMI)    (1.0 if max == min)
    w_hier       = 1.0   (the top of the same scale: a shared ancestor counts as much as the
                          strongest co-occurrence)

So the weakest kept co-occurrence edge has weight exactly 0: it passes no message in the GCN but
is still a positive pair for link prediction. Every node also gets a GCN self-loop of weight 1.

Permuted-hierarchy control (``permutation``, see :mod:`hicd_core.hierarchy.levels`): the code nodes
and co-occurrence edges are unchanged, and each code node (category) links to the ancestors of the
category a seeded permutation of the cohort's categories gives it; every ancestor keeps its number
of member categories. The permutation is stored in ``meta['permutation']``, so another split or site
is mapped with the same one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hicd_core.hierarchy import LEVELS, Setting, chapter_titles, level_ids, normalize_codes
from hicd_core.hierarchy.icd10 import UNKNOWN, code_index, tree_frame
from hicd_core.hierarchy.levels import HierarchyPermutation

#: Node kinds: code nodes, then ancestor kinds.
NODE_KINDS = ("code", "chapter", "block", "prefix", "category")
#: Ancestor kind per level, for each node level.
ANCESTOR_KINDS = {"category": ("chapter", "block", "prefix"), "leaf": ("chapter", "block", "category")}
#: The level scheme whose ids are the ancestors (see :mod:`hicd_core.hierarchy.levels`).
SCHEME_OF = {"category": "graph", "leaf": "ontology"}
NAME_PREFIX = {"chapter": "CHAP_", "block": "BLOCK_", "prefix": "PREFIX_", "category": "CAT_"}
EDGE_KINDS = ("cooccurrence", "hierarchy_G0", "hierarchy_G1", "hierarchy_G2")

NODE_COLUMNS = ("node_id", "name", "kind", "level", "code", "title", "frequency", "chapter")
EDGE_COLUMNS = ("source", "target", "kind", "weight", "pmi", "count")
NODE_DTYPES = {"node_id": np.int64, "name": object, "kind": object, "level": object, "code": object,
               "title": object, "frequency": np.int64, "chapter": object}
EDGE_DTYPES = {"source": np.int64, "target": np.int64, "kind": object, "weight": np.float64,
               "pmi": np.float64, "count": np.int64}


def _check_node_level(node_level: str) -> str:
    if node_level not in SCHEME_OF:
        raise ValueError(f"node_level must be 'category' or 'leaf', got {node_level!r}")
    return node_level


def node_key_column(node_level: str) -> str:
    """Which diagnoses column holds a row's code-node key (``category`` or the full ``icd10``)."""
    return "category" if _check_node_level(node_level) == "category" else "icd10"


def _factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 = missing) and the distinct values as str, without a string per row
    (categorical columns are read through their codes: seconds saved on millions of rows)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return (values.cat.codes.to_numpy().astype(np.int64),
                np.asarray(values.cat.categories.astype(str), dtype=object))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(pd.Index(uniques).astype(str), dtype=object)


def distinct_codes(frame: pd.DataFrame, node_level: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Each diagnosis row's code key id (-1 = unresolved: no ICD-10-CM code) and one row per key.

    The key is the 3-character ``category`` (or the full ``icd10`` code for ``node_level="leaf"``);
    the table has ``key``, ``chapter``, ``block``, ``category`` (str), sorted by key.
    """
    key_codes, key_names = _factorize(frame[node_key_column(node_level)])
    icd_codes, _ = _factorize(frame["icd10"])
    cat_codes, cat_names = _factorize(frame["category"])
    unknown = np.append(cat_names == UNKNOWN, True)  # position -1 (missing) counts as unknown
    ok = (icd_codes >= 0) & (key_codes >= 0) & ~unknown[cat_codes]
    used = np.flatnonzero(np.bincount(key_codes[ok], minlength=len(key_names)))
    names = key_names[used]
    perm = np.argsort(names, kind="stable")
    lookup = np.full(len(key_names) + 1, -1, np.int64)
    lookup[used[perm]] = np.arange(len(used))
    row_key = np.where(ok, lookup[key_codes], -1)
    rows = np.flatnonzero(ok)
    first = np.zeros(len(used), np.int64)
    first[row_key[rows]] = rows  # some row of each key (its hierarchy is a function of the key)
    table = {"key": names[perm]}
    for column in ("chapter", "block", "category"):
        codes, values = _factorize(frame[column])
        table[column] = np.append(values, UNKNOWN)[codes[first]]
    return row_key, pd.DataFrame(table)


def node_permutation(diagnoses: pd.DataFrame, node_level: str, seed: int) -> HierarchyPermutation:
    """The permuted-hierarchy control over the distinct code-node keys of ``diagnoses`` (pass every
    split: the permutation must cover the codes a validation or test row may hold)."""
    _, table = distinct_codes(diagnoses, node_level)
    return HierarchyPermutation.build(table, seed)


def ancestor_values(keys: pd.DataFrame, node_level: str,
                    permutation: HierarchyPermutation | None = None) -> pd.DataFrame:
    """Raw G0/G1/G2 ancestor ids (``IX``, ``I20-I25``, ``I2x``) for distinct code keys.

    ``keys`` needs ``key`` (category or full code), ``chapter``, ``block``, ``category``; the ids
    come from :func:`hicd_core.hierarchy.level_ids` with the node level's scheme (and the
    permuted-hierarchy control's ``permutation``, when given).
    """
    frame = pd.DataFrame({"icd10": keys["key"].astype(str).to_numpy(),
                          "chapter": keys["chapter"].astype(str).to_numpy(),
                          "block": keys["block"].astype(str).to_numpy(),
                          "category": keys["category"].astype(str).to_numpy()})
    ids = level_ids(frame, SCHEME_OF[node_level], permutation)
    return pd.DataFrame({level: ids[level].astype(str).str.split(":", n=1).str[1].to_numpy()
                         for level in LEVELS}, index=keys.index)


def _titles(codes: Any) -> list[str]:
    """Titles of codes, categories or block ids ('' when unknown), one tree look-up per code."""
    description = tree_frame()["description"].to_numpy()
    index = code_index()
    return [str(description[index[c]]) if c in index else "" for c in codes]


def _ancestor_titles(kind: str, values: Any) -> list[str]:
    if kind == "chapter":
        return [chapter_titles().get(v, "") for v in values]
    if kind == "prefix":
        return [f"Codes {v[:2]}0-{v[:2]}9 (2-character prefix group)" for v in values]
    return _titles(values)


@dataclass
class CodeGraph:
    """The co-occurrence + hierarchy graph of one hierarchy setting, as inspectable tables.

    Attributes:
        setting: (G0, G1, G2) switches; (0, 0, 0) has no ancestor nodes and only PMI edges.
        node_level: ``category`` (paper: 3-character roots) or ``leaf`` (full codes).
        nodes: one row per node (``NODE_COLUMNS``): ``node_id`` (= row position, the GCN index),
            ``name`` (``I21``, ``CHAP_IX``, ``BLOCK_I20-I25``, ``PREFIX_I2x``), ``kind``
            (code/chapter/block/prefix/category), ``level`` (code/G0/G1/G2), ``code`` (the raw id),
            ``title``, ``frequency`` (train admissions holding the code, or any code below the
            ancestor), ``chapter`` (roman numeral, for colouring).
        edges: one row per undirected edge (``EDGE_COLUMNS``): ``source``/``target`` node ids
            (co-occurrence: source < target; hierarchy: code -> ancestor), ``kind``
            (``cooccurrence`` / ``hierarchy_G0|G1|G2``), normalised ``weight`` in [0, 1], raw ``pmi``
            (NaN on hierarchy edges), ``count`` (train admissions holding both codes).
        meta: build parameters and figures (admissions, PMI threshold and range, cohort fingerprint).
    """

    setting: Setting
    node_level: str
    nodes: pd.DataFrame
    edges: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = pd.Index(self.nodes["name"].astype(str).to_numpy())
        self._ancestor_cache: dict[str, pd.DataFrame] = {}
        self.permutation = HierarchyPermutation.from_json(self.meta.get("permutation"))

    @property
    def hierarchy(self) -> str:
        """``real`` (the ICD-10-CM tree) or ``permuted`` (the permuted-hierarchy control)."""
        return "real" if self.permutation is None else "permuted"

    # ----------------------------------------------------------------- basic views
    @property
    def scheme(self) -> str:
        return SCHEME_OF[self.node_level]

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_code_nodes(self) -> int:
        return int((self.nodes["kind"] == "code").sum())

    @property
    def key(self) -> dict[str, Any]:
        """What makes two graphs the same (a GCN trained on one can be reused for the other)."""
        key = {"setting": self.setting.key, "node_level": self.node_level,
               "percentile": self.meta.get("percentile"), "epsilon": self.meta.get("epsilon"),
               "min_count": self.meta.get("min_count"),
               "cohort_fingerprint": self.meta.get("cohort_fingerprint")}
        if self.permutation is not None:
            key["permutation_seed"] = self.permutation.seed
        return key

    def node_id(self, name: str) -> int:
        """Node index of a node name (``I21``, ``CHAP_IX``); -1 when absent."""
        return int(self._index.get_indexer([name])[0])

    def edge_arrays(self, symmetric: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``edge_index`` [2, E] (both directions when ``symmetric``) and ``edge_weight`` [E], for PyG."""
        src = self.edges["source"].to_numpy(np.int64)
        dst = self.edges["target"].to_numpy(np.int64)
        weight = self.edges["weight"].to_numpy(np.float32)
        if symmetric:
            return np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]), np.concatenate(
                [weight, weight])
        return np.stack([src, dst]), weight

    # ----------------------------------------------------------------- code -> node mapping
    def map_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Node ids for each diagnosis row of any cohort (another site included).

        ``frame`` has the diagnoses columns ``icd10``, ``chapter``, ``block``, ``category``. Returns
        ``code_ids`` [n] (the row's code node, -1 when the code was not seen in training or is
        unresolved) and ``ancestor_ids`` [n, 3] (the row's G0/G1/G2 ancestor nodes, -1 when the
        level is disabled or that ancestor is not in the graph). Work is per distinct code.
        """
        n = len(frame)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
        row_key, distinct = distinct_codes(frame, self.node_level)
        found = self._index.get_indexer(distinct["key"].to_numpy())
        code_ids = np.append(np.where(found < self.n_code_nodes, found, -1), -1)  # -1 rows -> -1
        ancestors = np.full((len(distinct) + 1, 3), -1, np.int64)
        if len(distinct):
            values = ancestor_values(distinct, self.node_level, self.permutation)
            for i, (level, kind) in enumerate(zip(LEVELS, ANCESTOR_KINDS[self.node_level], strict=True)):
                if self.setting.bits[i]:
                    names = NAME_PREFIX[kind] + values[level]
                    ancestors[:-1, i] = self._index.get_indexer(names.to_numpy())
        return code_ids[row_key], ancestors[row_key]

    def map_code(self, code: str, version: int = 10) -> list[str]:
        """Graph nodes one code reads: its code node if present, else its enabled ancestor nodes.

        Unseen codes (or another site's codes) thus still reach the graph through the hierarchy;
        in the (0, 0, 0) graph an unseen code maps to nothing.

        A dotted or undotted code works (``I21.4`` -> ``['I21']`` when I21 is a node).
        """
        normalized = normalize_codes([code], [version])
        code_ids, ancestors = self.map_frame(normalized)
        names = self.nodes["name"].to_numpy()
        if code_ids[0] >= 0:
            return [str(names[code_ids[0]])]
        return [str(names[i]) for i in ancestors[0] if i >= 0]

    # ----------------------------------------------------------------- app export
    def neighbourhood(self, code: str, k: int = 1, max_nodes: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
        """k-hop neighbourhood around a node, for the network view.

        ``code`` is a node name (``I21``, ``CHAP_IX``) or any ICD code (``I21.4``), which is mapped
        with :meth:`map_code` (the first node it reaches is the centre). Each hop adds the
        not-yet-selected neighbours; when they would exceed ``max_nodes`` the ones with the
        strongest edge into the selection are kept (ties: higher frequency). Returns the nodes
        (with a ``hop`` column, 0 = centre) and the edges among them.
        """
        centre = self.node_id(code)
        if centre < 0:
            mapped = self.map_code(code)
            if not mapped:
                raise KeyError(f"{code!r} is not a node of this graph and maps to no node "
                               f"(setting {self.setting.key})")
            centre = self.node_id(mapped[0])
        # Stored as 1 + weight so that zero-weight edges still count as edges.
        index, weight = self.edge_arrays(symmetric=True)
        linked = sp.csr_matrix((1.0 + weight.astype(np.float64), (index[0], index[1])),
                               shape=(self.n_nodes,) * 2)
        hop = np.full(self.n_nodes, -1, np.int64)
        hop[centre] = 0
        selected = [centre]
        frontier = np.array([centre])
        frequency = self.nodes["frequency"].to_numpy(np.float64)
        for step in range(1, k + 1):
            if len(selected) >= max_nodes or len(frontier) == 0:
                break
            strength = np.asarray(linked[frontier].max(axis=0).todense()).ravel()
            candidates = np.flatnonzero((strength > 0) & (hop < 0))
            order = np.lexsort((-frequency[candidates], -strength[candidates]))
            candidates = candidates[order][: max_nodes - len(selected)]
            hop[candidates] = step
            selected.extend(candidates.tolist())
            frontier = candidates
        keep = np.zeros(self.n_nodes, bool)
        keep[selected] = True
        nodes = self.nodes[keep].assign(hop=hop[keep])
        edges = self.edges[keep[self.edges["source"].to_numpy()] & keep[self.edges["target"].to_numpy()]]
        return nodes.reset_index(drop=True), edges.reset_index(drop=True)

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe content (column lists), for model artifacts; no pickle."""
        def table(frame: pd.DataFrame) -> dict[str, list]:
            return {col: [None if isinstance(v, float) and np.isnan(v) else v
                          for v in frame[col].tolist()] for col in frame.columns}
        return {"setting": list(self.setting.bits), "node_level": self.node_level, "meta": self.meta,
                "nodes": table(self.nodes), "edges": table(self.edges)}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> CodeGraph:
        nodes = pd.DataFrame(obj["nodes"])
        edges = pd.DataFrame(obj["edges"])
        for frame, columns in ((nodes, NODE_COLUMNS), (edges, EDGE_COLUMNS)):
            missing = set(columns) - set(frame.columns)
            if missing:
                raise ValueError(f"graph table lacks columns {sorted(missing)}")
        nodes = nodes[list(NODE_COLUMNS)].astype(NODE_DTYPES)
        edges = edges[list(EDGE_COLUMNS)].astype(EDGE_DTYPES)
        if len(nodes) and not np.array_equal(nodes["node_id"].to_numpy(), np.arange(len(nodes))):
            raise ValueError("graph node ids are not 0..n-1 in order")
        return cls(setting=Setting.from_bits(obj["setting"]), node_level=obj["node_level"], nodes=nodes,
                   edges=edges, meta=dict(obj.get("meta", {})))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    def summary(self) -> dict[str, Any]:
        """Counts per node kind and edge kind (for logs and the app)."""
        return {"setting": self.setting.key, "node_level": self.node_level,
                "nodes": self.nodes["kind"].value_counts().to_dict(),
                "edges": self.edges["kind"].value_counts().to_dict(), **self.meta}


def build_code_graph(diagnoses: pd.DataFrame, setting: Setting, *, node_level: str = "category",
                     percentile: float = 52.0, epsilon: float = 0.0, min_count: int = 1,
                     cohort_fingerprint: str = "", permutation: HierarchyPermutation | None = None
                     ) -> CodeGraph:
    """Build the graph from TRAIN diagnoses rows (the caller selects them; see ``graph_train``).

    ``diagnoses`` needs ``visit_id``, ``icd10``, ``chapter``, ``block``, ``category``. ``min_count``
    drops pairs seen in fewer admissions before the PMI filter (1 = paper, no extra filter).
    ``permutation``: the permuted-hierarchy control (:func:`node_permutation`). Formulas: module
    docstring. Everything is sparse and vectorised.
    """
    _check_node_level(node_level)
    if not isinstance(setting, Setting):
        raise TypeError(f"setting must be a hierarchy Setting, got {setting!r}")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    row_key, code_table = distinct_codes(diagnoses, node_level)
    ok = row_key >= 0
    dropped = int((~ok).sum())
    code_idx = row_key[ok]
    code_names = code_table["key"].to_numpy()
    visit_idx, _ = pd.factorize(diagnoses["visit_id"].to_numpy()[ok])
    n_codes, n_visits = len(code_names), int(visit_idx.max()) + 1 if len(visit_idx) else 0

    # X: admissions x codes, binary (a code listed twice in one admission counts once).
    X = sp.csr_matrix((np.ones(len(code_idx), np.float32), (visit_idx, code_idx)), shape=(n_visits, n_codes))
    X.data[:] = 1.0
    n_a = np.asarray(X.sum(axis=0)).ravel().astype(np.int64)
    C = sp.triu(X.T @ X, k=1).tocoo()  # co-occurrence counts, a < b
    rows, cols, counts = C.row.astype(np.int64), C.col.astype(np.int64), C.data.astype(np.int64)
    keep = counts >= min_count
    rows, cols, counts = rows[keep], cols[keep], counts[keep]
    pmi = np.log(counts.astype(np.float64) * n_visits / (n_a[rows] * n_a[cols])) + epsilon
    positive = pmi > 0
    threshold = float(np.percentile(pmi[positive], percentile)) if positive.any() else float("nan")
    kept = positive & (pmi > threshold)
    rows, cols, counts, pmi_kept = rows[kept], cols[kept], counts[kept], pmi[kept]
    if len(pmi_kept):
        lo, hi = float(pmi_kept.min()), float(pmi_kept.max())
        weight = (pmi_kept - lo) / (hi - lo) if hi > lo else np.ones_like(pmi_kept)
    else:
        lo = hi = float("nan")
        weight = np.zeros(0)

    # Code nodes and their hierarchy (one row per distinct code).
    anc = (ancestor_values(code_table, node_level, permutation) if n_codes
           else pd.DataFrame(columns=list(LEVELS)))
    node_parts = [pd.DataFrame({"name": code_table["key"], "kind": "code", "level": "code",
                                "code": code_table["key"],
                                "title": _titles(code_table["key"]),
                                "frequency": n_a, "chapter": code_table["chapter"]})]
    edge_parts = [pd.DataFrame({"source": rows, "target": cols, "kind": "cooccurrence", "weight": weight,
                                "pmi": pmi_kept, "count": counts})]
    offset = n_codes
    chapter_codes, chapter_names = pd.factorize(code_table["chapter"])  # for each ancestor's display chapter
    for i, (level, kind) in enumerate(zip(LEVELS, ANCESTOR_KINDS[node_level], strict=True)):
        if not setting.bits[i] or n_codes == 0:
            continue
        member_idx, values = pd.factorize(anc[level].to_numpy(), sort=True)
        # Admissions holding any code below each ancestor: nonzeros of X @ membership.
        membership = sp.csr_matrix((np.ones(n_codes), (np.arange(n_codes), member_idx)),
                                   shape=(n_codes, len(values)))
        freq = np.asarray(((X @ membership) > 0).sum(axis=0)).ravel().astype(np.int64)
        # Display chapter of an ancestor: the commonest chapter among its codes.
        votes = np.zeros((len(values), len(chapter_names)), np.int64)
        np.add.at(votes, (member_idx, chapter_codes), 1)
        chapter_of = np.asarray(chapter_names, dtype=object)[votes.argmax(axis=1)]
        node_parts.append(pd.DataFrame({"name": [NAME_PREFIX[kind] + v for v in values], "kind": kind,
                                        "level": level, "code": values,
                                        "title": _ancestor_titles(kind, values),
                                        "frequency": freq, "chapter": chapter_of}))
        edge_parts.append(pd.DataFrame({"source": np.arange(n_codes), "target": offset + member_idx,
                                        "kind": f"hierarchy_{level}", "weight": 1.0, "pmi": np.nan,
                                        "count": n_a}))
        offset += len(values)

    nodes = pd.concat(node_parts, ignore_index=True)
    nodes.insert(0, "node_id", np.arange(len(nodes), dtype=np.int64))
    nodes = nodes[list(NODE_COLUMNS)].astype(NODE_DTYPES)
    edges = pd.concat(edge_parts, ignore_index=True)[list(EDGE_COLUMNS)].astype(EDGE_DTYPES)
    meta = {"percentile": float(percentile), "epsilon": float(epsilon), "min_count": int(min_count),
            "train_admissions": int(n_visits), "pmi_threshold": threshold, "pmi_min_kept": lo,
            "pmi_max_kept": hi, "positive_pairs": int(positive.sum()), "candidate_pairs": len(pmi),
            "dropped_unresolved_rows": dropped, "cohort_fingerprint": cohort_fingerprint}
    if permutation is not None:
        meta["permutation"] = permutation.to_json()
    return CodeGraph(setting=setting, node_level=node_level, nodes=nodes, edges=edges, meta=meta)
