"""The one call a table notebook makes: train what is missing, then aggregate."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from assignlab.study.aggregate import TableResult, aggregate_table
from assignlab.study.runner import run_table
from assignlab.study.specs import TableSpec, get_table


def reproduce_table(
    table: str | TableSpec,
    profile: str = "cpu",
    seeds: Any = None,
    workers: int = 2,
    executor: str = "local",
    data_root: str | None = None,
    device: str = "cpu",
    results_dir: str | Path = "results",
    cache_dir: str | Path | None = None,
    threads_per_worker: int | None = None,
    progress: bool = True,
) -> TableResult:
    """Run every missing run of ``table`` (see :func:`~assignlab.study.runner.run_table`), then write
    and return its aggregated table (see :func:`~assignlab.study.aggregate.aggregate_table`).

    Failed runs do not stop the aggregation: the table shows what finished, the report lists the
    failures with their log paths.
    """
    spec = get_table(table)
    report = run_table(spec, profile=profile, seeds=seeds, workers=workers, threads_per_worker=threads_per_worker,
                       executor=executor, results_dir=results_dir, cache_dir=cache_dir, data_root=data_root,
                       device=device, progress=progress)
    return aggregate_table(spec, profile, seeds, results_dir, data_root, report=report)
