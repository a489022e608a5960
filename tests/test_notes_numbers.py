"""The numbers `results/notes.md` quotes from the generated tables agree with those tables.

The notes are hand-written, the tables under `results/tables/` are generated; when a table is
regenerated, a number quoted in the prose can go stale. Each entry of `QUOTES` below names one
such number:

- the sentence id: a short substring of the notes sentence that quotes it, occurring exactly once
  in the notes;
- the table: a CSV stem under `results/tables/`;
- the cell: the value of the table's key column (`claim`, `row` or `pair`, whichever the table
  has), or a dict of column -> value for tables keyed by several columns (`row` and `metric`,
  `row` and `output`);
- the text: how the notes write it, a `str.format` template over the row's column names, e.g.
  "{mean:+.1f} ± {ci95:.1f}" for a claim's difference and interval or "{ours:.1f}" for a row's
  mean AP. Words around the number may be part of the template to tie it to its place in the
  sentence.

The check formats the cell's row of the CSV with the template and looks for the result in the
paragraph of the notes that contains the sentence id. Paragraphs are separated by blank lines,
and every list item ("- ..." at any indentation, with its continuation lines) is a paragraph of
its own; line breaks and indentation inside a paragraph count as single spaces. A formatted
number only matches as a whole number: "3.8" does not match inside "13.8", "-3.8" or "3.85".

Numbers the notes take from elsewhere (sizing runs, probes, training curves, per-seed values,
wall times, differences computed in the prose) are not entries.

To add an entry when the notes change: find the sentence, add `(key, template)` to the group of
its sentence id and table (or a new `quoted(sentence_id, table, ...)` group), and run this file.
A number that disagrees with its table is fixed in the notes; until then its entry is written
`notes_mismatch(key, template, reason)`, a `pytest.param` marked `xfail(strict=True)`, which
fails as soon as the notes agree again (then drop the wrapper).
"""
import csv
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Union

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"
NOTES = RESULTS / "notes.md"
TABLES = RESULTS / "tables"
KEY_COLUMNS = ("claim", "row", "pair")

D_CI1 = "{mean:+.1f} ± {ci95:.1f}"
D_CI2 = "{mean:+.2f} ± {ci95:.2f}"


def notes_mismatch(key, text, reason):
    """An entry whose number the notes currently misquote: expected to fail until they are fixed."""
    return pytest.param(key, text, marks=pytest.mark.xfail(strict=True, reason=reason))


class Quote(NamedTuple):
    sentence_id: str
    table: str
    key: Union[str, dict]
    text: str

    @property
    def cell(self):
        key = "/".join(self.key.values()) if isinstance(self.key, dict) else self.key
        columns = [field for _, field, _, _ in string.Formatter().parse(self.text) if field]
        return f"{key}/{','.join(columns)}"


def quoted(sentence_id, table, *cells):
    """The entries for the numbers one notes sentence quotes from one table; each cell is a
    (key, template) pair or a `notes_mismatch`."""
    params = []
    for cell in cells:
        values, marks = (cell.values, cell.marks) if hasattr(cell, "marks") else (cell, ())
        params.append(pytest.param(Quote(sentence_id, table, *values), marks=marks))
    return params


