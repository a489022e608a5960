"""From result files to a table: per row the mean and 95% interval over seeds beside the paper's
number; per claim the paired contrast over seeds, its interval, p-value (Holm-adjusted over the
table's claims) and the verdict; per table the smallest AP difference its seeds detect.

Reads only ``results/runs/<table>/<run-id>.json`` (which runs belong to the table comes from its
spec); writes ``results/tables/<table>.csv``, ``<table>_claims.csv``, ``<table>.md`` and
``results/figures/<table>.png`` (``<table>-<profile>`` at the scale ladder's larger rungs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from assignlab.paths import in_project
from assignlab.study.report.stats import (
    AGAINST_UNTRAINED,
    DOES_NOT_HOLD,
    HOLDS,
    NOT_REPRODUCED,
    REPRODUCED,
    SIZE_NA,
    UNTRAINED,
    UNTRAINED_AP_FLOOR,
    claim_verdict,
    deciding_test,
    detectable_difference,
    holm_adjust,
    short_verdict,
    size_verdict,
    t_interval,
    verdict_reading,
    worded_verdict,
)
from assignlab.study.run.outcomes import TableRunReport
from assignlab.study.run.plan import plan_runs
from assignlab.study.run.store import RESULT_METRICS, StudyPaths, read_result
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.paper import paper_value
from assignlab.study.tables.profiles import table_file_stem
from assignlab.study.tables.spec import Hypothesis, TableSpec

METRICS = RESULT_METRICS


def collect_results(table: str | TableSpec, profile: str, seeds: Any = None, results_dir: str | Path = "results",
                    data_root: str | None = None) -> pd.DataFrame:
    """Long table, one line per (row, seed) that has a result file: row, seed, run_id, the COCO
    metrics and wall_time_s. Rows that share a run each get its line.

    A damaged result file (not valid JSON, not an object, no numeric ``metrics.AP``, a metric that
    is not a number) stops with a ValueError naming the file and the field: a table silently
    without that run would differ from the study's. (``run_table`` moves such files aside and
    trains the run again.)"""
    spec = get_table(table)
    paths = StudyPaths.make(results_dir)
    lines = []
    for run in plan_runs(spec, profile, seeds, data_root):
        path = paths.result_file(spec.name, run.run_id)
        if not path.exists():
            continue
        record = read_result(path)
        metrics = record["metrics"]
        for row in run.rows:
            lines.append({"row": row, "seed": run.seed, "run_id": run.run_id,
                          **{m: float(metrics.get(m, math.nan)) for m in METRICS},
                          "wall_time_s": float(record.get("wall_time_s", math.nan))})
    return pd.DataFrame(lines, columns=["row", "seed", "run_id", *METRICS, "wall_time_s"])


def summarize_rows(spec: TableSpec, results: pd.DataFrame, metric: str = "AP") -> pd.DataFrame:
    """One line per row of the spec (then the paper-only rows): ours (mean), ci95 (half-width),
    n_seeds, paper, note."""
    lines = []
    for row in spec.rows:
        values = results.loc[results["row"] == row.label, metric].dropna()
        interval = t_interval(values)
        paper = paper_value(spec.paper_stem_of(row.paper), row.paper) if row.paper is not None else math.nan
        lines.append({"row": row.label, "ours": interval.mean, "ci95": interval.half_width, "n_seeds": interval.n,
                      "paper": paper, "note": row.note})
    for row in spec.paper_only:
        lines.append({"row": row.label, "ours": math.nan, "ci95": math.nan, "n_seeds": 0,
                      "paper": paper_value(spec.paper_stem_of(row.paper), row.paper), "note": f"paper only: {row.note}"})
    return pd.DataFrame(lines, columns=["row", "ours", "ci95", "n_seeds", "paper", "note"])


def claim_contrasts(claim: Hypothesis, results: pd.DataFrame) -> pd.Series:
    """Per seed (index), sum_r weights[r] * metric(r, seed), over the seeds that have every row."""
    wide = results.pivot_table(index="seed", columns="row", values=claim.metric, aggfunc="first")
    missing = [r for r in claim.weights if r not in wide.columns]
    if missing:
        return pd.Series(dtype=float)
    wide = wide[list(claim.weights)].dropna()
    return wide.mul(pd.Series(claim.weights)).sum(axis=1)


def untrained_rows(claim: Hypothesis, results: pd.DataFrame, floor: float = UNTRAINED_AP_FLOOR) -> list[str]:
    """The rows of the claim with runs and a mean AP below ``floor`` (not learned to detect), in the
    claim's order, whatever the claim measures: the alignment diagnostics of detectors that have not
    learned are no evidence either. Empty when ``results`` has no AP column."""
    if "AP" not in results.columns or results.empty:
        return []
    means = results[results["row"].isin(list(claim.weights))].groupby("row")["AP"].mean()
    return [row for row in claim.weights if row in means.index and means[row] < floor]


def rows_untrained(claim: Hypothesis, results: pd.DataFrame, floor: float = UNTRAINED_AP_FLOOR) -> bool:
    """True when every row of the claim has runs and a mean AP below ``floor`` (none has learned).
    False when ``results`` has no AP column."""
    return len(untrained_rows(claim, results, floor)) == len(claim.weights)


def describe_direction(claim: Hypothesis) -> str:
    if claim.direction == "equivalent":
        return f"|d| < {claim.margin:g}"
    if claim.direction == "noninferior":
        return f"d > {-claim.margin:g}"
    return f"d {claim.direction} 0"


def contrast_text(claim: Hypothesis) -> str:
    terms = []
    for row, weight in claim.weights.items():
        sign = "-" if weight < 0 else "+"
        size = "" if abs(weight) == 1 else f"{abs(weight):g} "
        terms.append(f"{sign} {size}[{row}]")
    text = " ".join(terms)
    return text[2:] if text.startswith("+ ") else text


CLAIM_COLUMNS = ["claim", "contrast", "test", "mean", "ci95", "low", "high", "ci90_low", "ci90_high", "n_seeds",
                 "paper", "p_test", "p", "p_holm", "outcome", "verdict", "direction_verdict", "size_verdict",
                 "size_ratio", "untrained_rows", "own_claim", "confounded_by", "reading"]


def evaluate_claims(spec: TableSpec, results: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One line per claim: claim, contrast d, test, mean, ci95, low, high (the 95% interval),
    ci90_low and ci90_high (equivalence claims: the 90% interval of TOST), n_seeds, paper (the same
    contrast of the paper's numbers), p_test (the test that decides the claim,
    :func:`~assignlab.study.report.stats.deciding_test`), p (its p-value; NaN under 2 seeds), p_holm
    (Holm-adjusted over this table's claims) and outcome, the test's result from p_holm <
    ``alpha``; a claim (on any metric) with 2 or more seeds whose rows all stay below
    ``UNTRAINED_AP_FLOOR`` AP is "uninformative (untrained)". Then both verdicts in words (see
    :mod:`~assignlab.study.report.stats`): verdict (both in a few words), direction_verdict (the
    outcome in the claim's words: holds / does not hold for the study's own claims, qualified
    "against an untrained row" when some of its rows are below the floor), size_verdict and
    size_ratio (mean / paper), untrained_rows (how many rows are below the floor), own_claim,
    confounded_by and reading (one sentence with both)."""
    lines, intervals, band_intervals = [], [], []
    for claim in spec.claims:
        per_seed = claim_contrasts(claim, results).to_numpy()
        interval = t_interval(per_seed)
        band = t_interval(per_seed, 0.90) if claim.direction == "equivalent" else None
        refs = [spec.row(r).paper for r in claim.weights]
        paper = (sum(w * paper_value(spec.paper_stem_of(ref), ref) for w, ref in zip(claim.weights.values(), refs))
                 if all(ref is not None for ref in refs) else math.nan)
        test = deciding_test(per_seed, claim.direction, claim.margin)
        intervals.append(interval)
        band_intervals.append(band)
        lines.append({"claim": claim.statement, "contrast": contrast_text(claim), "test": describe_direction(claim),
                      "mean": interval.mean, "ci95": interval.half_width, "low": interval.low, "high": interval.high,
                      "ci90_low": band.low if band else math.nan, "ci90_high": band.high if band else math.nan,
                      "n_seeds": interval.n, "paper": paper, "p_test": test.name, "p": test.p})
    for line, p_holm, claim, interval, band in zip(lines, holm_adjust([line["p"] for line in lines]), spec.claims,
                                                   intervals, band_intervals):
        line["p_holm"] = p_holm
        untrained = interval.n >= 2 and rows_untrained(claim, results)  # under 2 seeds: no verdict either way
        line["outcome"] = UNTRAINED if untrained else claim_verdict(interval, p_holm, claim.direction,
                                                                     claim.margin, alpha)
        below = len(untrained_rows(claim, results)) if interval.n >= 2 and not untrained else 0
        line["direction_verdict"] = worded_verdict(line["outcome"], claim.own, below)
        size, ratio = (SIZE_NA, math.nan) if untrained else size_verdict(interval, line["paper"], claim.direction)
        line.update(verdict=short_verdict(line["direction_verdict"], size, ratio, bool(claim.confounded_by)),
                    size_verdict=size,
                    size_ratio=ratio, untrained_rows=below, own_claim=claim.own, confounded_by=claim.confounded_by,
                    reading=verdict_reading(line["direction_verdict"], size, ratio, interval, line["paper"],
                                            claim.own, claim.confounded_by, claim.direction, claim.margin, band))
    return pd.DataFrame(lines, columns=CLAIM_COLUMNS)


