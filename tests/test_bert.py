"""HICD-BERT: tokenisation, per-setting parameters, learning on a small synthetic cohort, artifacts.

Tokenisation and transfer tests use the conftest's synthetic MIMIC-IV / eICU cohorts. The learning
tests use :func:`chapter_signal_cohort` below instead: at 2,500 patients the conftest cohort's
outcome noise puts a 330-sample test split's AUROC anywhere in 0.54-0.62 (measured over 3 seeds), so
"beats chance" would be a coin flip; here the labels follow the chapters of the visit's codes while
single codes are rare, which a short run learns reliably. One short pretraining and one fine-tuning
(module fixtures) serve all learning and artifact tests, keeping the file well under a minute.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hicd_core.checksums import write_manifest
from hicd_core.cohort.build import RawCohort, assemble_cohort
from hicd_core.cohort.schema import TRAIN, VALIDATION, Cohort
from hicd_core.hierarchy import LEVELS, SETTINGS, Setting, icd10
from hicd_core.models.bert import (
    CLS,
    LEVEL_NULL,
    LEVEL_UNK,
    MASK,
    PAD,
    PRESETS,
    SEP,
    UNK,
    HicdBert,
    default_preset,
    make_config,
)
from hicd_core.models.bert_data import (
    BertVocab,
    build_vocab,
    cohort_tokens,
    mask_for_mlm,
    tokenize_histories,
    tokenize_task,
)
from hicd_core.models.bert_train import (
    PretrainResult,
    TrainedBert,
    finetune,
    load_bert,
    load_pretrained,
    pretrain_mlm,
)
from hicd_core.models.common import ArtifactError, bucketed_batches

TASK = "readmission_30d"


# ------------------------------------------------------------------------------------------ fixtures


def chapter_signal_cohort(n_patients: int = 1500, seed: int = 0, signal: float = 0.9) -> Cohort:
    """A MIMIC-IV-layout cohort (built by the real assembler) whose outcomes follow code chapters.

    Codes come from 8 chapters (6 categories x up to 8 leaves each, so single codes are rare); a
    patient draws "risky" chapters with a personal propensity; the gap to the next admission is short
    (readmission) and the next admission is an emergency with probabilities logistic in the risky
    share of the current visit's codes.
    """
    rng = np.random.default_rng(seed)
    tree = icd10.tree_frame()
    leaves = tree[tree["billable"]]
    risky_chapters = {"IX", "X", "II", "XIX"}
    pool, risky = [], []
    for chapter in ("IX", "X", "XI", "IV", "XIX", "II", "V", "XIV"):
        in_chapter = leaves[leaves["chapter"] == chapter]
        cats = in_chapter["category"].unique()
        for cat in rng.choice(cats, size=min(6, len(cats)), replace=False):
            codes = in_chapter.loc[in_chapter["category"] == cat, "code"].to_numpy()
            chosen = rng.choice(codes, size=min(8, len(codes)), replace=False)
            pool.extend(chosen)
            risky.extend([chapter in risky_chapters] * len(chosen))
    pool, risky = np.array(pool), np.array(risky)
    by_kind = {True: pool[risky], False: pool[~risky]}

    n_visits = 1 + np.minimum(rng.poisson(1.0, n_patients), 5)
    patient = np.repeat(np.arange(n_patients), n_visits)
    index = np.concatenate([np.arange(k) for k in n_visits])
    n_codes = 2 + rng.poisson(4, len(patient))
    visit_of_code = np.repeat(np.arange(len(patient)), n_codes)
    is_risky = rng.random(len(visit_of_code)) < rng.beta(1, 1, n_patients)[patient][visit_of_code]
    n = len(is_risky)
    codes = np.where(is_risky, rng.choice(by_kind[True], n), rng.choice(by_kind[False], n))
    frac = np.bincount(visit_of_code, weights=is_risky, minlength=len(patient)) / n_codes
    soon = rng.random(len(patient)) < 1 / (1 + np.exp(-signal * 8 * (frac - 0.5)))
    gap_days = np.where(soon, rng.uniform(2, 25, len(patient)), rng.uniform(45, 400, len(patient)))
    length = rng.uniform(1, 10, len(patient)) * 1440
    emergency_next = rng.random(len(patient)) < 1 / (1 + np.exp(-signal * 6 * (frac - 0.5)))
    first = index == 0
    start = np.zeros(len(patient))
    for k in range(1, int(n_visits.max())):  # cumulative time per patient (few iterations)
        later = index == k
        start[later] = start[np.flatnonzero(later) - 1] + length[np.flatnonzero(later) - 1] + \
            gap_days[np.flatnonzero(later) - 1] * 1440
    visit_type = np.where(~first & np.roll(emergency_next, 1), "EW EMER.", "ELECTIVE")
    t0 = pd.Timestamp("2130-01-01")
    pid = np.array([f"S{seed}-{p}" for p in range(n_patients)])[patient]
    vid = np.char.add(np.char.add(pid.astype(str), "-"), index.astype(str))
    visits = pd.DataFrame({
        "source_patient_id": pid, "source_visit_id": vid, "group_id": vid,
        "start": t0 + pd.to_timedelta(start, unit="min"),
        "end": t0 + pd.to_timedelta(start + length, unit="min"),
        "start_minutes": start, "end_minutes": start + length, "visit_type": visit_type,
        "age": (rng.uniform(30, 80, n_patients)[patient] + start / 525_600).astype(np.float32),
        "died": False})
    seq = np.arange(len(visit_of_code)) - np.repeat(np.cumsum(n_codes) - n_codes, n_codes) + 1
    diagnoses = pd.DataFrame({"source_visit_id": vid[visit_of_code], "seq": seq, "raw_code": codes,
                              "icd_version": 10})
    patients = pd.DataFrame({"source_patient_id": np.unique(pid), "sex": "F"})
    raw = RawCohort(visits, diagnoses, patients, {}, f"chapter-signal-{seed}-{n_patients}")
    return assemble_cohort("mimic-iv", raw, {"seed": seed}, {"synthetic": True})


@pytest.fixture(scope="module")
def cohort(small_source_cohort: Cohort) -> Cohort:
    return small_source_cohort


@pytest.fixture(scope="module")
def vocab(cohort: Cohort) -> BertVocab:
    return build_vocab(cohort, "prefix")


@pytest.fixture(scope="module")
def signal_cohort() -> Cohort:
    return chapter_signal_cohort()


@pytest.fixture(scope="module")
def pretrained(signal_cohort: Cohort) -> PretrainResult:
    events = []
    pre = pretrain_mlm(signal_cohort, Setting.ALL, scheme="prefix", preset="cpu", seed=0, device="cpu",
                       epochs=3, progress=events.append)
    pre.metrics["_events"] = len(events)
    return pre


@pytest.fixture(scope="module")
def trained(pretrained: PretrainResult, signal_cohort: Cohort) -> TrainedBert:
    return finetune(pretrained, signal_cohort, TASK, seed=0, device="cpu", epochs=4)


def _with_code(cohort: Cohort, row: int, code: str, chapter: str, block: str, category: str) -> Cohort:
    """A copy of ``cohort`` where one diagnosis row carries another code (new table objects)."""
    diag = cohort.diagnoses.copy()
    for column, value in (("icd10", code), ("chapter", chapter), ("block", block), ("category", category)):
        col = diag[column]
        if isinstance(col.dtype, pd.CategoricalDtype) and value not in col.cat.categories:
            diag[column] = col.cat.add_categories([value])
        diag.loc[row, column] = value
    return Cohort(site=cohort.site, patients=cohort.patients, visits=cohort.visits, diagnoses=diag,
                  tasks=cohort.tasks, fingerprint=cohort.fingerprint + "-edited", meta=cohort.meta)


# ------------------------------------------------------------------------------------ model structure


def test_presets_and_device_default() -> None:
    paper = PRESETS["paper"].model
    assert (paper["d_model"], paper["n_layers"], paper["n_heads"], paper["d_ff"], paper["max_len"]) == (
        512, 6, 8, 2048, 256)
    assert PRESETS["paper"].finetune_lr == 1e-5 and PRESETS["paper"].pretrain_lr == 1e-4
    assert default_preset("cpu") == "cpu"
    assert default_preset(torch.device("cuda")) == "paper"


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_each_setting_has_exactly_its_hierarchy_parameters(setting: Setting) -> None:
    model = HicdBert(make_config("cpu", setting, "prefix", 50, (5, 8, 12)))
    level_params = {name for name, _ in model.named_parameters() if name.startswith("embeddings.levels.")}
    expected = {f"embeddings.levels.g{k}.weight" for k in range(3) if setting.bits[k]}
    assert level_params == expected
    assert set(model.embedding_modules()) == {"code", "age", "position", "segment",
                                              *(f"G{k}" for k in range(3) if setting.bits[k])}
    if setting == Setting.FLAT:  # the flat model is a plain BEHRT encoder
        assert not any("level" in name or ".g0" in name for name, _ in model.named_parameters())
        flat = sum(p.numel() for p in model.parameters())
        full_model = HicdBert(make_config("cpu", Setting.ALL, "prefix", 50, (5, 8, 12)))
        full = sum(p.numel() for p in full_model.parameters())
        assert full - flat == (5 + 8 + 12) * model.config.d_model


def test_forward_shapes_and_pad_mask_argument() -> None:
    torch.manual_seed(0)
    model = HicdBert(make_config("cpu", Setting.G1_G2, "prefix", 40, (4, 6, 9))).eval()
    codes = torch.tensor([[CLS, 7, 8, SEP, 9, SEP], [CLS, 10, SEP, PAD, PAD, PAD]])
    zeros = torch.zeros_like(codes)
    levels = torch.randint(1, 4, (2, 6, 3))
    pad = codes == PAD
    logit = model(codes, zeros, zeros, zeros, levels, pad)
    assert logit.shape == (2,)
    # A PAD baseline with the REAL mask stays finite (Captum's baseline pass, stack-notes 5.2).
    baseline = torch.where(codes == CLS, codes, torch.full_like(codes, PAD))
    assert torch.isfinite(model(baseline, zeros, zeros, zeros, levels * 0, pad)).all()
    # Padding content does not leak into real positions.
    other = codes.clone()
    other[1, 3:] = 11
    assert torch.allclose(model(other, zeros, zeros, zeros, levels, pad), logit, atol=1e-6)
    hidden = model.encode(codes, zeros, zeros, zeros, levels, pad)
    assert hidden.shape == (2, 6, model.config.d_model)
    assert model.mlm_logits(hidden, torch.tensor([1, 4])).shape == (2, 40)


@pytest.mark.filterwarnings("ignore:Multiple layers provided")  # the tables are summed, not chained
def test_captum_attributes_each_embedding_component() -> None:
    """LayerIntegratedGradients over every embedding table at once, PAD baseline, real pad mask."""
    from captum.attr import LayerIntegratedGradients

    torch.manual_seed(0)
    model = HicdBert(make_config("cpu", Setting.G0_G2, "prefix", 40, (4, 6, 9))).eval()
    codes = torch.tensor([[CLS, 7, 8, SEP, 9, SEP], [CLS, 10, SEP, PAD, PAD, PAD]])
    positions = torch.tensor([[0, 1, 1, 1, 2, 2], [0, 1, 1, 0, 0, 0]])
    levels = torch.randint(2, 4, (2, 6, 3)) * (codes > UNK)[..., None]
    inputs = (codes, torch.full_like(codes, 60), positions, positions % 2, levels)
    baselines = (torch.where(codes == CLS, codes, torch.full_like(codes, PAD)),
                 *(torch.zeros_like(x) for x in inputs[1:]))
    modules = model.embedding_modules()
    assert list(modules) == ["code", "G0", "G2", "age", "position", "segment"]
    lig = LayerIntegratedGradients(model, list(modules.values()))
    attributions, delta = lig.attribute(inputs, baselines=baselines, additional_forward_args=(codes == PAD,),
                                        n_steps=16, return_convergence_delta=True)
    assert len(attributions) == len(modules)
    assert all(a.shape == (2, 6, model.config.d_model) and torch.isfinite(a).all() for a in attributions)
    assert torch.isfinite(delta).all() and delta.abs().max() < 1e-3


# -------------------------------------------------------------------------------------- tokenisation


def test_vocabulary_from_train_codes_and_json_round_trip(cohort: Cohort, vocab: BertVocab) -> None:
    diag = cohort.diagnoses
    train_ids = cohort.patients.loc[cohort.patients["split"] == TRAIN, "patient_id"]
    train_codes = set(diag.loc[diag["patient_id"].isin(train_ids), "icd10"].dropna().astype(str))
    assert set(vocab.codes[5:]) == train_codes
    assert vocab.codes[:5] == ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    # Level ids cover every code of the cohort (all splits), not just train codes.
    assert all(f"G2:{c[:3]}" in vocab.levels["G2"] for c in diag["icd10"].dropna().astype(str).unique())
    again = BertVocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again.to_json() == vocab.to_json()
    assert again.level_id("G1", "G1:never-seen") == LEVEL_UNK
    code = vocab.codes[5]
    assert [vocab.levels[n][i] for n, i in zip(("G0", "G1", "G2"), vocab.code_levels[5], strict=True)] == [
        f"G0:{code[:1]}", f"G1:{code[:2]}", f"G2:{code[:3]}"]


def test_permuted_hierarchy_vocabulary(cohort: Cohort, vocab: BertVocab, small_target_cohort: Cohort) -> None:
    """The permuted-hierarchy control changes only which level ids a code carries: the code tokens,
    the level vocabularies (same groups) stay; each code carries its donor's ids; the permutation is
    stored, deterministic, and reaches another site's tokens."""
    permuted = build_vocab(cohort, "prefix", hierarchy="permuted", permutation_seed=1)
    assert "permutation" not in vocab.to_json()  # a real-tree vocabulary keeps its content key
    assert permuted.codes == vocab.codes and permuted.code_counts == vocab.code_counts
    assert permuted.levels == vocab.levels  # a bijection of the cohort's codes: the same groups
    assert permuted.permutation is not None
    donors = permuted.permutation.donors
    assert set(donors) == set(cohort.diagnoses["icd10"].dropna().astype(str))
    moved = 0
    for code, ids in zip(permuted.codes[5:], permuted.code_levels[5:], strict=True):
        names = tuple(permuted.levels[n][i] for n, i in zip(LEVELS, ids, strict=True))
        donor = donors[code]
        assert names == (f"G0:{donor[:1]}", f"G1:{donor[:2]}", f"G2:{donor[:3]}")
        moved += donor[:3] != code[:3]
    assert moved > 0.9 * (len(permuted.codes) - 5)
    again = BertVocab.from_json(json.loads(json.dumps(permuted.to_json())))
    assert again.to_json() == permuted.to_json() and again.key() != vocab.key()
    def rebuilt(seed: int) -> BertVocab:
        return build_vocab(cohort, "prefix", hierarchy="permuted", permutation_seed=seed)

    assert rebuilt(1).to_json() == permuted.to_json()
    assert rebuilt(2).code_levels != permuted.code_levels
    with pytest.raises(ValueError, match="unknown hierarchy"):
        build_vocab(cohort, "prefix", hierarchy="shuffled")
    # The target site is tokenised with the same permutation (its own codes: their donors' ids).
    tokens = cohort_tokens(small_target_cohort, permuted)
    code_rows = tokens.code > UNK
    expected = np.asarray(permuted.code_levels)[tokens.code[code_rows]]
    assert (tokens.levels[code_rows] == expected).all()


