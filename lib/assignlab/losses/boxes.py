"""Box regression losses (L1, GIoU); the IoU of matched box pairs is :func:`assignlab.box_ops.paired_box_iou`.

Boxes are normalised cxcywh unless stated otherwise. Each loss returns the per-pair loss so the
caller can weight (prime-sample weights) and normalise it.
"""
from __future__ import annotations

from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou_loss

_EPS = 1e-7


def l1_box_loss(pred_boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """[P]: L1 distance summed over the four cxcywh coordinates."""
    return (pred_boxes - target_boxes).abs().sum(-1)


def giou_box_loss(pred_boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """[P]: 1 - GIoU of each pair (torchvision's, with its epsilon for degenerate boxes)."""
    return generalized_box_iou_loss(
        box_convert(pred_boxes, "cxcywh", "xyxy"),
        box_convert(target_boxes, "cxcywh", "xyxy"),
        reduction="none",
        eps=_EPS,
    )