@dataclass(frozen=True)
class DetectableDifference:
    """The smallest true AP difference between two rows that the table's seeds detect.

    sd_row: seed-to-seed standard deviation, pooled over the rows with >= 2 seeds (each distinct
    run counted once). sd_difference = sqrt(2) * sd_row, the SD of a per-seed difference of two
    rows if their seeds were independent; rows trained from the same seed tend to move together,
    so the paired SD is usually smaller and this estimate errs on the large side. alpha: the
    per-claim level, 0.05 / m for m = n_claims claims (the first step of Holm: a claim whose true contrast is
    this large gets p_holm < 0.05 with at least this power, whatever the other claims do).
    difference: the contrast a two-sided paired t-test at alpha over n_seeds detects with this power.
    """

    difference: float
    sd_row: float
    sd_difference: float
    n_seeds: int
    alpha: float
    n_claims: int
    power: float = 0.8

    def sentence(self) -> str:
        if math.isnan(self.sd_row):
            return ("Detectable difference: not measurable yet (the seed-to-seed spread needs rows with at "
                    "least 2 seeds).")
        if math.isnan(self.difference):
            return (f"Detectable difference: none with {self.n_seeds} seed(s) in the row with the fewest "
                    f"(seed-to-seed SD {self.sd_row:.2f} AP); a paired test needs at least 2.")
        level = (f"{self.alpha:.3g} = 0.05 / {self.n_claims} claims, Holm's strictest step" if self.n_claims > 1
                 else f"{self.alpha:.3g}")
        return (f"Detectable difference: with {self.n_seeds} seeds (the fewest of any row) and a seed-to-seed SD of "
                f"{self.sd_row:.2f} AP, a true difference of two rows must be at least {self.difference:.2f} AP "
                f"to be reproduced with {self.power:.0%} probability (paired t-test at {level}; smaller true "
                "differences are likely to come out inconclusive).")