def test_batches_follow_the_behrt_layout(cohort: Cohort, vocab: BertVocab) -> None:
    tokens = cohort_tokens(cohort, vocab)
    samples = tokenize_task(tokens, cohort.tasks[TASK], max_len=128, max_visits=128)
    frame = cohort.tasks[TASK]
    multi = np.flatnonzero(frame["visit_index"].to_numpy() >= 1)[:16]
    batch = samples.batch(multi)
    codes, pad = batch["codes"].numpy(), batch["pad_mask"].numpy()
    assert (codes[:, 0] == CLS).all() and not pad[:, 0].any()
    assert np.array_equal(pad, codes == PAD)
    assert batch["codes"].shape[1] % samples.pad_multiple == 0  # few distinct shapes
    for row, i in enumerate(multi):
        real = codes[row][~pad[row]]
        n_visits = int(frame["visit_index"].iat[i]) + 1
        assert (real == SEP).sum() == n_visits and real[-1] == SEP
        pos = batch["positions"].numpy()[row][~pad[row]]
        assert pos[0] == 0 and pos[-1] == n_visits and (np.diff(pos) >= 0).all()
        assert np.array_equal(batch["segments"].numpy()[row][~pad[row]], pos % 2)
        special = np.isin(real, [CLS, SEP])
        assert (batch["levels"].numpy()[row][~pad[row]][special] == LEVEL_NULL).all()
        assert (batch["levels"].numpy()[row][~pad[row]][~special] > LEVEL_NULL).all()
    # Codes of the anchor visit appear in `seq` order right before the last [SEP].
    i = multi[0]
    visit = cohort.diagnoses[cohort.diagnoses["visit_id"] == frame["visit_id"].iat[i]].sort_values("seq")
    expected = [vocab.code_id(str(c)) if pd.notna(c) else UNK for c in visit["icd10"]]
    real = codes[0][~pad[0]]
    assert list(real[-1 - len(expected):-1]) == expected


