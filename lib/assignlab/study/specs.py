"""The study's tables: which runs make which paper table, their seeds and the claims they test.

A table is a list of rows; a row is a set of dotted config overrides applied to the profile's
base configuration (``preset(...)``), so the same row means the same thing at every profile. A
run is (resolved config, seed); rows of different tables that resolve to the same config share
their runs.

Every method is written out in full (assignment, classification loss, query selection and
post-processing), so a row never depends on what a preset happens to default to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from assignlab.config import Config
from assignlab.presets import preset


# ----------------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Profile:
    """A study size: the preset every run starts from, extra overrides and the default seeds."""

    name: str
    preset: str
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def base_config(self) -> Config:
        return preset(self.preset).override(dict(self.overrides))


# The seeds of every table at each profile. Change them here (or per table in TABLE_SEEDS).
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "smoke", seeds=(0,)),
    "cpu": Profile("cpu", "cpu", seeds=(0, 1, 2)),
    "paper": Profile("paper", "paper-r50-1x", seeds=(0,)),
}

# (table name, profile name) -> seeds, where a table needs other seeds than its profile's.
TABLE_SEEDS: dict[tuple[str, str], tuple[int, ...]] = {}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise KeyError(f"unknown study profile {name!r} (available: {', '.join(PROFILES)})")
    return PROFILES[name]


# ------------------------------------------------------------------------------------ methods
def hungarian(cls_loss: str = "focal") -> dict[str, Any]:
    """End-to-end baseline: one-to-one Hungarian matching, top-k query selection and outputs."""
    return {"assign.method": "hungarian", "loss.cls_loss": cls_loss,
            "model.query_selection": "topk", "model.postprocess": "topk"}


def deta(object_balance_k: int | None = 4) -> dict[str, Any]:
    """DETA: IoU assignment in both stages with object balancing K (None = infinity), NMS in
    query selection and at inference."""
    return {"assign.method": "deta", "assign.object_balance_k": object_balance_k, "loss.cls_loss": "focal",
            "model.query_selection": "nms", "model.postprocess": "nms"}


def b_matching(first_stage_b: int, second_stage_b: int) -> dict[str, Any]:
    """DETA Table 6: Deformable-DETR with every object matched to exactly B predictions, NMS at
    inference (query selection stays Deformable-DETR's top-k)."""
    return {"assign.method": "b_matching", "assign.first_stage_b": first_stage_b,
            "assign.second_stage_b": second_stage_b, "loss.cls_loss": "focal",
            "model.query_selection": "topk", "model.postprocess": "nms"}


def align(cls_loss: str = "ia_bce", **extra: Any) -> dict[str, Any]:
    """Align-DETR: mixed matching with IA-BCE; end-to-end top-k outputs (no NMS)."""
    return {"assign.method": "align", "loss.cls_loss": cls_loss,
            "model.query_selection": "topk", "model.postprocess": "topk", **extra}


# -------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class PaperRef:
    """Where a row's number is in the paper's table: the CSV row whose columns equal ``match``
    (compared as numbers where both parse), and the column holding the number."""

    match: Mapping[str, str]
    column: str = "AP"


@dataclass(frozen=True)
class RowSpec:
    label: str
    overrides: Mapping[str, Any]
    paper: PaperRef | None = None
    note: str = ""


@dataclass(frozen=True)
class PaperOnlyRow:
    """A row of the paper's table that the study does not train (shown with the paper's number)."""

    label: str
    paper: PaperRef
    note: str


@dataclass(frozen=True)
class Claim:
    """A testable statement: sum_r weights[r] * metric(r) <direction> 0 (``">"`` or ``"<"``), or,
    for ``"equivalent"``, |sum| < margin. Evaluated per seed (rows share seeds, so it is paired)."""

    statement: str
    weights: Mapping[str, float]
    direction: str
    margin: float = 0.0
    metric: str = "AP"

    def __post_init__(self) -> None:
        if self.direction not in (">", "<", "equivalent"):
            raise ValueError(f"claim {self.statement!r}: direction must be '>', '<' or 'equivalent'")
        if self.direction == "equivalent" and self.margin <= 0:
            raise ValueError(f"claim {self.statement!r}: an equivalence claim needs a margin > 0")


def difference(better: str, worse: str) -> dict[str, float]:
    """Weights of the contrast metric(better) - metric(worse)."""
    return {better: 1.0, worse: -1.0}


def difference_of_differences(a_high: str, a_low: str, b_high: str, b_low: str) -> dict[str, float]:
    """Weights of (a_high - a_low) - (b_high - b_low)."""
    return {a_high: 1.0, a_low: -1.0, b_high: -1.0, b_low: 1.0}


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    rows: tuple[RowSpec, ...]
    claims: tuple[Claim, ...]
    paper_only: tuple[PaperOnlyRow, ...] = ()
    notes: str = ""
    paper_file: str | None = None        # paper CSV stem; defaults to ``name``

    def __post_init__(self) -> None:
        labels = [row.label for row in self.rows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"table {self.name}: duplicate row labels")
        for claim in self.claims:
            unknown = set(claim.weights) - set(labels)
            if unknown:
                raise ValueError(f"table {self.name}: claim {claim.statement!r} names unknown rows {sorted(unknown)}")

    @property
    def paper_stem(self) -> str:
        return self.paper_file or self.name

    def row(self, label: str) -> RowSpec:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"table {self.name} has no row {label!r}")

    def seeds(self, profile: str) -> tuple[int, ...]:
        return TABLE_SEEDS.get((self.name, profile), get_profile(profile).seeds)

    def row_configs(self, profile: str, data_root: str | None = None) -> list[tuple[RowSpec, Config]]:
        """Each row with its resolved config at ``profile`` (``data_root`` replaces ``data.root``)."""
        base = get_profile(profile).base_config()
        if data_root is not None:
            base = base.override({"data.root": str(data_root)})
        out = []
        for row in self.rows:
            try:
                out.append((row, base.override(dict(row.overrides))))
            except (KeyError, ValueError) as err:
                raise ValueError(f"table {self.name}, row {row.label!r}: {err}") from None
        return out


