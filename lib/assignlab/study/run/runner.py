"""Run a table: plan its runs, reuse finished ones, train the rest (:func:`run_table`); the
package docstring (:mod:`assignlab.study.run`) says where things go."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm  # a widget bar in a notebook, text on a terminal

from assignlab.engine.execution import emulated_precision_reason
from assignlab.jsonio import remove_stale_tmp_files
from assignlab.study.run import locks
from assignlab.study.run.executors import EXECUTORS, SlurmSettings, SubmititRunner, load_slurm_settings
from assignlab.study.run.outcomes import RunOutcome, TableRunReport
from assignlab.study.run.owners import look_at_held_runs, split_claimed, wait_for_other_owners
from assignlab.study.run.plan import PlannedRun, plan_runs
from assignlab.study.run.pool import default_threads, train_locally, train_request
from assignlab.study.run.store import StudyPaths, record_trained, reuse_finished
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.spec import TableSpec


def run_table(
    table: str | TableSpec,
    profile: str = "cpu",
    seeds: Any = None,
    workers: int = 2,
    threads_per_worker: int | None = None,
    executor: str = "local",
    results_dir: str | Path = "results",
    cache_dir: str | Path | None = None,
    data_root: str | None = None,
    device: str = "cpu",
    max_steps_per_epoch: int | None = None,
    progress: bool = True,
    slurm: SlurmSettings | dict | str | Path | None = None,
    stale_after_s: float | None = None,
    base: str | None = None,
    wait_for_others: bool = True,
) -> TableRunReport:
    """Make every run of ``table`` at ``profile`` finished, training only what is missing.

    Args:
        seeds: None (the spec's seeds), an int, a list or ``"0,1"``.
        workers: training processes at once; ``threads_per_worker`` torch threads each
            (default: the machine's cores divided among the workers).
        executor: "local" (worker processes on this machine) or "slurm" (one submitit job per run;
            ``workers`` is then ignored: Slurm decides how many run at once).
        data_root: replaces ``data.root`` of every run (part of the run id).
        slurm: the slurm executor's settings: a :class:`SlurmSettings`, a mapping, or a JSON/YAML
            file; unset fields come from ``ASSIGNLAB_SLURM_*`` variables (README: "Running the study on a Slurm cluster").
            Jobs that ask for GPUs train on "cuda".
        stale_after_s: a claim whose heartbeat is older is taken over (default:
            ``$ASSIGNLAB_STALE_CLAIM_S`` or 10 minutes).
        base: run the table on this base detector instead of its own (``TableSpec.on_base``;
            the runs and result files are the renamed table's).
    Runs that another runner is training (a live claim) are waited for and copied, not trained;
    with ``wait_for_others=False`` they are not waited for but listed in the report's ``deferred``.
    Returns the report; failed runs are listed there (and printed) with their log paths.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r} (available: {', '.join(EXECUTORS)})")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    settings = load_slurm_settings(slurm) if executor == "slurm" else None
    timeout = locks.stale_after(stale_after_s)
    spec = get_table(table).on_base(base)
    paths = StudyPaths.make(results_dir, cache_dir)
    threads = threads_per_worker or default_threads(workers)
    start = time.time()
    table_dir = paths.results_dir / "runs" / spec.name
    if table_dir.is_dir():  # temporary files of a runner killed while it wrote a result
        remove_stale_tmp_files(table_dir)
    report = TableRunReport(spec.name, profile)
    pending: list[PlannedRun] = []
    for run in plan_runs(spec, profile, seeds, data_root):
        outcome = reuse_finished(run, paths, profile)
        if outcome is None:
            pending.append(run)
        else:
            report.outcomes.append(outcome)
    if pending and settings is None:
        warn_slow_precision(pending, device)
    while pending:
        to_train, busy = split_claimed(pending, paths, timeout)
        if to_train and settings is not None:
            outcomes, busy_now = train_on_cluster(to_train, paths, profile, settings, device, max_steps_per_epoch,
                                                  threads_per_worker, timeout, progress)
        elif to_train:
            outcomes, busy_now = train_locally(to_train, paths, profile, workers, threads, device,
                                               max_steps_per_epoch, timeout, progress)
        else:
            outcomes, busy_now = [], []
        report.outcomes += outcomes
        if wait_for_others:
            pending = wait_for_other_owners(busy + busy_now, paths, profile, timeout, report, progress)
        else:
            pending, held = look_at_held_runs(busy + busy_now, paths, profile, timeout, report)
            report.deferred += held
    report.wall_time_s = time.time() - start
    if report.failed or progress:
        print(report.summary(), file=sys.stderr if report.failed else sys.stdout, flush=True)
    return report


def warn_slow_precision(runs: Sequence[PlannedRun], device: str) -> None:
    """Say once, before training, when runs use a precision this machine only emulates."""
    for precision in sorted({run.config.train.precision for run in runs}):
        reason = emulated_precision_reason(precision, torch.device(device).type)
        if reason:
            count = sum(run.config.train.precision == precision for run in runs)
            warnings.warn(f"{count} run(s) to train: {reason}", stacklevel=3)


def train_on_cluster(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, settings: SlurmSettings,
                     device: str, max_steps_per_epoch: int | None, threads: int | None, stale_after_s: float,
                     progress: bool) -> tuple[list[RunOutcome], list[PlannedRun]]:
    """One submitit job per run; waits for them: (outcomes, runs found claimed by another owner)."""
    device = "cuda" if settings.gpus_per_node > 0 else device
    by_id = {run.run_id: run for run in runs}
    runner = SubmititRunner(settings, Path(settings.folder) if settings.folder else paths.submitit_dir)
    runner.submit({run.run_id: train_request(run, paths, device, max_steps_per_epoch, stale_after_s, threads=threads,
                                             gpus_per_node=settings.gpus_per_node, nodes=settings.nodes,
                                             rdzv_port=settings.rdzv_port) for run in runs})
    outcomes, busy = [], []
    with tqdm(total=len(runs), desc=f"{runs[0].table}: {settings.cluster} jobs", unit="run",
              disable=not progress) as bar:
        for end in runner.wait():
            run = by_id[end.key]
            if end.state == "busy":
                busy.append(run)
                continue
            if end.state in ("trained", "finished"):
                outcomes.append(record_trained(run, {"state": end.state, "result": end.result}, paths, profile))
            else:
                outcomes.append(RunOutcome(run, "failed", None, paths.log_file(run.run_id),
                                           f"{end.error}; job log: {end.job_log}"))
            bar.update(1)
    return outcomes, busy
