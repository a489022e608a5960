"""Every paper claim of the study in one table and one picture, with a study-wide correction.

Each table's verdicts are Holm-corrected within the table (:mod:`~assignlab.study.report.aggregate`).
Across the study the paper claims are one family: here every distinct contrast counts once (the
same rows' runs compared by several tables, e.g. K=4 against K=inf in DETA Tables 1 and 8, is one
test, listed with all its tables, the one with the most seeds standing for it), and two
corrections are applied over the family:

- **Holm** (family-wise error): the chance that any paper claim of the study gets a wrong decided
  verdict stays at or below 5%. It decides the study-wide verdict, because a reader of a
  reproducibility study takes each claim's verdict on its own; a single false "reproduced" is a
  false statement about a paper.
- **Benjamini-Hochberg** q-values (false discovery rate, :func:`scipy.stats.false_discovery_control`):
  the expected share of wrong decisions among the decided claims stays at or below 5%; shown as
  the less strict reading.

Claims whose rows are all untrained have no verdict whatever their p and are left out of the
family. Reads the claims CSVs under ``results/tables`` (written by each table's aggregation);
writes ``results/tables/study_claims.csv``, ``study_claims.md`` and the forest plot
``results/figures/study_claims.png``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from assignlab.paths import in_project
from assignlab.study.report.aggregate import save_figure, to_markdown
from assignlab.study.report.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    SIZE_CONSISTENT,
    SIZE_LARGER,
    SIZE_SMALLER,
    UNTRAINED,
    Interval,
    claim_verdict,
    holm_adjust,
    short_verdict,
    worded_verdict,
)
from assignlab.study.tables.beyond import ALIGNMENT_CLAIMS
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.scale import SCALE_TABLES
from assignlab.study.tables.spec import Hypothesis, TableSpec

STUDY_COLUMNS = ["table", "group", "claim", "tables", "test", "mean", "ci95", "low", "high", "n_seeds", "paper", "p_test", "p",
                 "p_holm_table", "p_holm_study", "q_bh_study", "table_verdict", "study_verdict", "direction_verdict",
                 "size_verdict", "size_ratio"]


@dataclass(frozen=True)
class ClaimSource:
    """A table's claims and the CSV their verdicts are in."""

    table: str
    spec: TableSpec
    claims_csv: str


def claim_sources() -> Iterator[ClaimSource]:
    """Every table's claims (on AP), then the alignment claims of ``alignment_evidence``. The scale
    ladder's tables are left out: at rung S they repeat the paper tables' contrasts on fewer seeds,
    and their larger rungs ask another question (:mod:`~assignlab.study.report.scale`)."""
    for name, spec in TABLES.items():
        if name not in SCALE_TABLES:
            yield ClaimSource(name, spec, f"{name}_claims.csv")
    yield ClaimSource("alignment_evidence", replace(TABLES["alignment_evidence"], claims=ALIGNMENT_CLAIMS),
                      "alignment_evidence_alignment_claims.csv")


def contrast_key(spec: TableSpec, claim: Hypothesis, profile: str) -> tuple:
    """What a claim tests, independent of the table it is in: its metric, test form and the
    configs of its rows (as run-id hashes) with their weights. Two claims with the same key
    compare the same runs."""
    hashes = {row.label: config.stable_hash() for row, config in spec.row_configs(profile)}
    rows = tuple(sorted((hashes[label], weight) for label, weight in claim.weights.items()))
    return claim.metric, claim.direction, claim.margin, rows


def group_name(spec: TableSpec) -> str:
    """The short name of a table in the study-wide view: the paper's table ("DETA Table 1"), with
    the column where the paper's table has several ("DETA Table 1, DETR"), or the study's name."""
    if ":" not in spec.title:
        return spec.name
    short = spec.title.split(":")[0]
    return f"{short}, DETR" if spec.name == "deta_table1_detr" else short


