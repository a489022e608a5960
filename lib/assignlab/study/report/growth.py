"""Do the papers' differences grow or shrink with the schedule? (the ``growth_*`` tables)

For a growth pair (:class:`~assignlab.study.tables.beyond.GrowthPair`) and seed s, the difference at
schedule factor f (nominally f times the profile's schedule) is d_s(f) = AP(better arm, f) -
AP(worse arm, f), paired by seed; per factor, its mean and 95% t-interval over seeds. Epochs are
whole, so the length actually trained, ``length`` = epochs(f) / epochs(1), can differ from f
(0.5x of the cpu profile's 5 epochs is 2 epochs, a length of 0.4).

The trend is the slope of d against log2(length), in AP per doubling of the schedule: per seed, the
least-squares slope of d_s over the lengths (seeds that lack a length are left out); then the
mean and 95% t-interval of the per-seed slopes (a slope is a linear contrast of the rows, so this
is the same paired test as a claim's). Verdict, in this order:

- ``growing``: the interval lies wholly above 0 (the difference moves towards the better arm as
  training lengthens; from below 0 that is a gap closing);
- ``shrinking``: wholly below 0;
- ``stable``: wholly inside (-0.5, +0.5) AP per doubling (``STABLE_BAND``);
- ``inconclusive``: otherwise; ``inconclusive (1 seed)`` / ``(no runs)`` without an interval.

Writes ``results/tables/growth.csv`` (per pair and length), ``growth_trend.csv`` (per pair) and
``results/figures/growth.png``.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from assignlab.paths import in_project
from assignlab.study.report.aggregate import collect_results, save_figure
from assignlab.study.report.stats import INCONCLUSIVE, Interval, t_interval
from assignlab.study.tables.beyond import GROWTH_FACTORS, GROWTH_PAIRS, GrowthPair
from assignlab.study.tables.catalogue import get_table

STABLE_BAND = 0.5  # AP per doubling of the schedule
GROWING, SHRINKING, STABLE = "growing", "shrinking", "stable"


def schedule_lengths(pair: GrowthPair, profile: str, factors: Sequence[float] = GROWTH_FACTORS) -> dict[float, float]:
    """factor -> the length ``pair`` trains at ``profile``: its epochs over those of factor 1."""
    epochs = {row.label: config.train.epochs for row, config in get_table(pair.name).row_configs(profile)}
    base = epochs[pair.better_label(1)]
    return {float(f): epochs[pair.better_label(f)] / base for f in factors}


def growth_differences(pair: GrowthPair, results: pd.DataFrame, factors: Sequence[float] = GROWTH_FACTORS,
                       metric: str = "AP", lengths: dict[float, float] | None = None) -> pd.DataFrame:
    """One line per (factor, seed) where both arms have a result: pair, factor, length (from
    ``lengths``, :func:`schedule_lengths`; None: the factor itself), seed, difference (better -
    worse). ``results``: one line per (row, seed) with ``metric`` (``collect_results``)."""
    columns = ["pair", "factor", "length", "seed", "difference"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    wide = results.pivot_table(index="seed", columns="row", values=metric, aggfunc="first")
    lines = []
    for factor in factors:
        better, worse = pair.better_label(factor), pair.worse_label(factor)
        if better not in wide.columns or worse not in wide.columns:
            continue
        length = float(factor) if lengths is None else lengths[float(factor)]
        for seed, value in (wide[better] - wide[worse]).dropna().items():
            lines.append({"pair": pair.name, "factor": float(factor), "length": length, "seed": int(seed),
                          "difference": float(value)})
    return pd.DataFrame(lines, columns=columns)


def summarize_growth(differences: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, factor): length, mean, ci95 (half-width of the 95% t-interval), low, high, n_seeds."""
    lines = []
    for (pair, factor, length), group in differences.groupby(["pair", "factor", "length"], sort=False):
        interval = t_interval(group["difference"])
        lines.append({"pair": pair, "factor": factor, "length": length, "mean": interval.mean,
                      "ci95": interval.half_width, "low": interval.low, "high": interval.high, "n_seeds": interval.n})
    return pd.DataFrame(lines, columns=["pair", "factor", "length", "mean", "ci95", "low", "high", "n_seeds"])