def test_truncation_keeps_the_most_recent_visits(cohort: Cohort, vocab: BertVocab) -> None:
    tokens = cohort_tokens(cohort, vocab)
    frame = cohort.tasks[TASK]
    full = tokenize_task(tokens, frame, max_len=10_000, max_visits=10_000)
    cut = tokenize_task(tokens, frame, max_len=24, max_visits=24)
    long = np.flatnonzero(full.lengths > 24)
    assert len(long) > 0
    assert (cut.lengths <= 24).all() and (cut.end == full.end).all()
    assert (cut.start[long] > full.start[long]).all()
    boundaries = set(tokens.visit_offset.tolist())
    at_boundary = np.array([s in boundaries for s in cut.start[long]])
    # Cut at a visit boundary whenever the anchor visit alone fits; otherwise the last 23 tokens.
    anchor_len = tokens.visit_ntok[tokens.visit_row[frame["visit_id"].to_numpy()[long]]]
    assert at_boundary[anchor_len <= 23].all()
    assert (cut.lengths[long][~at_boundary] == 24).all()
    batch = cut.batch(long[:8])
    assert (batch["codes"][:, 0] == CLS).all()
    assert (batch["positions"][:, 1] == 1).all()  # positions restart at the first kept visit


def test_mlm_masking_rule(cohort: Cohort, vocab: BertVocab) -> None:
    tokens = cohort_tokens(cohort, vocab)
    hist = tokenize_histories(tokens, cohort, 128, 128)
    assert set(np.unique(hist.split)) <= {"train", "val", "test"}
    batch = hist.batch(np.arange(256))
    levels = torch.tensor(vocab.code_levels)
    rng = np.random.default_rng(0)
    masked, flat, targets = mask_for_mlm(batch, levels, vocab.n_codes, rng, 0.15, mask_hierarchy=True)
    original = batch["codes"].view(-1)
    assert (original[flat] > UNK).all() and torch.equal(targets, original[flat])
    real = int((original > UNK).sum())
    assert 0.10 < len(flat) / real < 0.20
    new = masked["codes"].view(-1)[flat]
    assert 0.7 < float((new == MASK).float().mean()) < 0.9
    at_mask = flat[new == MASK]
    assert (masked["levels"].view(-1, 3)[at_mask] == LEVEL_NULL).all()
    untouched = torch.ones(len(original), dtype=torch.bool)
    untouched[flat] = False
    assert torch.equal(masked["codes"].view(-1)[untouched], original[untouched])
    kept, _, _ = mask_for_mlm(batch, levels, vocab.n_codes, np.random.default_rng(0), 0.15,
                              mask_hierarchy=False)
    assert torch.equal(kept["levels"], batch["levels"])


