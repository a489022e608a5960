"""The scale ladder: do the headline claims hold, and how large are they, as the model grows?

The rungs are profiles (:data:`~assignlab.study.tables.profiles.LADDER`): S is the cpu profile (its runs are the paper tables'),
M and L (``cpu-m``, ``cpu-l``; :data:`assignlab.presets.LADDER_MODELS`) train the same data recipe and
schedule with larger models. Each rung runs the same two tables:

- ``scale``: the headline claims' rows, taken from the paper tables (so rung S shares their runs):
  DETA Table 1's three rows, DETA Table 7's Hungarian rows with and without decoder self-attention,
  Align-DETR Table 5's focal baseline, IA-BCE alone and the full Align-DETR on DINO;
- ``scale_bases``: the bases that stay at the untrained floor at the cpu profile (two-stage
  DETR-DC5 with Hungarian matching, DAB-DETR), one seed at rungs S and M, to see whether a larger
  model lifts them.

The trend of each claim's difference against the compute per image is in
:mod:`assignlab.study.report.scale`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from assignlab.presets import TWO_STAGE
from assignlab.study.tables.spec import Hypothesis, RowSpec, TableSpec, difference

__all__ = ["BASES_RUNGS", "SCALE_CLAIMS", "SCALE_NOTEBOOK", "SCALE_TABLES", "scale_bases_table", "scale_table"]

SCALE_TABLES = ("scale", "scale_bases")
SCALE_NOTEBOOK = "scale"

# (label, paper table, its row)
SCALE_ROWS = (
    ("Hungarian", "deta_table1", "Hungarian"),
    ("DETA, K=inf", "deta_table1", "IoU assignment + NMS, K=inf"),
    ("DETA, K=4", "deta_table1", "IoU assignment + NMS, K=4"),
    ("Hungarian (Table 7)", "deta_table7", "Hungarian cross=on self=on"),
    ("Hungarian, no decoder self-attention (Table 7)", "deta_table7", "Hungarian cross=on self=FFN"),
    ("focal, one-to-one | DINO", "align_table5", "focal, one-to-one"),
    ("IA-BCE, one-to-one | DINO", "align_table5", "IA-BCE, one-to-one"),
    ("Align-DETR | DINO", "align_table5", "IA-BCE, mixed matching"),
)

# (short name for figures, the claim): each a claim of the paper table its rows come from
SCALE_CLAIMS = (
    ("DETA (K=4) vs Hungarian",
     Hypothesis("IoU assignment with object balancing beats Hungarian matching",
                difference("DETA, K=4", "Hungarian"), ">")),
    ("DETA (K=inf) vs Hungarian",
     Hypothesis("IoU assignment without balancing beats Hungarian matching",
                difference("DETA, K=inf", "Hungarian"), ">")),
    ("K=4 vs K=inf",
     Hypothesis("Object balancing (K=4) improves IoU assignment", difference("DETA, K=4", "DETA, K=inf"), ">")),
    ("Hungarian: self-attention vs FFN",
     Hypothesis("Hungarian matching needs decoder self-attention",
                difference("Hungarian (Table 7)", "Hungarian, no decoder self-attention (Table 7)"), ">")),
    ("IA-BCE vs focal (DINO)",
     Hypothesis("IA-BCE alone beats the focal-loss baseline",
                difference("IA-BCE, one-to-one | DINO", "focal, one-to-one | DINO"), ">")),
    ("Align-DETR vs focal (DINO)",
     Hypothesis("IA-BCE with mixed matching (Align-DETR) beats the focal-loss baseline",
                difference("Align-DETR | DINO", "focal, one-to-one | DINO"), ">")),
    ("mixed matching on IA-BCE (DINO)",
     Hypothesis("Mixed matching adds to IA-BCE", difference("Align-DETR | DINO", "IA-BCE, one-to-one | DINO"), ">")),
)

# (label, paper table, its row): one seed each, run by the scale notebook at rungs S and M (BASES_RUNGS)
SCALE_BASE_ROWS = (
    ("Hungarian | DETR-DC5", "deta_table1_detr", "Hungarian"),
    ("Hungarian | DAB-DETR", "align_table2", "DAB-DETR"),
)
BASES_RUNGS = ("S", "M")


def _copied_row(label: str, source: TableSpec, source_label: str) -> RowSpec:
    """``source``'s row under ``label``, on its base, with its paper number looked up in ``source``'s CSV."""
    row = source.row(source_label)
    paper = replace(row.paper, table=source.paper_stem) if row.paper is not None else None
    return RowSpec(label, row.overrides, paper, f"{source.name}: {source_label}", row.base or source.base)


def scale_table(paper_tables: Mapping[str, TableSpec]) -> TableSpec:
    return TableSpec(
        name="scale",
        title="The papers' headline claims at three model sizes (the scale ladder)",
        rows=tuple(_copied_row(label, paper_tables[table], source) for label, table, source in SCALE_ROWS),
        claims=tuple(claim for _, claim in SCALE_CLAIMS),
        notes="Rows of the paper tables, run at each rung of the scale ladder: S (the cpu profile, whose runs "
              "these are), M (cpu-m) and L (cpu-l). \"Hungarian (Table 7)\" is the same run as \"Hungarian\" "
              "(DETA's ablation setting applies at the paper profile only), compared with Table 7's number. "
              "The trend of each claim against the compute per image is in the notebook scale.",
        base=TWO_STAGE,
    )


def scale_bases_table(paper_tables: Mapping[str, TableSpec]) -> TableSpec:
    return TableSpec(
        name="scale_bases",
        title="The single-scale bases at each rung of the scale ladder (not in either paper)",
        rows=tuple(_copied_row(label, paper_tables[table], source) for label, table, source in SCALE_BASE_ROWS),
        claims=(),
        notes="Two-stage DETR-DC5 and DAB-DETR stay at the untrained floor at the cpu profile; one seed at rungs S "
              "and M says whether a larger model lifts them off it. DETR-DC5 keeps 100 queries at every rung: it "
              "selects them among its stride-16 tokens, 144 at rung M's 192 px.",
    )