def _claim_lines(results_dir: Path, profile: str) -> pd.DataFrame:
    lines = []
    for source in claim_sources():
        path = results_dir / "tables" / source.claims_csv
        if not path.exists():
            continue
        # "n/a" is a size verdict, not a missing value
        verdicts = pd.read_csv(path, keep_default_na=False, na_values=[""]).set_index("claim")
        for claim in source.spec.claims:
            if claim.statement not in verdicts.index:
                continue
            line = verdicts.loc[claim.statement]
            lines.append({"source": source.table, "group": group_name(source.spec), "claim": claim.statement,
                          "own": claim.own, "direction": claim.direction, "margin": claim.margin,
                          "key": contrast_key(source.spec, claim, profile), **line.to_dict()})
    return pd.DataFrame(lines)


def study_claims(results_dir: str | Path = "results", profile: str = "cpu") -> pd.DataFrame:
    """One line per distinct paper claim (module docstring): where it is tested (``tables``: the
    tables that test the same contrast on the same runs, the study's own included), d with its
    95% interval and seeds, the paper's value, the deciding test and its p, Holm within the table,
    Holm and BH over the study's paper claims, the table's verdict and the study-wide verdict (both
    verdicts in a few words, as in the tables), the direction verdict and the size verdict."""
    lines = _claim_lines(in_project(results_dir), profile)
    if lines.empty:
        return pd.DataFrame(columns=STUDY_COLUMNS)
    tables_of = lines.groupby("key", sort=False)["source"].agg(lambda names: ", ".join(dict.fromkeys(names)))
    paper = lines[~lines["own"].astype(bool)]
    # the claim with the most seeds stands for its contrast (the first table's on a tie)
    order = paper.assign(_n=-paper["n_seeds"].fillna(0)).sort_values("_n", kind="stable")
    chosen = order.drop_duplicates("key").sort_index().reset_index(drop=True)
    in_family = chosen["p"].notna() & (chosen["outcome"] != UNTRAINED)
    family_p = chosen.loc[in_family, "p"].to_numpy(dtype=float)
    holm, bh = np.full(len(chosen), math.nan), np.full(len(chosen), math.nan)
    if len(family_p):
        holm[in_family.to_numpy()] = holm_adjust(family_p)
        bh[in_family.to_numpy()] = false_discovery_control(family_p, method="bh")
    out = []
    for line, p_holm, q_bh in zip(chosen.itertuples(index=False), holm, bh):
        interval = Interval(line.mean, line.ci95, int(line.n_seeds))
        outcome = UNTRAINED if line.outcome == UNTRAINED else (
            claim_verdict(interval, p_holm, line.direction, line.margin) if interval.n >= 2 else line.outcome)
        direction_text = worded_verdict(outcome, False, int(line.untrained_rows))
        out.append({"table": line.source, "group": line.group, "claim": line.claim, "tables": tables_of[line.key], "test": line.test,
                    "mean": line.mean, "ci95": line.ci95, "low": line.low, "high": line.high,
                    "n_seeds": line.n_seeds, "paper": line.paper, "p_test": line.p_test, "p": line.p,
                    "p_holm_table": line.p_holm, "p_holm_study": p_holm, "q_bh_study": q_bh,
                    "table_verdict": line.verdict,
                    "study_verdict": short_verdict(direction_text, line.size_verdict, line.size_ratio,
                                                   isinstance(line.confounded_by, str) and bool(line.confounded_by)),
                    "direction_verdict": direction_text, "size_verdict": line.size_verdict,
                    "size_ratio": line.size_ratio})
    return pd.DataFrame(out, columns=STUDY_COLUMNS)


# ------------------------------------------------------------------------------------- output
DIRECTION_COLOURS = {REPRODUCED: "#2e7d32", NOT_REPRODUCED: "#c62828", INCONCLUSIVE: "#757575",
                     UNTRAINED: "#bdbdbd"}
SIZE_MARKERS = {SIZE_CONSISTENT: "o", SIZE_LARGER: ">", SIZE_SMALLER: "<"}