def test_length_bucketing_reduces_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=5000)
    draws = np.random.default_rng(1)
    batches = bucketed_batches(draws.permutation(len(lengths)), lengths, 64, draws)
    assert sorted(np.concatenate(batches).tolist()) == list(range(5000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    naive = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(5000), len(batches)))
    assert padded < 0.7 * naive


def test_unseen_code_reaches_the_model_only_through_its_hierarchy(cohort: Cohort, vocab: BertVocab) -> None:
    """An out-of-vocabulary code is [UNK] either way; only its G0/G1/G2 ids can tell two apart."""
    frame = cohort.tasks[TASK]
    val = frame[frame["split"] == VALIDATION]
    diag = cohort.diagnoses
    row = int(diag.index[diag["visit_id"] == val["visit_id"].iat[0]][0])
    # Two real codes unseen in the cohort, from different chapters whose prefixes the vocabulary knows.
    tree = icd10.tree_frame()
    leaves = tree[tree["billable"] & ~tree["code"].isin(diag["icd10"].astype(str).unique())]
    known = leaves[leaves["code"].str[:3].map(lambda c: f"G2:{c}" in vocab.levels["G2"])]
    first = known.iloc[0]
    second = known[known["code"].str[0] != first["code"][0]].iloc[0]
    a, b = (_with_code(cohort, row, r["code"], r["chapter"], r["block"], r["category"])
            for r in (first, second))
    outputs = {}
    for setting in (Setting.FLAT, Setting.ALL, Setting.G2):
        torch.manual_seed(0)
        config = make_config("cpu", setting, "prefix", vocab.n_codes, vocab.level_sizes)
        run = TrainedBert(model=HicdBert(config), vocab=vocab, preset="cpu", seed=0, cohort_fingerprint="",
                          cohort_site="", bf16=False, mask_hierarchy=False, eval_batch=64, task=TASK)
        pa, pb = (run.predict(c, TASK, split=VALIDATION) for c in (a, b))
        assert (pa["sample_id"].to_numpy() == pb["sample_id"].to_numpy()).all()
        outputs[setting] = np.abs(pa["prob"].to_numpy() - pb["prob"].to_numpy()).max()
    assert outputs[Setting.FLAT] == 0.0
    assert outputs[Setting.ALL] > 0 and outputs[Setting.G2] > 0


