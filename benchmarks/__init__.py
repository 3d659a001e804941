"""Benchmarks (not tests): each module exposes ``BENCHMARKS = {name: fn}``; fn() returns figures.

Shared helpers (standard library only at import, so ``python -m benchmarks --list`` stays cheap):
:class:`Clock` times a block in wall and process-CPU seconds; :func:`default_cohort` loads the
project's synthetic default source cohort once per process.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hicd_core.cohort.schema import Cohort

__all__ = ["Clock", "default_cohort"]


class Clock:
    """Wall and process-CPU seconds of a ``with`` block: ``with Clock() as took: ...``.

    After the block ``took.wall`` and ``took.cpu`` hold the seconds; ``took.figures()`` gives them as
    ``{'wall_s': ..., 'cpu_s': ...}``. CPU time (all threads of this process) is reported next to wall
    time because a loaded shared machine inflates wall time.
    """

    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> Clock:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0

    def figures(self, digits: int = 3) -> dict[str, float]:
        return {"wall_s": round(self.wall, digits), "cpu_s": round(self.cpu, digits)}


@functools.cache
def default_cohort(patients: int | None = None) -> Cohort:
    """The project's synthetic default source cohort (written once into the data dir, then cached)."""
    from hicd_core.cohort import load_cohort
    from hicd_core.synthetic import ensure_default

    return load_cohort("mimic-iv", ensure_default(patients) / "mimic-iv")
