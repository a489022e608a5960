"""Reruns of committed runs against the committed results (``study verify``): the comparison,
its one-line verdict per table, and the lines ``results/README.md`` shows for saved verifications.

Tolerance rule: a run reproduces within seed noise when |AP_new - AP_committed| <= 2 SD, where SD
is the sample standard deviation of the committed AP over the seeds of the same row (same config).
A row with fewer than two committed seeds has no spread to judge against ("no spread").
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from assignlab.paths import in_project
from assignlab.study.run.plan import PlannedRun
from assignlab.study.run.store import StudyPaths, read_result

TOLERANCE_SDS = 2.0
COLUMNS = ["table", "row", "seed", "run_id", "committed_AP", "new_AP", "delta_AP", "row_sd", "tolerance",
           "committed_AP50", "new_AP50", "committed_curve", "new_curve", "verdict", "machine", "committed_commit",
           "new_commit"]


def committed_record(paths: StudyPaths, run: PlannedRun) -> dict[str, Any]:
    """The committed result of ``run``; ValueError naming the file when it is missing or damaged."""
    path = paths.result_file(run.table, run.run_id)
    if not path.is_file():
        raise ValueError(f"{path}: no committed result for run {run.run_id} (row {', '.join(run.rows)}, "
                         f"seed {run.seed}): there is nothing to verify it against")
    return read_result(path)


def row_spread(paths: StudyPaths, run: PlannedRun) -> float:
    """Sample SD of the committed AP over every committed seed of ``run``'s config (NaN below two)."""
    config_hash = run.config.stable_hash()
    values = [float(read_result(path)["metrics"]["AP"])
              for path in sorted((paths.results_dir / "runs" / run.table).glob(f"{config_hash}-s*.json"))]
    return statistics.stdev(values) if len(values) >= 2 else float("nan")


def curve_of(record: dict[str, Any]) -> str:
    """The AP after each evaluated epoch, counted from 1, e.g. ``"e2 16.49 / e4 30.31 / e5 34.31"``."""
    return " / ".join(f"e{point['epoch'] + 1} {point['AP']:.2f}" for point in record.get("curve", []) if "AP" in point)


def compare(runs: list[PlannedRun], committed: dict[str, dict[str, Any]], reruns: dict[str, dict[str, Any]],
            committed_paths: StudyPaths, machine: str) -> pd.DataFrame:
    """One line per run: committed and new AP, AP50, curves, difference, tolerance and verdict.
    ``committed``, ``reruns``: the committed and the new record of each run id."""
    lines = []
    for run in runs:
        old, new = committed[run.run_id], reruns[run.run_id]
        sd = row_spread(committed_paths, run)
        delta = float(new["metrics"]["AP"]) - float(old["metrics"]["AP"])
        tolerance = TOLERANCE_SDS * sd
        verdict = "no spread" if sd != sd else ("within seed noise" if abs(delta) <= tolerance else "outside")
        lines.append({
            "table": run.table, "row": "; ".join(run.rows), "seed": run.seed, "run_id": run.run_id,
            "committed_AP": float(old["metrics"]["AP"]), "new_AP": float(new["metrics"]["AP"]), "delta_AP": delta,
            "row_sd": sd, "tolerance": tolerance, "committed_AP50": float(old["metrics"]["AP50"]),
            "new_AP50": float(new["metrics"]["AP50"]), "committed_curve": curve_of(old), "new_curve": curve_of(new),
            "verdict": verdict, "machine": machine, "committed_commit": old.get("git_commit", ""),
            "new_commit": new.get("git_commit", ""),
        })
    return pd.DataFrame(lines, columns=COLUMNS)


def summary_line(report: pd.DataFrame) -> str:
    """One sentence for the table: all within seed noise, or which runs are not."""
    table = report["table"].iloc[0] if len(report) else "?"
    outside = report[report["verdict"] == "outside"]
    unjudged = report[report["verdict"] == "no spread"]
    if len(outside):
        listing = "; ".join(f"{row.row} seed {row.seed}: {row.delta_AP:+.2f} AP, tolerance {row.tolerance:.2f}"
                            for row in outside.itertuples())
        return f"{table}: {len(outside)} of {len(report)} reruns differ by more than 2 SD of their row: {listing}"
    if len(unjudged) == len(report):
        return f"{table}: no row has two committed seeds, so there is no seed spread to judge the reruns against"
    return (f"{table}: the committed results reproduce on this machine within seed noise "
            f"({len(report) - len(unjudged)} of {len(report)} reruns within 2 SD of their row"
            + (f"; {len(unjudged)} without a spread to judge" if len(unjudged) else "") + ")")


def print_report(comparison: pd.DataFrame, saved: Path | None, file=None) -> None:
    """The comparison as a table, each run's curves, the table's one-line verdict (to stdout)."""
    file = file or sys.stdout
    shown = comparison[["row", "seed", "committed_AP", "new_AP", "delta_AP", "tolerance", "committed_AP50",
                        "new_AP50", "verdict"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"), file=file)
    for line in comparison.itertuples():
        print(f"  {line.row} seed {line.seed}: committed {line.committed_curve}; new {line.new_curve}", file=file)
    print(summary_line(comparison), file=file)
    if saved is not None:
        print(f"written: {saved}", file=file)


def saved_verification_lines(results_dir: str | Path = "results") -> list[str]:
    """One Markdown line per saved verification (``results/verify/*.csv``): its link and verdict."""
    lines = []
    for path in sorted(in_project(results_dir).glob("verify/*.csv")):
        comparison = pd.read_csv(path, keep_default_na=False, na_values=[""])
        runs = "; ".join(f"{line.row} seed {line.seed}: {line.committed_AP:.2f} -> {line.new_AP:.2f} AP "
                         f"({line.delta_AP:+.2f}, tolerance {line.tolerance:.2f})" for line in comparison.itertuples())
        lines.append(f"- [{path.name}](verify/{path.name}): {summary_line(comparison)}. {runs}.")
    return lines