# ------------------------------------------------------------------------------------------ learning


def test_mlm_loss_falls_and_best_checkpoint_is_kept(pretrained: PretrainResult) -> None:
    hist = pretrained.history
    assert len(hist) == 3 and pretrained.metrics["_events"] == 3
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert min(h["val_loss"] for h in hist) < hist[0]["val_loss"] < np.log(pretrained.vocab.n_codes)
    assert pretrained.best_val_loss == min(h["val_loss"] for h in hist)


def test_finetune_beats_chance(trained: TrainedBert, signal_cohort: Cohort) -> None:
    m = trained.metrics
    assert m["validation"]["auroc"] > 0.6 and m["test"]["auroc"] > 0.6, m
    assert 0.01 <= trained.threshold <= 0.99 and m["validation"]["threshold"] == trained.threshold
    assert m["best_epoch"] >= 1 and len(m["history"]) == m["stopped_epoch"] >= m["best_epoch"]
    # The metric keys both models share (hicd_core.models.common's docstring).
    assert {"history", "best_epoch", "stopped_epoch", "threshold", "validation", "test", "task", "setting",
            "pos_weight", "seconds", "pretrain_history", "pretrain_seconds"} <= set(m)
    assert set(m["history"][0]) == {"epoch", "train_loss", "val_auroc", "lr", "seconds", "tokens_per_s"}
    assert len(m["pretrain_history"]) == 3 and m["threshold"] == trained.threshold
    pred = trained.predict(signal_cohort, TASK, split="test")
    frame = signal_cohort.tasks[TASK]
    assert list(pred.columns) == ["sample_id", "prob"]
    expected = frame.loc[frame["split"] == "test", "sample_id"].to_numpy()
    assert np.array_equal(pred["sample_id"].to_numpy(), expected)
    assert pred["prob"].between(0, 1).all()