def pooled_row_sd(results: pd.DataFrame, metric: str = "AP") -> float:
    """sqrt(sum of squared deviations from each row's mean / sum of (n_row - 1)) over the rows with
    >= 2 seeds; a run shared by several rows counts once. NaN when no row has 2 seeds."""
    distinct = results.dropna(subset=[metric]).drop_duplicates("run_id")
    groups = [g[metric].to_numpy() for _, g in distinct.groupby("row") if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if dof == 0:
        return math.nan
    return math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / dof)


def table_detectable_difference(spec: TableSpec, rows: pd.DataFrame, results: pd.DataFrame,
                                power: float = 0.8, alpha: float = 0.05) -> DetectableDifference:
    """The table's :class:`DetectableDifference`, with n = the fewest seeds of any trained row."""
    sd_row = pooled_row_sd(results)
    trained = rows.loc[rows["n_seeds"] > 0, "n_seeds"]
    n_seeds = int(trained.min()) if len(trained) else 0
    claim_alpha = alpha / max(1, len(spec.claims))
    sd_difference = math.sqrt(2) * sd_row
    return DetectableDifference(detectable_difference(sd_difference, n_seeds, claim_alpha, power), sd_row,
                                sd_difference, n_seeds, claim_alpha, len(spec.claims), power)