def _ref(column: str = "AP", **match: Any) -> PaperRef:
    return PaperRef({k: str(v) for k, v in match.items()}, column)


# --------------------------------------------------------------------------------- DETA tables
def _deta_table1() -> TableSpec:
    coco = {"architecture": "deformable_detr", "dataset": "coco"}
    return TableSpec(
        name="deta_table1",
        title="DETA Table 1: IoU assignment vs Hungarian matching (Deformable-DETR column)",
        rows=(
            RowSpec("Hungarian", hungarian(), _ref(**coco, row=2),
                    "the study's two-stage Deformable-DETR baseline, mirrors the improved baseline (row 2)"),
            RowSpec("IoU assignment + NMS, K=inf", deta(None), _ref(**coco, row=3)),
            RowSpec("IoU assignment + NMS, K=4", deta(4), _ref(**coco, row=4)),
        ),
        paper_only=(PaperOnlyRow("Deformable-DETR (original)", _ref(**coco, row=1),
                                 "the paper's row 1; the study has one base architecture"),),
        claims=(
            Claim("IoU assignment with object balancing beats Hungarian matching",
                  difference("IoU assignment + NMS, K=4", "Hungarian"), ">"),
            Claim("IoU assignment without balancing beats Hungarian matching",
                  difference("IoU assignment + NMS, K=inf", "Hungarian"), ">"),
            Claim("Object balancing (K=4) improves IoU assignment",
                  difference("IoU assignment + NMS, K=4", "IoU assignment + NMS, K=inf"), ">"),
        ),
        notes="The DETR column and the LVIS rows are not run (no DETR base, no LVIS data).",
    )


def _layer_label(method: str, enc: int, dec: int) -> str:
    return f"{method} enc{enc} dec{dec}"