def test_encode_and_code_embeddings(trained: TrainedBert, small_target_cohort: Cohort) -> None:
    ids, vectors = trained.encode(small_target_cohort, "icu_readmission")
    assert vectors.shape == (len(small_target_cohort.tasks["icu_readmission"]), trained.config.d_model)
    assert np.isfinite(vectors).all() and len(ids) == len(vectors)
    meta, combined = trained.code_embeddings()
    _, raw = trained.code_embeddings(combined=False)
    assert list(meta.columns) == ["code", "G0", "G1", "G2", "train_count"]
    assert combined.shape == (trained.vocab.n_codes - 5, trained.config.d_model)
    assert not np.allclose(combined, raw)
    assert (meta["G2"] == "G2:" + meta["code"].str[:3]).all()


# ----------------------------------------------------------------------------------------- artifacts


def test_save_load_round_trip_is_bit_identical(trained: TrainedBert, pretrained: PretrainResult,
                                               signal_cohort: Cohort, tmp_path: Path) -> None:
    trained.save(tmp_path / "ft")
    loaded = load_bert(tmp_path / "ft", expect={"setting": "111", "task": TASK}, device="cpu")
    before, after = trained.predict(signal_cohort, TASK), loaded.predict(signal_cohort, TASK)
    assert np.array_equal(before["prob"].to_numpy(), after["prob"].to_numpy())
    assert loaded.threshold == trained.threshold and loaded.config == trained.config
    assert loaded.metrics["history"] == json.loads(json.dumps(trained.metrics["history"]))
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    for key in ("setting", "scheme", "preset", "code_set_year", "cohort_fingerprint", "seed",
                "library_versions"):
        assert key in config
    pretrained.save(tmp_path / "pre")
    again = load_pretrained(tmp_path / "pre", expect={"setting": Setting.ALL}, device="cpu")
    encoded = (run.encode(signal_cohort, TASK, "val")[1] for run in (again, pretrained))
    assert np.array_equal(*encoded)
    with pytest.raises(ArtifactError):  # a pretrained encoder is not a fine-tuned model
        load_bert(tmp_path / "pre")


