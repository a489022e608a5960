"""Align-DETR's tables (Cai et al.): the ablations on DINO (Tables 4, 5, 6, 8 and B, which may
also run on DETA's base) and the comparisons on other base detectors (Tables 2, 3 and 7)."""
from __future__ import annotations

from assignlab.presets import TWO_STAGE
from assignlab.study.tables.methods import (
    HYBRID_K,
    HYBRID_QUERY_RATIO,
    LAPTOP_HYBRID_QUERY_RATIO,
    align,
    deta,
    hungarian,
    hybrid,
)
from assignlab.study.tables.spec import Hypothesis, PaperOnlyRow, RowSpec, TableSpec, difference, paper_ref

def align_table4() -> TableSpec:
    rows = (
        RowSpec("focal loss", hungarian("focal"), paper_ref(method="focal_loss_baseline")),
        RowSpec("IoU branch, no fusion", {**hungarian("focal"), "model.iou_branch": True, "model.iou_branch_fusion": 0.0},
                paper_ref(method="iou_branch_no_fusion")),
        RowSpec("IoU branch, fusion 0.3", {**hungarian("focal"), "model.iou_branch": True, "model.iou_branch_fusion": 0.3},
                paper_ref(method="iou_branch")),
        RowSpec("QFL gamma=2", {**hungarian("qfl"), "loss.qfl_gamma": 2.0}, paper_ref(method="qfl_gamma2")),
        RowSpec("QFL gamma=1", {**hungarian("qfl"), "loss.qfl_gamma": 1.0}, paper_ref(method="qfl_gamma1")),
        RowSpec("VFL", hungarian("vfl"), paper_ref(method="vfl")),
        RowSpec("IA-BCE", hungarian("ia_bce"), paper_ref(method="ia_bce")),
    )
    return TableSpec(
        name="align_table4",
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table 4: classification losses against the misalignment problem",
        rows=rows,
        claims=(
            Hypothesis("IA-BCE beats focal loss", difference("IA-BCE", "focal loss"), ">"),
            Hypothesis("IA-BCE beats VFL", difference("IA-BCE", "VFL"), ">"),
            Hypothesis("IA-BCE beats the fused IoU branch", difference("IA-BCE", "IoU branch, fusion 0.3"), ">"),
        ),
        notes="One-to-one Hungarian matching in every row (the losses alone are compared).",
    )


def align_table5() -> TableSpec:
    rows = (
        RowSpec("focal, one-to-one", hungarian("focal"), paper_ref(ia_bce=0, mixed_matching=0)),
        RowSpec("IA-BCE, one-to-one", hungarian("ia_bce"), paper_ref(ia_bce=1, mixed_matching=0)),
        RowSpec("focal, mixed matching", align("focal"), paper_ref(ia_bce=0, mixed_matching=1)),
        RowSpec("IA-BCE, mixed matching", align("ia_bce"), paper_ref(ia_bce=1, mixed_matching=1)),
    )
    return TableSpec(
        name="align_table5",
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table 5: IA-BCE x mixed matching",
        rows=rows,
        claims=(
            Hypothesis("IA-BCE alone beats the focal-loss baseline",
                       difference("IA-BCE, one-to-one", "focal, one-to-one"), ">"),
            Hypothesis("IA-BCE with mixed matching beats the focal-loss baseline",
                       difference("IA-BCE, mixed matching", "focal, one-to-one"), ">"),
            Hypothesis("Mixed matching adds to IA-BCE", difference("IA-BCE, mixed matching", "IA-BCE, one-to-one"), ">"),
        ),
    )


K1_IS_ONE_TO_ONE = ("Mixed matching with k=1 is one-to-one matching with IA-BCE (each object's one match weighs "
                    "exp(0) = 1 with or without prime-sample weighting): the k=1 row trains the same model as "
                    "Align-DETR Table 5's \"IA-BCE, one-to-one\" row and shares its runs "
                    "(`assignlab.config.training_equivalent`).")


