"""Where each run of a table stands (``python -m assignlab study status``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from assignlab.engine.files import CHECKPOINT_NAME, RESULT_NAME
from assignlab.jsonio import read_json
from assignlab.study.run import locks
from assignlab.study.run.executors import ERROR_NAME, TRAIN_LOG_NAME
from assignlab.study.run.plan import PlannedRun, plan_runs
from assignlab.study.run.store import StudyPaths, read_result, result_is_valid
from assignlab.study.tables.spec import TableSpec


def run_state(run: PlannedRun, paths: StudyPaths, stale_after_s: float | None = None) -> tuple[str, str]:
    """(state, detail): finished / damaged (its result file; what is wrong) / running (where) /
    failed (log) / interrupted (resumable) / missing."""
    target = paths.result_file(run.table, run.run_id)
    if target.exists():
        try:
            read_result(target)
        except ValueError as err:
            return "damaged", f"{err} (moved aside and trained again on the next run of the table)"
        return "finished", str(target)
    elsewhere = paths.find_result_elsewhere(run.run_id)
    folder = paths.run_dir(run.run_id)
    if elsewhere is not None or result_is_valid(folder / RESULT_NAME):
        return "finished", f"in {elsewhere or folder / RESULT_NAME} (copied on the next run of the table)"
    held = locks.read_claim(folder)
    stale = held.stale_reason(locks.stale_after(stale_after_s)) if held is not None else None
    if held is not None and stale is None:
        return "running", f"{held.where()}; log: {folder / TRAIN_LOG_NAME}"
    if (folder / ERROR_NAME).exists():
        try:
            error = read_json(folder / ERROR_NAME).get("error", "")
        except ValueError:
            error = "unreadable error.json"
        return "failed", f"{error}; log: {folder / TRAIN_LOG_NAME}"
    if (folder / CHECKPOINT_NAME).exists():
        note = f" (stale claim of {held.where()}: {stale})" if held is not None else ""
        return "interrupted", f"resumable from {folder / CHECKPOINT_NAME}{note}"
    if held is not None:
        return "missing", f"stale claim of {held.where()}: {stale}"
    return "missing", ""


def table_status(table: str | TableSpec, profile: str = "cpu", seeds: Any = None, results_dir: str | Path = "results",
                 cache_dir: str | Path | None = None, data_root: str | None = None,
                 stale_after_s: float | None = None, base: str | None = None) -> list[dict[str, Any]]:
    """One dict per run: rows, seed, run_id, state, detail (see :func:`run_state`)."""
    paths = StudyPaths.make(results_dir, cache_dir)
    out = []
    for run in plan_runs(table, profile, seeds, data_root, base):
        state, detail = run_state(run, paths, stale_after_s)
        out.append({"rows": "; ".join(run.rows), "seed": run.seed, "run_id": run.run_id, "state": state, "detail": detail})
    return out
