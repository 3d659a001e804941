"""HICD-BERT benchmarks: matmul peak, training throughput/MFU, one-setting wall time, learning curves.

Each function returns a dict of figures (the harness in ``benchmarks/run.py`` runs it in a child
process). ``python benchmarks/bench_bert.py NAME [NAME ...]`` runs some here and prints JSON.

* ``matmul_peak``        fp32 and bf16 GFLOP/s of one big ``torch.matmul`` (the MFU denominator);
* ``bert_throughput``    training tokens/s and model-FLOPs utilisation of MLM steps for the ``cpu`` and
                         ``paper`` presets, fp32 and bf16 (a few steps each, random tokens);
* ``bert_one_setting``   wall and CPU time to pretrain one setting and fine-tune both tasks on the
                         default synthetic cohort (12k source patients), with the AUROCs reached;
* ``bert_learning_curve`` val MLM loss per pretraining epoch and val AUROC per fine-tuning epoch for a
                         run 3x longer than the ``cpu`` preset, next to the preset's own run: the
                         evidence for the preset's epoch counts;
* ``bert_all_settings``  the 8-setting sweep (pretrain once per setting, fine-tune both tasks).

CPU time (``time.process_time``, all threads) is reported next to wall time because the 2-core
machines these run on are often shared; with oversubscribed cores the wall time is not the model's
(and 2-thread OpenMP then slows down 5-10x: run with ``torch.set_num_threads(1)`` on a busy box).

Measured 2026-11-27, Xeon with AMX, torch 2.13 CPU (default synthetic cohort: 12,000 patients,
17,574 admissions, 211,649 codes; 10,642 code tokens):

* peak, 2 threads idle: fp32 364 GFLOP/s, bf16 2,350 GFLOP/s (AMX); 1 thread: 84 / 564.
* MLM training, 2 threads idle: cpu preset 60k tok/s fp32 (MFU 20%), 77k tok/s bf16 (MFU 4% of
  the bf16 peak); paper preset 1.5k tok/s fp32 (MFU 52%), 2.5k tok/s bf16 (MFU 13%).
* one setting (111), cpu preset, 2 threads idle: 43 s wall / 81 CPU-s (pretrain 18 s, readmission
  17 s, emergency 8 s); 1 thread: 64 CPU-s. All 8 settings, 1 thread: 509 CPU-s (61-66 s each).
* learning curves (111, seed 0 / seed 1; cpu preset vs 3x longer): val AUROC readmission
  0.675 / 0.668 vs 0.669 / 0.664, emergency 0.600 / 0.616 vs 0.610 / 0.602; the flat 000 setting
  0.621 / 0.595 vs 0.602 / 0.580. Fine-tuning peaks at epoch 2-3 in every curve.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import Clock, default_cohort  # noqa: E402
from hicd_core.hierarchy import Setting  # noqa: E402

TASKS = ("readmission_30d", "emergency_next")
SETTING = Setting.ALL


# ------------------------------------------------------------------------------------- matmul peak


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` GFLOP/s of an n x n matmul in fp32 and bf16 (the MFU denominators)."""
    out: dict[str, float] = {"threads": torch.get_num_threads(), "n": n}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        torch.matmul(a, b)  # warm-up (kernel selection, page faults)
        best = float("inf")
        for _ in range(repeats):
            with Clock() as took:
                torch.matmul(a, b)
            best = min(best, took.wall)
        out[f"{name}_gflops"] = 2 * n**3 / best / 1e9
    out["bf16_over_fp32"] = out["bf16_gflops"] / out["fp32_gflops"]
    return out


# -------------------------------------------------------------------------------------- throughput


def _mlm_step_fn(preset: str, bf16: bool, batch: int, length: int, vocab: int = 10_000,
                 levels: tuple[int, int, int] = (24, 280, 1800)) -> tuple[Callable[[], None], Any]:
    from hicd_core.models.bert import HicdBert, make_config
    from hicd_core.models.bert_train import precision

    torch.manual_seed(0)
    device = torch.device("cpu")
    model = HicdBert(make_config(preset, SETTING, "ontology", vocab, levels))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(5, vocab, (batch, length), generator=g)
    shape = (batch, length)
    args = (codes, torch.randint(0, 90, shape, generator=g), torch.randint(0, 8, shape, generator=g),
            torch.randint(0, 2, shape, generator=g), torch.randint(1, 20, (*shape, 3), generator=g),
            torch.zeros(shape, dtype=torch.bool))
    picked = torch.randperm(batch * length, generator=g)[: int(0.15 * batch * length)]
    targets = codes.view(-1)[picked]

    def step() -> None:
        with precision(device, bf16):
            hidden = model.encode(*args)
            logits = model.mlm_logits(hidden, picked)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, model


def bert_throughput(steps: int = 4, peak: dict[str, float] | None = None) -> dict[str, Any]:
    """MLM training tokens/s and MFU per preset and precision (random tokens, no padding).

    Shapes: ``cpu`` preset 128 x 32 tokens per step (the synthetic cohort's median sequence is ~16-20
    tokens); ``paper`` preset 16 x 128 (a full 256 x 256 step takes minutes on 2 cores).
    """
    peak = peak or matmul_peak()
    shapes = {"cpu": (128, 32), "paper": (16, 128)}
    out: dict[str, Any] = {"peak_fp32_gflops": peak["fp32_gflops"], "peak_bf16_gflops": peak["bf16_gflops"]}
    for preset, (batch, length) in shapes.items():
        for name in ("fp32", "bf16"):
            step, model = _mlm_step_fn(preset, name == "bf16", batch, length)
            step()  # warm-up
            with Clock() as clock:
                for _ in range(steps):
                    step()
            tokens = steps * batch * length
            flops = model.flops_per_token(length, mlm_fraction=0.15) * tokens
            key = f"{preset}_{name}"
            out[f"{key}_tokens_per_s"] = tokens / clock.wall
            out[f"{key}_tokens_per_cpu_s"] = tokens / clock.cpu
            out[f"{key}_gflops"] = flops / clock.wall / 1e9
            out[f"{key}_mfu"] = flops / clock.wall / 1e9 / peak[f"{name}_gflops"]
        out[f"{preset}_params"] = model.n_params()
    return out