QUOTES = [
    # "Sizing the cpu profile" and "The DINO base at the cpu profile"
    *quoted("At the chosen profile (DETA Table 1, 5 seeds each", "deta_table1",
            ("IoU assignment + NMS, K=4", "DETA (K=4) AP {ours:.1f}"),
            ("IoU assignment + NMS, K=inf", "DETA (K=inf) {ours:.1f}"),
            ("Hungarian", "Hungarian {ours:.1f} /")),
    *quoted("the reverse of the papers' COCO numbers at 12 epochs", "align_table3",
            ("DINO", "DINO {paper:.1f} in Align-DETR Table 3")),
    *quoted("the reverse of the papers' COCO numbers at 12 epochs", "deta_table1",
            ("Hungarian", "Hungarian matching {paper:.1f} in DETA Table 1")),

    # DETA Table 6 and its query-selection follow-up
    *quoted("In DETA Table 6, more positives per object in the second stage help", "deta_table6",
            ("B=(1,1) Hungarian", "one-to-one matching (AP {ours:.1f})")),
    *quoted("In DETA Table 6, more positives per object in the second stage help", "deta_table6_claims",
            ("B=2 positives per object in both stages beat one-to-one matching", f"({D_CI1}, reproduced"),
            ("B=2 positives per object in both stages beat one-to-one matching", "paper {paper:+.1f})"),
            ("B=4 positives per object in both stages beat one-to-one matching", f"({D_CI1}, inconclusive"),
            ("B=4 positives per object in both stages beat one-to-one matching", "paper {paper:+.1f})")),
    *quoted("B-matching in the first stage alone does not reproduce", "deta_table6",
            ("B=(4,1)", "B = 4 falls to AP {ours:.1f}"),
            ("B=(8,1)", "B = 8 to {ours:.1f}")),
    *quoted("With one-to-many matching in the decoder too", "deta_table6",
            ("B=(4,4)", "trains normally ({ours:.1f})")),
    *quoted("`deta_table6_selection` does not confirm that explanation", "deta_table6_selection",
            ("B=(4,1), NMS selection", "the (4, 1) row reaches AP {ours:.1f}"),
            ("B=(4,1), top-k selection", "(top-k: {ours:.1f};"),
            ("B=(8,1), NMS selection", "the (8, 1) row {ours:.1f}"),
            ("B=(8,1), top-k selection", "(top-k: {ours:.1f};")),
    *quoted("`deta_table6_selection` does not confirm that explanation", "deta_table6_selection_claims",
            ("NMS in query selection lifts first-stage B=4 matching", f"d = {D_CI1}"),
            ("NMS in query selection lifts first-stage B=8 matching", f"d = {D_CI1}")),
    *quoted("`deta_table6_selection` does not confirm that explanation", "deta_table6",
            ("B=(1,1) Hungarian", "one-to-one matching ({ours:.1f})")),

    # DETA Table 7
    *quoted("In DETA Table 7, Hungarian matching did not lose AP", "deta_table7",
            ("Hungarian cross=on self=on", "({ours:.1f} with it"),
            ("Hungarian cross=on self=FFN", "{ours:.1f} without;"),
            ("Hungarian cross=on self=on", "the paper: {paper:.1f} and"),
            ("Hungarian cross=on self=FFN", "and {paper:.1f})")),
    *quoted("In DETA Table 7, Hungarian matching did not lose AP", "deta_table7_claims",
            ("Removing decoder self-attention costs Hungarian more than DETA", "reports as {paper:+.1f}"),
            ("Removing decoder self-attention costs Hungarian more than DETA",
             "came out {mean:+.2f} with a 95% interval of ±{ci95:.1f}")),

    # DETA Table 1's DETR column
    *quoted("DETA Table 1's DETR column (`deta_table1_detr`", "deta_table1_detr",
            ("Hungarian", "(Hungarian {ours:.1f},"),
            ("IoU assignment + NMS, K=inf", "K=inf {ours:.1f},"),
            ("IoU assignment + NMS, K=4", "K=4 {ours:.1f} AP;"),
            ("Hungarian", "the paper: {paper:.1f},"),
            ("IoU assignment + NMS, K=inf", ", {paper:.1f},"),
            ("IoU assignment + NMS, K=4", "{paper:.1f})."),),
    *quoted("DETA Table 1's DETR column (`deta_table1_detr`", "deta_table1_detr_claims",
            ("IoU assignment with object balancing beats Hungarian matching on DETR", f"difference, {D_CI2}"),
            ("IoU assignment with object balancing beats Hungarian matching on DETR", "(p_holm {p_holm:.3f})")),

    # released_topk
    *quoted("DETA's released top-K per object (one box may be given to two objects)", "released_topk",
            ("DETA (K=4), released top-K", "{ours:.1f} and"),
            ("DETA (K=4), fixed top-K", "and {ours:.1f}, d =")),
    *quoted("DETA's released top-K per object (one box may be given to two objects)", "released_topk_claims",
            ("DETA's released top-K and the fixed one give the same AP (within 1 point)", f"d = {D_CI2}")),
    *quoted("DETA's released top-K per object (one box may be given to two objects)", "released_topk_behaviour",
            ({"row": "DETA (K=4), released top-K", "output": "enc"},
             "fires on {images_mean:.0%} of training images ({steps_mean:.0%} of steps) in the encoder's"),
            *[({"row": "DETA (K=4), released top-K", "output": layer},
               "on {images_mean:.0%} of images ({steps_mean:.0%} of steps) in each decoder layer's")
              for layer in ("dec0", "dec1", "dec2")]),

    # The scale ladder
    *quoted("the growth tables show the differences move most below", "growth_deta_vs_hungarian_claims",
            ("DETA (K=4) beats Hungarian at 0.5x the schedule", "+{mean:.1f} AP at 0.5x the schedule"),
            ("DETA (K=4) beats Hungarian at 1x the schedule", "+{mean:.1f} at 1x"),
            ("DETA (K=4) beats Hungarian at 2x the schedule", "+{mean:.1f} at 2x")),
    *quoted("DETA K=inf beats Hungarian by", "scale-cpu-m_claims",
            ("IoU assignment without balancing beats Hungarian matching", "by {mean:+.2f} AP (rung S")),
    *quoted("DETA K=inf beats Hungarian by", "scale_claims",
            ("IoU assignment without balancing beats Hungarian matching", "AP (rung S: " + D_CI2 + ")"),
            ("IoU assignment without balancing beats Hungarian matching", "the paper's {paper:+.1f}.")),
    *quoted("DETA K=inf beats Hungarian by", "scale-cpu-m",
            ("DETA, K=inf", "at AP {ours:.1f}"), ("Hungarian", "against {ours:.1f}, both")),
    *quoted("DETA K=inf beats Hungarian by", "scale",
            ("DETA, K=inf", "rung S's {ours:.1f} and"), ("Hungarian", "and {ours:.1f}:")),
    *quoted("Hungarian with decoder self-attention against without it", "scale-cpu-m_claims",
            ("Hungarian matching needs decoder self-attention", "without it: {mean:+.2f} (rung S")),
    *quoted("Hungarian with decoder self-attention against without it", "scale_claims",
            ("Hungarian matching needs decoder self-attention", "(rung S: " + D_CI2 + "; paper {paper:+.1f})")),
    # The growth tables
    *quoted("DETA (K=4) beats Hungarian matching at every length", "growth_deta_vs_hungarian_claims",
            ("DETA (K=4) beats Hungarian at 0.5x the schedule", f"{D_CI1} (0.5x)"),
            ("DETA (K=4) beats Hungarian at 1x the schedule", f"{D_CI1} (1x)"),
            ("DETA (K=4) beats Hungarian at 2x the schedule", f"{D_CI1} AP (2x)"),
            ("DETA (K=4) beats Hungarian at 1x the schedule", "(paper at 1x: {paper:+.1f})")),
    *quoted("DETA (K=4) beats Hungarian matching at every length", "growth_trend",
            ("growth_deta_vs_hungarian", "slope {slope:+.1f} ± {ci95:.1f} AP per doubling")),
    *quoted("removing decoder self-attention does not cost Hungarian matching", "growth_hungarian_self_attn_claims",
            ("Hungarian, self-attention beats Hungarian, FFN instead at 0.5x the schedule", f"{D_CI1} (0.5x)"),
            ("Hungarian, self-attention beats Hungarian, FFN instead at 1x the schedule", f"{D_CI1} (1x)"),
            ("Hungarian, self-attention beats Hungarian, FFN instead at 2x the schedule", f"{D_CI1} (2x)"),
            ("Hungarian, self-attention beats Hungarian, FFN instead at 1x the schedule",
             "the paper's {paper:.1f}-point loss")),
    *quoted("removing decoder self-attention does not cost Hungarian matching", "growth_trend",
            ("growth_hungarian_self_attn", "slope {slope:+.2f} ± {ci95:.2f}")),
    *quoted("removing decoder self-attention does not cost Hungarian matching", "growth_hungarian_self_attn",
            ("Hungarian, self-attention, 2x schedule", "(AP {ours:.0f})"),
            ("Hungarian, FFN instead, 2x schedule", "(AP {ours:.0f})"),
            ("Hungarian, self-attention, 2x schedule", "even at {ours:.0f} AP")),
    *quoted("object balancing K=4 against K=inf gives no measurable gain", "growth_k4_vs_kinf_claims",
            ("K=4 beats K=inf at 0.5x the schedule", f"{D_CI2} (0.5x)"),
            ("K=4 beats K=inf at 1x the schedule", f"{D_CI2} (1x)"),
            ("K=4 beats K=inf at 2x the schedule", f"{D_CI2} AP (2x)"),
            ("K=4 beats K=inf at 2x the schedule", "p {p:.3f} alone, p_holm {p_holm:.2f}"),
            ("K=4 beats K=inf at 1x the schedule", "1x interval [{low:+.2f}, {high:+.2f}]"),
            ("K=4 beats K=inf at 2x the schedule", "2x one [{low:+.2f}, {high:+.2f}]")),
    *quoted("object balancing K=4 against K=inf gives no measurable gain", "growth_trend",
            ("growth_k4_vs_kinf", "slope {slope:+.2f} ± {ci95:.2f} AP per doubling")),
    *quoted("object balancing K=4 against K=inf gives no measurable gain", "deta_table8_claims",
            ("Object balancing K=4 beats no balancing (K=inf)", "The paper's {paper:+.1f} (Table 8)")),
    *quoted("IA-BCE is ahead at every length", "growth_iabce_vs_focal_claims",
            ("IA-BCE beats focal at 0.5x the schedule", f"{D_CI1} (0.5x:"),
            ("IA-BCE beats focal at 1x the schedule", f"{D_CI1} (1x:"),
            ("IA-BCE beats focal at 2x the schedule", f"{D_CI1} AP (2x:"),
            ("IA-BCE beats focal at 1x the schedule", "(paper at 1x: {paper:+.1f})")),
    *quoted("IA-BCE is ahead at every length", "growth_iabce_vs_focal",
            ("IA-BCE, 0.5x schedule", "(0.5x: {ours:.1f} against"),
            ("focal, 0.5x schedule", "against {ours:.1f})"),
            ("IA-BCE, 1x schedule", "(1x: {ours:.1f} against"),
            ("focal, 1x schedule", "against {ours:.1f})"),
            ("IA-BCE, 2x schedule", "(2x: {ours:.1f} against"),
            ("focal, 2x schedule", "against {ours:.1f})"),
            ("focal, 2x schedule", "focal loss ({ours:.1f}) is still below"),
            ("IA-BCE, 1x schedule", "IA-BCE at 1x ({ours:.1f})")),
    *quoted("IA-BCE is ahead at every length", "growth_trend",
            ("growth_iabce_vs_focal", "slope {slope:+.1f} ± {ci95:.1f} AP per doubling")),

    # Align-DETR Table 4
    *quoted("Align-DETR Table 4 (DINO base, one-to-one matching in every row", "align_table4",
            ("QFL gamma=1", "QFL (gamma 1) {ours:.1f}"),
            ("VFL", "VFL {ours:.1f},"),
            ("QFL gamma=2", "QFL (gamma 2) {ours:.1f}"),
            ("IA-BCE", "IA-BCE {ours:.1f},"),
            ("focal loss", "focal loss ({ours:.1f})"),
            ("IoU branch, no fusion", "the IoU branch ({ours:.1f};"),
            ("IoU branch, fusion 0.3", "{ours:.1f} with fusion 0.3"),
            ("QFL gamma=2", "({paper:.1f}-"),
            ("IA-BCE", "-{paper:.1f})")),
    *quoted("Align-DETR Table 4 (DINO base, one-to-one matching in every row", "align_table4_claims",
            ("IA-BCE beats focal loss", f"IA-BCE beats focal loss by {D_CI1}"),
            ("IA-BCE beats the fused IoU branch", f"the fused IoU branch by {D_CI1}"),
            ("IA-BCE beats focal loss", "the paper's {paper:+.1f} and"),
            ("IA-BCE beats the fused IoU branch", "and {paper:+.1f}. IA-BCE against VFL"),
            ("IA-BCE beats VFL", f"IA-BCE against VFL, {D_CI1}, is inconclusive"),
            ("IA-BCE beats VFL", "(paper {paper:+.1f}): the interval")),
    *quoted("Align-DETR Table 4 (DINO base, one-to-one matching in every row", "alignment_evidence_alignment",
            ({"row": "Hungarian | DINO", "metric": "pearson_r"}, "against {mean:.2f} with focal loss")),
    *quoted("Align-DETR Table 4 (DINO base, one-to-one matching in every row", "objective_x_base",
            ("Align-DETR | two-stage Deformable-DETR", "Align-DETR on the two-stage base: {ours:.1f}")),

    # objective_x_base
    *quoted("each objective on each multi-scale base, against the base's own Hungarian row", "objective_x_base_claims",
            ("DETA (K=4) beats Hungarian on two-stage Deformable-DETR", f"DETA (K=4) gains {D_CI1} AP"),
            ("Align-DETR beats Hungarian on two-stage Deformable-DETR", f"Align-DETR {D_CI1}, both"),
            ("DETA (K=4) beats Hungarian on DINO", f"DETA gains {D_CI1}"),
            ("Align-DETR beats Hungarian on DINO", f"Align-DETR {D_CI1}, both"),
            ("hybrid beats Hungarian on two-stage Deformable-DETR", f"d = {D_CI1}")),
    *quoted("each objective on each multi-scale base, against the base's own Hungarian row", "objective_x_base",
            ("Hungarian | DINO", "far lower ({ours:.1f} against"),
            ("Hungarian | two-stage Deformable-DETR", "against {ours:.1f})"),
            ("DETA (K=4) | DINO", "DETA on DINO, AP {ours:.1f}"),
            ("Align-DETR | DINO", "on the same base ({ours:.1f})"),
            ("Align-DETR | DINO", "Align-DETR on DINO ({ours:.1f})"),
            ("hybrid | two-stage Deformable-DETR", "Hungarian matching alone: {ours:.1f} against"),
            ("Hungarian | two-stage Deformable-DETR", "against {ours:.1f}, d ="),
            ("hybrid | two-stage Deformable-DETR", "top-k {ours:.1f})")),
    *quoted("each objective on each multi-scale base, against the base's own Hungarian row", "align_table4",
            ("IA-BCE", "({ours:.1f} in Align-DETR Table 4)")),

    # Align-DETR Table 5
    *quoted("Align-DETR Table 5 (DINO, 5 seeds)", "align_table5_claims",
            ("IA-BCE alone beats the focal-loss baseline", f"baseline by {D_CI1} AP"),
            ("IA-BCE alone beats the focal-loss baseline", "; paper {paper:+.1f}) and IA-BCE"),
            ("IA-BCE with mixed matching beats the focal-loss baseline", f"mixed matching by {D_CI1}"),
            ("IA-BCE with mixed matching beats the focal-loss baseline", "(paper {paper:+.1f}), both"),
            ("Mixed matching adds to IA-BCE", f"adds nothing to IA-BCE: {D_CI1}"),
            ("Mixed matching adds to IA-BCE", "; paper {paper:+.1f}), inconclusive"),
            ("Mixed matching adds to IA-BCE", "excludes a gain above {high:.1f} AP"),
            ("Mixed matching adds to IA-BCE", "the paper's {paper:+.1f})")),
    *quoted("Align-DETR Table 5 (DINO, 5 seeds)", "align_table5",
            ("IA-BCE, one-to-one", "AP ({ours:.1f} against"),
            ("focal, one-to-one", "against {ours:.1f}; paper"),
            ("IA-BCE, mixed matching", "({ours:.1f} against"),
            ("IA-BCE, one-to-one", "against {ours:.1f}; paper"),
            ("focal, mixed matching", "({ours:.1f} against"),
            ("focal, one-to-one", "against {ours:.1f}; not one of the paper's claims")),

    # Align-DETR Table 8
    *quoted("Align-DETR Table 8 (prime-sample weighting in mixed matching", "align_table8_claims",
            ("Prime-sample weighting helps at k=3", f"k = 3 by {D_CI1} AP"),
            ("Prime-sample weighting helps at k=2", f"k = 2 by {D_CI1}"),
            ("Prime-sample weighting helps at k=3", "; paper {paper:+.1f})"),
            ("Prime-sample weighting helps at k=2", "; paper {paper:+.1f})"),
            ("Prime-sample weighting helps at k=3", "(p {p:.3f} and"),
            ("Prime-sample weighting helps at k=2", "and {p:.3f},"),
            ("Prime-sample weighting helps at k=3", ", {p_holm:.3f} and"),
            ("Prime-sample weighting helps at k=2", "and {p_holm:.3f} after Holm")),
    *quoted("Align-DETR Table 8 (prime-sample weighting in mixed matching", "align_table8",
            ("k=3, PS", "({ours:.1f} against"),
            ("k=3, no PS", "against {ours:.1f}; paper"),
            ("k=2, PS", "({ours:.1f} against"),
            ("k=2, no PS", "against {ours:.1f}; paper"),
            ("k=1", "(k = 1, {ours:.1f})"),
            ("k=2, PS", "k = 2 and k = 3 reach {ours:.1f}"),
            ("k=3, PS", "k = 2 and k = 3 reach {ours:.1f}"),
            ("k=2, no PS", "below k = 1 ({paper:.1f},"),
            ("k=3, no PS", ", {paper:.1f} against"),
            ("k=1", "against {paper:.1f})")),
    *quoted("Align-DETR Table 8 (prime-sample weighting in mixed matching", "alignment_evidence_alignment",
            ({"row": "IA-BCE, one-to-one | DINO", "metric": "br_recall_m1"}, "goes {mean:.2f},"),
            ({"row": "Align-DETR | DINO", "metric": "br_recall_m1"}, "and {mean:.2f})")),

    # Align-DETR Table 3
    *quoted("Align-DETR Table 3 (one schedule, 3 seeds)", "align_table3_claims",
            ("Align-DETR beats DINO", f"Align-DETR beats DINO by {D_CI1}"),
            ("Align-DETR beats DINO", "(paper {paper:+.1f}) and"),
            ("Align-DETR beats H-Deformable-DETR", f"H-Deformable-DETR by {D_CI1}"),
            ("Align-DETR beats H-Deformable-DETR", "(paper {paper:+.1f}), both"),
            ("DETA's IoU assignment beats Hungarian matching on DINO (the study's claim, not the paper's)",
             f"beats DINO by {D_CI1} and")),
    *quoted("Align-DETR Table 3 (one schedule, 3 seeds)", "align_table3",
            ("DETA (K=4)", "({ours:.1f} against"),
            ("Align-DETR", "against {ours:.1f})")),

    # Align-DETR Table 7
    *quoted("Align-DETR Table 7 (hybrid matching on the two-stage base", "align_table7_claims",
            ("IA-BCE improves hybrid matching", f"matching by {D_CI1} AP"),
            ("IA-BCE improves hybrid matching", "paper {paper:+.1f})")),
    *quoted("Align-DETR Table 7 (hybrid matching on the two-stage base", "align_table7",
            ("hybrid matching, IA-BCE", "({ours:.1f} against"),
            ("hybrid matching, focal", "against {ours:.1f};")),

    # Align-DETR Table 2
    *quoted("Align-DETR Table 2 (DAB-DETR, 3 seeds) gives no evidence", "align_table2",
            ("DAB-DETR", "stays at AP {ours:.1f}"),
            ("Align-DETR", "on it at {ours:.1f}"),
            ("DAB-DETR", "(paper {paper:.1f} and"),
            ("Align-DETR", "and {paper:.1f})")),
    *quoted("Align-DETR Table 2 (DAB-DETR, 3 seeds) gives no evidence", "align_table2_claims",
            ("Align-DETR improves DAB-DETR", f"the difference, {D_CI2}")),

    # alignment_evidence
    *quoted("reproduces Align-DETR's two alignment claims on DINO within its table", "study_claims",
            ("Align-DETR raises the confidence-IoU correlation of DINO's matches (Align-DETR Figure 4)",
             "(Holm p {p_holm_study:.2f} and"),
            ("IA-BCE ranks more best-regressed predictions among DINO's top-N confident than focal loss, "
             "matching unchanged (Align-DETR Figure 1)", "and {p_holm_study:.2f})")),
    *quoted("Align-DETR raises Pearson's r of confidence and IoU", "alignment_evidence_alignment",
            ({"row": "Hungarian | DINO", "metric": "pearson_r"}, "from {mean:.2f} to"),
            ({"row": "Align-DETR | DINO", "metric": "pearson_r"}, "to {mean:.2f}, d =")),
    *quoted("Align-DETR raises Pearson's r of confidence and IoU", "alignment_evidence_alignment_claims",
            ("Align-DETR raises the confidence-IoU correlation of DINO's matches (Align-DETR Figure 4)",
             f"d = {D_CI2}")),
    *quoted("IA-BCE with one-to-one matching ranks more objects' best-regressed", "alignment_evidence_alignment",
            ({"row": "IA-BCE, one-to-one | DINO", "metric": "br_recall_m1"}, "confident: {mean:.2f} against"),
            ({"row": "Hungarian | DINO", "metric": "br_recall_m1"}, "against {mean:.2f} at m = 1")),
    *quoted("IA-BCE with one-to-one matching ranks more objects' best-regressed", "alignment_evidence_alignment_claims",
            ("IA-BCE ranks more best-regressed predictions among DINO's top-N confident than focal loss, "
             "matching unchanged (Align-DETR Figure 1)", "d = {mean:+.3f} ± {ci95:.3f}")),
    *quoted("The same Pearson claim on DAB-DETR", "alignment_evidence_alignment_claims",
            ("Align-DETR raises the confidence-IoU correlation of DAB-DETR's matches", f"({D_CI2})")),
    *quoted("DETA's IoU assignment aligns confidence with IoU without an IoU-aware loss",
            "alignment_evidence_alignment",
            ({"row": "DETA (K=4) | two-stage", "metric": "pearson_r"}, "r = {mean:.2f} on the two-stage base"),
            ({"row": "Hungarian | two-stage", "metric": "pearson_r"}, "against {mean:.2f} for Hungarian"),
            ({"row": "Align-DETR | two-stage", "metric": "pearson_r"}, "{mean:.2f} for Align-DETR")),
    *quoted("Align-DETR's full method ranks fewer best-regressed predictions first", "alignment_evidence_alignment",
            ({"row": "Align-DETR | DINO", "metric": "br_recall_m1"}, "(m = 1: {mean:.2f} against"),
            ({"row": "Hungarian | DINO", "metric": "br_recall_m1"}, "against {mean:.2f} on DINO"),
            ({"row": "Align-DETR | two-stage", "metric": "br_recall_m1"}, "DINO, {mean:.2f} against"),
            ({"row": "Hungarian | two-stage", "metric": "br_recall_m1"}, "against {mean:.2f} on the two-stage base"),
            ({"row": "B-matching (4,4) | two-stage", "metric": "br_recall_m1"}, "is lowest ({mean:.2f})")),
    *quoted("DETA gives large objects more positives than small ones", "alignment_evidence_alignment",
            ({"row": "DETA (K=4) | two-stage", "metric": "positives_per_object_last_large"}, "({mean:.2f},"),
            ({"row": "DETA (K=4) | two-stage", "metric": "positives_per_object_last_medium"}, ", {mean:.2f} and"),
            ({"row": "DETA (K=4) | two-stage", "metric": "positives_per_object_last_small"}, "and {mean:.2f} per object")),

    # released_kcap
    *quoted("Align-DETR's released k cap, which carries a lowered k", "released_kcap",
            ("Align-DETR, released k cap", "{ours:.1f} and"),
            ("Align-DETR, per_image k cap", "and {ours:.1f}, d =")),
    *quoted("Align-DETR's released k cap, which carries a lowered k", "released_kcap_claims",
            ("Align-DETR's released k cap and a per-image cap give the same AP (within 1 point)", f"d = {D_CI2}"),
            ("Align-DETR's released k cap and a per-image cap give the same AP (within 1 point)",
             "(interval {low:+.1f} to"),
            ("Align-DETR's released k cap and a per-image cap give the same AP (within 1 point)",
             "to {high:+.1f})"),
            ("Align-DETR's released k cap and a per-image cap give the same AP (within 1 point)",
             "the paired interval is ±{ci95:.1f} AP wide"),
            ("Align-DETR's released k cap and a per-image cap give the same AP (within 1 point)",
             "anywhere from {low:+.1f} to"),
            ("Align-DETR's released k cap and a per-image cap give the same AP (within 1 point)",
             "to {high:+.1f} AP cannot be excluded")),
    *quoted("Align-DETR's released k cap, which carries a lowered k", "released_kcap_behaviour",
            *[({"row": "Align-DETR, released k cap", "output": output},
               "fires on {images_mean:.1%} of training images ({steps_mean:.1%} of steps)")
              for output in ("enc", "dec0", "dec1")]),

    # Align-DETR Table B
    *quoted("Align-DETR Table B (IA-BCE's variants", "align_tableB_claims",
            ("IA-BCE (t, 1-t) beats focal loss ((1-s)^2, 0)", f"beats focal loss by {D_CI1} AP"),
            ("IA-BCE (t, 1-t) beats focal loss ((1-s)^2, 0)", "; paper {paper:+.1f})"),
            ("IA-BCE (t, 1-t) beats focal loss ((1-s)^2, 0)", "of {mean:.1f} AP)"),
            ("IA-BCE (t, 1-t) beats plain (1, 0)", f"weighting by {D_CI1}"),
            ("IA-BCE (t, 1-t) beats plain (1, 0)", "(paper {paper:+.1f}), both")),
    *quoted("Align-DETR Table B (IA-BCE's variants", "align_tableB",
            ("w_pos=t, w_neg=1-t (IA-BCE)", "({ours:.1f} against"),
            ("w_pos=(1-s)^2, w_neg=0 (focal loss)", "against {ours:.1f}; paper"),
            ("w_pos=1, w_neg=0", "({ours:.1f} against"),
            ("w_pos=(1-s)^2, w_neg=0 (focal loss)", "against {ours:.1f}), where"),
            ("w_pos=t, w_neg=0", "({ours:.1f});"),
            ("w_pos=(t-s)^2, w_neg=(t-s)^2", "reach {ours:.1f} and"),
            ("w_pos=(t-s)^2, w_neg=(1-t)*s^2", "and {ours:.1f} (paper"),
            ("w_pos=(t-s)^2, w_neg=(t-s)^2", "(paper {paper:.1f} and"),
            ("w_pos=(t-s)^2, w_neg=(1-t)*s^2", "and {paper:.1f}, just below")),

    # Align-DETR Table 6, one list item per swept parameter
    *quoted("alpha (the exponent of the score in the target", "align_table6",
            ("alpha=0", "): {ours:.1f},"),
            ("alpha=0.25", ", {ours:.1f},"),
            ("alpha=0.5", "{ours:.1f} and"),
            ("alpha=0.75", "and {ours:.1f} AP for 0,"),
            ("alpha=0", "(paper {paper:.1f},"),
            ("alpha=0.25", ", {paper:.1f},"),
            ("alpha=0.5", ", {paper:.1f},"),
            ("alpha=0.75", ", {paper:.1f})")),
    *quoted("alpha (the exponent of the score in the target", "align_table6_claims",
            ("alpha=0.25 beats alpha=0.75", f"beats 0.75 by {D_CI1}"),
            ("alpha=0.25 beats alpha=0.75", "the paper's {paper:+.1f}")),
    *quoted("alpha (the exponent of the score in the target", "alignment_evidence_alignment",
            ({"row": "Align-DETR | DINO", "metric": "br_recall_m1"}, "against {mean:.2f})")),
    *quoted("k (positives per object in the earlier layers)", "align_table6",
            ("k=1", "): {ours:.1f},"),
            ("k=2", ", {ours:.1f},"),
            ("k=3", "{ours:.1f} and"),
            ("k=4", "and {ours:.1f} for k = 1 to 4"),
            ("k=1", "(paper {paper:.1f} to"),
            ("k=4", "to {paper:.1f})")),
    *quoted("k (positives per object in the earlier layers)", "align_table6_claims",
            ("k=3 beats k=1", f"k = 3 against k = 1, {D_CI1}"),
            ("k=3 beats k=1", "(paper {paper:+.1f})")),
    *quoted("tau (the prime-sample weight", "align_table6",
            ("tau=1.5", "): {ours:.1f},"),
            ("tau=3", ", {ours:.1f},"),
            ("tau=6", "{ours:.1f} and"),
            ("tau=9", "and {ours:.1f} for 1.5"),
            ("tau=1.5", "(paper {paper:.1f} to"),
            ("tau=9", "to {paper:.1f})")),
    *quoted("tau (the prime-sample weight", "align_table6_claims",
            ("tau 1.5 -> 9 changes AP by less than 1 point", f"reproduced*: {D_CI1}"),
            ("tau 1.5 -> 9 changes AP by less than 1 point", "(paper {paper:+.1f})")),
    *quoted("tau (the prime-sample weight", "align_table8",
            ("k=3, no PS", "without the weighting ({ours:.1f})")),
    *quoted("tau (the prime-sample weight", "alignment_evidence_alignment",
            ({"row": "Align-DETR | DINO", "metric": "br_recall_m1"}, "against {mean:.2f}.")),

    # DETA Table 5, one list item per stack
    *quoted("Decoder 6 -> 1 (6 encoder layers) costs both methods", "deta_table5",
            ("DETA enc6 dec6", "DETA {ours:.1f} ->"),
            ("DETA enc6 dec1", "-> {ours:.1f} ("),
            ("Hungarian enc6 dec6", "Hungarian {ours:.1f} ->"),
            ("Hungarian enc6 dec1", "-> {ours:.1f} (")),
    *quoted("Decoder 6 -> 1 (6 encoder layers) costs both methods", "deta_table5_claims",
            ("AP falls less for DETA than for Hungarian when decoder layers go 6 -> 1", f"drops, {D_CI1}"),
            ("AP falls less for DETA than for Hungarian when decoder layers go 6 -> 1", "(paper {paper:+.1f})")),
    *quoted("Encoder 6 -> 1 (6 decoder layers) costs neither", "deta_table5",
            ("DETA enc6 dec6", "DETA {ours:.1f} ->"),
            ("DETA enc1 dec6", "-> {ours:.1f}, Hungarian"),
            ("Hungarian enc6 dec6", "Hungarian {ours:.1f} ->"),
            ("Hungarian enc1 dec6", "-> {ours:.1f} (paper")),
    *quoted("Encoder 6 -> 1 (6 decoder layers) costs neither", "deta_table5_claims",
            ("AP falls less for DETA than for Hungarian when encoder layers go 6 -> 1", f"the two, {D_CI1}"),
            ("AP falls less for DETA than for Hungarian when encoder layers go 6 -> 1", "(paper {paper:+.1f})")),
]


