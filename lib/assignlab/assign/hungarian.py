"""One-to-one Hungarian matching (DETR), with optional copies of each object (B-matching).

Matching each object to ``copies`` predictions is Hungarian matching on the cost matrix with the
object columns repeated ``copies`` times (DETA Section 5.3); with N >= copies * M predictions
every object gets exactly ``copies`` of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from assignlab.assign.base import AssignmentPlan, Assigner, AssignResult
from assignlab.assign.costs import MatchCost

if TYPE_CHECKING:
    from assignlab.config import AssignConfig, LossConfig


def match_cost_from_config(assign: "AssignConfig") -> MatchCost:
    return MatchCost(assign.cost_class, assign.cost_bbox, assign.cost_giou,
                     assign.cost_focal_alpha, assign.cost_focal_gamma)


def match_with_copies(cost: Tensor, copies: int = 1) -> tuple[Tensor, Tensor]:
    """Minimum-cost matching of N predictions to M objects, each object repeated ``copies`` times.

    Args:
        cost: [N, M] finite cost.
        copies: times each object may be matched (>= 1).
    Returns:
        (pred_idx, gt_idx), long tensors on cost's device, ordered by object then prediction.
        Each prediction is used at most once; when N < copies * M some copies stay unmatched.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    n, m = cost.shape
    if n == 0 or m == 0:
        empty = torch.zeros(0, dtype=torch.long, device=cost.device)
        return empty, empty.clone()
    matrix = cost.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(matrix).all():
        raise ValueError("matching cost contains NaN or inf (check the predicted boxes and logits)")
    rows, cols = linear_sum_assignment(np.tile(matrix, (1, copies)))
    gt_idx = torch.as_tensor(cols % m, dtype=torch.long)
    pred_idx = torch.as_tensor(rows, dtype=torch.long)
    order = torch.argsort(gt_idx * n + pred_idx)
    return pred_idx[order].to(cost.device), gt_idx[order].to(cost.device)


class HungarianAssigner(Assigner):
    """Hungarian matching on :class:`MatchCost`; ``copies`` > 1 gives B-matching."""

    def __init__(self, cost: MatchCost, copies: int = 1) -> None:
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        self.cost = cost
        self.copies = copies

    @torch.no_grad()
    def assign_image(self, pred_logits, pred_boxes, gt_labels, gt_boxes, *, reference_boxes=None,
                     valid=None, generator=None) -> AssignResult:
        pred_idx, gt_idx = match_valid(self.cost, pred_logits, pred_boxes, gt_labels, gt_boxes, valid, self.copies)
        return AssignResult(pred_logits.shape[0], gt_labels.numel(), pred_idx, gt_idx)


def match_valid(cost_fn: MatchCost, pred_logits: Tensor, pred_boxes: Tensor, gt_labels: Tensor,
                gt_boxes: Tensor, valid: Tensor | None, copies: int) -> tuple[Tensor, Tensor]:
    """Hungarian matching restricted to the valid predictions; indices refer to all N of them."""
    rows = None if valid is None else torch.nonzero(valid, as_tuple=True)[0]
    if rows is not None:
        pred_logits, pred_boxes = pred_logits[rows], pred_boxes[rows]
    if gt_labels.numel() == 0 or pred_logits.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=pred_logits.device)
        return empty, empty.clone()
    pred_idx, gt_idx = match_with_copies(cost_fn(pred_logits, pred_boxes, gt_labels, gt_boxes), copies)
    if rows is not None:
        pred_idx = rows[pred_idx]
    return pred_idx, gt_idx


def hungarian_plan(assign: "AssignConfig", loss: "LossConfig") -> AssignmentPlan:
    """Deformable-DETR: one-to-one matching on the encoder proposals (class-agnostic) and on
    every decoder layer."""
    matcher = HungarianAssigner(match_cost_from_config(assign))
    return AssignmentPlan(encoder=matcher, auxiliary=matcher, last=matcher)
