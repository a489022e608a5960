"""Where the runs of the study live, and their result files.

Files (``results_dir`` and ``cache_dir`` are parameters; the defaults are ``results/`` and
``work-cache/runs/`` beside it)::

    results/runs/<table>/<run-id>.json   a finished run: the engine's result.json plus the table,
                                         the rows it serves, its run id and profile (small; committed)
    work-cache/runs/<run-id>/            the training folder: checkpoint.pth, log.jsonl, train.log
                                         (stdout/stderr), claim.json while a worker trains it,
                                         error.json when it failed (large; never committed)
    work-cache/submitit/<job-id>/        submitit's job files and logs (executor "slurm")
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assignlab.engine.files import RESULT_NAME
from assignlab.jsonio import read_json, write_json_atomic
from assignlab.paths import in_project
from assignlab.study.run.executors import TRAIN_LOG_NAME
from assignlab.study.run.outcomes import RunOutcome
from assignlab.study.run.plan import PlannedRun


# ------------------------------------------------------------------------------------- places
@dataclass(frozen=True)
class StudyPaths:
    results_dir: Path
    cache_dir: Path

    @classmethod
    def make(cls, results_dir: str | Path = "results", cache_dir: str | Path | None = None) -> "StudyPaths":
        results = in_project(results_dir)
        return cls(results, in_project(cache_dir) if cache_dir is not None else results.parent / "work-cache" / "runs")

    def result_file(self, table: str, run_id: str) -> Path:
        return self.results_dir / "runs" / table / f"{run_id}.json"

    def run_dir(self, run_id: str) -> Path:
        return self.cache_dir / run_id

    def log_file(self, run_id: str) -> Path:
        return self.run_dir(run_id) / TRAIN_LOG_NAME

    @property
    def submitit_dir(self) -> Path:
        return self.cache_dir.parent / "submitit"

    def find_result_elsewhere(self, run_id: str) -> Path | None:
        """A finished copy of the run in any table's folder, or None (damaged copies do not count)."""
        hits = sorted((self.results_dir / "runs").glob(f"*/{run_id}.json"))
        return next((hit for hit in hits if result_is_valid(hit)), None)


# ------------------------------------------------------------------------------- result files
RESULT_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def result_problem(record: Any) -> str | None:
    """What is wrong with a finished run's record (None: nothing): it must be an object whose
    ``metrics.AP`` is a number; the other COCO metrics and ``wall_time_s``, where present, too."""
    if not isinstance(record, dict):
        return f"expected a JSON object at the top level, got {type(record).__name__}"
    if "metrics" not in record:
        return "field 'metrics' is missing"
    metrics = record["metrics"]
    if not isinstance(metrics, dict):
        return f"field 'metrics' is {metrics!r:.60}, not an object"
    if "AP" not in metrics:
        return "field 'metrics.AP' is missing"
    for name in RESULT_METRICS:
        if name in metrics and not _is_number(metrics[name]):
            return f"field 'metrics.{name}' is {metrics[name]!r:.60}, not a number"
    if "wall_time_s" in record and not _is_number(record["wall_time_s"]):
        return f"field 'wall_time_s' is {record['wall_time_s']!r:.60}, not a number"
    return None


def read_result(path: Path) -> dict[str, Any]:
    """A finished run's record from ``path``; ValueError naming the file and what is wrong when it
    is not valid JSON (truncated, damaged) or lacks a numeric ``metrics.AP`` (see :func:`result_problem`)."""
    record = read_json(path)
    problem = result_problem(record)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    return record


def result_is_valid(path: Path) -> bool:
    try:
        read_result(path)
    except (OSError, ValueError):
        return False
    return True


def damaged_name(path: Path) -> Path:
    """Where a damaged ``path`` is moved: ``<name>.damaged-<YYYYmmdd-HHMMSS>`` beside it (never an existing file)."""
    stem = f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    aside, n = path.with_name(stem), 1
    while aside.exists():
        aside, n = path.with_name(f"{stem}-{n}"), n + 1
    return aside


def set_aside_if_damaged(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) when ``path`` is a valid result file; (None, None) when it does not exist;
    (None, message) after a damaged one was moved aside (see :func:`damaged_name`), the message
    naming the file, what is wrong and where it went."""
    for _ in range(3):  # a file replaced while it was read is looked at again
        try:
            before = path.stat()
            return read_result(path), None
        except FileNotFoundError:
            return None, None
        except ValueError as err:
            problem = str(err)
        try:
            now = path.stat()
        except FileNotFoundError:  # another runner moved it aside meanwhile
            return None, None
        if (now.st_ino, now.st_mtime_ns, now.st_size) != (before.st_ino, before.st_mtime_ns, before.st_size):
            continue
        aside = damaged_name(path)
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return None, None
        return None, f"damaged result file {problem}; moved it aside to {aside}"
    raise ValueError(f"{path}: keeps changing while it is read")


def study_record(result: dict[str, Any], run: PlannedRun, profile: str) -> dict[str, Any]:
    """The engine's result with the study's bookkeeping added."""
    return {**result, "table": run.table, "rows": list(run.rows), "run_id": run.run_id, "profile": profile}


def reuse_finished(run: PlannedRun, paths: StudyPaths, profile: str) -> RunOutcome | None:
    """The outcome of a run that needs no training (finished here, in another table, or in the cache).

    A damaged result file (truncated or unreadable JSON, no numeric ``metrics.AP``) in the table's
    folder or the run's training folder is moved aside, said so on stderr, and counts as missing."""
    target = paths.result_file(run.table, run.run_id)
    record, damaged = set_aside_if_damaged(target)
    if damaged:
        print(f"warning: {damaged}; the run counts as missing and is trained (or copied) again",
              file=sys.stderr, flush=True)
    if record is not None:
        rows = record.get("rows")
        if not isinstance(rows, list) or sorted(map(str, rows)) != sorted(run.rows):  # the spec's row labels changed
            write_json_atomic(target, study_record(record, run, profile))
        return RunOutcome(run, "finished", target)
    elsewhere = paths.find_result_elsewhere(run.run_id)
    if elsewhere is not None:
        record = read_result(elsewhere)
    else:
        record, damaged = set_aside_if_damaged(paths.run_dir(run.run_id) / RESULT_NAME)
        if damaged:  # train_run would stop on it; without it, the run resumes from its last checkpoint
            print(f"warning: {damaged}; the run resumes from its checkpoint", file=sys.stderr, flush=True)
    if record is None:
        return None
    write_json_atomic(target, study_record(record, run, profile))
    return RunOutcome(run, "reused", target)


def record_trained(run: PlannedRun, answer: dict[str, Any], paths: StudyPaths, profile: str) -> RunOutcome:
    """The outcome of a task that answered with a result (trained now, or found finished), whose
    result file it writes."""
    target = paths.result_file(run.table, run.run_id)
    write_json_atomic(target, study_record(answer["result"], run, profile))
    return RunOutcome(run, "trained" if answer["state"] == "trained" else "reused", target, paths.log_file(run.run_id))