# ------------------------------------------------------------------------------------- output
def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def to_markdown(frame: pd.DataFrame, digits: int = 1) -> str:
    """A GitHub-flavoured Markdown table (floats with ``digits`` decimals, NaN as empty)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


@dataclass
class TableResult:
    """What a table notebook shows: rows, claims, the long per-seed results and the files written."""

    spec: TableSpec
    profile: str
    rows: pd.DataFrame
    claims: pd.DataFrame
    results: pd.DataFrame
    files: dict[str, Path]
    report: TableRunReport | None = None
    detectable: DetectableDifference | None = None

    @property
    def figure_path(self) -> Path:
        return self.files["figure"]

    def styled(self):
        """The rows as a pandas Styler (ours with its interval beside the paper's number)."""
        return (self.rows.style.format({"ours": "{:.1f}", "ci95": "± {:.1f}", "paper": "{:.1f}"}, na_rep="")
                .set_caption(f"{self.spec.title} (profile {self.profile})").hide(axis="index"))

    def styled_claims(self) -> "InlineTable":
        """The claims as an HTML table: d with its intervals, the deciding test and its p, both
        verdicts coloured (the CSV's other columns, the bare test outcome among them, are left out).
        The colours are inline style attributes, which an untrusted notebook keeps."""
        shown = [c for c in ("claim", "test", "mean", "ci95", "ci90_low", "ci90_high", "n_seeds", "paper", "p_test",
                             "p", "p_holm", "verdict", "reading") if c in self.claims.columns]
        if "ci90_low" in shown and self.claims["ci90_low"].isna().all():  # no equivalence claim
            shown = [c for c in shown if c not in ("ci90_low", "ci90_high")]
        formats = {c: "{:+.2f}" for c in ("mean", "ci90_low", "ci90_high", "paper")} | {"ci95": "± {:.2f}"} \
            | {"p": "{:.3f}", "p_holm": "{:.3f}"}
        return inline_table(self.claims[shown], formats, {c: verdict_colour for c in ("verdict", "reading")})


@dataclass(frozen=True)
class InlineTable:
    """An HTML table whose cell styles are inline attributes: JupyterLab keeps those in an
    untrusted notebook, where it drops a ``<style>`` block (pandas' Styler)."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def to_html(self) -> str:
        return self.html


def inline_table(frame: pd.DataFrame, formats: dict[str, str] | None = None,
                 styles: dict[str, Any] | None = None) -> InlineTable:
    """``frame`` (without its index) as an :class:`InlineTable`: ``formats`` maps a column to a
    format string (NaN: empty), ``styles`` a column to a function value -> CSS (e.g.
    :func:`verdict_colour`)."""
    from html import escape

    formats, styles = formats or {}, styles or {}

    def cell(column: str, value: Any) -> str:
        missing = value is None or (pd.api.types.is_scalar(value) and pd.isna(value))
        text = "" if missing else formats.get(column, "{}").format(value)
        css = styles[column](value) if column in styles else ""
        return f'<td style="text-align:left;{css}">{escape(text)}</td>'

    header = "".join(f"<th style=\"text-align:left\">{escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(cell(c, v) for c, v in zip(frame.columns, row)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return InlineTable(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")


def verdict_colour(verdict: Any) -> str:
    """The CSS background of a verdict (plain, worded or a whole reading): green where the claim is
    reproduced or holds, red where it is not or does not, amber where that is against an untrained
    row, grey when uninformative; none when inconclusive."""
    if not isinstance(verdict, str):
        return ""
    text = verdict.removeprefix("direction ").removeprefix("equivalence ").removeprefix("non-inferiority ")
    if text.startswith(UNTRAINED):
        return "background-color: #e0e0e0"
    if text.startswith((REPRODUCED, HOLDS, NOT_REPRODUCED, DOES_NOT_HOLD)) and (
            AGAINST_UNTRAINED in text or " untrained rows" in text.split(";")[0]):
        return "background-color: #ffe0b2"
    if text.startswith((REPRODUCED, HOLDS)):
        return "background-color: #c8e6c9"
    if text.startswith((NOT_REPRODUCED, DOES_NOT_HOLD)):
        return "background-color: #ffcdd2"
    return ""


def _p_text(p: float) -> str:
    return "" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


VERDICT_LEGEND = (
    "Two verdicts per claim. Direction: the claim is reproduced (for the study's own claims: holds) when "
    "p_holm < 0.05 and d lies on the claimed side, not reproduced (does not hold) when p_holm < 0.05 on the "
    "other side, otherwise inconclusive. Size: the paper's value of d against our 95% interval: size "
    "consistent when inside it, larger or smaller than the paper's (with the ratio d / paper) when the "
    "interval lies wholly beyond it in the claimed direction (for equivalence: away from zero) or wholly on "
    "the other side, towards zero or beyond; n/a without a paper value. Untrained rows: a row below "
    f"{UNTRAINED_AP_FLOOR:g} AP has not learned to detect; a claim whose rows are all below it is uninformative "
    "(untrained), one with some of its rows below it is qualified \"against an untrained row\". Our numbers "
    "come from a far smaller scale than the paper's, so the size verdict says how the effect compares, not "
    "whether the claim holds.")
TEST_LEGEND = (
    "d is paired by seed. p is the p-value of the test that decides the claim (p from): for d > 0 or d < 0 "
    "the two-sided paired t-test of d = 0; for a no-harm claim d > -m (non-inferiority) the same test of "
    "d = -m, one-sided at 2.5% (the 95% interval's lower end above -m); for |d| < m (equivalence) the two "
    "one-sided tests (TOST) while the mean lies inside the band, which match its 90% interval lying inside "
    "it, and otherwise the t-test of d against the bound the mean lies beyond. p_holm = p after Holm's "
    "correction over this table's claims.")


def markdown_report(spec: TableSpec, profile: str, rows: pd.DataFrame, claims: pd.DataFrame,
                    detectable: DetectableDifference | None = None) -> str:
    shown = claims.drop(columns=["low", "high"]).assign(p=claims["p"].map(_p_text),
                                                       p_holm=claims["p_holm"].map(_p_text))
    if "reading" in shown.columns:  # the verdict column shows both verdicts in words
        shown = shown.assign(verdict=shown["reading"]).rename(columns={"p_test": "p from"})[
            ["claim", "contrast", "test", "mean", "ci95", "n_seeds", "paper", "p from", "p", "p_holm", "verdict"]]
    parts = [f"# {spec.title}", "", f"Profile `{profile}`; ours = mean over seeds, ci95 = half-width of the 95% "
             "t-interval; paper = the paper's number (COCO, ResNet-50).", "", to_markdown(rows), "",
             "## Claims", "", TEST_LEGEND + " " + VERDICT_LEGEND, "", to_markdown(shown, digits=2)]
    if detectable is not None:
        parts += ["", detectable.sentence()]
    if spec.notes:
        parts += ["", f"Note: {spec.notes}"]
    return "\n".join(parts) + "\n"


def plot_table(spec: TableSpec, rows: pd.DataFrame, results: pd.DataFrame, path: Path) -> Path:
    """Ours (per-seed points, mean with 95% interval) beside the paper's numbers, one panel each."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    trained = rows[rows["n_seeds"] > 0]
    order = list(rows["row"])
    sns.set_theme(style="whitegrid", context="notebook")
    height = max(3.0, 0.35 * len(order) + 1.2)
    fig, (ours_ax, paper_ax) = plt.subplots(1, 2, figsize=(11, height), sharey=True)
    if len(results):
        # each seed at its own fixed offset from the row's line (a random jitter would change the
        # figure's bytes on every regeneration)
        seeds = sorted(results["seed"].unique())
        offsets = dict(zip(seeds, np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else [0.0]))
        ours_ax.scatter(results["AP"], results["row"].map(order.index) + results["seed"].map(offsets),
                        color="0.6", s=16, label="seed")
    positions = [order.index(r) for r in trained["row"]]
    ours_ax.errorbar(trained["ours"], positions, xerr=np.nan_to_num(trained["ci95"].to_numpy()), fmt="o",
                     color="C0", capsize=3, label="mean, 95% CI")
    ours_ax.set(title="ours", xlabel="AP (synthetic val)", ylabel="")
    sns.barplot(data=rows, y="row", x="paper", order=order, ax=paper_ax, color="C1")
    paper_ax.set(title="paper", xlabel="AP (COCO val)", ylabel="")
    fig.suptitle(spec.title, fontsize=11)
    return save_figure(fig, path)


def aggregate_table(table: str | TableSpec, profile: str, seeds: Any = None, results_dir: str | Path = "results",
                    data_root: str | None = None, report: TableRunReport | None = None) -> TableResult:
    """Aggregate the table's result files and write its CSV, Markdown and figure."""
    spec = get_table(table)
    results = collect_results(spec, profile, seeds, results_dir, data_root)
    rows = summarize_rows(spec, results)
    claims = evaluate_claims(spec, results)
    detectable = table_detectable_difference(spec, rows, results)
    out, stem = in_project(results_dir), table_file_stem(spec.name, profile)
    files = {"csv": out / "tables" / f"{stem}.csv", "claims_csv": out / "tables" / f"{stem}_claims.csv",
             "markdown": out / "tables" / f"{stem}.md", "figure": out / "figures" / f"{stem}.png"}
    files["csv"].parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(files["csv"], index=False, float_format="%.4f")
    claims.to_csv(files["claims_csv"], index=False, float_format="%.4f")
    files["markdown"].write_text(markdown_report(spec, profile, rows, claims, detectable))
    plot_table(spec, rows, results, files["figure"])
    return TableResult(spec, profile, rows, claims, results, files, report, detectable)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
