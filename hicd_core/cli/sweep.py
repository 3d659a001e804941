"""``sweep``: run the level-ablation sweep (resumable), with progress bars or a status file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hicd_core.cli.common import CliError, add_store_options, open_store, positive_int
from hicd_core.experiments.spec import (
    EMBEDDING_SCOPES,
    MODELS,
    SOURCE_TASKS,
    SweepPreset,
    load_preset,
    parse_list,
    parse_seeds,
)
from hicd_core.hierarchy.levels import HIERARCHIES, Setting


def _own_store_name(signal: float | None) -> str | None:
    """A store holds one source cohort, so synthetic data with another hierarchy_signal than the
    default (the null control's 0 included) goes to a store of its own unless one is named:
    ``null`` for signal 0, else ``signal<s>``."""
    from hicd_core.synthetic import DEFAULT_HIERARCHY_SIGNAL

    if signal is None or signal == DEFAULT_HIERARCHY_SIGNAL:
        return None
    return "null" if signal == 0 else f"signal{signal:g}"


class _Bars:
    """tqdm bars fed by SweepEvents: the sweep overall (with ETA) and one per run in progress (several
    when worker processes run in parallel)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm
        self.overall = None
        self.runs: dict[str, Any] = {}

    def _bar(self, run_id: str) -> Any:
        if run_id not in self.runs:
            used = {abs(bar.pos) for bar in self.runs.values()}  # tqdm keeps a fixed position as -pos
            position = next(p for p in range(1, len(self.runs) + 2) if p not in used)
            self.runs[run_id] = self.tqdm(total=100, desc=run_id[:60], position=position, leave=False,
                                          bar_format="{l_bar}{bar}| {postfix}")
        return self.runs[run_id]

    def __call__(self, event) -> None:
        if self.overall is None:
            self.overall = self.tqdm(total=event.n_runs, desc="sweep", unit="run", position=0,
                                     bar_format="{l_bar}{bar}| {n:.2f}/{total} runs [{elapsed}<{remaining}]")
        if event.stage in ("done", "failed"):
            bar = self.runs.pop(event.run_id, None)
            if bar is not None:
                bar.close()
        else:
            bar = self._bar(event.run_id)
            bar.n = round(event.run_fraction * 100)
            bar.set_postfix_str(f"{event.stage} {event.message}"[:60])
        self.overall.n = round(event.overall_fraction * event.n_runs, 2)
        self.overall.refresh()
        if event.stage == "failed":
            self.tqdm.write(f"FAILED {event.run_id}: {event.message}", file=sys.stderr)

    def close(self) -> None:
        for bar in [*self.runs.values(), self.overall]:
            if bar is not None:
                bar.close()


def _workers(value: str) -> int | str:
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--workers must be 'auto' or a positive integer, got {value!r}")
    return int(value)


def preset_from_args(args: argparse.Namespace) -> SweepPreset:
    """The preset ``--preset`` names, with every other option's override applied (checked)."""
    preset = load_preset(args.preset)
    overrides: dict[str, Any] = {}
    if args.models is not None:
        overrides["models"] = parse_list(args.models, MODELS, "model")
    if args.settings is not None:
        overrides["settings"] = Setting.parse_list(args.settings)
    if args.tasks is not None:
        overrides["tasks"] = parse_list(args.tasks, SOURCE_TASKS, "task")
    if args.seeds is not None:
        overrides["seeds"] = parse_seeds(args.seeds)
    if args.no_transfer:
        overrides["transfer"] = False
    if args.cohort is not None:
        overrides["cohort"] = args.cohort
    if args.target is not None:
        overrides["target"] = args.target
    if args.bert_scheme is not None:
        overrides["schemes"] = {**preset.schemes, "bert": args.bert_scheme}
    if args.mask_hierarchy:
        overrides["mask_hierarchy"] = True
    if args.hierarchy is not None:
        overrides["hierarchies"] = parse_list(args.hierarchy, HIERARCHIES, "hierarchy")
    if args.hierarchy_signal is not None:
        overrides["hierarchy_signal"] = args.hierarchy_signal
    return preset.with_overrides(**overrides)


SLURM_OPTIONS = ("partition", "gpus_per_task", "cpus_per_task", "mem", "time", "array_parallelism", "account",
                 "extra")


def _slurm_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--slurm-*`` options given on the command line (None for the rest)."""
    from hicd_core.experiments.slurm_config import parse_extra

    values = {name: getattr(args, f"slurm_{name}") for name in SLURM_OPTIONS}
    values["extra"] = parse_extra(args.slurm_extra) if args.slurm_extra else None
    return values


def _check_executor_options(args: argparse.Namespace) -> None:
    if args.executor == "slurm":
        return
    given = [f"--slurm-{name.replace('_', '-')}" for name in SLURM_OPTIONS
             if getattr(args, f"slurm_{name}") is not None]
    if args.detach:
        given.insert(0, "--detach")
    if given:
        raise CliError(f"{given[0]} applies to --executor slurm only")


def _slurm_executor(args: argparse.Namespace, store_root: Path) -> tuple[Any, str]:
    """The Slurm executor from the store's slurm.json and the options, and the device its tasks use
    (``auto`` means what the tasks will have: CUDA when GPUs are requested, else CPU)."""
    from hicd_core.experiments.slurm import SlurmExecutor
    from hicd_core.experiments.slurm_config import SlurmConfigError, merged_config

    try:
        config = merged_config(store_root, _slurm_overrides(args))
    except SlurmConfigError as exc:
        raise CliError(str(exc)) from None
    device = args.device
    if device == "auto":
        device = "cuda" if config.gpus_per_task else "cpu"
    return SlurmExecutor(config, detach=args.detach), device


def _print_submission(executor: Any, outcome: dict[str, str], store: Any) -> None:
    tasks = executor.submitted
    jobs = sorted({task["task_id"].split("_")[0] for task in tasks})
    queued = sum(status == "queued" for status in outcome.values())
    print(f"submitted {sum(len(task['runs']) for task in tasks)} runs in {len(tasks)} Slurm array tasks"
          + (f" (job {', '.join(jobs)})" if jobs else "")
          + (f"; {queued} runs already queued" if queued else ""))
    if tasks:
        print(f"logs: {Path(tasks[0]['stdout']).parent.parent}/<job>_<task>/")
    print(f"progress: python -m hicd_core status --store {store.root}"
          + (f"; cancel: scancel {' '.join(jobs)}" if jobs else ""))


def run_sweep(args: argparse.Namespace) -> int:
    from hicd_core.experiments.sweep import Sweep, expected_runs, resolve_cohorts

    _check_executor_options(args)
    preset = preset_from_args(args)
    cohorts = resolve_cohorts(preset.cohort, preset.target, preset.synthetic_patients,
                              preset.hierarchy_signal)
    own = _own_store_name(preset.hierarchy_signal)
    if not args.store and args.store_name == "default" and own:
        args.store_name = own
    store = open_store(args)
    executor, device = None, args.device
    if args.executor == "slurm":
        executor, device = _slurm_executor(args, store.root)
    # The run keys use the model preset of the device the runs train on (a login node may have no GPU).
    specs = expected_runs(preset, cohorts, args.device if executor is None or device == "cpu"
                          else _torch_device(device))
    done = sum(store.is_finished(run_id) for run_id in specs)
    print(f"preset {preset.name}: {len(specs)} runs ({done} already finished) on {cohorts.source.label}"
          + (f" -> {cohorts.target.label}" if cohorts.target is not None else "") + f"\nstore: {store.root}")
    variants = [f"HICD-BERT levels: {preset.schemes.get('bert', 'ontology')}"
                + (" (mask-hierarchy MLM)" if preset.mask_hierarchy else "")]
    if "permuted" in preset.hierarchies:
        variants.append("permuted-hierarchy control: " + ", ".join(preset.hierarchies))
    if cohorts.source.synthetic:
        signal = (cohorts.source.meta.get("synthetic_params") or {}).get("hierarchy_signal")
        variants.append(f"SYNTHETIC data, hierarchy_signal {signal} (share of outcome risk in the hierarchy)")
    print("; ".join(variants))
    bars = _Bars() if not args.quiet else None
    status = None
    if args.status_file:
        from hicd_core.experiments.background import StatusWriter

        status = StatusWriter(Path(args.status_file))
    callbacks = [cb for cb in (bars, status) if cb is not None]
    try:
        outcome = Sweep(store, cohorts, device=device, callback=lambda event: [cb(event) for cb in callbacks],
                        embeddings=args.embeddings).run(specs, args.workers, executor=executor)
    except BaseException as exc:
        if status is not None:
            status.close("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if bars is not None:
            bars.close()
    if executor is not None:
        from hicd_core.experiments.slurm_config import write_config

        write_config(store.root, executor.config)  # so the app (and the next sweep) submit the same way
        if args.detach:
            if status is not None:
                status.close("submitted", "runs submitted to Slurm")
            _print_submission(executor, outcome, store)
            return 0
    if status is not None:
        status.close("finished" if all(v != "failed" for v in outcome.values()) else "failed")
    failed = [run_id for run_id, status in outcome.items() if status == "failed"]
    finished = sum(status == "finished" for status in outcome.values())
    print(f"finished {finished}, skipped {len(outcome) - finished - len(failed)}, failed {len(failed)}")
    for run_id in failed:
        print(f"  failed: {run_id}: {store.failure(run_id)['error'].splitlines()[0]}", file=sys.stderr)
    return 1 if failed else 0


def _torch_device(name: str) -> Any:
    import torch

    return torch.device(name)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--slurm-gpus-per-task must be 0 or more, got {text!r}")
    return int(text)


def _add_executor_options(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("--executor", choices=["local", "slurm"], default="local",
                       help="local: this machine's worker processes (default); slurm: one Slurm job-array "
                            "task per run group, through submitit (the store must be on shared storage)")
    sweep.add_argument("--detach", action="store_true",
                       help="slurm: return once submitted (follow with `python -m hicd_core status`)")
    group = sweep.add_argument_group("Slurm (with --executor slurm; defaults from <store>/slurm.json, "
                                     "which each submission updates)")
    group.add_argument("--slurm-partition")
    group.add_argument("--slurm-gpus-per-task", type=_non_negative,
                       help="default: 1 with --device cuda, else none")
    group.add_argument("--slurm-cpus-per-task", type=positive_int("--slurm-cpus-per-task"),
                       help="also each task's thread count (default 4)")
    group.add_argument("--slurm-mem", help="memory per task, e.g. 32G (default: the cluster's)")
    group.add_argument("--slurm-time", help="time limit per attempt: minutes or [D-]HH:MM:SS (default "
                                            "4:00:00); a timed-out task is requeued and resumes its group")
    group.add_argument("--slurm-array-parallelism", type=positive_int("--slurm-array-parallelism"),
                       help="tasks running at once (default 64)")
    group.add_argument("--slurm-account")
    group.add_argument("--slurm-extra", action="append", metavar="KEY=VALUE",
                       help="any other sbatch or submitit parameter, e.g. qos=high, constraint=a100, "
                            "signal_delay_s=120 (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="run the level-ablation sweep (resumable)")
    sweep.add_argument("--preset", default="default",
                       help="default | paper | tiny | null | control | PATH.json (null: the default design "
                            "on synthetic data with hierarchy_signal 0, in the store 'null' unless --store "
                            "or --store-name is given; control: default plus the permuted-hierarchy control)")
    sweep.add_argument("--cohort", help="synthetic | mimic-iv:PATH | mimic-iii:PATH | meds:PATH "
                                        "(default: the preset's, synthetic)")
    sweep.add_argument("--target", help="eicu:PATH | none (default: the preset's; the synthetic target)")
    sweep.add_argument("--models", help=f"comma list of {','.join(MODELS)} (default: the preset's; "
                                        "counts-gbm is opt-in)")
    sweep.add_argument("--settings", help="all | comma list of 000,001,...")
    sweep.add_argument("--tasks", help=f"comma list of {','.join(SOURCE_TASKS)} (default: the preset's)")
    sweep.add_argument("--seeds", help="comma list of integers, e.g. 0,1,2")
    sweep.add_argument("--no-transfer", action="store_true", help="skip the transfer probes")
    sweep.add_argument("--bert-scheme", choices=["ontology", "prefix"],
                       help="HICD-BERT's level scheme (default: the preset's; default/tiny/null/control: "
                            "ontology = chapter/block/category, paper: prefix = 1/2/3-character prefixes, "
                            "what the paper's HICD-BERT uses)")
    sweep.add_argument("--mask-hierarchy", action="store_true",
                       help="HICD-BERT MLM hides the level ids of masked codes (leak-free objective); the "
                            "paper's default keeps them visible")
    sweep.add_argument("--hierarchy", help="comma list of real,permuted: the tree(s) the hierarchical "
                                           "settings train on (permuted = the permuted-hierarchy control; "
                                           "the flat runs are shared)")
    sweep.add_argument("--hierarchy-signal", type=float,
                       help="synthetic cohort only: the data's share of outcome risk in the hierarchy, "
                            "0..1 (default: the preset's; the generator's 0.7)")
    sweep.add_argument("--embeddings", choices=list(EMBEDDING_SCOPES), default="first-seed",
                       help="which task runs store the code-embedding analysis (vectors, tightness, UMAP) "
                            "for the Embeddings page: the sweep's lowest seed (default), all, none")
    sweep.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sweep.add_argument("--workers", type=_workers, default="auto",
                       help="processes running groups of runs in parallel: auto (CPU: one per core, at "
                            "most 4; CUDA: 1) or a number; the cores are shared out between them")
    add_store_options(sweep)
    _add_executor_options(sweep)
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.add_argument("--status-file", help="also write progress as JSON here (used by the app)")
    sweep.set_defaults(func=run_sweep)
