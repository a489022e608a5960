"""Run a table: plan its runs, reuse finished ones, train the rest in parallel worker processes.

Files (``results_dir`` and ``cache_dir`` are parameters; the defaults are ``results/`` and
``work-cache/runs/`` beside it)::

    results/runs/<table>/<run-id>.json   a finished run: the engine's result.json plus the table,
                                         the rows it serves, its run id and profile (small; committed)
    work-cache/runs/<run-id>/            the training folder: checkpoint.pth, log.jsonl, train.log
                                         (stdout/stderr), claim.json while a worker trains it,
                                         error.json when it failed (large; never committed)
    work-cache/submitit/<job-id>/        submitit's job files and logs (executor "slurm")

A run id is ``<config hash>-s<seed>``: the same config and seed in two tables is one run,
trained once; the second table copies the first table's result file. A run killed midway resumes
from its last checkpoint (``train_run`` does that from its folder); a run that raises is reported
with its log path and the others go on.

Executors (:mod:`assignlab.study.executors`): "local" trains in worker processes here; "slurm"
submits one submitit job per run. Many runners may share one results store: each run is trained
by whoever claims its folder first (:mod:`assignlab.study.claims`); the others wait for it and
copy its result.

Workers are spawned processes: a script that calls :func:`run_table` must guard its top level
with ``if __name__ == "__main__":`` (notebooks and ``python -m assignlab study`` need nothing).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from assignlab.config import Config
from assignlab.jsonio import read_json, remove_stale_tmp_files, write_json_atomic
from assignlab.study import claims
from assignlab.study.claims import CLAIM_NAME
from assignlab.study.executors import (
    ERROR_NAME,
    EXECUTORS,
    TRAIN_LOG_NAME,
    SlurmSettings,
    SubmititRunner,
    TrainRequest,
    TrainTask,
    load_slurm_settings,
)
from assignlab.study.specs import TableSpec, get_table

WAIT_POLL_S = 2.0  # how often a runner looks at runs that another owner trains


# ----------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class PlannedRun:
    """One (config, seed) of a table, with the rows it serves (several rows may share a run)."""

    table: str
    rows: tuple[str, ...]
    config: Config
    seed: int

    @property
    def run_id(self) -> str:
        return run_id(self.config, self.seed)


def run_id(config: Config, seed: int) -> str:
    return f"{config.stable_hash()}-s{seed}"


def parse_seeds(seeds: Any) -> tuple[int, ...] | None:
    """None, an int, a sequence of ints or a string like ``"0,1,2"`` -> tuple of ints (or None)."""
    if seeds is None:
        return None
    if isinstance(seeds, str):
        seeds = [s for s in seeds.replace("[", "").replace("]", "").split(",") if s.strip()]
    elif isinstance(seeds, int):
        seeds = [seeds]
    try:
        parsed = tuple(int(s) for s in seeds)
    except (TypeError, ValueError):
        raise ValueError(f"seeds must be integers, got {seeds!r}") from None
    if not parsed:
        raise ValueError("seeds is empty")
    return parsed


def plan_runs(table: str | TableSpec, profile: str, seeds: Any = None, data_root: str | None = None,
              base: str | None = None) -> list[PlannedRun]:
    """The table's runs at ``profile``: one per distinct (config, seed), in row order. ``base``
    (None: the table's own) runs the table on another base detector (``TableSpec.on_base``)."""
    spec = get_table(table).on_base(base)
    chosen = parse_seeds(seeds) or spec.seeds(profile)
    by_id: dict[str, PlannedRun] = {}
    for row, config in spec.row_configs(profile, data_root):
        for seed in chosen:
            planned = PlannedRun(spec.name, (row.label,), config, seed)
            if planned.run_id in by_id:
                earlier = by_id[planned.run_id]
                planned = PlannedRun(spec.name, earlier.rows + (row.label,), config, seed)
            by_id[planned.run_id] = planned
    return list(by_id.values())


# ------------------------------------------------------------------------------------- places
@dataclass(frozen=True)
class StudyPaths:
    results_dir: Path
    cache_dir: Path

    @classmethod
    def make(cls, results_dir: str | Path = "results", cache_dir: str | Path | None = None) -> "StudyPaths":
        results = Path(results_dir)
        return cls(results, Path(cache_dir) if cache_dir is not None else results.parent / "work-cache" / "runs")

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


# ------------------------------------------------------------------------------------ workers
def _init_worker(threads: int, parent_pid: int | None = None) -> None:
    import torch

    if parent_pid is not None:
        _die_with_parent(parent_pid)
    torch.set_num_threads(threads)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: this worker gets SIGKILL when the runner process that started it ends. A runner killed
    with SIGKILL cannot stop its workers, and a notebook's kernel runs in a session of its own, so
    killing ``make reproduce``'s process group would otherwise leave them training on as orphans
    (holding their claims) and then waiting forever for tasks that never come."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the runner ended before prctl took effect
        os._exit(1)


def train_in_worker(request: TrainRequest) -> dict[str, Any]:
    """Claim and train (or resume) one run in a worker process (see :class:`TrainTask`)."""
    return TrainTask(request)()


# ------------------------------------------------------------------------------------- report
@dataclass
class RunOutcome:
    run: PlannedRun
    state: str                       # "finished" (already there), "reused" (also: trained by another
                                     # runner meanwhile), "trained", "failed"
    result_file: Path | None = None
    log_file: Path | None = None
    error: str | None = None


@dataclass
class TableRunReport:
    table: str
    profile: str
    outcomes: list[RunOutcome] = field(default_factory=list)
    wall_time_s: float = 0.0
    deferred: list[PlannedRun] = field(default_factory=list)  # held by another runner, not waited for

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for outcome in self.outcomes:
            out[outcome.state] = out.get(outcome.state, 0) + 1
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts().items()))
        lines = [f"{self.table} ({self.profile}): {len(self.outcomes)} runs: {counts} in {self.wall_time_s:.0f} s"]
        if self.deferred:
            lines.append(f"  {len(self.deferred)} run(s) still being trained by another runner")
        lines += [f"  FAILED {o.run.run_id} ({', '.join(o.run.rows)}, seed {o.run.seed}): {o.error}; log: {o.log_file}"
                  for o in self.failed]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------- runner