def _deta_table5() -> TableSpec:
    rows = []
    for method, column, overrides in (("DETA", "deta_AP", deta(None)), ("Hungarian", "deformable_detr_AP", hungarian())):
        for enc in (6, 3, 1):
            for dec in (6, 3, 1):
                rows.append(RowSpec(_layer_label(method, enc, dec),
                                    {**overrides, "model.enc_layers": enc, "model.dec_layers": dec},
                                    _ref(column, enc_layers=enc, dec_layers=dec)))
    return TableSpec(
        name="deta_table5",
        title="DETA Table 5: number of encoder and decoder layers",
        rows=tuple(rows),
        claims=(
            Claim("AP falls less for DETA than for Hungarian when decoder layers go 6 -> 1",
                  difference_of_differences(_layer_label("DETA", 6, 6), _layer_label("DETA", 6, 1),
                                            _layer_label("Hungarian", 6, 6), _layer_label("Hungarian", 6, 1)), "<"),
            Claim("AP falls less for DETA than for Hungarian when encoder layers go 6 -> 1",
                  difference_of_differences(_layer_label("DETA", 6, 6), _layer_label("DETA", 1, 6),
                                            _layer_label("Hungarian", 6, 6), _layer_label("Hungarian", 1, 6)), "<"),
        ),
        notes="DETA without object balancing (K=inf), as in the paper.",
    )


def _deta_table6() -> TableSpec:
    pairs = ((1, 1), (1, 2), (1, 4), (1, 8), (2, 1), (4, 1), (8, 1), (2, 2), (4, 4))
    rows = []
    for b1, b2 in pairs:
        ref = _ref(first_stage_B=b1, second_stage_B=b2)
        if (b1, b2) == (1, 1):
            rows.append(RowSpec("B=(1,1) Hungarian", hungarian(), ref, "one-to-one: the Hungarian baseline"))
        else:
            rows.append(RowSpec(f"B=({b1},{b2})", b_matching(b1, b2), ref))
    return TableSpec(
        name="deta_table6",
        title="DETA Table 6: one-to-many B-matching (first stage B, second stage B)",
        rows=tuple(rows),
        claims=(
            Claim("B=4 positives per object in both stages beat one-to-one matching",
                  difference("B=(4,4)", "B=(1,1) Hungarian"), ">"),
            Claim("B=2 positives per object in both stages beat one-to-one matching",
                  difference("B=(2,2)", "B=(1,1) Hungarian"), ">"),
        ),
    )


def _attention_label(method: str, cross: bool, self_attn: bool) -> str:
    return f"{method} cross={'on' if cross else 'FFN'} self={'on' if self_attn else 'FFN'}"


def _deta_table7() -> TableSpec:
    rows = []
    for method, column, overrides in (("DETA", "deta_AP", deta(None)), ("Hungarian", "deformable_detr_AP", hungarian())):
        for cross, self_attn in ((True, True), (True, False), (False, True)):
            rows.append(RowSpec(_attention_label(method, cross, self_attn),
                                {**overrides, "model.dec_cross_attn": cross, "model.dec_self_attn": self_attn},
                                _ref(column, cross_attn=int(cross), self_attn=int(self_attn))))
    full_d, noself_d = _attention_label("DETA", True, True), _attention_label("DETA", True, False)
    full_h, noself_h = _attention_label("Hungarian", True, True), _attention_label("Hungarian", True, False)
    return TableSpec(
        name="deta_table7",
        title="DETA Table 7: decoder attention replaced by an FFN of equal size",
        rows=tuple(rows),
        claims=(
            Claim("DETA does not need decoder self-attention (AP within 1 point without it)",
                  difference(noself_d, full_d), "equivalent", margin=1.0),
            Claim("Removing decoder self-attention costs Hungarian more than DETA",
                  difference_of_differences(full_h, noself_h, full_d, noself_d), ">"),
            Claim("DETA needs decoder cross-attention",
                  difference(_attention_label("DETA", False, True), full_d), "<"),
        ),
        notes="DETA without object balancing (K=inf), as in the paper.",
    )


