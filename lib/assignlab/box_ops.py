"""Box operations shared by the layers (assignment, losses, diagnostics), like DETR's util/box_ops.

Boxes are normalised cxcywh unless stated otherwise. Each helper is the composition the callers
used before it was housed here (torchvision's conversion and IoU), so the numbers are unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

_EPS = 1e-7


def box_iou_cxcywh(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """[N, M] IoU of every box of ``boxes1`` [N, 4] with every box of ``boxes2`` [M, 4] (torchvision's
    ``box_iou`` on the xyxy forms)."""
    return box_iou(box_convert(boxes1, "cxcywh", "xyxy"), box_convert(boxes2, "cxcywh", "xyxy"))


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