def test_broken_artifacts_raise_artifact_error(trained: TrainedBert, tmp_path: Path) -> None:
    good = trained.save(tmp_path / "good")
    with pytest.raises(ArtifactError, match="setting"):
        load_bert(good, expect={"setting": "000"})

    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="corrupted or truncated"):
        load_bert(truncated)

    garbage = tmp_path / "garbage"
    shutil.copytree(good, garbage)
    (garbage / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError):
        load_bert(garbage)

    relabelled = tmp_path / "relabelled"  # config claims another setting than the weights have
    shutil.copytree(good, relabelled)
    config = json.loads((relabelled / "config.json").read_text())
    config["setting"], config["bert"]["setting"] = "000", [0, 0, 0]
    (relabelled / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=r"config\.json is corrupted or truncated"):
        load_bert(relabelled)  # an edited file no longer matches the checksum recorded with it
    write_manifest(relabelled)  # a self-consistent artifact whose config does not match its weights
    with pytest.raises(ArtifactError, match="do not fit"):
        load_bert(relabelled)

    no_vocab = tmp_path / "no_vocab"
    shutil.copytree(good, no_vocab)
    (no_vocab / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match="vocab"):
        load_bert(no_vocab)


def test_final_split_predictions_are_served_once_and_equal_a_fresh_pass(trained: TrainedBert,
                                                                        signal_cohort: Cohort) -> None:
    """The validation/test probabilities fine-tuning computed with the kept weights answer the sweep's
    evaluation; they are exactly what a new forward pass gives, and a changed cohort is not served."""
    kept = {split: trained.predict(signal_cohort, TASK, split) for split in (VALIDATION, "test")}
    from dataclasses import fields

    fresh_model = TrainedBert(**{f.name: getattr(trained, f.name) for f in fields(trained)})
    assert "_split_predictions" in trained.__dict__ and "_split_predictions" not in fresh_model.__dict__
    for split, frame in kept.items():
        again = fresh_model.predict(signal_cohort, TASK, split)
        pd.testing.assert_frame_equal(frame, again)
        assert trained.metrics["validation" if split == VALIDATION else "test"]["n"] == len(frame)
    kept[VALIDATION]["prob"] = -1.0  # callers get copies
    assert (trained.predict(signal_cohort, TASK, VALIDATION)["prob"] >= 0).all()
    edited = _with_code(signal_cohort, 0, "I21.4", "IX", "I20-I25", "I21")
    edited.tasks = {name: frame.copy() for name, frame in signal_cohort.tasks.items()}
    assert trained.predict(edited, TASK, "test") is not None  # a new frame: computed, not recalled
    assert len(trained.__dict__["_split_predictions"]) == 2
