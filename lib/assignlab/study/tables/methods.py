"""Each method as the overrides that switch it on, written out in full (assignment, classification
loss, query selection and post-processing), so a row never depends on what a preset happens to
default to."""
from __future__ import annotations

from typing import Any

from assignlab.study.tables.overrides import Multiple, PerProfile, only_at


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