def quote_test_id(quote):
    return f"{quote.table}/{quote.cell}"


def _with_ids(params):
    """Readable test ids, numbered where one cell is quoted more than once."""
    ids = [quote_test_id(param.values[0]) for param in params]
    counts = {i: ids.count(i) for i in ids}
    seen = {}
    out = []
    for param, base in zip(params, ids):
        seen[base] = seen.get(base, 0) + 1
        name = base if counts[base] == 1 else f"{base}#{seen[base]}"
        out.append(pytest.param(*param.values, marks=param.marks, id=name))
    return out


LIST_ITEM = re.compile(r"\s*[-*] ")


@lru_cache(maxsize=None)
def notes_paragraphs():
    """The notes as paragraphs: blocks between blank lines, each list item a block of its own,
    whitespace collapsed to single spaces."""
    paragraphs, current = [], []
    for line in NOTES.read_text(encoding="utf-8").splitlines():
        if (not line.strip() or LIST_ITEM.match(line)) and current:
            paragraphs.append(" ".join(current))
            current = []
        if line.strip():
            current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))
    return tuple(" ".join(paragraph.split()) for paragraph in paragraphs)


@lru_cache(maxsize=None)
def table_rows(table):
    with open(TABLES / f"{table}.csv", newline="", encoding="utf-8") as f:
        return tuple(csv.DictReader(f))