def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


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
    timeout = claims.stale_after(stale_after_s)
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
        outcome = _reuse(run, paths, profile)
        if outcome is None:
            pending.append(run)
        else:
            report.outcomes.append(outcome)
    while pending:
        to_train, busy = _split_claimed(pending, paths, timeout)
        if to_train and settings is not None:
            outcomes, busy_now = _train_on_cluster(to_train, paths, profile, settings, device, max_steps_per_epoch,
                                                   threads_per_worker, timeout, progress)
        elif to_train:
            outcomes, busy_now = _train(to_train, paths, profile, workers, threads, device, max_steps_per_epoch,
                                        timeout, progress)
        else:
            outcomes, busy_now = [], []
        report.outcomes += outcomes
        if wait_for_others:
            pending = _wait_for_other_owners(busy + busy_now, paths, profile, timeout, report, progress)
        else:
            pending, held = _look_at_held_runs(busy + busy_now, paths, profile, timeout, report)
            report.deferred += held
    report.wall_time_s = time.time() - start
    if report.failed or progress:
        print(report.summary(), file=sys.stderr if report.failed else sys.stdout, flush=True)
    return report


def _reuse(run: PlannedRun, paths: StudyPaths, profile: str) -> RunOutcome | None:
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
        record, damaged = set_aside_if_damaged(paths.run_dir(run.run_id) / "result.json")
        if damaged:  # train_run would stop on it; without it, the run resumes from its last checkpoint
            print(f"warning: {damaged}; the run resumes from its checkpoint", file=sys.stderr, flush=True)
    if record is None:
        return None
    write_json_atomic(target, study_record(record, run, profile))
    return RunOutcome(run, "reused", target)


