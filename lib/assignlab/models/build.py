"""Build the detector and its post-processing from a ``ModelConfig``."""
from __future__ import annotations

import functools
from typing import Callable

from torch import nn

from assignlab.config import BASES, ModelConfig
from assignlab.models.backbone import build_backbone
from assignlab.models.dab_detr import DABDETR
from assignlab.models.detector import TwoStageDeformableDETR
from assignlab.models.dino import DINO
from assignlab.models.detr_dc5 import TwoStageDETRDC5
from assignlab.models.postprocess import POSTPROCESS_METHODS, postprocess
from assignlab.models.query_selection import SELECTION_METHODS
from assignlab.ops.msda import IMPLS

SINGLE_SCALE_BASES = ("detr_dc5", "dab_detr")  # vanilla attention on the last backbone map only


def check_model_config(config: ModelConfig) -> None:
    """Raise ``ValueError`` naming the first field whose value the detector cannot be built with."""
    if config.base not in BASES:
        raise ValueError(f"model.base={config.base!r} is not implemented (available: {BASES})")
    if config.base in SINGLE_SCALE_BASES and config.num_feature_levels != 1:
        raise ValueError(f"model.base={config.base!r} reads one feature map: model.num_feature_levels must be 1, "
                         f"got {config.num_feature_levels}")
    if config.query_selection not in SELECTION_METHODS:
        raise ValueError(f"model.query_selection={config.query_selection!r} (expected one of {SELECTION_METHODS})")
    if config.postprocess not in POSTPROCESS_METHODS:
        raise ValueError(f"model.postprocess={config.postprocess!r} (expected one of {POSTPROCESS_METHODS})")
    if config.msda_impl not in IMPLS:
        raise ValueError(f"model.msda_impl={config.msda_impl!r} (expected one of {IMPLS})")
    positive = ("num_classes", "num_feature_levels", "hidden_dim", "nheads", "enc_n_points", "dec_n_points",
                "dec_layers", "dim_feedforward", "num_queries", "proposal_topk_per_level", "max_detections")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"model.{name} must be at least 1, got {getattr(config, name)}")
    if config.enc_layers < 0:
        raise ValueError(f"model.enc_layers must be >= 0, got {config.enc_layers}")
    if config.hidden_dim % 32 != 0:
        raise ValueError(f"model.hidden_dim={config.hidden_dim} must be a multiple of 32 (GroupNorm(32) "
                         "in the input projections)")
    if config.hidden_dim % config.nheads != 0:
        raise ValueError(f"model.hidden_dim={config.hidden_dim} must be divisible by model.nheads={config.nheads}")
    if config.num_queries < config.num_feature_levels and config.query_selection != "topk":
        raise ValueError(f"model.num_queries={config.num_queries} < num_feature_levels: the per-level "
                         "selection needs at least one query per level")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {config.dropout}")
    if not 0.0 <= config.iou_branch_fusion <= 1.0:
        raise ValueError(f"model.iou_branch_fusion must be in [0, 1], got {config.iou_branch_fusion}")
    if config.iou_branch_fusion > 0 and not config.iou_branch:
        raise ValueError("model.iou_branch_fusion > 0 needs model.iou_branch=True")
    check_dino_and_hybrid_fields(config)


def check_dino_and_hybrid_fields(config: ModelConfig) -> None:
    """The denoising (DINO) and one-to-many (hybrid matching) fields."""
    if config.dn_number < 0:
        raise ValueError(f"model.dn_number must be >= 0 (0 = no denoising), got {config.dn_number}")
    if not 0.0 <= config.label_noise_ratio <= 1.0:
        raise ValueError(f"model.label_noise_ratio must be in [0, 1], got {config.label_noise_ratio}")
    if config.box_noise_scale < 0:
        raise ValueError(f"model.box_noise_scale must be >= 0, got {config.box_noise_scale}")
    if config.num_queries_one2many < 0:
        raise ValueError(f"model.num_queries_one2many must be >= 0, got {config.num_queries_one2many}")
    if config.enc_loss_selected_only and config.base not in ("two_stage_deformable", "dino"):
        raise ValueError(f"model.enc_loss_selected_only needs encoder proposals of the two_stage_deformable or "
                         f"dino base, not model.base={config.base!r}")
    if config.num_queries_one2many > 0 and config.base != "two_stage_deformable":
        raise ValueError(f"model.num_queries_one2many > 0 (hybrid matching) is implemented on the "
                         f"two_stage_deformable base only, not model.base={config.base!r}")


def build_model(config: ModelConfig) -> nn.Module:
    """The detector of ``config.base`` (parameters drawn from torch's current RNG state)."""
    check_model_config(config)
    backbone = build_backbone(config.backbone, pretrained=config.pretrained_backbone, width=config.backbone_width,
                              dilated_c5=config.dilated_c5)
    if config.base == "detr_dc5":
        return TwoStageDETRDC5(config, backbone)
    if config.base == "dab_detr":
        return DABDETR(config, backbone)
    if config.base == "dino":
        return DINO(config, backbone)
    return TwoStageDeformableDETR(config, backbone)


def build_postprocessor(config: ModelConfig) -> Callable:
    """``postprocess`` with the configuration's method, thresholds and score fusion bound."""
    return functools.partial(postprocess, method=config.postprocess, nms_iou=config.postprocess_nms_iou,
                             pre_topk=config.postprocess_pre_topk, max_detections=config.max_detections,
                             iou_fusion=config.iou_branch_fusion)
