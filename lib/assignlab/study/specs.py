"""The study's tables: which runs make which paper table, their seeds and the claims they test.

A table is a list of rows; a row is a set of dotted config overrides applied to the profile's
preset of the table's base detector (``model.base``: DETA's two-stage Deformable-DETR, DINO,
DETR-DC5 or DAB-DETR), so the same row means the same thing at every profile. A run is (resolved
config, seed); rows of different tables that resolve to the same config share their runs.

Every method is written out in full (assignment, classification loss, query selection and
post-processing), so a row never depends on what a preset happens to default to.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from assignlab.config import Config
from assignlab.presets import preset


# ----------------------------------------------------------------------------------- profiles
TWO_STAGE = "two_stage_deformable"  # DETA's base (the default); the others are Align-DETR's and DETR's
BASES = (TWO_STAGE, "dino", "detr_dc5", "dab_detr")


@dataclass(frozen=True)
class Profile:
    """A study size: the preset of each base detector, extra overrides and the default seeds.
    ``preset`` is the two-stage base's preset; ``base_presets`` names the others'."""

    name: str
    preset: str
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    base_presets: Mapping[str, str] = field(default_factory=dict)

    def preset_for(self, base: str = TWO_STAGE) -> str:
        presets = {TWO_STAGE: self.preset, **self.base_presets}
        if base not in presets:
            raise KeyError(f"profile {self.name!r} has no preset for model.base={base!r} (has: {', '.join(presets)})")
        return presets[base]

    def base_config(self, base: str = TWO_STAGE) -> Config:
        return preset(self.preset_for(base)).override(dict(self.overrides))


def _base_presets(dino: str, detr_dc5: str, dab_detr: str) -> dict[str, str]:
    return {"dino": dino, "detr_dc5": detr_dc5, "dab_detr": dab_detr}


# The seeds of every table at each profile. Change them here (or per table in TABLE_SEEDS).
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "smoke", seeds=(0,),
                     base_presets=_base_presets("smoke-dino", "smoke-detr-dc5", "smoke-dab-detr")),
    "cpu": Profile("cpu", "cpu", seeds=(0, 1, 2), base_presets=_base_presets("cpu-dino", "cpu-detr-dc5", "cpu-dab-detr")),
    "paper": Profile("paper", "paper-r50-1x", seeds=(0,),
                     base_presets=_base_presets("dino-r50-1x", "detr-dc5-r50", "dab-detr-r50")),
}

# (table name, profile name) -> seeds, where a table needs other seeds than its profile's.
# Five seeds give a 95% interval of about +-1 AP on a difference of two rows at the cpu profile
# (seed-to-seed SD of a paired difference 0.4-0.9 AP, results/README.md "Choosing the seeds");
# the budget allows them for the headline tables, three seeds (about +-1.7 AP) elsewhere.
TABLE_SEEDS: dict[tuple[str, str], tuple[int, ...]] = {
    (name, "cpu"): (0, 1, 2, 3, 4) for name in ("deta_table1", "deta_table8", "align_table5")
}


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


def deta_decoder_only(object_balance_k: int | None = 4) -> dict[str, Any]:
    """DETA on the DETR-DC5 base (DETA Section 5.1): Hungarian matching of the encoder proposals,
    IoU assignment with balancing K on the decoder, NMS at inference. Query selection is top-k: the
    released code selects by NMS only when the first stage is IoU-assigned."""
    return {**deta(object_balance_k), "assign.method": "deta_decoder_only", "model.query_selection": "topk"}


@dataclass(frozen=True)
class Multiple:
    """An override value that is ``factor`` times another field of the row's base config, so that
    a ratio (not a count) is the same at every profile."""

    field: str
    factor: int

    def resolve(self, config: Config) -> int:
        value: Any = config
        for key in self.field.split("."):
            if not hasattr(value, key):
                raise KeyError(f"Multiple: unknown config field {self.field!r}")
            value = getattr(value, key)
        return int(self.factor * value)


def scaled_epochs(epochs: int, factor: float) -> int:
    """``epochs`` scaled by ``factor``, rounded (half to even), at least 1."""
    return max(1, round(factor * epochs))


@dataclass(frozen=True)
class ScaledSchedule:
    """An override value for ``train.epochs`` (``part="epochs"``) or ``train.lr_drop_epochs``
    (``part="lr_drop_epochs"``): the row's base schedule ``factor`` times as long. Each lr drop
    moves the same way (:func:`scaled_epochs`) but stays before the last epoch, so that a short
    schedule still ends at the lowered rate as its base does (4 epochs with the drop at 3 become 2
    with the drop at 1). ``factor`` 1 gives the base schedule unchanged. Use :func:`scaled_schedule`."""

    factor: float
    part: str = "epochs"

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError(f"ScaledSchedule: factor must be > 0, got {self.factor}")
        if self.part not in ("epochs", "lr_drop_epochs"):
            raise ValueError(f"ScaledSchedule: part must be 'epochs' or 'lr_drop_epochs', got {self.part!r}")

    def resolve(self, config: Config) -> int | tuple[int, ...]:
        if self.factor == 1:  # the base schedule exactly, so that 1x rows share the base's runs
            return config.train.epochs if self.part == "epochs" else tuple(config.train.lr_drop_epochs)
        epochs = scaled_epochs(config.train.epochs, self.factor)
        if self.part == "epochs":
            return epochs
        drops = {min(scaled_epochs(drop, self.factor), epochs - 1) for drop in config.train.lr_drop_epochs
                 if drop < config.train.epochs}
        return tuple(sorted(drop for drop in drops if drop >= 1))


def scaled_schedule(factor: float) -> dict[str, ScaledSchedule]:
    """Overrides training ``factor`` times the base's schedule (epochs and lr drops)."""
    return {"train.epochs": ScaledSchedule(factor, "epochs"),
            "train.lr_drop_epochs": ScaledSchedule(factor, "lr_drop_epochs")}


