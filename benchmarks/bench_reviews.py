"""Review-session benchmark: the time to open the next item of a session.

Run::

    .venv/bin/python -m benchmarks review_next_item
    HICD_STORE=/path/to/store .venv/bin/python -m benchmarks.bench_reviews

The store is the attribution benchmark's (``$HICD_STORE``, else the tiny store it builds once under the
data directory). A 10-item blinded HICD-BERT session (flat vs the richest setting) is created in a
fresh SQLite file; "open" is what the worklist does for one item: read the session and this reviewer's
progress and answers from SQLite, then both explanations (:func:`review_items.explain_item`) as plain
words. ``first`` computes the attributions (a facilitator's dry run, or the first reviewer); ``cached``
is every later reviewer opening the same item. Target: cached open <= 1 s on 2 cores.

Figures (2026-12-06, the 2-core development machine shared with other work, load average ~5.7;
the pytest tiny store via ``HICD_STORE``, HICD-BERT flat vs G0+G1+G2, 10 items): cached open median
0.19 s, max 0.23 s; first open median 0.49 s, max 6.2 s (the first item loads both models); one
saved answer 27 ms. Streamlit's own rendering of the page comes on top of these.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

N_ITEMS = 10


def _open_item(store: Any, cohort: Any, sid: str, position: int, db: Path) -> float:
    from hicd_core.analysis import review_items as items_lib
    from hicd_core.analysis import review_sessions as rs

    started = time.perf_counter()
    config, items = rs.get_session(sid, path=db)
    rs.progress(sid, "Dr Bench", path=db)
    rs.answers(sid, reviewer="Dr Bench", path=db)
    items_lib.explain_item(store, config, items.iloc[position], cohort)
    return time.perf_counter() - started


def review_next_item() -> dict[str, Any]:
    from benchmarks.bench_attributions import _store_and_cohort
    from hicd_core.analysis import patient_view as view
    from hicd_core.analysis import review_items as items_lib
    from hicd_core.analysis import review_sessions as rs

    store, cohort, source = _store_and_cohort()
    runs = view.task_runs(store)
    bert = runs[runs["model"] == "bert"]
    task = str(bert["task"].iloc[0])
    by_setting = view.runs_by_setting(bert, "bert", task, int(bert["seed"].min()))
    setting = max((s for s in by_setting if s != "000"), key=lambda s: (s.count("1"), s))
    items = items_lib.plan_items(store, by_setting["000"], by_setting[setting], method="disagreement",
                                 n=N_ITEMS, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "reviews.sqlite"
        config = rs.SessionConfig(title="bench", model="bert", task=task, seed=int(bert["seed"].min()),
                                  setting=setting, selection="disagreement", n_items=len(items), rng_seed=0,
                                  blinded=True, hide_risk=False, flat_run=by_setting["000"],
                                  setting_run=by_setting[setting], cohort_fingerprint=cohort.fingerprint)
        sid = rs.create_session(config, items, path=db)
        first = [_open_item(store, cohort, sid, p, db) for p in range(len(items))]
        for p in range(len(items)):
            rs.save_answer(sid, "Dr Bench", p, preference="AB"[p % 2], path=db)
        cached = [_open_item(store, cohort, sid, p, db) for p in range(len(items))]
        started = time.perf_counter()
        for p in range(len(items)):
            rs.save_answer(sid, "Dr Bench", p, preference="both", comment="re-answered", path=db)
        save_ms = (time.perf_counter() - started) / len(items) * 1000
    return {"store": source, "setting": setting, "items": len(items),
            "first_open_median_s": round(statistics.median(first[1:] or first), 3),
            "first_open_max_s": round(max(first), 3),
            "cached_open_median_s": round(statistics.median(cached), 4),
            "cached_open_max_s": round(max(cached), 4), "save_answer_ms": round(save_ms, 2)}


BENCHMARKS = {"review_next_item": review_next_item}

if __name__ == "__main__":
    print(review_next_item())