def _deta_table8() -> TableSpec:
    rows = [RowSpec(f"K={'inf' if k is None else k}", deta(k), _ref(K="inf" if k is None else k))
            for k in (None, 16, 8, 4, 1)]
    rows.append(RowSpec("bipartite (Hungarian)", hungarian(), _ref(K="bipartite")))
    return TableSpec(
        name="deta_table8",
        title="DETA Table 8: object balancing K",
        rows=tuple(rows),
        claims=(
            Claim("Object balancing K=4 beats no balancing (K=inf)", difference("K=4", "K=inf"), ">"),
            Claim("IoU assignment without balancing beats bipartite matching",
                  difference("K=inf", "bipartite (Hungarian)"), ">"),
            Claim("K=4 beats K=1", difference("K=4", "K=1"), ">"),
        ),
    )


# --------------------------------------------------------------------------- Align-DETR tables
def _align_table4() -> TableSpec:
    rows = (
        RowSpec("focal loss", hungarian("focal"), _ref(method="focal_loss_baseline")),
        RowSpec("IoU branch, no fusion", {**hungarian("focal"), "model.iou_branch": True, "model.iou_branch_fusion": 0.0},
                _ref(method="iou_branch_no_fusion")),
        RowSpec("IoU branch, fusion 0.3", {**hungarian("focal"), "model.iou_branch": True, "model.iou_branch_fusion": 0.3},
                _ref(method="iou_branch")),
        RowSpec("QFL gamma=2", {**hungarian("qfl"), "loss.qfl_gamma": 2.0}, _ref(method="qfl_gamma2")),
        RowSpec("QFL gamma=1", {**hungarian("qfl"), "loss.qfl_gamma": 1.0}, _ref(method="qfl_gamma1")),
        RowSpec("VFL", hungarian("vfl"), _ref(method="vfl")),
        RowSpec("IA-BCE", hungarian("ia_bce"), _ref(method="ia_bce")),
    )
    return TableSpec(
        name="align_table4",
        title="Align-DETR Table 4: classification losses against the misalignment problem",
        rows=rows,
        claims=(
            Claim("IA-BCE beats focal loss", difference("IA-BCE", "focal loss"), ">"),
            Claim("IA-BCE beats VFL", difference("IA-BCE", "VFL"), ">"),
            Claim("IA-BCE beats the fused IoU branch", difference("IA-BCE", "IoU branch, fusion 0.3"), ">"),
        ),
        notes="One-to-one Hungarian matching in every row (the losses alone are compared).",
    )


def _align_table5() -> TableSpec:
    rows = (
        RowSpec("focal, one-to-one", hungarian("focal"), _ref(ia_bce=0, mixed_matching=0)),
        RowSpec("IA-BCE, one-to-one", hungarian("ia_bce"), _ref(ia_bce=1, mixed_matching=0)),
        RowSpec("focal, mixed matching", align("focal"), _ref(ia_bce=0, mixed_matching=1)),
        RowSpec("IA-BCE, mixed matching", align("ia_bce"), _ref(ia_bce=1, mixed_matching=1)),
    )
    return TableSpec(
        name="align_table5",
        title="Align-DETR Table 5: IA-BCE x mixed matching",
        rows=rows,
        claims=(
            Claim("IA-BCE alone beats the focal-loss baseline", difference("IA-BCE, one-to-one", "focal, one-to-one"), ">"),
            Claim("IA-BCE with mixed matching beats the focal-loss baseline",
                  difference("IA-BCE, mixed matching", "focal, one-to-one"), ">"),
            Claim("Mixed matching adds to IA-BCE", difference("IA-BCE, mixed matching", "IA-BCE, one-to-one"), ">"),
        ),
    )


