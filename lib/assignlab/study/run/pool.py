"""Training a table's runs in local worker processes (executor "local").

Workers are spawned processes: a script that calls ``run_table`` must guard its top level with
``if __name__ == "__main__":``, as spawned workers import it.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm  # a widget bar in a notebook, text on a terminal

from assignlab.study.run import locks
from assignlab.study.run.executors import TrainRequest, TrainTask
from assignlab.study.run.locks import CLAIM_NAME
from assignlab.study.run.outcomes import RunOutcome
from assignlab.study.run.plan import PlannedRun
from assignlab.study.run.store import StudyPaths, record_trained


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def train_request(run: PlannedRun, paths: StudyPaths, device: str, max_steps_per_epoch: int | None,
                  stale_after_s: float, **launch: Any) -> TrainRequest:
    """What a worker or job needs to train ``run`` in its training folder (``launch``: the processes)."""
    return TrainRequest(run.config.to_json(), run.seed, str(paths.run_dir(run.run_id)), device, max_steps_per_epoch,
                        stale_after_s=stale_after_s, **launch)


# ------------------------------------------------------------------------------------ workers
def _init_worker(threads: int, parent_pid: int | None = None) -> None:
    import torch

    from assignlab.engine import run  # the training code this worker runs, loaded now ...

    if parent_pid is not None:
        _die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    run.pin_source()  # ... and the commit and modification its runs record, taken at the same time


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


# --------------------------------------------------------------------------------------- pool
def train_locally(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, workers: int, threads: int,
                  device: str, max_steps_per_epoch: int | None, stale_after_s: float,
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
    held = locks.read_claim(run_dir)
    return held is not None and held.host == socket.gethostname() and not locks.pid_alive(held.pid)


def _train_in_pool(runs: Sequence[PlannedRun], paths: StudyPaths, profile: str, workers: int, threads: int,
                   device: str, max_steps_per_epoch: int | None, stale_after_s: float,
                   bar) -> tuple[list[RunOutcome], list[PlannedRun], list[PlannedRun]]:
    """(outcomes of the runs that ended, runs interrupted by a broken pool, runs claimed by another owner)."""
    outcomes, interrupted, claimed = [], [], []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(runs)), mp_context=context,
                             initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(train_in_worker, train_request(run, paths, device, max_steps_per_epoch,
                                                              stale_after_s)): run
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
                outcomes.append(record_trained(run, answer, paths, profile))
            bar.update(1)
    return outcomes, interrupted, claimed
