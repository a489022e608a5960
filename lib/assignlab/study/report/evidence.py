"""The alignment evidence of a table's runs: per row, mean and 95% interval over seeds of the
diagnostics every run computes at its end (``result["alignment"]``, see
:func:`assignlab.engine.run.alignment_diagnostics`), and verdicts on claims about them.

Reads ``results/runs/<table>/<run-id>.json``; writes ``results/tables/<table>_alignment.csv``,
``<table>_alignment_claims.csv`` and ``results/figures/<table>_alignment.png``. A diagnostic a
run lacks (an object size with no object, a run without diagnostics) is NaN and left out of that
diagnostic's interval, not of the others'.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from assignlab.jsonio import read_json
from assignlab.paths import in_project
from assignlab.study.report.aggregate import evaluate_claims, save_figure
from assignlab.study.report.stats import t_interval
from assignlab.study.run.plan import PlannedRun, plan_runs
from assignlab.study.run.store import StudyPaths
from assignlab.study.tables.beyond import ALIGNMENT_CLAIMS
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.spec import Hypothesis, TableSpec

SIZES = ("small", "medium", "large")
RECALL_METRICS = ("br_recall_m1", "br_recall_m2", "br_recall_m3")
POSITIVES_METRICS = tuple(f"positives_per_object_{output}_{size}" for output in ("last", "enc") for size in SIZES)
ALIGNMENT_METRICS = (*RECALL_METRICS, "pearson_r", *POSITIVES_METRICS)


def finished_records(table: str | TableSpec, profile: str, seeds: Any = None, results_dir: str | Path = "results",
                     data_root: str | None = None, base: str | None = None) -> Iterator[tuple[PlannedRun, dict]]:
    """Each planned run of the table (on ``base``) that has a result file, with the file's content."""
    spec = get_table(table).on_base(base)
    paths = StudyPaths.make(results_dir)
    for run in plan_runs(spec, profile, seeds, data_root):
        path = paths.result_file(spec.name, run.run_id)
        if path.exists():
            yield run, read_json(path)


def numeric_fields(section: dict | None, names: Sequence[str]) -> dict[str, float]:
    """``names`` of one section of a result file (NaN where missing or not a number)."""
    section = section or {}
    return {name: float(section[name]) if isinstance(section.get(name), (int, float)) else math.nan
            for name in names}


def alignment_values(record: dict, metrics: Sequence[str] = ALIGNMENT_METRICS) -> dict[str, float]:
    """The diagnostics ``metrics`` of one result (NaN where missing or not a number)."""
    return numeric_fields(record.get("alignment"), metrics)


def collect_alignment(table: str | TableSpec, profile: str, seeds: Any = None, results_dir: str | Path = "results",
                      data_root: str | None = None, metrics: Sequence[str] = ALIGNMENT_METRICS) -> pd.DataFrame:
    """One line per (row, seed) with a result file: row, seed, run_id, AP (NaN where missing; the
    claims use it to tell detectors that have not learned) and the ``metrics``."""
    lines = [{"row": row, "seed": run.seed, "run_id": run.run_id, **numeric_fields(record.get("metrics"), ("AP",)),
              **alignment_values(record, metrics)}
             for run, record in finished_records(table, profile, seeds, results_dir, data_root)
             for row in run.rows]
    return pd.DataFrame(lines, columns=["row", "seed", "run_id", "AP", *metrics])


def summarize_alignment(spec: TableSpec, frame: pd.DataFrame,
                        metrics: Sequence[str] = ALIGNMENT_METRICS) -> pd.DataFrame:
    """One line per (row of the spec, metric): mean, ci95 (half-width of the 95% t-interval) and
    n_seeds, over the seeds where the metric is not NaN."""
    lines = []
    for row in spec.rows:
        for metric in metrics:
            values = frame.loc[frame["row"] == row.label, metric].dropna()
            interval = t_interval(values)
            lines.append({"row": row.label, "metric": metric, "mean": interval.mean, "ci95": interval.half_width,
                          "n_seeds": interval.n})
    return pd.DataFrame(lines, columns=["row", "metric", "mean", "ci95", "n_seeds"])