def direction_class(direction_verdict: str) -> str:
    """reproduced / not reproduced / inconclusive / untrained, whatever the qualifiers."""
    for name in (UNTRAINED, NOT_REPRODUCED, REPRODUCED):
        if direction_verdict.startswith(name):
            return name
    return INCONCLUSIVE


def plot_forest(claims: pd.DataFrame, path: str | Path) -> Path:
    """Every paper claim: d with its 95% interval (colour: the study-wide direction verdict;
    marker: the size verdict), the paper's value as a black bar, grouped by table. The x axis is
    linear within ±2 AP and logarithmic beyond, so that effects of 0.3 and of 30 AP both show."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    shown = claims.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(shown) + 1.8))
    y = np.arange(len(shown))[::-1]
    for pos, line in zip(y, shown.itertuples(index=False)):
        colour = DIRECTION_COLOURS[direction_class(line.direction_verdict)]
        if not math.isnan(line.ci95):
            ax.plot([line.low, line.high], [pos, pos], color=colour, lw=2)
        ax.plot(line.mean, pos, SIZE_MARKERS.get(line.size_verdict, "s"), color=colour, ms=7,
                mfc=colour if line.size_verdict == SIZE_CONSISTENT else "white")
        if not math.isnan(line.paper):
            ax.plot(line.paper, pos, "|", color="black", ms=14, mew=2)
    labels = [f"{line.claim[:70]}{'...' if len(line.claim) > 70 else ''}" for line in shown.itertuples(index=False)]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xscale("symlog", linthresh=2.0)
    ticks = [-30, -10, -3, -1, 0, 1, 3, 10, 30]
    ax.set_xticks(ticks, [f"{t:+d}" if t else "0" for t in ticks])
    ax.axvline(0, color="0.5", lw=0.8)
    ax.grid(axis="x", color="0.9")
    ax.set_xlabel("d (AP points; the two alignment claims in their own units), linear within ±2, log beyond")
    groups = shown["group"].tolist()
    for i in range(1, len(groups)):
        if groups[i] != groups[i - 1]:
            ax.axhline(y[i] + 0.5, color="0.8", lw=0.8)
    for group in dict.fromkeys(groups):
        first = groups.index(group)
        ax.annotate(group, xy=(1.01, y[first]), xycoords=("axes fraction", "data"), fontsize=7, va="center")
    handles = [Line2D([], [], color=colour, lw=2, marker="o", label=f"direction {name}")
               for name, colour in DIRECTION_COLOURS.items()]
    handles += [Line2D([], [], color="0.3", lw=0, marker=marker, mfc="0.3" if name == SIZE_CONSISTENT else "white",
                       label=name) for name, marker in SIZE_MARKERS.items()]
    handles.append(Line2D([], [], color="black", lw=0, marker="|", ms=12, mew=2, label="paper's value"))
    handles.insert(-1, Line2D([], [], color="0.3", lw=0, marker="s", mfc="white", label="size n/a (no paper value)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.7 / (0.32 * len(shown) + 1.8) - 0.01),
              ncol=4, fontsize=7, frameon=False)
    ax.set_xlim(-50, 50)
    ax.set_ylim(-0.7, len(shown) - 0.3)
    ax.set_title("Every paper claim: d with its 95% interval against the paper's value "
                 "(verdicts with Holm's correction over the study)", fontsize=9)
    return save_figure(fig, path)


STUDY_LEGEND = (
    "One line per distinct paper claim; a contrast that several tables test on the same runs is "
    "counted once, with its tables listed (the study's own tables that test it too included). "
    "p = the p of the test that decides the claim (see any table page). Holm p (table) = the "
    "table's correction, which the table pages use; Holm p (study) = Holm over the {m} paper "
    "claims with a p-value (claims whose rows are all untrained have no verdict and are left "
    "out), so that the chance of any wrong decided verdict in the study stays at or below 5%; it "
    "decides the study-wide verdict, because each verdict is read as a statement about a paper. "
    "BH q (study) = Benjamini-Hochberg over the same claims, the expected share of wrong "
    "decisions among the decided ones, shown as the less strict reading. The size part compares "
    "the paper's value with our 95% interval.")


def study_summary(claims: pd.DataFrame) -> str:
    """One paragraph counting the study-wide verdicts and, within each, the size verdicts."""
    classes = claims["direction_verdict"].map(direction_class)
    sizes = claims["size_verdict"]

    def sized(mask: pd.Series) -> str:
        counts = [(int((mask & (sizes == name)).sum()), words) for name, words in (
            (SIZE_CONSISTENT, "with the paper's value inside our interval"),
            (SIZE_LARGER, "larger than the paper's"), (SIZE_SMALLER, "smaller than the paper's"))]
        parts = [f"{n} {words}" for n, words in counts if n]
        missing = int(mask.sum()) - sum(n for n, _ in counts)
        parts += [f"{missing} without a paper value"] if missing else []
        return f" ({'; '.join(parts)})" if parts else ""

    judged = classes != UNTRAINED
    text = (f"The study tests {len(claims)} distinct paper claims. {int((~judged).sum())} compare detectors that "
            f"have not learned (uninformative). Of the {int(judged.sum())} others, with Holm's correction over the "
            f"study: {int((classes == REPRODUCED).sum())} reproduced{sized(classes == REPRODUCED)}, "
            f"{int((classes == NOT_REPRODUCED).sum())} not reproduced{sized(classes == NOT_REPRODUCED)} and "
            f"{int((classes == INCONCLUSIVE).sum())} inconclusive{sized(classes == INCONCLUSIVE)}.")
    against = int(claims["direction_verdict"].str.contains("untrained row").sum())
    confounded = int(claims["study_verdict"].str.endswith("; confounded").sum())
    if against or confounded:
        text += (f" Qualified: {against} against an untrained row, {confounded} confounded (the rows differ in "
                 "more than the claim names).")
    return text


def study_markdown(claims: pd.DataFrame) -> str:
    """The study-wide summary and table as Markdown, with the legend."""
    m = int(claims["p_holm_study"].notna().sum())
    shown = pd.DataFrame({
        "table": claims["group"], "claim": claims["claim"],
        "d [95% interval]": [_interval_text(line) for line in claims.itertuples(index=False)],
        "paper": claims["paper"], "seeds": claims["n_seeds"], "p": claims["p"].map(_p_text),
        "Holm p (table)": claims["p_holm_table"].map(_p_text), "Holm p (study)": claims["p_holm_study"].map(_p_text),
        "BH q (study)": claims["q_bh_study"].map(_p_text), "verdict (study-wide)": claims["study_verdict"],
        "also tested in": [", ".join(t for t in line.tables.split(", ") if t != line.table)
                           for line in claims.itertuples()]})
    return (study_summary(claims) + "\n\n" + STUDY_LEGEND.format(m=m) + "\n\n" + to_markdown(shown, digits=1)
            + "\n")


def _interval_text(line) -> str:
    if math.isnan(line.ci95):
        return "" if math.isnan(line.mean) else f"{line.mean:+.2f}"
    return f"{line.mean:+.2f} [{line.low:+.2f}, {line.high:+.2f}]"


def _p_text(p: float) -> str:
    return "" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def write_study_claims(results_dir: str | Path = "results", profile: str = "cpu") -> dict[str, Path] | None:
    """Write the study-wide CSV, Markdown and forest plot (None when no table has claims yet)."""
    root = in_project(results_dir)
    claims = study_claims(root, profile)
    if claims.empty:
        return None
    files = {"csv": root / "tables" / "study_claims.csv", "markdown": root / "tables" / "study_claims.md",
             "figure": root / "figures" / "study_claims.png"}
    files["csv"].parent.mkdir(parents=True, exist_ok=True)
    claims.to_csv(files["csv"], index=False, float_format="%.4f")
    files["markdown"].write_text("# Every paper claim, with a study-wide correction\n\n" + study_markdown(claims))
    plot_forest(claims, files["figure"])
    return files