DERIVED_VALUES = (Multiple, ScaledSchedule)  # override values resolved against the row's base config


@dataclass(frozen=True)
class OnlyAt:
    """An override that only ``profile`` sets; at the other profiles the base keeps its own value.
    For settings of the papers' scale that the laptop profiles size differently (their configs,
    and so their cached runs, stay as they are). Applied before the other overrides are resolved,
    so a :class:`Multiple` sees it."""

    profile: str
    value: Any


def only_at(profile: str, overrides: Mapping[str, Any]) -> dict[str, OnlyAt]:
    """``overrides`` set at ``profile`` only (see :class:`OnlyAt`)."""
    return {key: OnlyAt(profile, value) for key, value in overrides.items()}


@dataclass(frozen=True)
class PerProfile:
    """An override whose value depends on the profile: the value ``at`` names for it, else
    ``default``; either may be a derived value (:class:`Multiple`), resolved after the choice."""

    default: Any
    at: tuple[tuple[str, Any], ...] = ()

    def choose(self, profile: str) -> Any:
        return dict(self.at).get(profile, self.default)


DETA_ABLATION_NOTE = ("The paper's numbers are its ablation setting (300 queries, 4 feature levels), which the "
                      "paper profile trains; at the cpu profile every DETA table trains the one cpu model, so "
                      "a run shared with Table 1 is compared there with the improved baseline's number and "
                      "here with the ablation setting's.")

# DETA's ablations (Tables 5-8) use "the default Deformable-DETR setting with 300 queries, 4 feature
# scales" (Section 5.1), not the improved baseline of Table 1 (900 queries, 5 scales, larger FFN)
DETA_ABLATION_SETTING = only_at("paper", {"model.num_queries": 300, "model.num_feature_levels": 4,
                                          "model.dim_feedforward": 1024, "model.dropout": 0.1})


def resolve_override(value: Any, base: Config) -> Any:
    """The value an override sets: a derived value (``DERIVED_VALUES``) resolved against ``base``."""
    return value.resolve(base) if isinstance(value, DERIVED_VALUES) else value


# H-Deformable-DETR 1x: 300 one-to-one and 1500 one-to-many queries, the objects repeated 6 times
HYBRID_QUERY_RATIO = 5
HYBRID_K = 6
# The cpu profile's 160 px images have 525 feature tokens (20^2 + 10^2 + 5^2): 100 + 500 queries
# do not fit, 100 + 400 do (both groups are distinct tokens, as released)
LAPTOP_HYBRID_QUERY_RATIO = 4