def align_table6() -> TableSpec:
    sweeps = (("alpha", "loss.ia_bce_alpha", (0.0, 0.25, 0.5, 0.75)),
              ("k", "assign.mixed_k", (1, 2, 3, 4)),
              ("tau", "loss.prime_sample_tau", (1.5, 3.0, 6.0, 9.0)))
    rows = [RowSpec(f"{param}={value:g}", align("ia_bce", **{key: value}), paper_ref(param=param, value=value))
            for param, key, values in sweeps for value in values]
    return TableSpec(
        name="align_table6",
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table 6: sensitivity to alpha, k and tau (others at 0.25, 3, 1.5)",
        rows=tuple(rows),
        claims=(
            Hypothesis("alpha=0.25 beats alpha=0.75", difference("alpha=0.25", "alpha=0.75"), ">"),
            Hypothesis("k=3 beats k=1", difference("k=3", "k=1"), ">"),
            Hypothesis("tau 1.5 -> 9 changes AP by less than 1 point", difference("tau=9", "tau=1.5"),
                       "equivalent", margin=1.0),
        ),
        notes="The default rows alpha=0.25, k=3 and tau=1.5 are one run. " + K1_IS_ONE_TO_ONE,
    )


def align_table8() -> TableSpec:
    rows = [RowSpec("k=1", align("ia_bce", **{"assign.mixed_k": 1, "loss.prime_sample_weighting": False}),
                    paper_ref(k=1, ps_weighting=0), "one-to-one: the weighting has nothing to rank")]
    for k in (2, 3):
        for ps in (False, True):
            rows.append(RowSpec(f"k={k}, {'PS' if ps else 'no PS'}",
                                align("ia_bce", **{"assign.mixed_k": k, "loss.prime_sample_weighting": ps}),
                                paper_ref(k=k, ps_weighting=int(ps))))
    return TableSpec(
        name="align_table8",
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table 8: prime-sample weighting",
        rows=tuple(rows),
        claims=(
            Hypothesis("Prime-sample weighting helps at k=3", difference("k=3, PS", "k=3, no PS"), ">"),
            Hypothesis("Prime-sample weighting helps at k=2", difference("k=2, PS", "k=2, no PS"), ">"),
        ),
        notes=K1_IS_ONE_TO_ONE,
    )


FOCAL_AS_TABLE_B = "w_pos=(1-s)^2, w_neg=0 (focal loss)"


def align_tableB() -> TableSpec:
    # the paper's first row, written (1-s)^2, 0, is its focal-loss baseline (alpha 0.25, Table B's caption)
    rows = [RowSpec(FOCAL_AS_TABLE_B, hungarian("focal"), paper_ref(w_pos="(1-s)^2", w_neg="0"),
                    "focal loss, as the paper's first row (the same run as Table 4's focal-loss row)")]
    variants = ("1,0", "t,0", "(t-s)^2,(t-s)^2", "(t-s)^2,(1-t)*s^2")
    for variant in variants:
        w_pos, w_neg = variant.split(",")
        rows.append(RowSpec(f"w_pos={w_pos}, w_neg={w_neg}",
                            {**hungarian("ia_bce_variant"), "loss.ia_bce_variant": variant},
                            paper_ref(w_pos=w_pos, w_neg=w_neg)))
    rows.append(RowSpec("w_pos=t, w_neg=1-t (IA-BCE)", hungarian("ia_bce"), paper_ref(w_pos="t", w_neg="1-t"),
                        "IA-BCE itself, the same run as Table 4's IA-BCE row"))
    return TableSpec(
        name="align_tableB",
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table B: IA-BCE variants -w_pos ln(s) - w_neg ln(1-s)",
        rows=tuple(rows),
        claims=(
            Hypothesis("IA-BCE (t, 1-t) beats focal loss ((1-s)^2, 0)",
                       difference("w_pos=t, w_neg=1-t (IA-BCE)", FOCAL_AS_TABLE_B), ">"),
            Hypothesis("IA-BCE (t, 1-t) beats plain (1, 0)",
                       difference("w_pos=t, w_neg=1-t (IA-BCE)", "w_pos=1, w_neg=0"), ">"),
        ),
        notes="One-to-one Hungarian matching in every row; the first row is the paper's focal-loss baseline "
              "(with its alpha = 0.25 weighting, which the table's general form leaves out).",
    )


