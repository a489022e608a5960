"""``study verify``: retrain committed runs on this machine and compare them with the committed results.

The chosen runs of a table (its rows, at the chosen seeds) are trained into a scratch study
(``work-cache/verify/<table>/``: its own results and training folders, so nothing under
``results/runs/`` is touched and nothing is reused from the main cache); a rerun resumes there like
``study run`` (a kept rerun made by other code is reported, and is retrained once its folder is
deleted). Each rerun is compared with the committed result of the same run id.

The comparison and the tolerance rule (2 SD of the row's committed seeds) are
:mod:`assignlab.study.report.verification`'s.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from assignlab.engine.machine import machine_slug
from assignlab.engine.run import git_commit
from assignlab.paths import in_project
from assignlab.study.report.verification import committed_record, compare
from assignlab.study.run.plan import PlannedRun, plan_runs
from assignlab.study.run.runner import run_table
from assignlab.study.run.store import StudyPaths, read_result
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.profiles import table_file_stem
from assignlab.study.tables.spec import TableSpec


def chosen_spec(table: str, rows: str) -> TableSpec:
    """The table restricted to ``rows``: "all", "first", one row label, or several separated by
    ";" (labels may contain commas). Claims are dropped: verifying compares runs, it does not
    test them."""
    spec = get_table(table)
    labels_of_table = [row.label for row in spec.rows]
    if rows == "all":
        chosen = spec.rows
    elif rows == "first":
        chosen = spec.rows[:1]
    else:
        labels = [rows.strip()] if rows.strip() in labels_of_table else \
            [label.strip() for label in rows.split(";") if label.strip()]
        unknown = [label for label in labels if label not in labels_of_table]
        if unknown or not labels:
            raise ValueError(f"--rows: table {spec.name} has no row(s) {unknown or rows!r}; its rows are "
                             f"{labels_of_table} (or use 'all' / 'first'; separate several with ';')")
        chosen = tuple(row for row in spec.rows if row.label in labels)
    return dataclasses.replace(spec, rows=tuple(chosen), claims=())


def scratch_paths(table: str, committed: StudyPaths, scratch: str | Path | None = None) -> StudyPaths:
    """The scratch study of ``table``: ``<scratch or work-cache/verify/<table>>/results`` and ``.../runs``.

    Raises ValueError when it would share a folder with the committed results or the main training
    cache (the reruns would then be the committed runs themselves, or overwrite them)."""
    root = (in_project(scratch) if scratch is not None else in_project("work-cache") / "verify" / table).resolve()
    paths = StudyPaths(root / "results", root / "runs")
    for mine in (paths.results_dir, paths.cache_dir):
        for theirs in (committed.results_dir.resolve(), committed.cache_dir.resolve()):
            if mine == theirs or theirs in mine.parents or mine in theirs.parents:
                raise ValueError(f"--scratch {root}: its folder {mine} overlaps {theirs}, which holds committed "
                                 "results or the study's training cache; choose a folder of its own")
    return paths


def estimated_seconds(runs: list[PlannedRun], committed: dict[str, dict], scratch: StudyPaths, workers: int) -> float:
    """Committed wall time of the runs the scratch study has not finished, spread over ``workers``."""
    todo = [committed[run.run_id].get("wall_time_s", 0.0) for run in runs
            if not scratch.result_file(run.table, run.run_id).is_file()]
    return sum(todo) / max(1, min(workers, len(todo)))


def warn_if_older_code(reruns: dict[str, dict[str, Any]], scratch: StudyPaths) -> None:
    """Say so when a rerun kept in the scratch folder was trained by other code than the checkout's
    (delete the folder to retrain it). ``reruns``: the record of each run id."""
    here = git_commit()
    for run_id, record in reruns.items():
        made_by = record.get("git_commit")
        if made_by != here:
            print(f"warning: the rerun {run_id} in {scratch.results_dir.parent} was trained by commit "
                  f"{made_by}, not by this checkout ({here}); delete that folder to retrain it", file=sys.stderr)


def verify_table(table: str, rows: str = "all", seeds: Any = 0, profile: str = "cpu", workers: int = 2,
                 threads_per_worker: int | None = None, results_dir: str | Path = "results",
                 scratch: str | Path | None = None, save: bool = False, progress: bool = True,
                 max_steps_per_epoch: int | None = None) -> tuple[pd.DataFrame, Path | None]:
    """Retrain the chosen runs in the scratch study, compare them with the committed ones.

    Returns the comparison (``COLUMNS``) and, with ``save``, the CSV written to
    ``results/verify/<table>-<machine>.csv``. Raises ValueError (naming the file) when a chosen run
    has no committed result, before anything is trained.
    """
    spec = chosen_spec(table, rows)
    committed_paths = StudyPaths.make(results_dir)
    runs = plan_runs(spec, profile, seeds)
    committed = {run.run_id: committed_record(committed_paths, run) for run in runs}
    paths = scratch_paths(spec.name, committed_paths, scratch)
    seconds = estimated_seconds(runs, committed, paths, workers)
    print(f"verify {spec.name} at {profile}: {len(runs)} run(s) ({', '.join(r.run_id for r in runs)}) into "
          f"{paths.results_dir.parent}; about {seconds / 60:.0f} min on {workers} worker(s) at the committed "
          f"runs' speed", flush=True)
    report = run_table(spec, profile, seeds, workers=workers, threads_per_worker=threads_per_worker,
                       results_dir=paths.results_dir, cache_dir=paths.cache_dir, progress=progress,
                       max_steps_per_epoch=max_steps_per_epoch)
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} rerun(s) failed; see the logs listed above")
    reruns = {run.run_id: read_result(paths.result_file(run.table, run.run_id)) for run in runs}
    warn_if_older_code(reruns, paths)
    machine = machine_slug()
    comparison = compare(runs, committed, reruns, committed_paths, machine)
    saved = None
    if save:
        saved = committed_paths.results_dir / "verify" / f"{table_file_stem(spec.name, profile)}-{machine}.csv"
        saved.parent.mkdir(parents=True, exist_ok=True)
        comparison.to_csv(saved, index=False, float_format="%.4f")
    return comparison, saved