def hybrid(cls_loss: str = "focal") -> dict[str, Any]:
    """Hybrid matching (H-Deformable-DETR) on the two-stage base: Hungarian matching of the
    one-to-one queries plus a training-only group of ``HYBRID_QUERY_RATIO`` x as many queries
    matched one-to-many (every object repeated ``HYBRID_K`` times); top-k outputs (no NMS). At the
    paper profile 300 one-to-one queries, as H-Deformable-DETR 1x (1800 queries in all); at the
    cpu profile ``LAPTOP_HYBRID_QUERY_RATIO`` x, the most its images' tokens allow. H-Deformable-DETR's
    other changes to its base (mixed query selection, look-forward-twice, classification weight 2)
    are not made: the base stays DETA's."""
    ratio = PerProfile(Multiple("model.num_queries", HYBRID_QUERY_RATIO),
                       at=(("cpu", Multiple("model.num_queries", LAPTOP_HYBRID_QUERY_RATIO)),))
    return {**hungarian(cls_loss), **only_at("paper", {"model.num_queries": 300}),
            "model.num_queries_one2many": ratio, "assign.hybrid_k": HYBRID_K}


# -------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class PaperRef:
    """Where a row's number is in the paper's table: the CSV row whose columns equal ``match``
    (compared as numbers where both parse), and the column holding the number."""

    match: Mapping[str, str]
    column: str = "AP"


@dataclass(frozen=True)
class RowSpec:
    """A row: overrides of its base's preset. ``base`` None: the table's base; a name: that base
    whatever the table's (a row that compares base detectors)."""

    label: str
    overrides: Mapping[str, Any]
    paper: PaperRef | None = None
    note: str = ""
    base: str | None = None


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
    base: str = TWO_STAGE                # ``model.base`` of the rows that do not name theirs
    other_bases: tuple[str, ...] = ()    # bases the table may also run on (see ``on_base``)

    def __post_init__(self) -> None:
        labels = [row.label for row in self.rows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"table {self.name}: duplicate row labels")
        for base in (self.base, *self.other_bases, *(row.base for row in self.rows if row.base)):
            if base not in BASES:
                raise ValueError(f"table {self.name}: unknown base {base!r} (available: {', '.join(BASES)})")
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

    def on_base(self, base: str | None) -> "TableSpec":
        """The table run on ``base`` instead of its own: a copy named ``<name>_on_<base>`` (its own
        result files; its runs differ, the configs do), compared with the same paper rows. ``None``
        or the table's base returns the table itself."""
        if base is None or base == self.base:
            return self
        if base not in self.other_bases:
            allowed = ", ".join((self.base, *self.other_bases))
            raise ValueError(f"table {self.name} runs on model.base in ({allowed}), not {base!r}")
        return replace(self, name=f"{self.name}_on_{base}", title=f"{self.title} [on the {base} base]",
                       paper_file=self.paper_stem, base=base, other_bases=())

    def row_configs(self, profile: str, data_root: str | None = None) -> list[tuple[RowSpec, Config]]:
        """Each row with its resolved config at ``profile`` (``data_root`` replaces ``data.root``)."""
        out = []
        for row in self.rows:
            try:
                base = get_profile(profile).base_config(row.base or self.base)
                if data_root is not None:
                    base = base.override({"data.root": str(data_root)})
                base = base.override({key: value.value for key, value in row.overrides.items()
                                      if isinstance(value, OnlyAt) and value.profile == profile})
                overrides = {key: resolve_override(value.choose(profile) if isinstance(value, PerProfile) else value,
                                                   base)
                             for key, value in row.overrides.items() if not isinstance(value, OnlyAt)}
                out.append((row, base.override(overrides)))
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
        notes="The DETR column is the table deta_table1_detr; the LVIS rows are not run (no LVIS data).",
    )


def _layer_label(method: str, enc: int, dec: int) -> str:
    return f"{method} enc{enc} dec{dec}"


def _deta_table5() -> TableSpec:
    rows = []
    for method, column, overrides in (("DETA", "deta_AP", deta(None)), ("Hungarian", "deformable_detr_AP", hungarian())):
        for enc in (6, 3, 1):
            for dec in (6, 3, 1):
                rows.append(RowSpec(_layer_label(method, enc, dec),
                                    {**DETA_ABLATION_SETTING, **overrides, "model.enc_layers": enc,
                                     "model.dec_layers": dec},
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
        notes="DETA without object balancing (K=inf), as in the paper. " + DETA_ABLATION_NOTE,
    )


def _deta_table6() -> TableSpec:
    pairs = ((1, 1), (1, 2), (1, 4), (1, 8), (2, 1), (4, 1), (8, 1), (2, 2), (4, 4))
    rows = []
    for b1, b2 in pairs:
        ref = _ref(first_stage_B=b1, second_stage_B=b2)
        if (b1, b2) == (1, 1):
            rows.append(RowSpec("B=(1,1) Hungarian", {**DETA_ABLATION_SETTING, **hungarian()}, ref,
                                "one-to-one: the Hungarian baseline"))
        else:
            rows.append(RowSpec(f"B=({b1},{b2})", {**DETA_ABLATION_SETTING, **b_matching(b1, b2)}, ref))
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
        notes=DETA_ABLATION_NOTE,
    )


