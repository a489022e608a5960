"""Runs that another owner (a runner elsewhere, a Slurm job) holds a live claim on: wait for them
and copy their results, or list them as deferred."""
from __future__ import annotations

import time
from typing import Sequence

from assignlab.study.run import locks
from assignlab.study.run.outcomes import TableRunReport
from assignlab.study.run.plan import PlannedRun
from assignlab.study.run.store import StudyPaths, reuse_finished

WAIT_POLL_S = 2.0  # how often a runner looks at runs that another owner trains


def split_claimed(runs: Sequence[PlannedRun], paths: StudyPaths,
                  stale_after_s: float) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(runs to train here, runs another owner holds a live claim on)."""
    free, held = [], []
    for run in runs:
        claim = locks.read_claim(paths.run_dir(run.run_id))
        live = claim is not None and claim.owner != locks.Owner.current().token and claim.stale_reason(stale_after_s) is None
        (held if live else free).append(run)
    return free, held


def look_at_held_runs(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, stale_after_s: float,
                      report: TableRunReport) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """One look at runs other owners hold: a finished one is copied ("reused") into ``report``.
    Returns (runs to train here: their claim was released without a result or went stale, runs still held)."""
    released, held = [], []
    for run in runs:
        outcome = reuse_finished(run, paths, profile)
        claim = locks.read_claim(paths.run_dir(run.run_id)) if outcome is None else None
        if outcome is not None:
            report.outcomes.append(outcome)
        elif claim is None or claim.stale_reason(stale_after_s) is not None:
            released.append(run)
        else:
            held.append(run)
    return released, held


def wait_for_other_owners(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, stale_after_s: float,
                          report: TableRunReport, progress: bool) -> list[PlannedRun]:
    """Wait while other owners train ``runs`` (see :func:`look_at_held_runs`); returns the runs to train here."""
    waiting, again = list(runs), []
    if waiting and progress:
        print(f"waiting for {len(waiting)} run(s) trained by other runners", flush=True)
    while waiting:
        released, waiting = look_at_held_runs(waiting, paths, profile, stale_after_s, report)
        again += released
        if waiting:
            time.sleep(WAIT_POLL_S)
    return again
