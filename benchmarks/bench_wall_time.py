"""On paper: the expected GPU wall time of the ``paper`` sweep on full MIMIC-IV, for N GPUs (issue 15).

``python -m benchmarks paper_wall_time`` prints every figure; the README's "Running on a cluster"
section has the table. Nothing here ran on a GPU: the GPU times are a model, not a measurement.

The model, step by step:

1. **Data size.** Per-admission statistics are *measured* on the real MIMIC-IV demo
   (``../shared/data/mimic-iv-demo``, 100 patients, 275 admissions) through the project's own
   tokeniser (MLM histories, task samples with their 256-token windows, visits per Graph sample)
   and scaled to full MIMIC-IV 3.1 by its admission count. The demo's patients come from the ICU/ED
   and carry 16.4 codes per admission against 11.0 in full MIMIC-IV (v2.1 row counts below), so
   token counts are also scaled by that ratio. Sources: MIMIC-IV 3.1 has 546,028 admissions
   (the 3.1 expected row counts of mimic-code's ``mimic-iv/buildmimic/postgres/validate.sql``, as
   cited by public project notes; its 364,627 patients are also in ``../shared/docs/conventions.md``);
   v2.1 has 431,088 admissions and 4,752,265 ``diagnoses_icd`` rows (the same file at the v2.1
   release, read directly). The paper gives no cohort sizes (paper-notes §2.1).
2. **FLOPs.** :meth:`HicdBert.flops_per_token` and :func:`gcn_flops_per_epoch` /
   :func:`transformer_flops_per_sample` (matmuls only, training = 3x forward) times the paper
   presets' epochs (BERT: 100 MLM epochs, at most 64 fine-tuning epochs per task: early stopping
   can only shorten it, so this is an upper bound; Graph: 400 GCN epochs, 15 transformer epochs),
   over the 80% training split, plus one validation forward per epoch and the transfer probe's
   forward passes over eICU (200,859 unit stays, eICU-CRD, Pollard et al. 2018; tokens per stay
   assumed equal to a MIMIC admission's). Padding is measured: the training batches are cut by the
   project's ``bucketed_batches`` over a full-size length distribution resampled from the demo.
   The MLM decoder uses the whole ICD dictionary as vocabulary (109,775 codes, an upper bound).
3. **Measured per-step cost.** A few MLM steps of the ``cpu`` and ``paper`` presets on this CPU
   (one thread, per CPU-second, in its faster precision) give tokens and FLOPs per second and the
   MFU against a measured matmul peak: what the FLOP count means in time on hardware at hand, and
   the BERT group's CPU time, for scale.
4. **GPU time.** Assumed sustained throughput: H100 SXM bf16 dense peak 989 TFLOP/s (NVIDIA's
   datasheet) at 30% MFU (range 15-45%); plus an assumed floor of 4 ms per optimizer step for these
   small models (eager PyTorch launches a few hundred kernels per step), which is what bounds
   HICD-Graph. A phase takes max(FLOPs / throughput, steps x floor).
5. **Scheduling.** 48 GPU groups (8 settings x 2 models x 3 seeds; each 2 task runs + transfer) on
   N GPUs, longest first onto the least-loaded GPU (what a Slurm array with N-way parallelism does
   when BERT groups come first), plus the measured 8.8 s per-task overhead of the local Slurm
   (``slurm_vs_local``: 8.2 s queue + 0.6 s cohort load). Cluster queue waits are not modelled.
   Left out: the paper preset's counts-lr groups (CPU only), the embedding analysis of the first
   seed, tokenisation and graph building on the CPU, and checkpoint I/O.
"""

from __future__ import annotations

import heapq
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT.parent / "shared" / "data" / "mimic-iv-demo"