def align_table2() -> TableSpec:
    return TableSpec(
        name="align_table2",
        title="Align-DETR Table 2: DAB-DETR (single scale) with and without Align-DETR",
        base="dab_detr",
        rows=(
            RowSpec("DAB-DETR", hungarian(), paper_ref(model="dab_detr", backbone="R50")),
            RowSpec("Align-DETR", align(), paper_ref(model="align_detr", backbone="R50")),
        ),
        paper_only=(PaperOnlyRow("DN-DETR", paper_ref(model="dn_detr", backbone="R50"),
                                 "denoising on DAB-DETR; the study has no DN-DETR base"),),
        claims=(Hypothesis("Align-DETR improves DAB-DETR", difference("Align-DETR", "DAB-DETR"), ">"),),
        notes="Paper rows: ResNet-50 (C5), 50 epochs. The smoke and cpu presets read dilated C5 (the "
              "paper's DC5 rows: 44.5 -> 48.3) so that small images still give enough tokens.",
    )


def align_table3() -> TableSpec:
    return TableSpec(
        name="align_table3",
        title="Align-DETR Table 3: DINO, Align-DETR and DETA on one schedule (1x)",
        base="dino",
        rows=(
            RowSpec("DINO", hungarian(), paper_ref(model="dino", epochs=12)),
            RowSpec("Align-DETR", align(), paper_ref(model="align_detr", epochs=12)),
            RowSpec("DETA (K=4)", deta(4), note="DETA's assignment and NMS on DINO; the paper has no such row "
                                                "(DETA's own base gives 50.2 at 1x, DETA Table 1)"),
            RowSpec("H-Deformable-DETR", hybrid(), paper_ref(model="h_deformable_detr", epochs=12),
                    "hybrid matching on DETA's two-stage base, same size as the DINO rows; the paper's "
                    "48.7 also has mixed query selection, look-forward-twice and classification weight 2, "
                    "which this row does not", base=TWO_STAGE),
        ),
        claims=(
            Hypothesis("Align-DETR beats DINO", difference("Align-DETR", "DINO"), ">"),
            Hypothesis("Align-DETR beats H-Deformable-DETR", difference("Align-DETR", "H-Deformable-DETR"), ">",
                       confounded_by="the rows differ in base (DINO against two-stage Deformable-DETR) as well as "
                                     "in objective (Align-DETR against hybrid matching)"),
            Hypothesis("DETA's IoU assignment beats Hungarian matching on DINO (the study's claim, not the paper's)",
                       difference("DETA (K=4)", "DINO"), ">", own=True),
        ),
        notes="The 24-epoch rows of the paper are not run.",
    )


def align_table7() -> TableSpec:
    return TableSpec(
        name="align_table7",
        title="Align-DETR Table 7: IA-BCE on H-Deformable-DETR (hybrid matching)",
        rows=(
            RowSpec("hybrid matching, focal", hybrid("focal"), paper_ref(method="h_deformable_detr", ia_bce=0)),
            RowSpec("hybrid matching, IA-BCE", hybrid("ia_bce"), paper_ref(method="h_deformable_detr", ia_bce=1)),
        ),
        claims=(Hypothesis("IA-BCE improves hybrid matching",
                           difference("hybrid matching, IA-BCE", "hybrid matching, focal"), ">"),),
        notes=f"One-to-many queries: {HYBRID_QUERY_RATIO} x the one-to-one queries (the paper's 1500 / 300; "
              f"{LAPTOP_HYBRID_QUERY_RATIO} x at the cpu profile, whose images have too few feature tokens for "
              f"{HYBRID_QUERY_RATIO} x), objects repeated {HYBRID_K} times; IA-BCE in both groups (no released "
              "configuration of this table exists). Hybrid matching runs on DETA's two-stage base, without "
              "H-Deformable-DETR's other changes (mixed query selection, look-forward-twice, classification "
              "weight 2), so the relative gain of IA-BCE is the comparison, not the paper's absolute numbers.",
    )