def _align_table6() -> TableSpec:
    sweeps = (("alpha", "loss.ia_bce_alpha", (0.0, 0.25, 0.5, 0.75)),
              ("k", "assign.mixed_k", (1, 2, 3, 4)),
              ("tau", "loss.prime_sample_tau", (1.5, 3.0, 6.0, 9.0)))
    rows = [RowSpec(f"{param}={value:g}", align("ia_bce", **{key: value}), _ref(param=param, value=value))
            for param, key, values in sweeps for value in values]
    return TableSpec(
        name="align_table6",
        title="Align-DETR Table 6: sensitivity to alpha, k and tau (others at 0.25, 3, 1.5)",
        rows=tuple(rows),
        claims=(
            Claim("alpha=0.25 beats alpha=0.75", difference("alpha=0.25", "alpha=0.75"), ">"),
            Claim("k=3 beats k=1", difference("k=3", "k=1"), ">"),
            Claim("AP is insensitive to tau (tau 1.5 -> 9 within 1 point)", difference("tau=9", "tau=1.5"),
                  "equivalent", margin=1.0),
        ),
        notes="The default rows alpha=0.25, k=3 and tau=1.5 are one run.",
    )


def _align_table8() -> TableSpec:
    rows = [RowSpec("k=1", align("ia_bce", **{"assign.mixed_k": 1, "loss.prime_sample_weighting": False}),
                    _ref(k=1, ps_weighting=0), "one-to-one: the weighting has nothing to rank")]
    for k in (2, 3):
        for ps in (False, True):
            rows.append(RowSpec(f"k={k}, {'PS' if ps else 'no PS'}",
                                align("ia_bce", **{"assign.mixed_k": k, "loss.prime_sample_weighting": ps}),
                                _ref(k=k, ps_weighting=int(ps))))
    return TableSpec(
        name="align_table8",
        title="Align-DETR Table 8: prime-sample weighting",
        rows=tuple(rows),
        claims=(
            Claim("Prime-sample weighting helps at k=3", difference("k=3, PS", "k=3, no PS"), ">"),
            Claim("Prime-sample weighting helps at k=2", difference("k=2, PS", "k=2, no PS"), ">"),
        ),
    )


def _align_tableB() -> TableSpec:
    variants = ("(1-s)^2,0", "1,0", "t,0", "(t-s)^2,(t-s)^2", "(t-s)^2,(1-t)*s^2")
    rows = []
    for variant in variants:
        w_pos, w_neg = variant.split(",")
        rows.append(RowSpec(f"w_pos={w_pos}, w_neg={w_neg}",
                            {**hungarian("ia_bce_variant"), "loss.ia_bce_variant": variant},
                            _ref(w_pos=w_pos, w_neg=w_neg)))
    rows.append(RowSpec("w_pos=t, w_neg=1-t (IA-BCE)", hungarian("ia_bce"), _ref(w_pos="t", w_neg="1-t"),
                        "IA-BCE itself, the same run as Table 4's IA-BCE row"))
    return TableSpec(
        name="align_tableB",
        title="Align-DETR Table B: IA-BCE variants -w_pos ln(s) - w_neg ln(1-s)",
        rows=tuple(rows),
        claims=(
            Claim("IA-BCE (t, 1-t) beats the focal-like (1-s)^2, 0",
                  difference("w_pos=t, w_neg=1-t (IA-BCE)", "w_pos=(1-s)^2, w_neg=0"), ">"),
            Claim("IA-BCE (t, 1-t) beats plain (1, 0)", difference("w_pos=t, w_neg=1-t (IA-BCE)", "w_pos=1, w_neg=0"), ">"),
        ),
        notes="One-to-one Hungarian matching in every row; the paper's first row is its focal-loss baseline.",
    )


TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (
    _deta_table1(), _deta_table5(), _deta_table6(), _deta_table7(), _deta_table8(),
    _align_table4(), _align_table5(), _align_table6(), _align_table8(), _align_tableB(),
)}


def get_table(name: str | TableSpec) -> TableSpec:
    """The spec named ``name`` (a ``TableSpec`` is returned as is)."""
    if isinstance(name, TableSpec):
        return name
    if name not in TABLES:
        raise KeyError(f"unknown study table {name!r} (available: {', '.join(TABLES)})")
    return TABLES[name]
