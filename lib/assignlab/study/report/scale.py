"""Do the claims' sizes move as the model grows? (the ``scale`` tables over the ladder's rungs)

The rungs (:data:`~assignlab.study.tables.profiles.LADDER`) are profiles: S (cpu), M (cpu-m), L
(cpu-l). The compute of a rung is counted, per base detector: the matmul and convolution GFLOP of
one training step per image (:func:`~assignlab.engine.compute.training_gflop_per_image`), beside
the parameter count.

For a claim of the ``scale`` table, rung r and seed s, d_s(r) is the claim's contrast (paired by
seed within the rung). Per rung: the claim's line of the table at that profile (mean, 95%
interval, both verdicts; :func:`~assignlab.study.report.aggregate.evaluate_claims`).

The trend is the slope of d against log2(GFLOP per image), in AP per doubling of compute: per
seed that has every rung (every rung with runs, while the ladder trains), the least-squares slope
over the rungs; then the mean and 95% t-interval of the per-seed slopes. The verdict is the schedule-growth one
(:func:`~assignlab.study.report.growth.trend_verdict`: growing / shrinking / stable within
±0.5 AP per doubling / inconclusive). Towards the paper: a growing or shrinking trend moved d
towards the paper's value when the mean d at the largest rung with runs is closer to it than at
the smallest rung, away from it otherwise (moving past the paper's value and beyond it by more
than it started is away); a stable or inconclusive trend does neither.

Rung S reads seeds 0-2 of the paper tables' runs, so its d can differ a little from DETA Table 1's
and Align-DETR Table 5's, which have 5 seeds.

``scale_bases`` is read at rungs S and M against the untrained floor
(:data:`~assignlab.study.report.stats.UNTRAINED_AP_FLOOR`).

Writes ``results/tables/scale_ladder.csv`` (per claim and rung), ``scale_ladder_trend.csv`` (per
claim), ``scale_ladder_bases.csv``, ``scale_ladder.md`` and ``results/figures/scale_ladder.png``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from assignlab.config import Config
from assignlab.engine.compute import parameter_count, training_gflop_per_image
from assignlab.paths import in_project
from assignlab.study.report.aggregate import claim_contrasts, collect_results, evaluate_claims, save_figure, to_markdown
from assignlab.study.report.growth import STABLE_BAND, GROWING, SHRINKING, seed_slopes, trend_verdict
from assignlab.study.report.stats import UNTRAINED_AP_FLOOR, t_interval
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.profiles import LADDER
from assignlab.study.tables.scale import BASES_RUNGS, SCALE_CLAIMS

TOWARDS, AWAY, NEITHER = "towards the paper", "away from the paper", "no movement shown"
RUNG_COLUMNS = ["claim", "short", "rung", "profile", "base", "gflop", "params_M", "mean", "ci95", "low", "high",
                "n_seeds", "paper", "verdict", "direction_verdict", "size_verdict"]
TREND_COLUMNS = ["claim", "short", "covered", "slope", "ci95", "low", "high", "n_seeds", "verdict", "towards_paper"]


def ladder_for(profile: str, rungs: Sequence[str] | None = None) -> dict[str, str]:
    """The rungs (rung -> profile, smallest first) a notebook run at ``profile`` covers: the ladder
    at cpu, else ``{"S": profile}`` (a one-rung ladder, e.g. the smoke profile's, has no trend);
    ``rungs``: these of them only, in the ladder's order whatever the order given."""
    ladder = dict(LADDER) if profile == LADDER["S"] else {"S": profile}
    unknown = sorted(set(rungs or ()) - set(ladder))
    if unknown:
        raise ValueError(f"rungs {unknown} are not on the ladder of profile {profile!r} (it has {', '.join(ladder)})")
    return {rung: name for rung, name in ladder.items() if rungs is None or rung in rungs}


@lru_cache(maxsize=None)
def counted_cost(config_json: str) -> tuple[float, float]:
    """(training GFLOP per image, parameters in millions) of the config ``config_json``; counting
    takes seconds per model, and re-running the notebook's cells in one kernel counts none again."""
    config = Config.from_json(config_json)
    return training_gflop_per_image(config), parameter_count(config) / 1e6


def rung_compute(rungs: Mapping[str, str]) -> pd.DataFrame:
    """Per rung and base: profile, gflop (training GFLOP per image, counted) and params_M, of the first
    row of the ``scale`` table on that base (and of each ``scale_bases`` row at ``BASES_RUNGS``)."""
    lines = []
    for rung, profile in rungs.items():
        tables = ("scale", "scale_bases") if rung in BASES_RUNGS else ("scale",)
        configs = {}
        for table in tables:
            spec = get_table(table)
            for row, config in spec.row_configs(profile):
                configs.setdefault(row.base or spec.base, config)
        for base, config in configs.items():
            gflop, params = counted_cost(config.to_json())
            lines.append({"rung": rung, "profile": profile, "base": base, "gflop": gflop, "params_M": params})
    return pd.DataFrame(lines, columns=["rung", "profile", "base", "gflop", "params_M"])


def claim_base(claim_rows: Mapping[str, float], table: str = "scale") -> str:
    """The base detector of a claim's rows (each claim of the ``scale`` table is on one base)."""
    spec = get_table(table)
    bases = {spec.row(label).base or spec.base for label in claim_rows}
    if len(bases) != 1:
        raise ValueError(f"claim on rows {sorted(claim_rows)} spans bases {sorted(bases)}")
    return bases.pop()


def rung_lines(rungs: Mapping[str, str], compute: pd.DataFrame, results_dir: str | Path,
               seeds: Any = None, data_root: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per claim and rung: ``RUNG_COLUMNS``; per claim, rung and seed: claim, rung, gflop, seed, d)."""
    spec = get_table("scale")
    cost = compute.set_index(["rung", "base"])
    lines, contrasts = [], []
    for rung, profile in rungs.items():
        results = collect_results(spec, profile, seeds, results_dir, data_root)
        verdicts = evaluate_claims(spec, results).set_index("claim")
        for short, claim in SCALE_CLAIMS:
            base = claim_base(claim.weights)
            gflop, params = cost.loc[(rung, base), ["gflop", "params_M"]]
            line = verdicts.loc[claim.statement]
            lines.append({"claim": claim.statement, "short": short, "rung": rung, "profile": profile, "base": base,
                          "gflop": gflop, "params_M": params,
                          **{key: line[key] for key in ("mean", "ci95", "low", "high", "n_seeds", "paper", "verdict",
                                                        "direction_verdict", "size_verdict")}})
            for seed, d in claim_contrasts(claim, results).items():
                contrasts.append({"claim": claim.statement, "rung": rung, "gflop": gflop, "seed": int(seed),
                                  "d": float(d)})
    return (pd.DataFrame(lines, columns=RUNG_COLUMNS),
            pd.DataFrame(contrasts, columns=["claim", "rung", "gflop", "seed", "d"]))


def towards_paper(verdict: str, first_mean: float, last_mean: float, paper: float) -> str:
    """Whether a growing or shrinking trend brought d closer to ``paper``: the mean d at the largest
    rung (``last_mean``) against the smallest rung's (``first_mean``)."""
    if verdict not in (GROWING, SHRINKING) or any(math.isnan(v) for v in (first_mean, last_mean, paper)):
        return NEITHER
    return TOWARDS if abs(last_mean - paper) < abs(first_mean - paper) else AWAY


def claim_trends(contrasts: pd.DataFrame, per_rung: pd.DataFrame, rungs: Mapping[str, str],
                 band: float = STABLE_BAND) -> pd.DataFrame:
    """Per claim: the slope of d against log2(GFLOP per image), AP per doubling of compute, over the
    rungs where the claim has runs (``covered``; a ladder still training has a trend over the rungs
    done) and the seeds that have all of them (``TREND_COLUMNS``)."""
    lines = []
    for short, claim in SCALE_CLAIMS:
        mine = contrasts[contrasts["claim"] == claim.statement]
        covered = [rung for rung in rungs if rung in set(mine["rung"])]
        # the growth tables' per-seed slopes, with rungs for schedule factors and compute for length
        slopes = seed_slopes(mine.rename(columns={"claim": "pair", "rung": "factor", "gflop": "length",
                                                  "d": "difference"}))["slope"]
        interval = t_interval(slopes.dropna() if len(covered) > 1 else pd.Series([], dtype=float))
        if len(covered) < 2:
            verdict = f"no trend ({'one rung' if covered else 'no runs'})"
        elif interval.n == 0:
            verdict = f"no trend (no seed at every rung of {', '.join(covered)} yet)"
        else:
            verdict = trend_verdict(interval, band)
        means = per_rung[per_rung["claim"] == claim.statement].set_index("rung")
        paper = float(means["paper"].iloc[0]) if len(means) else math.nan
        first_mean, last_mean = ((float(means.loc[covered[0], "mean"]), float(means.loc[covered[-1], "mean"]))
                                 if covered else (math.nan, math.nan))
        lines.append({"claim": claim.statement, "short": short, "covered": ", ".join(covered),
                      "slope": interval.mean, "ci95": interval.half_width, "low": interval.low, "high": interval.high,
                      "n_seeds": interval.n, "verdict": verdict,
                      "towards_paper": towards_paper(verdict, first_mean, last_mean, paper)})
    return pd.DataFrame(lines, columns=TREND_COLUMNS)


def base_lines(rungs: Mapping[str, str], compute: pd.DataFrame, results_dir: str | Path,
               data_root: str | None = None) -> pd.DataFrame:
    """Per ``scale_bases`` row and rung of ``BASES_RUNGS``: the mean AP of its seeds' runs and whether
    it is above the untrained floor."""
    spec = get_table("scale_bases")
    cost = compute.set_index(["rung", "base"])
    lines = []
    for rung, profile in rungs.items():
        if rung not in BASES_RUNGS:
            continue
        results = collect_results(spec, profile, None, results_dir, data_root)
        for row in spec.rows:
            base = row.base or spec.base
            values = results.loc[results["row"] == row.label, "AP"].dropna()
            mean = float(values.mean()) if len(values) else math.nan
            lines.append({"row": row.label, "rung": rung, "profile": profile, "gflop": cost.loc[(rung, base), "gflop"],
                          "n_seeds": len(values), "AP": mean,
                          "above_floor": "" if math.isnan(mean) else ("yes" if mean >= UNTRAINED_AP_FLOOR else "no")})
    return pd.DataFrame(lines, columns=["row", "rung", "profile", "gflop", "n_seeds", "AP", "above_floor"])


def plot_scale(per_rung: pd.DataFrame, contrasts: pd.DataFrame, trends: pd.DataFrame, rungs: Mapping[str, str],
               path: Path) -> Path:
    """One panel per claim: d against the GFLOP per training image (log2 axis), per-seed points and the
    mean with its 95% interval at each rung, the paper's value as a dashed line, the trend in the title."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    columns = 4
    panels = len(SCALE_CLAIMS)
    fig, axes = plt.subplots(math.ceil(panels / columns), columns, figsize=(4.4 * columns, 3.9 * math.ceil(panels / columns)),
                             squeeze=False)
    trend_of = trends.set_index("claim")
    for ax, (short, claim) in zip(axes.flat, SCALE_CLAIMS):
        lines = per_rung[per_rung["claim"] == claim.statement]
        points = contrasts[contrasts["claim"] == claim.statement]
        if len(points):
            ax.scatter(np.log2(points["gflop"]), points["d"], color="0.6", s=18, label="seed")
        have = lines[lines["n_seeds"] > 0]
        if len(have):
            ax.errorbar(np.log2(have["gflop"]), have["mean"], yerr=np.nan_to_num(have["ci95"].to_numpy()),
                        fmt="o-", color="C0", capsize=3, label="mean, 95% CI")
        paper = lines["paper"].dropna()
        if len(paper):
            ax.axhline(float(paper.iloc[0]), color="C3", linestyle="--", linewidth=1.2, label="paper")
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.set_xticks(np.log2(lines["gflop"]),
                      [f"{r.rung}\n{r.gflop:.3g} GFLOP\n{r.params_M:.3g}M" for r in lines.itertuples()], fontsize=8)
        trend = trend_of.loc[claim.statement]
        slope = "" if math.isnan(trend["slope"]) else f"{trend['slope']:+.2f} AP/doubling, "
        ax.set_title(f"{short}\n{slope}{trend['verdict']}", fontsize=9)
        ticks = np.log2(lines["gflop"].to_numpy())
        ax.set_xlim(ticks.min() - 0.6, ticks.max() + 0.6)
        ax.set(xlabel="GFLOP per training image (log scale), parameters", ylabel="d (AP)")
        ax.xaxis.label.set_fontsize(8)
    axes.flat[0].legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.suptitle(f"The headline claims against compute per training image (rungs {', '.join(rungs)})", fontsize=11)
    return save_figure(fig, path)


@dataclass
class ScaleResult:
    """What the scale notebook shows."""

    rungs: dict[str, str]
    compute: pd.DataFrame       # rung, profile, base, gflop, params_M
    per_rung: pd.DataFrame      # RUNG_COLUMNS
    contrasts: pd.DataFrame     # claim, rung, gflop, seed, d
    trends: pd.DataFrame        # TREND_COLUMNS
    bases: pd.DataFrame         # row, rung, profile, gflop, n_seeds, AP, above_floor
    files: dict[str, Path]

    @property
    def figure_path(self) -> Path:
        return self.files["figure"]

    def styled_rungs(self):
        view = self.per_rung.drop(columns=["claim", "profile", "direction_verdict", "size_verdict"])
        return (view.style.format({"gflop": "{:.3g}", "params_M": "{:.3g}", "mean": "{:+.2f}", "ci95": "± {:.2f}",
                                   "low": "{:+.2f}", "high": "{:+.2f}", "paper": "{:+.1f}"}, na_rep="")
                .set_caption("d per claim and rung (95% interval over seeds) and the rung's verdict").hide(axis="index"))

    def styled_trends(self):
        return (self.trends.drop(columns=["claim"]).style
                .format({"slope": "{:+.2f}", "ci95": "± {:.2f}", "low": "{:+.2f}", "high": "{:+.2f}"}, na_rep="")
                .set_caption("Slope of d against log2(GFLOP per training image), AP per doubling of compute")
                .hide(axis="index"))


def scale_markdown(result: ScaleResult) -> str:
    """The ladder's tables as Markdown: compute per rung, d and verdicts per rung, trends, the bases."""
    per_rung = result.per_rung.assign(d=lambda f: [
        "" if n == 0 else f"{m:+.2f} ± {c:.2f}" if n > 1 else f"{m:+.2f}"
        for m, c, n in zip(f["mean"], f["ci95"], f["n_seeds"])])
    wide = per_rung.pivot_table(index="short", columns="rung", values="d", aggfunc="first", sort=False)
    verdicts = per_rung.pivot_table(index="short", columns="rung", values="verdict", aggfunc="first", sort=False)
    rungs = list(result.rungs)
    summary = pd.DataFrame({"claim": wide.index,
                            **{f"d at {r}": wide.get(r, pd.Series(dtype=str)).reindex(wide.index).fillna("").to_numpy()
                               for r in rungs},
                            "paper": per_rung.drop_duplicates("short").set_index("short")["paper"].reindex(wide.index)
                            .map(lambda v: "" if pd.isna(v) else f"{v:+.1f}").to_numpy()})
    verdict_table = pd.DataFrame({"claim": wide.index, **{
        rung: verdicts.get(rung, pd.Series(dtype=str)).reindex(wide.index).fillna("").to_numpy() for rung in rungs}})
    trends = result.trends.assign(slope=lambda f: [
        "" if math.isnan(s) else f"{s:+.2f} ± {c:.2f}" if n > 1 else f"{s:+.2f}"
        for s, c, n in zip(f["slope"], f["ci95"], f["n_seeds"])])[["short", "covered", "slope", "n_seeds", "verdict",
                                                                     "towards_paper"]]
    compute = result.compute.assign(gflop=lambda f: f["gflop"].map("{:.3g}".format),
                                    params_M=lambda f: f["params_M"].map("{:.3g}".format))
    parts = ["# The scale ladder: the headline claims at three model sizes", "",
             "d = AP difference of each claim (its better row minus the other, paired by seed), mean ± half-width "
             "of the 95% t-interval over seeds; paper = the same difference of the paper's numbers. The trend is the "
             "slope of d against log2(GFLOP per training image), AP per doubling of compute, with its 95% interval "
             f"over seeds (stable: inside ±{STABLE_BAND:g}). Rung S reads seeds 0-2 of the paper tables' runs "
             "(DETA Table 1 and Align-DETR Table 5 have 5 seeds, so their d can differ a little).", "",
             "## Compute per rung", "", to_markdown(compute[["rung", "profile", "base", "gflop", "params_M"]]), "",
             "## d per rung", "", to_markdown(summary), "",
             "## Both verdicts per rung", "", to_markdown(verdict_table), "",
             "## Trend with compute", "", to_markdown(trends.rename(columns={"short": "claim", "slope":
                                                                            "AP per doubling"})), "",
             f"## The single-scale bases (one seed; untrained floor {UNTRAINED_AP_FLOOR:g} AP)", "",
             to_markdown(result.bases.assign(AP=lambda f: f["AP"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
                                             gflop=lambda f: f["gflop"].map("{:.3g}".format))), ""]
    return "\n".join(parts)


def scale_study(profile: str = "cpu", seeds: Any = None, results_dir: str | Path = "results",
                data_root: str | None = None, rungs: Mapping[str, str] | None = None) -> ScaleResult:
    """Read the ``scale`` and ``scale_bases`` runs of every rung (train them first, e.g. with
    ``reproduce_table(..., profile=rung's profile)``), then write the per-rung lines, the trends,
    the bases' lines, the Markdown and the figure. ``rungs``: rung -> profile, smallest first
    (default: :func:`ladder_for` ``profile``)."""
    rungs = dict(rungs or ladder_for(profile))
    compute = rung_compute(rungs)
    per_rung, contrasts = rung_lines(rungs, compute, results_dir, seeds, data_root)
    trends = claim_trends(contrasts, per_rung, rungs)
    out = in_project(results_dir)
    files = {"csv": out / "tables" / "scale_ladder.csv", "trend_csv": out / "tables" / "scale_ladder_trend.csv",
             "bases_csv": out / "tables" / "scale_ladder_bases.csv", "markdown": out / "tables" / "scale_ladder.md",
             "figure": out / "figures" / "scale_ladder.png"}
    result = ScaleResult(rungs, compute, per_rung, contrasts, trends, base_lines(rungs, compute, results_dir, data_root), files)
    files["csv"].parent.mkdir(parents=True, exist_ok=True)
    per_rung.to_csv(files["csv"], index=False, float_format="%.4f")
    trends.to_csv(files["trend_csv"], index=False, float_format="%.4f")
    result.bases.to_csv(files["bases_csv"], index=False, float_format="%.4f")
    files["markdown"].write_text(scale_markdown(result))
    plot_scale(per_rung, contrasts, trends, rungs, files["figure"])
    return result