def _attention_label(method: str, cross: bool, self_attn: bool) -> str:
    return f"{method} cross={'on' if cross else 'FFN'} self={'on' if self_attn else 'FFN'}"


def _deta_table7() -> TableSpec:
    rows = []
    for method, column, overrides in (("DETA", "deta_AP", deta(None)), ("Hungarian", "deformable_detr_AP", hungarian())):
        for cross, self_attn in ((True, True), (True, False), (False, True)):
            rows.append(RowSpec(_attention_label(method, cross, self_attn),
                                {**DETA_ABLATION_SETTING, **overrides, "model.dec_cross_attn": cross,
                                 "model.dec_self_attn": self_attn},
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
        notes="DETA without object balancing (K=inf), as in the paper. " + DETA_ABLATION_NOTE,
    )


def _deta_table8() -> TableSpec:
    rows = [RowSpec(f"K={'inf' if k is None else k}", {**DETA_ABLATION_SETTING, **deta(k)},
                    _ref(K="inf" if k is None else k)) for k in (None, 16, 8, 4, 1)]
    rows.append(RowSpec("bipartite (Hungarian)", {**DETA_ABLATION_SETTING, **hungarian()}, _ref(K="bipartite")))
    return TableSpec(
        name="deta_table8",
        title="DETA Table 8: object balancing K",
        rows=tuple(rows),
        claims=(
            Claim("Object balancing K=4 beats no balancing (K=inf)", difference("K=4", "K=inf"), ">"),
            Claim("IoU assignment without balancing beats bipartite matching",
                  difference("K=inf", "bipartite (Hungarian)"), ">"),
            Claim("K=4 beats K=1", difference("K=4", "K=1"), ">"),
            Claim("K=1 beats bipartite matching, though both give each object one positive",
                  difference("K=1", "bipartite (Hungarian)"), ">"),
        ),
        notes=DETA_ABLATION_NOTE,
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
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
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
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
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
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table 6: sensitivity to alpha, k and tau (others at 0.25, 3, 1.5)",
        rows=tuple(rows),
        claims=(
            Claim("alpha=0.25 beats alpha=0.75", difference("alpha=0.25", "alpha=0.75"), ">"),
            Claim("k=3 beats k=1", difference("k=3", "k=1"), ">"),
            Claim("tau 1.5 -> 9 changes AP by less than 1 point", difference("tau=9", "tau=1.5"),
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
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table 8: prime-sample weighting",
        rows=tuple(rows),
        claims=(
            Claim("Prime-sample weighting helps at k=3", difference("k=3, PS", "k=3, no PS"), ">"),
            Claim("Prime-sample weighting helps at k=2", difference("k=2, PS", "k=2, no PS"), ">"),
        ),
    )


FOCAL_AS_TABLE_B = "w_pos=(1-s)^2, w_neg=0 (focal loss)"


def _align_tableB() -> TableSpec:
    # the paper's first row, written (1-s)^2, 0, is its focal-loss baseline (alpha 0.25, Table B's caption)
    rows = [RowSpec(FOCAL_AS_TABLE_B, hungarian("focal"), _ref(w_pos="(1-s)^2", w_neg="0"),
                    "focal loss, as the paper's first row (the same run as Table 4's focal-loss row)")]
    variants = ("1,0", "t,0", "(t-s)^2,(t-s)^2", "(t-s)^2,(1-t)*s^2")
    for variant in variants:
        w_pos, w_neg = variant.split(",")
        rows.append(RowSpec(f"w_pos={w_pos}, w_neg={w_neg}",
                            {**hungarian("ia_bce_variant"), "loss.ia_bce_variant": variant},
                            _ref(w_pos=w_pos, w_neg=w_neg)))
    rows.append(RowSpec("w_pos=t, w_neg=1-t (IA-BCE)", hungarian("ia_bce"), _ref(w_pos="t", w_neg="1-t"),
                        "IA-BCE itself, the same run as Table 4's IA-BCE row"))
    return TableSpec(
        name="align_tableB",
        base="dino", other_bases=(TWO_STAGE,),  # the paper's base, or DETA's
        title="Align-DETR Table B: IA-BCE variants -w_pos ln(s) - w_neg ln(1-s)",
        rows=tuple(rows),
        claims=(
            Claim("IA-BCE (t, 1-t) beats focal loss ((1-s)^2, 0)",
                  difference("w_pos=t, w_neg=1-t (IA-BCE)", FOCAL_AS_TABLE_B), ">"),
            Claim("IA-BCE (t, 1-t) beats plain (1, 0)", difference("w_pos=t, w_neg=1-t (IA-BCE)", "w_pos=1, w_neg=0"), ">"),
        ),
        notes="One-to-one Hungarian matching in every row; the first row is the paper's focal-loss baseline "
              "(with its alpha = 0.25 weighting, which the table's general form leaves out).",
    )


# ------------------------------------------------------------------ the other base detectors
def _deta_table1_detr() -> TableSpec:
    detr = {"architecture": "detr", "dataset": "coco"}
    return TableSpec(
        name="deta_table1_detr",
        title="DETA Table 1: IoU assignment vs Hungarian matching (DETR column, two-stage DETR-DC5)",
        base="detr_dc5",
        rows=(
            RowSpec("Hungarian", hungarian(), _ref(**detr, row=2),
                    "two-stage DETR-DC5 with Hungarian matching in both stages: the improved baseline (row 2)"),
            RowSpec("IoU assignment + NMS, K=inf", deta_decoder_only(None), _ref(**detr, row=3)),
            RowSpec("IoU assignment + NMS, K=4", deta_decoder_only(4), _ref(**detr, row=4)),
        ),
        paper_only=(PaperOnlyRow("DETR (original)", _ref(**detr, row=1),
                                 "the paper's row 1: the original DETR baseline, 50 epochs"),),
        claims=(
            Claim("IoU assignment with object balancing beats Hungarian matching on DETR",
                  difference("IoU assignment + NMS, K=4", "Hungarian"), ">"),
            Claim("Object balancing (K=4) improves IoU assignment on DETR",
                  difference("IoU assignment + NMS, K=4", "IoU assignment + NMS, K=inf"), ">"),
            Claim("IoU assignment without balancing matches Hungarian matching on DETR (within 1 point)",
                  difference("IoU assignment + NMS, K=inf", "Hungarian"), "equivalent", margin=1.0),
        ),
        notes="DETA's plan for DETR (Section 5.1): Hungarian matching of the encoder proposals, IoU assignment "
              "on the decoder only (assign.method deta_decoder_only). The paper trains 50 epochs. At the cpu "
              "profile (160 px images: a 10 x 10 map) this base stays below 5 AP, even at 4x the schedule "
              "(results/sizing/detr); the column needs the paper profile.",
        paper_file="deta_table1",
    )


def _align_table2() -> TableSpec:
    return TableSpec(
        name="align_table2",
        title="Align-DETR Table 2: DAB-DETR (single scale) with and without Align-DETR",
        base="dab_detr",
        rows=(
            RowSpec("DAB-DETR", hungarian(), _ref(model="dab_detr", backbone="R50")),
            RowSpec("Align-DETR", align(), _ref(model="align_detr", backbone="R50")),
        ),
        paper_only=(PaperOnlyRow("DN-DETR", _ref(model="dn_detr", backbone="R50"),
                                 "denoising on DAB-DETR; the study has no DN-DETR base"),),
        claims=(Claim("Align-DETR improves DAB-DETR", difference("Align-DETR", "DAB-DETR"), ">"),),
        notes="Paper rows: ResNet-50 (C5), 50 epochs. The smoke and cpu presets read dilated C5 (the "
              "paper's DC5 rows: 44.5 -> 48.3) so that small images still give enough tokens.",
    )


def _align_table3() -> TableSpec:
    return TableSpec(
        name="align_table3",
        title="Align-DETR Table 3: DINO, Align-DETR and DETA on one schedule (1x)",
        base="dino",
        rows=(
            RowSpec("DINO", hungarian(), _ref(model="dino", epochs=12)),
            RowSpec("Align-DETR", align(), _ref(model="align_detr", epochs=12)),
            RowSpec("DETA (K=4)", deta(4), note="DETA's assignment and NMS on DINO; the paper has no such row "
                                                "(DETA's own base gives 50.2 at 1x, DETA Table 1)"),
            RowSpec("H-Deformable-DETR", hybrid(), _ref(model="h_deformable_detr", epochs=12),
                    "hybrid matching on DETA's two-stage base, same size as the DINO rows; the paper's "
                    "48.7 also has mixed query selection, look-forward-twice and classification weight 2, "
                    "which this row does not", base=TWO_STAGE),
        ),
        claims=(
            Claim("Align-DETR beats DINO", difference("Align-DETR", "DINO"), ">"),
            Claim("Align-DETR beats H-Deformable-DETR", difference("Align-DETR", "H-Deformable-DETR"), ">"),
            Claim("DETA's IoU assignment beats Hungarian matching on DINO (the study's claim, not the paper's)",
                  difference("DETA (K=4)", "DINO"), ">"),
        ),
        notes="The 24-epoch rows of the paper are not run.",
    )


def _align_table7() -> TableSpec:
    return TableSpec(
        name="align_table7",
        title="Align-DETR Table 7: IA-BCE on H-Deformable-DETR (hybrid matching)",
        rows=(
            RowSpec("hybrid matching, focal", hybrid("focal"), _ref(method="h_deformable_detr", ia_bce=0)),
            RowSpec("hybrid matching, IA-BCE", hybrid("ia_bce"), _ref(method="h_deformable_detr", ia_bce=1)),
        ),
        claims=(Claim("IA-BCE improves hybrid matching",
                      difference("hybrid matching, IA-BCE", "hybrid matching, focal"), ">"),),
        notes=f"One-to-many queries: {HYBRID_QUERY_RATIO} x the one-to-one queries (the paper's 1500 / 300; "
              f"{LAPTOP_HYBRID_QUERY_RATIO} x at the cpu profile, whose images have too few feature tokens for "
              f"{HYBRID_QUERY_RATIO} x), objects repeated {HYBRID_K} times; IA-BCE in both groups (no released "
              "configuration of this table exists). Hybrid matching runs on DETA's two-stage base, without "
              "H-Deformable-DETR's other changes (mixed query selection, look-forward-twice, classification "
              "weight 2), so the relative gain of IA-BCE is the comparison, not the paper's absolute numbers.",
    )


OBJECTIVES = {"Hungarian": hungarian(), "DETA (K=4)": deta(4), "Align-DETR": align(), "hybrid": hybrid()}
BASE_NAMES = {TWO_STAGE: "two-stage Deformable-DETR", "dino": "DINO"}


def objective_label(objective: str, base: str) -> str:
    return f"{objective} | {BASE_NAMES[base]}"


def _objective_x_base() -> TableSpec:
    rows, claims = [], []
    for base, name in BASE_NAMES.items():
        objectives = [o for o in OBJECTIVES if not (o == "hybrid" and base != TWO_STAGE)]  # hybrid: two-stage only
        for objective in objectives:
            rows.append(RowSpec(objective_label(objective, base), OBJECTIVES[objective], base=base))
        for objective in objectives[1:]:
            claims.append(Claim(f"{objective} beats Hungarian on {name}",
                                difference(objective_label(objective, base), objective_label("Hungarian", base)), ">"))
    return TableSpec(
        name="objective_x_base",
        title="Each training objective on each multi-scale base (not in either paper)",
        rows=tuple(rows),
        claims=tuple(claims),
        notes="One verdict per cell against the same base's Hungarian baseline (paired by seed). Hybrid "
              "matching exists on the two-stage base only; no paper numbers.",
    )


def _all_tables() -> tuple[TableSpec, ...]:
    """The paper tables, then the tables beyond the papers (built from the paper tables' rows)."""
    from assignlab.study import beyond  # imported here: it builds on this module's helpers

    paper_tables = (
        _deta_table1(), _deta_table5(), _deta_table6(), _deta_table7(), _deta_table8(),
        _align_table4(), _align_table5(), _align_table6(), _align_table8(), _align_tableB(),
        _deta_table1_detr(), _align_table2(), _align_table3(), _align_table7(), _objective_x_base(),
    )
    return paper_tables + beyond.beyond_tables({spec.name: spec for spec in paper_tables})


TABLES: dict[str, TableSpec] = {spec.name: spec for spec in _all_tables()}


def get_table(name: str | TableSpec) -> TableSpec:
    """The spec named ``name`` (a ``TableSpec`` is returned as is)."""
    if isinstance(name, TableSpec):
        return name
    if name not in TABLES:
        raise KeyError(f"unknown study table {name!r} (available: {', '.join(TABLES)})")
    return TABLES[name]
