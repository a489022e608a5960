"""Align-DETR's match quality and prime-sample weights (Algorithm 1 and eq. 7 of the paper).

- quality t = s^alpha * IoU^(1-alpha) of a matched pair: s the predicted probability of the
  object's class, IoU of the predicted box with the object (IoU, not GIoU); detached, clamped
  >= ``min_quality`` (0.01 as released);
- prime-sample weight w = exp(-rank / tau), rank of the pair among its object's matches by t
  (0 = the prime sample, weight 1).

Mixed matching (:mod:`assignlab.assign.mixed`) ranks its matches by t and stores t, rank and w in
each :class:`~assignlab.assign.base.AssignResult`; the criterion reads w from there and computes t
of every output with :func:`matched_quality` (IA-BCE's target t * w).
"""
from __future__ import annotations

import torch
from torch import Tensor

from assignlab.box_ops import paired_box_iou


def alignment_quality(prob: Tensor, iou: Tensor, alpha: float = 0.25, min_quality: float = 0.01) -> Tensor:
    """t = prob^alpha * iou^(1 - alpha), clamped to >= ``min_quality`` and detached. Shapes [P]."""
    prob, iou = prob.detach(), iou.detach().clamp(min=0)
    return (prob.pow(alpha) * iou.pow(1 - alpha)).clamp(min=min_quality)


def prime_sample_weights(rank: Tensor, tau: float) -> Tensor:
    """w = exp(-rank / tau); rank 0 (the prime sample) has weight 1."""
    if tau <= 0:
        raise ValueError(f"prime_sample_tau must be > 0, got {tau}")
    return torch.exp(-rank.float() / tau)


@torch.no_grad()
def matched_quality(class_logits: Tensor, pred_boxes: Tensor, gt_boxes: Tensor, alpha: float,
                    min_quality: float) -> tuple[Tensor, Tensor]:
    """IoU and quality t of P matched pairs, both detached float32 [P].

    Args:
        class_logits: [P] logit of each matched prediction at its object's class.
        pred_boxes, gt_boxes: [P, 4] cxcywh, the predicted box and its object's box.
    """
    iou = paired_box_iou(pred_boxes.float(), gt_boxes.float())
    return iou, alignment_quality(class_logits.float().sigmoid(), iou, alpha, min_quality)