#: Full MIMIC-IV 3.1 admissions (mimic-code validate.sql, 3.1 expected row counts).
FULL_ADMISSIONS = 546_028
#: MIMIC-IV 2.1 (mimic-code validate.sql at the v2.1 release): codes per admission of the full data.
V21_DIAGNOSES, V21_ADMISSIONS = 4_752_265, 431_088
#: eICU-CRD 2.0 unit stays (Pollard et al., Sci Data 2018), the transfer probe's target.
EICU_STAYS = 200_859
#: Every code of ``d_icd_diagnoses`` (ICD-9 + ICD-10), an upper bound on the MLM vocabulary.
DICTIONARY_CODES = 109_775
#: Assumptions for the GPU (named in the README): H100 SXM bf16 dense peak, MFU range, step floor.
GPU_PEAK = 989e12
MFU = {"low": 0.15, "mid": 0.30, "high": 0.45}
STEP_FLOOR_S = 0.004
#: Measured per Slurm task on the local Slurm (benchmarks/bench_slurm.py, slurm_vs_local).
TASK_OVERHEAD_S = 8.8
GPU_COUNTS = (1, 4, 8, 16, 48)
SPLIT_TRAIN, SPLIT_VAL = 0.8, 0.1


def _padded_tokens(lengths: Any, batch: int, scale: float, seed: int = 0) -> tuple[float, int]:
    """Padded tokens ([CLS] + width rounded to 8, as ``TokenizedSamples.batch``) and steps of one
    training epoch over a full-size sample resampled from the demo's lengths."""
    import numpy as np

    from hicd_core.models.common import bucketed_batches

    rng = np.random.default_rng(seed)
    n = max(1, round(len(lengths) * scale * SPLIT_TRAIN))
    sample = rng.choice(np.asarray(lengths), size=n, replace=True)
    batches = bucketed_batches(rng.permutation(n), sample, batch, rng)
    width = [-(-(int(sample[b].max()) + 1) // 8) * 8 for b in batches]
    return float(sum(w * len(b) for w, b in zip(width, batches, strict=True))), len(batches)


def demo_statistics() -> dict[str, Any]:
    """Measured on the MIMIC-IV demo with the project's tokeniser (paper preset windows)."""
    import numpy as np
    import pandas as pd

    from hicd_core.cohort import load_cohort
    from hicd_core.hierarchy import Setting
    from hicd_core.hierarchy.bulk import normalize_codes
    from hicd_core.hierarchy.levels import level_ids
    from hicd_core.models.bert_data import build_vocab, cohort_tokens, tokenize_histories, tokenize_task

    cohort = load_cohort("mimic-iv", DEMO)
    tokens = cohort_tokens(cohort, build_vocab(cohort, scheme="prefix"))
    out: dict[str, Any] = {"patients": len(cohort.patients), "admissions": len(cohort.visits),
                           "diagnoses": len(cohort.diagnoses)}
    out["mlm_lengths"] = tokenize_histories(tokens, cohort, 256, 256).lengths
    for task in ("readmission_30d", "emergency_next"):
        samples = cohort.tasks[task]
        out[f"{task}_lengths"] = tokenize_task(tokens, samples, 256, 256).lengths
        out[f"{task}_visits"] = np.minimum(samples["visit_index"].to_numpy() + 1, 10).clip(1)
    # Graph nodes, upper bound: every ICD-10 category of the dictionary plus its ancestors (all levels).
    dictionary = pd.read_csv(DEMO / "hosp" / "d_icd_diagnoses.csv.gz", usecols=["icd_code", "icd_version"])
    icd10 = dictionary.loc[dictionary["icd_version"] == 10, "icd_code"].astype(str).tolist()
    normalized = normalize_codes(icd10, [10] * len(icd10))
    levels = level_ids(normalized, "graph")
    out["graph_nodes"] = int(normalized["category"].nunique()
                             + sum(levels[level].nunique() for level in Setting.ALL.levels))
    return out


def cpu_throughput(steps: int = 2) -> dict[str, Any]:
    """Measured MLM training tokens and FLOPs per CPU-second, and MFU, of the cpu and paper presets
    on this CPU with one thread, in whichever of fp32 / bf16 has the higher matmul peak here (a CPU
    without bf16 units runs bf16 matmuls ~20x slower than fp32). Per CPU-second (process time), not
    per wall second: on a shared 2-core box a niced benchmark waits for the CPU, which is not the
    model's cost."""
    import torch

    from benchmarks import Clock
    from benchmarks.bench_bert import _mlm_step_fn

    torch.set_num_threads(1)
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(512, 512, dtype=dtype), torch.randn(512, 512, dtype=dtype)
        torch.matmul(a, b)
        with Clock() as clock:
            for _ in range(5):
                torch.matmul(a, b)
        peaks[name] = 5 * 2 * 512**3 / clock.cpu / 1e9
    dtype = max(peaks, key=peaks.get)
    out: dict[str, Any] = {"threads": 1, "dtype": dtype,
                           **{f"peak_{k}_gflops_per_cpu_s": v for k, v in peaks.items()}}
    for preset, (batch, length) in {"cpu": (64, 32), "paper": (4, 128)}.items():
        step, model = _mlm_step_fn(preset, dtype == "bf16", batch, length)
        step()  # warm-up
        with Clock() as clock:
            for _ in range(steps):
                step()
        tokens = steps * batch * length
        flops = model.flops_per_token(length, mlm_fraction=0.15) * tokens
        out[f"{preset}_tokens_per_cpu_s"] = tokens / clock.cpu
        out[f"{preset}_gflops_per_cpu_s"] = flops / clock.cpu / 1e9
        out[f"{preset}_mfu"] = flops / clock.cpu / 1e9 / peaks[dtype]
    return out


def group_costs(stats: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Training FLOPs and optimizer steps per phase of one BERT and one Graph group (full MIMIC-IV)."""
    import numpy as np

    from hicd_core.hierarchy import Setting
    from hicd_core.models.bert import PRESETS, HicdBert, make_config
    from hicd_core.models.graph_model import gcn_flops_per_epoch, graph_config, transformer_flops_per_sample

    scale = FULL_ADMISSIONS / stats["admissions"]
    code_ratio = (V21_DIAGNOSES / V21_ADMISSIONS) / (stats["diagnoses"] / stats["admissions"])
    recipe = PRESETS["paper"]
    bert = HicdBert(make_config("paper", Setting.ALL, "prefix", DICTIONARY_CODES + 5, (24, 300, 2000)))
    phases: dict[str, dict[str, float]] = {}

    def add(model: str, phase: str, flops: float, steps: float) -> None:
        phases[f"{model}:{phase}"] = {"flops": flops, "steps": steps}

    # MLM: 100 epochs over the training histories; one validation forward per epoch (1/3 of training).
    lengths = stats["mlm_lengths"] * code_ratio
    padded, steps = _padded_tokens(lengths, recipe.pretrain_batch, scale)
    per_token = bert.flops_per_token(int(np.mean(lengths)) + 1, mlm_fraction=0.15)
    val = padded * SPLIT_VAL / SPLIT_TRAIN * per_token / 3
    epochs = recipe.pretrain_epochs
    add("bert", "pretrain", epochs * (padded * per_token + val), epochs * steps)
    graph = graph_config("paper")
    for task in ("readmission_30d", "emergency_next"):
        lengths = stats[f"{task}_lengths"] * code_ratio
        padded, steps = _padded_tokens(lengths, recipe.finetune_batch, scale)
        per_token = bert.flops_per_token(int(np.mean(lengths)) + 1)
        val = padded * SPLIT_VAL / SPLIT_TRAIN * per_token / 3
        add("bert", task, recipe.finetune_epochs * (padded * per_token + val), recipe.finetune_epochs * steps)
        n_train = len(lengths) * scale * SPLIT_TRAIN
        per_sample = transformer_flops_per_sample(graph, float(np.mean(stats[f"{task}_visits"])))
        epoch = n_train * per_sample * (1 + SPLIT_VAL / SPLIT_TRAIN / 3)
        add("graph", task, graph.max_epochs * epoch, graph.max_epochs * math.ceil(n_train / graph.batch_size))
    # GCN: dense upper bound on edges (every pair), one negative per positive edge.
    n = stats["graph_nodes"]
    add("graph", "gcn", graph.gcn_epochs * gcn_flops_per_epoch(graph, n, n * n, 2 * n * n), graph.gcn_epochs)
    # Transfer: forward passes over eICU (BERT: fine-tuned and MLM-only encoders; Graph: one).
    mean_length = float(np.mean(stats["readmission_30d_lengths"])) * code_ratio
    add("bert", "transfer", 2 * EICU_STAYS * mean_length * bert.flops_per_token(int(mean_length) + 1) / 3, 0)
    add("graph", "transfer", EICU_STAYS * transformer_flops_per_sample(graph, 3.0) / 3, 0)
    return phases


def group_seconds(phases: dict[str, dict[str, float]], model: str, mfu: float) -> float:
    """GPU seconds of one group: per phase max(FLOPs / sustained throughput, steps x step floor)."""
    return sum(max(p["flops"] / (GPU_PEAK * mfu), p["steps"] * STEP_FLOOR_S)
               for key, p in phases.items() if key.startswith(f"{model}:"))


def makespan(durations: list[float], n_gpus: int) -> float:
    """Longest-first list scheduling onto ``n_gpus`` (each group one Slurm task, one GPU)."""
    loads = [0.0] * n_gpus
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d + TASK_OVERHEAD_S)
    return max(loads)


def paper_wall_time() -> dict[str, Any]:
    stats = demo_statistics()
    measured = cpu_throughput()
    phases = group_costs(stats)
    scale = FULL_ADMISSIONS / stats["admissions"]
    out: dict[str, Any] = {
        "demo_admissions": stats["admissions"], "demo_diagnoses": stats["diagnoses"],
        "scale": round(scale, 1), "graph_nodes_upper_bound": stats["graph_nodes"],
        "full_mlm_sequences": round(len(stats["mlm_lengths"]) * scale),
        "full_readmission_samples": round(len(stats["readmission_30d_lengths"]) * scale),
        "full_emergency_samples": round(len(stats["emergency_next_lengths"]) * scale),
        **{f"cpu_{k}": round(v, 3) if isinstance(v, float) else v for k, v in measured.items()},
    }
    for key, p in phases.items():
        out[f"pflop_{key}"] = round(p["flops"] / 1e15, 3)
        out[f"steps_{key}"] = round(p["steps"])
    groups = {"bert": 24, "graph": 24}
    bert_pf = sum(p["flops"] for k, p in phases.items() if k.startswith("bert:"))
    graph_pf = sum(p["flops"] for k, p in phases.items() if k.startswith("graph:"))
    out["pflop_per_bert_group"] = round(bert_pf / 1e15, 2)
    out["pflop_per_graph_group"] = round(graph_pf / 1e15, 3)
    out["pflop_sweep"] = round((groups["bert"] * bert_pf + groups["graph"] * graph_pf) / 1e15, 1)
    # This CPU at its measured paper-preset rate, for scale (BERT FLOPs only).
    cpu_flops = measured["paper_gflops_per_cpu_s"] * 1e9
    out["cpu_core_days_per_bert_group"] = round(bert_pf / cpu_flops / 86400, 1)
    for label, mfu in MFU.items():
        t_bert, t_graph = group_seconds(phases, "bert", mfu), group_seconds(phases, "graph", mfu)
        out[f"{label}_mfu"] = mfu
        out[f"{label}_bert_group_min"] = round(t_bert / 60, 1)
        out[f"{label}_graph_group_min"] = round(t_graph / 60, 1)
        out[f"{label}_gpu_hours"] = round((groups["bert"] * t_bert + groups["graph"] * t_graph) / 3600, 1)
        durations = [t_bert] * groups["bert"] + [t_graph] * groups["graph"]
        for n in GPU_COUNTS:
            out[f"{label}_wall_h_{n}gpu"] = round(makespan(durations, n) / 3600, 2)
    return out


BENCHMARKS = {"paper_wall_time": paper_wall_time}


if __name__ == "__main__":
    import json
    import sys

    sys.path.insert(0, str(ROOT))
    print(json.dumps(paper_wall_time(), indent=1, default=float))