def _request(run: PlannedRun, paths: StudyPaths, device: str, max_steps_per_epoch: int | None,
             stale_after_s: float, **launch: Any) -> TrainRequest:
    return TrainRequest(run.config.to_json(), run.seed, str(paths.run_dir(run.run_id)), device, max_steps_per_epoch,
                        stale_after_s=stale_after_s, **launch)


def _train(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, workers: int, threads: int, device: str,
           max_steps_per_epoch: int | None, stale_after_s: float,
           progress: bool) -> tuple[list[RunOutcome], list[PlannedRun]]:
    """Train ``runs`` in a pool of worker processes: (outcomes, runs found claimed by another owner).

    A worker that dies (killed, out of memory) breaks the pool: the runs it was training (their
    claim names a process that has ended) are reported failed, and the runs not started yet go to a
    new pool.
    """
    outcomes: list[RunOutcome] = []
    busy: list[PlannedRun] = []
    remaining = list(runs)
    bar = tqdm(total=len(runs), desc=f"{runs[0].table}: training", unit="run", disable=not progress)
    while remaining:
        finished, interrupted, claimed = _train_in_pool(remaining, paths, profile, workers, threads, device,
                                                        max_steps_per_epoch, stale_after_s, bar)
        outcomes += finished
        busy += claimed
        died = [run for run in interrupted if _claimed_by_ended_process(paths.run_dir(run.run_id))]
        for run in died:
            (paths.run_dir(run.run_id) / CLAIM_NAME).unlink(missing_ok=True)
            outcomes.append(RunOutcome(run, "failed", None, paths.log_file(run.run_id),
                                       "its worker process died (killed or out of memory); it resumes on the next run"))
        remaining = [run for run in interrupted if run not in died]
        if remaining and not finished and not died and not claimed:
            reason = ("worker processes died before starting a run (a script that calls run_table needs "
                      "`if __name__ == '__main__':`, as spawned workers import it)")
            outcomes += [RunOutcome(run, "failed", None, paths.log_file(run.run_id), reason) for run in remaining]
            break
        bar.update(len(died))
    bar.close()
    return outcomes, busy


def _claimed_by_ended_process(run_dir: Path) -> bool:
    held = claims.read_claim(run_dir)
    return held is not None and held.host == socket.gethostname() and not claims.pid_alive(held.pid)


def _train_in_pool(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, workers: int, threads: int,
                   device: str, max_steps_per_epoch: int | None, stale_after_s: float,
                   bar) -> tuple[list[RunOutcome], list[PlannedRun], list[PlannedRun]]:
    """(outcomes of the runs that ended, runs interrupted by a broken pool, runs claimed by another owner)."""
    outcomes, interrupted, claimed = [], [], []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(runs)), mp_context=context,
                             initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(train_in_worker, _request(run, paths, device, max_steps_per_epoch, stale_after_s)): run
                   for run in runs}
        for future in as_completed(futures):
            run = futures[future]
            log = paths.log_file(run.run_id)
            try:
                answer = future.result()
            except BrokenProcessPool:
                interrupted.append(run)
                continue
            except Exception as err:  # one failed run must not stop the others
                outcomes.append(RunOutcome(run, "failed", None, log, f"{type(err).__name__}: {str(err)[:300]}"))
            else:
                if answer["state"] == "busy":
                    claimed.append(run)
                    continue
                outcomes.append(_trained(run, answer, paths, profile))
            bar.update(1)
    return outcomes, interrupted, claimed


