"""``results/README.md``: an index of every table, figure, verdict and executed notebook, generated
from the files under ``results/`` (``results/notes.md``, hand-written, is included at the top)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from assignlab.paths import in_project
from assignlab.study.budget import budget_table
from assignlab.study.report.aggregate import to_markdown
from assignlab.study.report.scale import ladder_for
from assignlab.study.report.study_claims import study_markdown, write_study_claims
from assignlab.study.report.verification import saved_verification_lines
from assignlab.study.run.plan import plan_runs
from assignlab.study.tables.beyond import notebook_name
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.profiles import table_file_stem
from assignlab.study.tables.scale import BASES_RUNGS, SCALE_NOTEBOOK, SCALE_TABLES

NOTES_NAME = "notes.md"
EXTRA_TABLES = {"deta_table2": "DETA Table 2: inference time per module (runtime.ipynb)",
                "align_figure1": "Align-DETR Figure 1: recall of best-regressed predictions (inspect_matches.ipynb)",
                "align_figure4": "Align-DETR Figure 4: confidence-IoU Pearson r (inspect_matches.ipynb)",
                "growth": "AP differences against the schedule length, per pair (growth_curves.ipynb)",
                "growth_trend": "Trend of each difference with the schedule length (growth_curves.ipynb)",
                "alignment_evidence_alignment": "Alignment diagnostics per method and base (alignment_evidence.ipynb)",
                "alignment_evidence_alignment_claims": "Align-DETR's alignment claims (alignment_evidence.ipynb)",
                "released_topk_behaviour": "How often DETA's released top-K fires (released_topk.ipynb)",
                "released_kcap_behaviour": "How often Align-DETR's released k cap fires (released_kcap.ipynb)"}
EXTRA_FIGURES = {"deta_figure3": "DETA Figure 3: matched and confident-background predictions per method"}
VERIFY_YOURSELF = """## Verify it yourself

`python -m assignlab study verify --table deta_table1 --rows all --seeds 0 --save` retrains the
table's runs of seed 0 (one per row) in a scratch folder (`work-cache/verify/deta_table1`; nothing
under `results/runs/` is touched), compares each with its committed result, and writes
`results/verify/<table>-<machine>.csv`. A rerun reproduces within seed noise when its AP is within
2 SD of the committed AP, SD being the spread of the committed seeds of its row. On a machine of
the project's kind the three runs take about 20 minutes on 2 cores. Saved verifications:
"""

READING_VERDICTS = """## Reading a verdict

Each claim is a contrast d of rows (e.g. AP of DETA minus AP of Hungarian), computed per seed and
tested with a paired t-test (for "equivalent" claims: two one-sided tests against the margin). A
table makes several claims at once, and with enough claims one of them would pass by luck alone;
Holm's correction guards against that. It sorts the table's p-values, multiplies the smallest by
the number of claims, the next by one fewer, and so on (never letting an adjusted value fall below
the one before it). A claim is **reproduced** when its Holm-adjusted p is below 0.05 and d lies on
the claimed side, **not reproduced** when it is below 0.05 on the other side (for equivalence: the
95% interval lies wholly outside the margin), and **inconclusive** otherwise. The chance that any
claim of a table passes its test by luck alone is then 5% or less. A claim can therefore look
clear on its own (p below 0.05) and still be inconclusive after the correction. The study's own
claims (those no paper makes: the tables beyond the papers, a paper table's row asked something
else) **hold**, **do not hold** or are inconclusive instead: nothing is being reproduced.