def least_squares_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Slope of the least-squares line of y on x (NaN with fewer than two distinct x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    spread = ((x - x.mean()) ** 2).sum()
    return float(((x - x.mean()) * (y - y.mean())).sum() / spread) if spread > 0 else math.nan


def seed_slopes(differences: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, seed) that has every factor of its pair: the slope of the difference against
    log2(length) (AP per doubling)."""
    lines = []
    for pair, group in differences.groupby("pair", sort=False):
        factors = set(group["factor"])
        for seed, by_seed in group.groupby("seed"):
            if set(by_seed["factor"]) != factors:
                continue
            slope = least_squares_slope(np.log2(by_seed["length"].to_numpy()), by_seed["difference"].to_numpy())
            lines.append({"pair": pair, "seed": seed, "slope": slope})
    return pd.DataFrame(lines, columns=["pair", "seed", "slope"])


def trend_verdict(interval: Interval, band: float = STABLE_BAND) -> str:
    """growing / shrinking / stable / inconclusive from the slope's interval (module docstring)."""
    if interval.n == 0 or math.isnan(interval.mean):
        return f"{INCONCLUSIVE} (no runs)"
    if interval.n == 1:
        return f"{INCONCLUSIVE} (1 seed)"
    if interval.low > 0:
        return GROWING
    if interval.high < 0:
        return SHRINKING
    if -band < interval.low and interval.high < band:
        return STABLE
    return INCONCLUSIVE


def growth_trends(differences: pd.DataFrame, band: float = STABLE_BAND,
                  pairs: Sequence[str] | None = None) -> pd.DataFrame:
    """Per pair (``pairs``: these names, also those without differences; None: the pairs of
    ``differences``): slope (mean over seeds, AP per doubling), ci95, low, high, n_seeds, verdict."""
    slopes = seed_slopes(differences)
    lines = []
    for pair in pairs if pairs is not None else dict.fromkeys(differences["pair"]):
        values = slopes.loc[(slopes["pair"] == pair), "slope"].dropna()
        interval = t_interval(values)
        lines.append({"pair": pair, "slope": interval.mean, "ci95": interval.half_width, "low": interval.low,
                      "high": interval.high, "n_seeds": interval.n, "verdict": trend_verdict(interval, band)})
    return pd.DataFrame(lines, columns=["pair", "slope", "ci95", "low", "high", "n_seeds", "verdict"])


def plot_growth(differences: pd.DataFrame, summary: pd.DataFrame, trends: pd.DataFrame,
                pairs: Sequence[GrowthPair], path: Path) -> Path:
    """One panel per pair: the difference against the schedule length (log2 axis), per-seed
    points and the mean with its 95% interval; the trend's verdict in the title."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 3.8), squeeze=False)
    verdicts = trends.set_index("pair")
    for ax, pair in zip(axes[0], pairs):
        points = differences[differences["pair"] == pair.name].assign(log_length=lambda f: np.log2(f["length"]))
        means = summary[summary["pair"] == pair.name]
        if len(points):
            sns.scatterplot(data=points, x="log_length", y="difference", color="0.6", s=20, ax=ax, label="seed")
            ax.errorbar(np.log2(means["length"]), means["mean"], yerr=np.nan_to_num(means["ci95"].to_numpy()),
                        fmt="o-", color="C0", capsize=3, label="mean, 95% CI")
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        lengths = sorted(set(means["length"])) or list(GROWTH_FACTORS)
        ax.set_xticks(np.log2(lengths), [f"{length:g}x" for length in lengths])
        trend = verdicts.loc[pair.name] if pair.name in verdicts.index else None
        slope = "" if trend is None or math.isnan(trend["slope"]) else f"slope {trend['slope']:+.2f}/doubling: "
        ax.set(xlabel="schedule length (epochs / the profile's)", ylabel=textwrap.fill(f"AP({pair.arms[0]}) - AP({pair.arms[1]})", 40),
               title=f"{pair.arms[0]} vs {pair.arms[1]}\n{slope}{'' if trend is None else trend['verdict']}")
        ax.title.set_fontsize(9)
    return save_figure(fig, path)


@dataclass
class GrowthResult:
    """What the growth notebook shows."""

    profile: str
    differences: pd.DataFrame       # pair, factor, length, seed, difference
    summary: pd.DataFrame           # pair, factor, length, mean, ci95, low, high, n_seeds
    trends: pd.DataFrame            # pair, slope, ci95, low, high, n_seeds, verdict
    files: dict[str, Path]

    @property
    def figure_path(self) -> Path:
        return self.files["figure"]

    def styled_summary(self):
        return (self.summary.style.format({"factor": "{:g}x", "length": "{:g}x", "mean": "{:+.2f}", "ci95": "± {:.2f}", "low": "{:+.2f}",
                                           "high": "{:+.2f}"}, na_rep="")
                .set_caption(f"AP difference (better - worse arm) per schedule length, profile {self.profile}")
                .hide(axis="index"))

    def styled_trends(self):
        return (self.trends.style.format({"slope": "{:+.2f}", "ci95": "± {:.2f}", "low": "{:+.2f}", "high": "{:+.2f}"},
                                         na_rep="")
                .set_caption("Slope of the difference against log2(length), AP per doubling").hide(axis="index"))


def growth_study(profile: str = "cpu", seeds: Any = None, results_dir: str | Path = "results",
                 data_root: str | None = None, pairs: Sequence[GrowthPair] = GROWTH_PAIRS,
                 band: float = STABLE_BAND) -> GrowthResult:
    """Read the growth tables' finished runs (train them first, e.g. with ``reproduce_table``),
    then write the differences per length, the trends and the figure."""
    frames = [growth_differences(pair, collect_results(pair.name, profile, seeds, results_dir, data_root),
                                 lengths=schedule_lengths(pair, profile, GROWTH_FACTORS)) for pair in pairs]
    columns = ["pair", "factor", "length", "seed", "difference"]
    # concatenating the empty frames of pairs without runs would leave object columns
    differences = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) \
        else pd.DataFrame(columns=columns)
    differences = differences.astype({"factor": float, "length": float, "difference": float})
    summary = summarize_growth(differences)
    trends = growth_trends(differences, band, [pair.name for pair in pairs])
    out = in_project(results_dir)
    files = {"csv": out / "tables" / "growth.csv", "trend_csv": out / "tables" / "growth_trend.csv",
             "figure": out / "figures" / "growth.png"}
    files["csv"].parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(files["csv"], index=False, float_format="%.4f")
    trends.to_csv(files["trend_csv"], index=False, float_format="%.4f")
    plot_growth(differences, summary, trends, pairs, files["figure"])
    return GrowthResult(profile, differences, summary, trends, files)