def _trained(run: PlannedRun, answer: dict[str, Any], paths: StudyPaths, profile: str) -> RunOutcome:
    """The outcome of a task that answered with a result (trained now, or found finished)."""
    target = paths.result_file(run.table, run.run_id)
    write_json_atomic(target, study_record(answer["result"], run, profile))
    return RunOutcome(run, "trained" if answer["state"] == "trained" else "reused", target, paths.log_file(run.run_id))


def _train_on_cluster(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, settings: SlurmSettings,
                      device: str, max_steps_per_epoch: int | None, threads: int | None, stale_after_s: float,
                      progress: bool) -> tuple[list[RunOutcome], list[PlannedRun]]:
    """One submitit job per run; waits for them: (outcomes, runs found claimed by another owner)."""
    device = "cuda" if settings.gpus_per_node > 0 else device
    by_id = {run.run_id: run for run in runs}
    runner = SubmititRunner(settings, Path(settings.folder) if settings.folder else paths.submitit_dir)
    runner.submit({run.run_id: _request(run, paths, device, max_steps_per_epoch, stale_after_s, threads=threads,
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
                outcomes.append(_trained(run, {"state": end.state, "result": end.result}, paths, profile))
            else:
                outcomes.append(RunOutcome(run, "failed", None, paths.log_file(run.run_id),
                                           f"{end.error}; job log: {end.job_log}"))
            bar.update(1)
    return outcomes, busy


# ------------------------------------------------------------------------ other owners' runs
def _split_claimed(runs: Sequence[PlannedRun], paths: StudyPaths,
                   stale_after_s: float) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(runs to train here, runs another owner holds a live claim on)."""
    free, held = [], []
    for run in runs:
        claim = claims.read_claim(paths.run_dir(run.run_id))
        live = claim is not None and claim.owner != claims.Owner.current().token and claim.stale_reason(stale_after_s) is None
        (held if live else free).append(run)
    return free, held


def _look_at_held_runs(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, stale_after_s: float,
                       report: TableRunReport) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """One look at runs other owners hold: a finished one is copied ("reused") into ``report``.
    Returns (runs to train here: their claim was released without a result or went stale, runs still held)."""
    released, held = [], []
    for run in runs:
        outcome = _reuse(run, paths, profile)
        claim = claims.read_claim(paths.run_dir(run.run_id)) if outcome is None else None
        if outcome is not None:
            report.outcomes.append(outcome)
        elif claim is None or claim.stale_reason(stale_after_s) is not None:
            released.append(run)
        else:
            held.append(run)
    return released, held


def _wait_for_other_owners(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, stale_after_s: float,
                           report: TableRunReport, progress: bool) -> list[PlannedRun]:
    """Wait while other owners train ``runs`` (see :func:`_look_at_held_runs`); returns the runs to train here."""
    waiting, again = list(runs), []
    if waiting and progress:
        print(f"waiting for {len(waiting)} run(s) trained by other runners", flush=True)
    while waiting:
        released, waiting = _look_at_held_runs(waiting, paths, profile, stale_after_s, report)
        again += released
        if waiting:
            time.sleep(WAIT_POLL_S)
    return again


# ------------------------------------------------------------------------------------- status
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
    if elsewhere is not None or result_is_valid(folder / "result.json"):
        return "finished", f"in {elsewhere or folder / 'result.json'} (copied on the next run of the table)"
    held = claims.read_claim(folder)
    stale = held.stale_reason(claims.stale_after(stale_after_s)) if held is not None else None
    if held is not None and stale is None:
        return "running", f"{held.where()}; log: {folder / TRAIN_LOG_NAME}"
    if (folder / ERROR_NAME).exists():
        try:
            error = read_json(folder / ERROR_NAME).get("error", "")
        except ValueError:
            error = "unreadable error.json"
        return "failed", f"{error}; log: {folder / TRAIN_LOG_NAME}"
    if (folder / "checkpoint.pth").exists():
        note = f" (stale claim of {held.where()}: {stale})" if held is not None else ""
        return "interrupted", f"resumable from {folder / 'checkpoint.pth'}{note}"
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