This first verdict is about the *direction* only. The second is about the *size*: the paper's
value of the same contrast against our 95% interval of d. **size consistent**: the interval
contains the paper's value; **larger** / **smaller than the paper's**: the interval lies wholly
beyond the paper's value in the claimed direction, or wholly on the other side of it (towards
zero or beyond), shown as the ratio d / paper, e.g. "3.1x the paper's size" (for an equivalence
claim, "larger" is away from zero on the paper's side); **n/a** where the paper has no value.
An inconclusive direction whose interval excludes the paper's value says so. Our runs are far
smaller than the papers' (short schedules, small synthetic images), so a reproduced direction
with a different size is expected; the size verdict says how far the effect is from the paper's.

A row whose mean AP stays below 5 AP has not learned to detect. A claim whose rows all stay
below it is **uninformative (untrained)**, whatever its p: none of the detectors it compares has
learned yet, and a difference between near-chance detectors says nothing about the claim at a
scale where they work. A claim with some (not all) of its rows below it keeps its verdict,
qualified **against an untrained row** (e.g. "reproduced, against an untrained row"): beating a
detector that has not learned is no evidence of the claim either. A claim whose rows differ in
more than what it compares says what else differs ("confounded: ...").

Each table's page also states its *detectable difference*: from the seed-to-seed spread of its
rows, the smallest true AP difference that its number of seeds reproduces 80% of the time (at
0.05 divided by the number of claims, the strictest step of Holm's correction). An inconclusive
verdict on a difference smaller than that says little: the study was too small to see it, not
evidence that it is absent. Evidence that a difference is absent or small comes only from a
reproduced equivalence claim.
"""


def _verdict_lines(claims_csv: Path) -> list[str]:
    """One line per claim: both verdicts in words (the ``reading`` column; the plain verdict with
    the paper's value in files written before it existed), d with its interval, seeds, Holm p."""
    claims = pd.read_csv(claims_csv)
    lines = []
    for claim in claims.itertuples(index=False):
        interval = "" if pd.isna(claim.mean) else f"d = {claim.mean:+.2f}" + ("" if pd.isna(claim.ci95) else f" ± {claim.ci95:.2f}")
        reading = getattr(claim, "reading", float("nan"))
        if isinstance(reading, str) and reading:
            lines.append(f"  - {claim.claim} ({claim.test}): **{reading}** ({interval}, {claim.n_seeds} seeds"
                         + ("" if pd.isna(claim.p_holm) else f", Holm p = {claim.p_holm:.3f}") + ")")
            continue
        paper = "" if pd.isna(claim.paper) else f", paper {claim.paper:+.1f}"
        holm = "" if pd.isna(getattr(claim, "p_holm", float("nan"))) else f", Holm p = {claim.p_holm:.3f}"
        lines.append(f"  - {claim.claim} ({claim.test}): **{claim.verdict}** ({interval}{paper}, {claim.n_seeds} seeds"
                     f"{holm})")
    return lines


def finished_runs(present: set[str], table: str, profile: str) -> tuple[int, int]:
    """(finished, planned) distinct runs of ``table`` at ``profile``; ``present``: the run ids with a
    result file under ``results/runs`` for any table (tables share runs)."""
    planned = {run.run_id for run in plan_runs(table, profile)}
    return len(planned & present), len(planned)


def scale_index_lines(root: Path, present: set[str], profile: str = "cpu") -> list[str]:
    """The scale ladder's entry at ``profile`` (:func:`~assignlab.study.report.scale.ladder_for`):
    links, finished runs per rung and each claim's trend."""
    rung_links = []
    for rung, rung_profile in ladder_for(profile).items():
        stem = table_file_stem("scale", rung_profile)
        done, planned = finished_runs(present, "scale", rung_profile)
        table = f"[{rung}](tables/{stem}.md)" if (root / "tables" / f"{stem}.md").exists() else rung
        bases = ""
        if rung in BASES_RUNGS:
            bases_stem = table_file_stem("scale_bases", rung_profile)
            label = (f"[bases](tables/{bases_stem}.md)" if (root / "tables" / f"{bases_stem}.md").exists()
                     else "bases")
            bases = "; {} {} of {}".format(label, *finished_runs(present, "scale_bases", rung_profile))
        rung_links.append(f"{table} ({rung_profile}: {done} of {planned} runs{bases})")
    links = [f"[{label}]({kind}/{name})" for label, kind, name in (
        ("summary", "tables", "scale_ladder.md"), ("figure", "figures", "scale_ladder.png"),
        ("notebook", "notebooks", f"{SCALE_NOTEBOOK}.ipynb")) if (root / kind / name).exists()]
    lines = [f"- {TABLES['scale'].title}: {', '.join(links) or 'not aggregated yet'}; per rung: "
             + "; ".join(rung_links)]
    trends = root / "tables" / "scale_ladder_trend.csv"
    if trends.exists():
        for trend in pd.read_csv(trends, keep_default_na=False, na_values=[""]).itertuples(index=False):
            slope = "" if pd.isna(trend.slope) else f"{trend.slope:+.2f} AP per doubling of compute" + (
                "" if pd.isna(trend.ci95) else f" ± {trend.ci95:.2f}") + f", {trend.n_seeds} seed{'s' if trend.n_seeds != 1 else ''}; "
            rungs = f"rungs {trend.covered}; " if isinstance(trend.covered, str) and trend.covered else ""
            lines.append(f"  - {trend.claim}: **{trend.verdict}** ({rungs}{slope}{trend.towards_paper})")
    return lines


def build_index(results_dir: str | Path = "results", profile: str = "cpu") -> str:
    """The Markdown text of the index (links are relative to ``results_dir``); tables not yet
    aggregated show how many of their runs at ``profile`` have finished."""
    root = in_project(results_dir)
    parts = ["# Results", "", "Generated by `make reproduce` from the files in this folder; do not edit by hand "
             f"(write notes in `{NOTES_NAME}`, which is included below).", ""]
    study = root / "tables" / "study_claims.csv"
    if study.exists():
        parts += ["## Every paper claim at a glance", "",
                  "![Every paper claim: d with its 95% interval against the paper's value](figures/study_claims.png)",
                  "", "Colour: the direction verdict with Holm's correction over the whole study; marker: the size "
                  "verdict (filled circle: the paper's value inside our 95% interval; hollow triangle pointing right / "
                  "left: our effect larger / smaller than the paper's); black bar: the paper's value. Section "
                  "\"Reading a verdict\" below explains both verdicts.", "",
                  study_markdown(pd.read_csv(study, keep_default_na=False, na_values=[""])).strip(), ""]
    notes = root / NOTES_NAME
    if notes.exists():
        parts += [notes.read_text().strip(), ""]
    parts += ["## Tables", ""]
    present = {path.stem for path in (root / "runs").glob("*/*.json")}
    for name, spec in TABLES.items():
        if name in SCALE_TABLES:  # one entry for the ladder, after the others
            continue
        table_md, figure = root / "tables" / f"{name}.md", root / "figures" / f"{name}.png"
        notebook = notebook_name(name)
        if not table_md.exists():
            done, planned = finished_runs(present, name, profile)
            state = f"in progress, {done} of {planned} runs finished" if done else "not run yet"
            parts.append(f"- {spec.title}: {state} at the {profile} profile (`notebooks/{notebook}.ipynb`)")
            continue
        runs = len(list((root / "runs" / name).glob("*.json")))
        links = [f"[table](tables/{name}.md)"] + ([f"[figure](figures/{name}.png)"] if figure.exists() else [])
        links.append(f"[notebook](notebooks/{notebook}.ipynb)" if (root / "notebooks" / f"{notebook}.ipynb").exists()
                     else f"notebook `notebooks/{notebook}.ipynb`")
        parts.append(f"- {spec.title} ({runs} runs): {', '.join(links)}")
        claims_csv = root / "tables" / f"{name}_claims.csv"
        if claims_csv.exists():
            parts += _verdict_lines(claims_csv)
    parts += scale_index_lines(root, present, profile)
    parts += ["", "## Compute", "",
              f"One-core hours of the finished runs at the {profile} profile, and an estimate for the runs left "
              "(`python -m assignlab.study.budget`; a run shared by tables counts once, for the first; wall "
              "times include any pause of a run).", "",
              to_markdown(budget_table(root, profile), digits=2)]
    parts += ["", VERIFY_YOURSELF.strip(), ""] + (saved_verification_lines(root) or ["(none saved yet)"])
    parts += ["", READING_VERDICTS.strip()]
    parts += ["", "## Other tables and figures", ""]
    for name, title in EXTRA_TABLES.items():
        for suffix, kind in ((".md", "tables"), (".csv", "tables")):
            path = root / kind / f"{name}{suffix}"
            if path.exists():
                figure = root / "figures" / f"{name}.png"
                extra = f", [figure](figures/{name}.png)" if figure.exists() else ""
                parts.append(f"- {title}: [{path.name}]({kind}/{path.name}){extra}")
                break
    for name, title in EXTRA_FIGURES.items():
        if (root / "figures" / f"{name}.png").exists():
            parts.append(f"- {title}: [figure](figures/{name}.png)")
    executed = sorted((root / "notebooks").glob("*.ipynb"))
    if executed:
        parts += ["", "## Executed notebooks", ""] + [f"- [{p.stem}](notebooks/{p.name})" for p in executed]
    return "\n".join(parts) + "\n"


def write_results_index(results_dir: str | Path = "results", profile: str = "cpu") -> Path:
    """Write the study-wide claims (:mod:`~assignlab.study.report.study_claims`), then the index."""
    write_study_claims(results_dir, profile)
    path = in_project(results_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_index(results_dir, profile))
    return path
