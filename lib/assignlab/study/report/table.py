"""The one call a table notebook makes: train what is missing, then aggregate."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from assignlab.study.report.aggregate import TableResult, aggregate_table
from assignlab.study.run.executors import SlurmSettings
from assignlab.study.run.runner import run_table
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.spec import TableSpec


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
    slurm: SlurmSettings | dict | str | Path | None = None,
    stale_after_s: float | None = None,
    base: str | None = None,
) -> TableResult:
    """Run every missing run of ``table`` (see :func:`~assignlab.study.run.runner.run_table`), then write
    and return its aggregated table (see :func:`~assignlab.study.report.aggregate.aggregate_table`).

    ``executor="slurm"`` trains each run as a Slurm job; ``slurm`` (settings, a mapping or a JSON/YAML
    file; else ``ASSIGNLAB_SLURM_*`` variables) says where (README: "Running the study on a Slurm cluster").
    Failed runs do not stop the aggregation: the table shows what finished, the report lists the
    failures with their log paths.

    ``base`` runs the table on another base detector than its own (e.g. an Align-DETR table, on
    DINO by default, on ``"two_stage_deformable"``): the runs differ (so do their ids) and the
    files are named ``<table>_on_<base>``. None or the table's own base: the table as specified.
    """
    spec = get_table(table).on_base(base)
    report = run_table(spec, profile=profile, seeds=seeds, workers=workers, threads_per_worker=threads_per_worker,
                       executor=executor, results_dir=results_dir, cache_dir=cache_dir, data_root=data_root,
                       device=device, progress=progress, slurm=slurm, stale_after_s=stale_after_s)
    return aggregate_table(spec, profile, seeds, results_dir, data_root, report=report)


def reproduce_tables(tables: Sequence[str | TableSpec], profile: str = "cpu", seeds: Any = None,
                     results_dir: str | Path = "results", data_root: str | None = None, base: str | None = None,
                     **training: Any) -> Iterator[TableResult]:
    """:func:`reproduce_table` for each of ``tables`` in turn, except that a table whose last missing
    runs another runner is training is put off until after the others, so that this runner trains
    instead of waiting. Yields each table's result once all its runs have ended; ``training`` takes
    the other arguments of :func:`reproduce_table`. A run of a put-off table that failed is tried once
    more when the table is taken up again."""
    later = []
    for spec in [get_table(table).on_base(base) for table in tables]:
        report = run_table(spec, profile, seeds, results_dir=results_dir, data_root=data_root,
                           wait_for_others=False, **training)
        if report.deferred:
            print(f"{spec.name}: {len(report.deferred)} run(s) being trained by another runner; "
                  "back to it after the other tables", flush=True)
            later.append(spec)
        else:
            yield aggregate_table(spec, profile, seeds, results_dir, data_root, report=report)
    for spec in later:
        yield reproduce_table(spec, profile, seeds, results_dir=results_dir, data_root=data_root, **training)