def table_row(table, key):
    """The one row of the table that the key selects."""
    rows = table_rows(table)
    if isinstance(key, dict):
        wanted = key
    else:
        key_column = next((c for c in KEY_COLUMNS if c in rows[0]), None) if rows else None
        assert key_column, f"{table}.csv has none of the key columns {KEY_COLUMNS}"
        wanted = {key_column: key}
    matches = [row for row in rows if all(row.get(column) == value for column, value in wanted.items())]
    assert len(matches) == 1, f"{table}.csv: {len(matches)} rows with {wanted}, expected exactly one"
    return matches[0]


def formatted(text, row):
    """The template filled from the row, numeric cells as floats."""
    values = {}
    for column, value in row.items():
        try:
            values[column] = float(value)
        except (TypeError, ValueError):
            values[column] = value
    return text.format(**values)


def whole_number_pattern(expected):
    """A regex for the text in which a leading or trailing number cannot be part of a longer one."""
    pattern = re.escape(expected)
    if expected[:1].isdigit():
        pattern = r"(?<![\d.+\-])" + pattern
    if expected[-1:].isdigit():
        pattern += r"(?![\d]|\.\d)"
    return pattern


def paragraph_with(sentence_id):
    found = [paragraph for paragraph in notes_paragraphs() if sentence_id in paragraph]
    assert len(found) == 1, f"sentence id {sentence_id!r} is in {len(found)} paragraphs of {NOTES.name}"
    return found[0]


QUOTE_PARAMS = _with_ids(QUOTES)
SENTENCE_IDS = sorted({param.values[0].sentence_id for param in QUOTES})


@pytest.mark.parametrize("sentence_id", SENTENCE_IDS)
def test_sentence_id_occurs_exactly_once_in_the_notes(sentence_id):
    occurrences = sum(paragraph.count(sentence_id) for paragraph in notes_paragraphs())
    assert occurrences == 1, f"sentence id {sentence_id!r} occurs {occurrences} times in {NOTES.name}"


@pytest.mark.parametrize("quote", QUOTE_PARAMS)
def test_notes_quote_the_table(quote):
    paragraph = paragraph_with(quote.sentence_id)
    row = table_row(quote.table, quote.key)
    try:
        expected = formatted(quote.text, row)
    except (ValueError, KeyError) as error:
        pytest.fail(f"{quote.table}.csv [{quote.cell}]: cannot fill {quote.text!r} from {dict(row)}: {error!r}")
    assert re.search(whole_number_pattern(expected), paragraph), (
        f"sentence {quote.sentence_id!r}: the notes should quote {quote.table}.csv [{quote.cell}] "
        f"as {expected!r}, which is not in its paragraph:\n{paragraph}"
    )
