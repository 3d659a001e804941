"""The Slurm resources of a sweep: what ``--slurm-*`` options and the store's ``slurm.json`` say.

The same keys sit in ``<store>/slurm.json`` so that whoever submits next (the CLI again, or the
app's "train missing settings") asks the cluster for the same resources; command-line options
override the file and the merged result is written back on submission. Errors name the option (or
the file) and what it accepts, never a traceback.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hicd_core.runtime import atomic_write_json

SLURM_CONFIG_FILE = "slurm.json"
_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


class SlurmConfigError(ValueError):
    """A bad Slurm option or config file value; the message names it."""


def parse_time_minutes(text: str | int, option: str = "--slurm-time") -> int:
    """Slurm's time formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM[:SS]``) in whole
    minutes, seconds rounded up (submitit asks in minutes)."""
    match = _TIME.match(str(text).strip())
    if not match:
        raise SlurmConfigError(f"{option} must be minutes or [D-]HH:MM:SS, got {text!r}")
    days = int(match["days"] or 0)
    a, b, c = (int(v) if v is not None else None for v in (match["a"], match["b"], match["c"]))
    if match["days"] is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = a, b or 0, c or 0
    elif c is not None:  # HH:MM:SS
        hours, minutes, seconds = a, b or 0, c
    else:  # MM[:SS]
        hours, minutes, seconds = 0, a, b or 0
    total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total < 1:
        raise SlurmConfigError(f"{option} must be at least one minute, got {text!r}")
    return total


def _submitit_parameters() -> dict[str, Any]:
    """The sbatch parameters submitit's SlurmExecutor takes by name, with their defaults."""
    from submitit.slurm.slurm import _make_sbatch_string

    skip = {"command", "folder", "map_count", "additional_parameters", "setup"}
    return {name: p.default for name, p in inspect.signature(_make_sbatch_string).parameters.items()
            if name not in skip}


def parse_extra(items: list[str] | None, option: str = "--slurm-extra") -> dict[str, str]:
    """``KEY=VALUE`` pairs (``qos=high``, ``constraint=a100``, ``signal_delay_s=120``)."""
    extra: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not value.strip():
            raise SlurmConfigError(f"{option} takes KEY=VALUE, got {item!r}")
        extra[key] = value.strip()
    return extra


@dataclass
class SlurmConfig:
    """Resources per job-array task (one task = one run group). ``None`` leaves it to the cluster."""

    partition: str | None = None
    gpus_per_task: int | None = None  # None: 1 with --device cuda, none otherwise
    cpus_per_task: int = 4            # also the task's torch / BLAS thread count
    mem: str | None = None            # e.g. 32G
    time: str = "4:00:00"             # per attempt; a timed-out task is requeued and resumes its group
    array_parallelism: int = 64       # tasks running at once
    account: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # any other sbatch / submitit parameter

    def validated(self) -> SlurmConfig:
        for name in ("cpus_per_task", "array_parallelism"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SlurmConfigError(f"--slurm-{name.replace('_', '-')} must be a positive integer, "
                                       f"got {value!r}")
        gpus = self.gpus_per_task
        if gpus is not None and (not isinstance(gpus, int) or gpus < 0):
            raise SlurmConfigError(f"--slurm-gpus-per-task must be 0 or more, got {self.gpus_per_task!r}")
        if self.mem is not None and not re.match(r"^\d+[KMGT]?B?$", str(self.mem), re.IGNORECASE):
            raise SlurmConfigError(f"--slurm-mem must look like 16G or 4000M, got {self.mem!r}")
        parse_time_minutes(self.time)
        return self

    def gpus(self, device: str) -> int:
        if self.gpus_per_task is not None:
            return self.gpus_per_task
        return 1 if device == "cuda" else 0

    def submitit_parameters(self, device: str, job_name: str, setup: list[str]) -> dict[str, Any]:
        """Keyword arguments for ``submitit.SlurmExecutor.update_parameters``: the named options,
        then ``extra`` as a submitit parameter where submitit has one, else as a raw sbatch one."""
        known = _submitit_parameters()
        params: dict[str, Any] = {"job_name": job_name, "time": parse_time_minutes(self.time),
                                  "cpus_per_task": self.cpus_per_task,
                                  "array_parallelism": self.array_parallelism, "setup": setup,
                                  "stderr_to_stdout": False}
        for name in ("partition", "mem", "account"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        if self.gpus(device):
            params["gpus_per_task"] = self.gpus(device)
        additional: dict[str, Any] = {}
        for key, value in self.extra.items():
            if key in known and key not in params:
                default = known[key]
                if isinstance(default, bool):
                    params[key] = value.lower() in ("1", "true", "yes")
                elif isinstance(default, int):
                    try:
                        params[key] = int(value)
                    except ValueError:
                        raise SlurmConfigError(f"--slurm-extra {key} must be an integer, "
                                               f"got {value!r}") from None
                else:
                    params[key] = value
            elif key in params or key in ("time", "array"):
                raise SlurmConfigError(f"--slurm-extra {key}: set it with its own --slurm-* option")
            else:
                additional[key] = value
        if additional:
            params["additional_parameters"] = additional
        return params


def read_config(store_root: Path) -> SlurmConfig | None:
    """The store's ``slurm.json`` (None when there is none)."""
    path = Path(store_root) / SLURM_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        allowed = {f.name for f in fields(SlurmConfig)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        return SlurmConfig(**data).validated()
    except (OSError, ValueError, TypeError) as exc:
        raise SlurmConfigError(f"{path} is not a usable Slurm config ({exc})") from exc


def merged_config(store_root: Path, overrides: dict[str, Any]) -> SlurmConfig:
    """The store's config (or the defaults) with the non-None ``overrides`` applied, validated."""
    base = read_config(store_root) or SlurmConfig()
    values = {key: value for key, value in overrides.items() if value is not None}
    if "extra" in values:
        values["extra"] = {**base.extra, **values["extra"]}
    return replace(base, **values).validated()


def write_config(store_root: Path, config: SlurmConfig) -> None:
    atomic_write_json(Path(store_root) / SLURM_CONFIG_FILE, asdict(config))
