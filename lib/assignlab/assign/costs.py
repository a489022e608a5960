"""Weighted match-cost pieces for Hungarian-style matching: focal class cost, L1, GIoU.

Each piece maps N predictions and M objects to an [N, M] cost (lower = better match).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou


def focal_class_cost(pred_logits: Tensor, gt_labels: Tensor, alpha: float, gamma: float) -> Tensor:
    """Focal-loss difference between calling the prediction the object's class and not.

    Args:
        pred_logits: [N, C] raw logits.
        gt_labels: [M] long class ids.
    Returns:
        [N, M]: alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p)) at the object's class.
    """
    logits = pred_logits[:, gt_labels]  # (N, M)
    prob = logits.sigmoid()
    positive = alpha * (1 - prob) ** gamma * F.softplus(-logits)  # -log p = softplus(-x)
    negative = (1 - alpha) * prob**gamma * F.softplus(logits)  # -log(1-p) = softplus(x)
    return positive - negative


def l1_cost(pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """[N, M] L1 distance between cxcywh boxes."""
    return torch.cdist(pred_boxes, gt_boxes, p=1)


def giou_cost(pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """[N, M] negative generalised IoU between cxcywh boxes."""
    return -generalized_box_iou(box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh", "xyxy"))


@dataclass(frozen=True)
class MatchCost:
    """cost = class_weight * focal class cost + bbox_weight * L1 + giou_weight * (-GIoU).

    Defaults are the matcher of Deformable-DETR, DETA and Align-DETR (2, 5, 2; alpha .25, gamma 2).
    """

    class_weight: float = 2.0
    bbox_weight: float = 5.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def __call__(self, pred_logits: Tensor, pred_boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor) -> Tensor:
        """[N, M] cost of matching each of N predictions (logits [N, C], boxes [N, 4] cxcywh) to
        each of M objects (labels [M], boxes [M, 4] cxcywh)."""
        pred_logits, pred_boxes, gt_boxes = pred_logits.float(), pred_boxes.float(), gt_boxes.float()
        cost = self.bbox_weight * l1_cost(pred_boxes, gt_boxes)
        cost = cost + self.class_weight * focal_class_cost(pred_logits, gt_labels, self.focal_alpha, self.focal_gamma)
        return cost + self.giou_weight * giou_cost(pred_boxes, gt_boxes)