# --------------------------------------------------------------------------------- one setting


def run_setting(cohort: Any, setting: tuple[int, int, int] = SETTING, preset: str = "cpu", seed: int = 0,
                pretrain_epochs: int | None = None, finetune_epochs: int | None = None,
                patience: int | None = None, tasks: tuple[str, ...] = TASKS, **pretrain_kwargs: Any
                ) -> dict[str, Any]:
    """Pretrain one setting, fine-tune every task from it; times, AUROCs and learning curves."""
    from hicd_core.models.bert_train import finetune, pretrain_mlm

    out: dict[str, Any] = {"setting": setting.key, "preset": preset}
    with Clock() as clock:
        pre = pretrain_mlm(cohort, setting, preset=preset, seed=seed, device="cpu", epochs=pretrain_epochs,
                           **pretrain_kwargs)
    out.update(pretrain_wall_s=clock.wall, pretrain_cpu_s=clock.cpu, best_mlm_epoch=pre.metrics["best_epoch"],
               val_mlm_loss=[round(h["val_loss"], 4) for h in pre.history])
    total_wall, total_cpu = clock.wall, clock.cpu
    for task in tasks:
        with Clock() as clock:
            run = finetune(pre, cohort, task, seed=seed, device="cpu", epochs=finetune_epochs,
                           patience=patience)
        total_wall += clock.wall
        total_cpu += clock.cpu
        test = run.metrics["test"]
        out[task] = {"wall_s": clock.wall, "cpu_s": clock.cpu,
                     "val_auroc": run.metrics["validation"]["auroc"], "test_auroc": test["auroc"],
                     "test_macro_f1": test["macro_f1"],
                     "best_epoch": run.metrics["best_epoch"], "epochs_run": run.metrics["stopped_epoch"],
                     "val_auroc_curve": [round(h["val_auroc"], 4) for h in run.history]}
    out.update(total_wall_s=total_wall, total_cpu_s=total_cpu)
    return out


def bert_one_setting(setting: tuple[int, int, int] = SETTING) -> dict[str, Any]:
    """Wall/CPU time to pretrain + fine-tune both tasks for one setting with the ``cpu`` preset."""
    return run_setting(default_cohort(), setting)


def bert_learning_curve(setting: tuple[int, int, int] = SETTING, factor: int = 3, seed: int = 0
                        ) -> dict[str, Any]:
    """The ``cpu`` preset's schedule next to one ``factor`` x longer (with patience to match).

    The longer run shows whether the preset stops before the validation AUROC it could reach.
    """
    from hicd_core.models.bert import PRESETS

    recipe = PRESETS["cpu"]
    cohort = default_cohort()
    short = run_setting(cohort, setting, seed=seed)
    long = run_setting(cohort, setting, seed=seed, pretrain_epochs=factor * recipe.pretrain_epochs,
                       finetune_epochs=factor * recipe.finetune_epochs,
                       patience=factor * recipe.finetune_patience)
    out: dict[str, Any] = {"setting": short["setting"], "short": short, "long": long}
    for task in TASKS:
        out[f"{task}_test_auroc_gain_long"] = long[task]["test_auroc"] - short[task]["test_auroc"]
        out[f"{task}_val_auroc_gain_long"] = long[task]["val_auroc"] - short[task]["val_auroc"]
    return out


def bert_all_settings() -> dict[str, Any]:
    """All 8 settings with the ``cpu`` preset (pretrain once per setting, fine-tune both tasks)."""
    from hicd_core.hierarchy import SETTINGS

    cohort = default_cohort()
    rows = [run_setting(cohort, setting) for setting in SETTINGS]
    out: dict[str, Any] = {"total_wall_s": sum(r["total_wall_s"] for r in rows),
                           "total_cpu_s": sum(r["total_cpu_s"] for r in rows)}
    for r in rows:
        out[r["setting"]] = {"wall_s": round(r["total_wall_s"], 1), "cpu_s": round(r["total_cpu_s"], 1),
                             **{f"{t}_test_auroc": round(r[t]["test_auroc"], 4) for t in TASKS}}
    return out


def with_preset(**changes: Any) -> Callable[[], None]:
    """Context-free override of the ``cpu`` preset (used by tuning scripts; returns an undo)."""
    from hicd_core.models import bert

    old = bert.PRESETS["cpu"]
    model = {**old.model, **changes.pop("model", {})}
    bert.PRESETS["cpu"] = replace(old, model=model, **changes)

    def undo() -> None:
        bert.PRESETS["cpu"] = old

    return undo


BENCHMARKS = {
    "matmul_peak": matmul_peak,
    "bert_throughput": bert_throughput,
    "bert_one_setting": bert_one_setting,
    "bert_learning_curve": bert_learning_curve,
    "bert_all_settings": bert_all_settings,
}


if __name__ == "__main__":
    names = sys.argv[1:] or ["matmul_peak", "bert_throughput", "bert_one_setting"]
    results = {}
    for name in names:
        results[name] = BENCHMARKS[name]()
        print(json.dumps({name: results[name]}, indent=1, default=float), flush=True)
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(results, indent=1, default=float))
