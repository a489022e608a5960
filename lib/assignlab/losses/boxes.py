"""Box regression losses (L1, GIoU) and the IoU of matched box pairs.

Boxes are normalised cxcywh unless stated otherwise. Each loss returns the per-pair loss so the
caller can weight (prime-sample weights) and normalise it.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou_loss

_EPS = 1e-7


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of row i of ``boxes1`` with row i of ``boxes2``.

    Args:
        boxes1, boxes2: [P, 4] cxcywh.
    Returns:
        [P]; 0 when both boxes have zero area (the union is clamped to a small epsilon).
    """
    a = box_convert(boxes1, "cxcywh", "xyxy")
    b = box_convert(boxes2, "cxcywh", "xyxy")
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=_EPS)


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