def alignment_matrix(summary: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The summary as text, rows by metrics: "mean ± ci95" ("mean" with one seed, "" with none)."""
    def cell(line) -> str:
        if line.n_seeds == 0:
            return ""
        text = f"{line.mean:.{digits}f}"
        return text if math.isnan(line.ci95) else f"{text} ± {line.ci95:.{digits}f}"

    text = summary.assign(cell=[cell(line) for line in summary.itertuples(index=False)])
    matrix = text.pivot(index="row", columns="metric", values="cell")
    return matrix.loc[list(dict.fromkeys(summary["row"])), list(dict.fromkeys(summary["metric"]))]


def evaluate_alignment_claims(spec: TableSpec, frame: pd.DataFrame,
                              claims: Sequence[Hypothesis] = ALIGNMENT_CLAIMS) -> pd.DataFrame:
    """Verdicts on ``claims`` (each names its diagnostic as ``metric``), paired by seed over the
    seeds where the diagnostic exists for every row of the claim."""
    return evaluate_claims(replace(spec, claims=tuple(claims)), frame)


def plot_alignment(summary: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Three panels: best-regressed recall at m = 1, 2, 3; Pearson's r; positives per object of
    the last layer by object size. Per row the mean with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = list(dict.fromkeys(summary["row"]))
    panels = (("best-regressed recall among top m x N", RECALL_METRICS),
              ("Pearson r (confidence, IoU)", ("pearson_r",)),
              ("positives per object, last layer", POSITIVES_METRICS[:3]))
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 3, figsize=(14, max(3.0, 0.4 * len(rows) + 1.2)), sharey=True)
    for ax, (name, metrics) in zip(axes, panels):
        for index, metric in enumerate(metrics):
            part = summary[summary["metric"] == metric].set_index("row").reindex(rows)
            offset = (index - (len(metrics) - 1) / 2) * 0.2
            ax.errorbar(part["mean"], np.arange(len(rows)) + offset, xerr=np.nan_to_num(part["ci95"].to_numpy()),
                        fmt="o", capsize=3, color=f"C{index}", label=metric.rsplit("_", 1)[-1])
        ax.set(title=name, yticks=np.arange(len(rows)), yticklabels=rows)
        if len(metrics) > 1:
            ax.legend(fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


@dataclass
class AlignmentEvidence:
    """What the alignment evidence notebook shows."""

    spec: TableSpec
    profile: str
    per_seed: pd.DataFrame          # row, seed, run_id, metrics
    summary: pd.DataFrame           # row, metric, mean, ci95, n_seeds
    claims: pd.DataFrame            # as aggregate.evaluate_claims
    files: dict[str, Path]

    def styled(self):
        return (alignment_matrix(self.summary).style
                .set_caption(f"{self.spec.title} (profile {self.profile}): mean ± 95% interval over seeds"))


def alignment_study(table: str | TableSpec = "alignment_evidence", profile: str = "cpu", seeds: Any = None,
                    results_dir: str | Path = "results", data_root: str | None = None,
                    claims: Sequence[Hypothesis] = ALIGNMENT_CLAIMS) -> AlignmentEvidence:
    """Read the table's finished runs (train them first, e.g. with ``reproduce_table``) and write
    the alignment summary, its claims and figure."""
    spec = get_table(table)
    frame = collect_alignment(spec, profile, seeds, results_dir, data_root)
    summary = summarize_alignment(spec, frame)
    verdicts = evaluate_alignment_claims(spec, frame, claims)
    out = in_project(results_dir)
    files = {"csv": out / "tables" / f"{spec.name}_alignment.csv",
             "claims_csv": out / "tables" / f"{spec.name}_alignment_claims.csv",
             "figure": out / "figures" / f"{spec.name}_alignment.png"}
    files["csv"].parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(files["csv"], index=False, float_format="%.4f")
    verdicts.to_csv(files["claims_csv"], index=False, float_format="%.4f")
    plot_alignment(summary, files["figure"], spec.title)
    return AlignmentEvidence(spec, profile, frame, summary, verdicts, files)
