"""Tables beyond the papers: each objective on each base, does the released code's behaviour
matter, do the papers' differences grow or shrink with the schedule, and what do the alignment
diagnostics say about every method on every base.

- ``objective_x_base``: each training objective on each multi-scale base, against the same base's
  Hungarian baseline.
- ``released_topk`` / ``released_kcap``: each paper's released-code behaviour against its fix
  (``assign.topk_behaviour``, ``assign.k_cap``); how often the behaviour fires is read from the
  runs' curves (:mod:`assignlab.study.report.behaviours`).
- ``growth_*``: a pair of paper rows at 0.5x, 1x and 2x the profile's schedule
  (:class:`~assignlab.study.tables.overrides.ScaledSchedule`); the trend of the difference is in
  :mod:`assignlab.study.report.growth`.
- ``alignment_evidence``: the default configuration of each method on each base, read for the
  alignment diagnostics of the result files (:mod:`assignlab.study.report.evidence`).
- ``deta_table6_selection``: DETA Table 6's first-stage B-matching rows with NMS in query
  selection, to test why they fall apart at the cpu profile.

Rows that repeat a paper table's row are built from that row, so they share its runs: a growth
table's 1x rows, every row of ``alignment_evidence`` and the released rows of the ablations.

Every claim made here is the study's own (``Hypothesis(own=True)``: it holds or does not hold), except
Align-DETR's alignment evidence (Figures 1 and 4), which is the paper's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from assignlab.presets import TWO_STAGE
from assignlab.study.tables.methods import align, deta, hungarian, hybrid
from assignlab.study.tables.overrides import scaled_schedule
from assignlab.study.tables.scale import SCALE_NOTEBOOK, SCALE_TABLES
from assignlab.study.tables.spec import Hypothesis, RowSpec, TableSpec, difference

EQUIVALENCE_MARGIN = 1.0           # AP: a released behaviour "does not matter" within this
GROWTH_FACTORS = (0.5, 1.0, 2.0)   # schedule lengths of the growth tables, times the profile's


# ---------------------------------------------------------------------- objectives x bases
OBJECTIVES = {"Hungarian": hungarian(), "DETA (K=4)": deta(4), "Align-DETR": align(), "hybrid": hybrid()}
BASE_NAMES = {TWO_STAGE: "two-stage Deformable-DETR", "dino": "DINO"}


def objective_label(objective: str, base: str) -> str:
    return f"{objective} | {BASE_NAMES[base]}"


def objective_x_base() -> TableSpec:
    rows, claims = [], []
    for base, name in BASE_NAMES.items():
        objectives = [o for o in OBJECTIVES if not (o == "hybrid" and base != TWO_STAGE)]  # hybrid: two-stage only
        for objective in objectives:
            rows.append(RowSpec(objective_label(objective, base), OBJECTIVES[objective], base=base))
        for objective in objectives[1:]:
            claims.append(Hypothesis(f"{objective} beats Hungarian on {name}",
                                     difference(objective_label(objective, base), objective_label("Hungarian", base)),
                                     ">", own=True))
    return TableSpec(
        name="objective_x_base",
        title="Each training objective on each multi-scale base (not in either paper)",
        rows=tuple(rows),
        claims=tuple(claims),
        notes="One verdict per cell against the same base's Hungarian baseline (paired by seed). Hybrid "
              "matching exists on the two-stage base only; no paper numbers.",
    )


# ---------------------------------------------------------------------- released behaviours
def _released_notes(paper: str, behaviour: str, fix: str) -> str:
    return (f"{paper}'s numbers come from its released code, which has {behaviour}; {fix} The claim is an "
            f"equivalence (|d| < {EQUIVALENCE_MARGIN:g} AP, paired by seed): neither paper states a direction, and "
            "what a reproduction needs to know is whether the papers' numbers hinge on the behaviour. The "
            "notebook also shows how often the behaviour fires in training (fraction of images and of steps, "
            "per output).")


def released_topk() -> TableSpec:
    """DETA (K=4, two-stage base) with the released top-K per object against the fixed one."""
    label = lambda behaviour: f"DETA (K=4), {behaviour} top-K"  # noqa: E731
    rows = tuple(RowSpec(label(b), {**deta(4), "assign.topk_behaviour": b}, note=note) for b, note in (
        ("released", "re-picks the top K boxes over all reference boxes: one box may serve two objects "
                     "(the same run as DETA Table 1's K=4 row)"),
        ("fixed", "keeps the top K among each object's own positives (the upstream fix)")))
    return TableSpec(
        name="released_topk",
        title="DETA's released top-K per object against the fixed one (not in either paper)",
        rows=rows,
        claims=(Hypothesis(f"DETA's released top-K and the fixed one give the same AP (within {EQUIVALENCE_MARGIN:g} point)",
                           difference(label("released"), label("fixed")), "equivalent", margin=EQUIVALENCE_MARGIN,
                           own=True),),
        notes=_released_notes("DETA", "a top-K per object that may give one box to two objects (DETA issue #8)",
                              "the fix keeps each object's K best among its own positives."),
    )


def released_kcap() -> TableSpec:
    """Align-DETR (DINO base) with the released k cap carried over the batch against a per-image cap."""
    label = lambda cap: f"Align-DETR, {cap} k cap"  # noqa: E731
    rows = tuple(RowSpec(label(c), align(**{"assign.k_cap": c}), note=note) for c, note in (
        ("released", "an image's k is capped by the earlier images of the batch too (the same run as Align-DETR "
                     "Table 3's Align-DETR row)"),
        ("per_image", "each image's k is capped by its own objects only")))
    return TableSpec(
        name="released_kcap",
        base="dino", other_bases=(TWO_STAGE,),  # Align-DETR's base, or DETA's
        title="Align-DETR's released k cap against a per-image cap (not in either paper)",
        rows=rows,
        claims=(Hypothesis(f"Align-DETR's released k cap and a per-image cap give the same AP "
                           f"(within {EQUIVALENCE_MARGIN:g} point)",
                           difference(label("released"), label("per_image")), "equivalent", margin=EQUIVALENCE_MARGIN,
                           own=True),),
        notes=_released_notes("Align-DETR", "a cap on the copies k per object, min(floor(0.5 N / objects), k), "
                                            "written back so that it carries over to the later images of a batch",
                              "the per-image cap uses each image's own objects."),
    )


# ------------------------------------------------------------------------ schedule growth
@dataclass(frozen=True)
class GrowthPair:
    """Two rows of a paper table (``better``: the paper's better one) repeated at several
    schedule lengths in the table ``name``; ``arms`` are their short names there."""

    name: str
    title: str
    source: str
    better: str
    worse: str
    arms: tuple[str, str]

    def label(self, arm: str, factor: float) -> str:
        return f"{arm}, {factor:g}x schedule"

    def better_label(self, factor: float) -> str:
        return self.label(self.arms[0], factor)

    def worse_label(self, factor: float) -> str:
        return self.label(self.arms[1], factor)


GROWTH_PAIRS = (
    GrowthPair("growth_deta_vs_hungarian", "DETA (K=4) against Hungarian matching", "deta_table1",
               "IoU assignment + NMS, K=4", "Hungarian", ("DETA (K=4)", "Hungarian")),
    GrowthPair("growth_iabce_vs_focal", "Align-DETR with IA-BCE against Align-DETR with focal loss", "align_table5",
               "IA-BCE, mixed matching", "focal, mixed matching", ("IA-BCE", "focal")),
    GrowthPair("growth_k4_vs_kinf", "DETA object balancing K=4 against K=inf", "deta_table8", "K=4", "K=inf",
               ("K=4", "K=inf")),
    # DETA Table 7's Hungarian rows: does decoder self-attention matter more as training lengthens?
    GrowthPair("growth_hungarian_self_attn", "Hungarian matching with decoder self-attention against without",
               "deta_table7", "Hungarian cross=on self=on", "Hungarian cross=on self=FFN",
               ("Hungarian, self-attention", "Hungarian, FFN instead")),
)


def growth_table(pair: GrowthPair, source: TableSpec, factors: tuple[float, ...] = GROWTH_FACTORS) -> TableSpec:
    """``pair``'s two rows of ``source`` at each schedule length ``factors`` x the profile's
    (the 1x rows are ``source``'s runs and carry its paper numbers); one claim per length: the
    difference is on the paper's side."""
    rows, claims = [], []
    for factor in factors:
        for arm, source_label in zip(pair.arms, (pair.better, pair.worse)):
            row = source.row(source_label)
            rows.append(RowSpec(pair.label(arm, factor), {**row.overrides, **scaled_schedule(factor)},
                                row.paper if factor == 1 else None, f"{source.name}: {source_label}",
                                row.base))
        claims.append(Hypothesis(f"{pair.arms[0]} beats {pair.arms[1]} at {factor:g}x the schedule",
                                 difference(pair.better_label(factor), pair.worse_label(factor)), ">", own=True))
    lengths = ", ".join(f"{f:g}x" for f in factors)
    return TableSpec(
        name=pair.name,
        title=f"Growth with the schedule: {pair.title} at {lengths} (not in either paper)",
        rows=tuple(rows),
        claims=tuple(claims),
        notes=(f"Rows of {source.name} trained {lengths} as long as the profile's schedule (epochs and lr drops "
               "scaled, at least 1 epoch; a drop stays before the last epoch); the 1x rows are "
               f"{source.name}'s runs and carry its paper numbers. The trend of the difference against the "
               "length is in the notebook growth_curves."),
        paper_file=source.paper_stem,
        base=source.base,
    )


# -------------------------------------------------------------------- alignment evidence
# (label, paper table, its row): the default configuration of each method on each base
ALIGNMENT_ROWS = (
    ("Hungarian | two-stage", "deta_table1", "Hungarian"),
    ("B-matching (4,4) | two-stage", "deta_table6", "B=(4,4)"),
    ("DETA (K=4) | two-stage", "deta_table1", "IoU assignment + NMS, K=4"),
    ("Align-DETR | two-stage", "objective_x_base", objective_label("Align-DETR", TWO_STAGE)),
    ("Hungarian | DINO", "align_table3", "DINO"),
    ("IA-BCE, one-to-one | DINO", "align_table4", "IA-BCE"),
    ("Align-DETR | DINO", "align_table3", "Align-DETR"),
    ("Hungarian | DETR-DC5", "deta_table1_detr", "Hungarian"),
    ("DETA (K=4) | DETR-DC5", "deta_table1_detr", "IoU assignment + NMS, K=4"),
    ("Hungarian | DAB-DETR", "align_table2", "DAB-DETR"),
    ("Align-DETR | DAB-DETR", "align_table2", "Align-DETR"),
)

# Align-DETR's evidence (Figures 1 and 4) as claims on the alignment diagnostics of the result
# files; evaluated by :func:`assignlab.study.report.evidence.alignment_study` (not by the AP table).
ALIGNMENT_CLAIMS = (
    Hypothesis("Align-DETR raises the confidence-IoU correlation of DINO's matches (Align-DETR Figure 4)",
               difference("Align-DETR | DINO", "Hungarian | DINO"), ">", metric="pearson_r"),
    Hypothesis("IA-BCE ranks more best-regressed predictions among DINO's top-N confident than focal loss, "
               "matching unchanged (Align-DETR Figure 1)",
               difference("IA-BCE, one-to-one | DINO", "Hungarian | DINO"), ">", metric="br_recall_m1"),
    Hypothesis("Align-DETR raises the confidence-IoU correlation of DAB-DETR's matches",
               difference("Align-DETR | DAB-DETR", "Hungarian | DAB-DETR"), ">", metric="pearson_r", own=True),
)


def alignment_evidence(paper_tables: Mapping[str, TableSpec]) -> TableSpec:
    """One row per method and base, each a row of a paper table (so no run of its own)."""
    rows = []
    for label, table, source_label in ALIGNMENT_ROWS:
        source = paper_tables[table]
        row = source.row(source_label)
        rows.append(RowSpec(label, row.overrides, note=f"{table}: {source_label}", base=row.base or source.base))
    return TableSpec(
        name="alignment_evidence",
        title="Alignment evidence of every method on every base (not in either paper)",
        rows=tuple(rows),
        claims=(),
        notes="Each row is a row of a paper table (its runs are shared). The notebook shows, per row, the "
              "alignment diagnostics each run computes at its end on the first validation images: the recall "
              "of best-regressed predictions among the top m x N confident (Align-DETR Figure 1), Pearson's r "
              "of confidence and IoU of the last layer's matches (Figure 4) and DETA's positives per object by "
              "size; and verdicts on Align-DETR's alignment claims. The AP table has no claims of its own.",
    )


# -------------------------------------------------------------------------------- registry
GROWTH_NOTEBOOK = "growth_curves"  # one notebook runs every growth table and plots their trends


def notebook_name(table: str) -> str:
    """The notebook that shows ``table``: ``growth_curves`` for a growth table, ``scale`` for the
    scale ladder's tables, else its own."""
    if table in SCALE_TABLES:
        return SCALE_NOTEBOOK
    return GROWTH_NOTEBOOK if table in {pair.name for pair in GROWTH_PAIRS} else table


# -------------------------------------------------------------- B-matching query selection
FIRST_STAGE_B = (4, 8)  # DETA Table 6's rows (B, 1) that collapse with top-k query selection at the cpu profile


def b_matching_selection(table6: TableSpec) -> TableSpec:
    """DETA Table 6's rows (B, 1), B in ``FIRST_STAGE_B``, with the top-k query selection they
    have there (the same runs) and with DETA's per-level NMS in query selection."""
    source = {row.label: row for row in table6.rows}
    rows, claims = [], []
    for b in FIRST_STAGE_B:
        row = source[f"B=({b},1)"]
        topk, nms = f"B=({b},1), top-k selection", f"B=({b},1), NMS selection"
        rows += [RowSpec(topk, row.overrides, note=f"deta_table6: {row.label}"),
                 RowSpec(nms, {**row.overrides, "model.query_selection": "nms"},
                         note="per-level NMS (IoU 0.9) among the proposals before the top-k, as DETA selects")]
        claims.append(Hypothesis(f"NMS in query selection lifts first-stage B={b} matching", difference(nms, topk), ">",
                                 own=True))
    return TableSpec(
        name="deta_table6_selection",
        title="DETA Table 6's first-stage B-matching with NMS in query selection (not in either paper)",
        rows=tuple(rows),
        claims=tuple(claims),
        notes="First-stage B-matching gives each object B high-scoring encoder proposals, so top-k query "
              "selection fills the queries with near-duplicates that one-to-one matching in the decoder must "
              "tell apart. The paper says only that it adds NMS because B-matching encourages overlapping "
              "predictions; DETA's released code selects queries by NMS only after an IoU-assigned first stage. "
              "This table measures whether NMS in query selection removes the collapse of the (B, 1) rows.",
    )


def beyond_tables(paper_tables: Mapping[str, TableSpec]) -> tuple[TableSpec, ...]:
    """Every table beyond the papers; ``paper_tables`` (name -> spec) supplies the rows they repeat."""
    objectives = objective_x_base()
    sources = {**paper_tables, objectives.name: objectives}
    growth = tuple(growth_table(pair, sources[pair.source]) for pair in GROWTH_PAIRS)
    return (objectives, released_topk(), released_kcap(), *growth, alignment_evidence(sources),
            b_matching_selection(sources["deta_table6"]))
