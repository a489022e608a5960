"""Align-DETR mixed matching: many-to-one Hungarian on the encoder proposals and auxiliary decoder
layers (each object's cost column repeated k times), one-to-one on the last layer.

The number of copies is capped so that k * num_gt <= num_queries / 2:
``k_image = min(floor(0.5 * N / num_gt), k)``. The released code writes the capped value back
into its running k, so one crowded image lowers k for the images after it in the batch
(``k_cap="released"``); ``k_cap="per_image"`` caps each image on its own. Deviation: k never
drops below 1 here (released code reaches 0 when num_gt > N / 2 and then matches nothing).

Each match gets its quality t = p^alpha * IoU^(1-alpha) (p the predicted probability of the
object's class, IoU of the predicted box, detached, clamped >= 0.01), its rank among its object's
matches by t (descending) and the prime-sample weight w = exp(-rank / tau)
(:mod:`assignlab.assign.quality`).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from assignlab.assign.base import AssignmentPlan, Assigner, AssignResult, check_batch, rank_within_groups
from assignlab.assign.costs import MatchCost
from assignlab.assign.hungarian import match_cost_from_config, match_valid
from assignlab.assign.quality import matched_quality, prime_sample_weights

if TYPE_CHECKING:
    from assignlab.config import AssignConfig, LossConfig

K_CAPS = ("released", "per_image")


def capped_copies(k: int, num_gts: int, num_preds: int) -> int:
    """min(floor(0.5 * num_preds / num_gts), k), at least 1; k itself when there is no object."""
    if num_gts == 0:
        return k
    return max(1, min(int(0.5 * num_preds / num_gts), k))


class MixedAssigner(Assigner):
    """Hungarian matching with ``copies`` copies of each object, plus quality, rank and weight.

    Args:
        cost: the match cost.
        copies: k (>= 1); 1 is one-to-one matching.
        k_cap: "released" (the cap carries over to later images of the batch) or "per_image".
        alpha: exponent of p in the quality t.
        tau: temperature of the prime-sample weights; ``prime_sample_weighting=False`` gives w = 1.
        min_quality: lower clamp of t.
    """

    def __init__(self, cost: MatchCost, copies: int, k_cap: str = "released", alpha: float = 0.25,
                 tau: float = 1.5, prime_sample_weighting: bool = True, min_quality: float = 0.01) -> None:
        if k_cap not in K_CAPS:
            raise ValueError(f"k_cap must be one of {K_CAPS}, got {k_cap!r}")
        if copies < 1:
            raise ValueError(f"mixed matching copies (mixed_k) must be >= 1, got {copies}")
        self.cost, self.copies, self.k_cap = cost, copies, k_cap
        self.alpha, self.tau, self.min_quality = alpha, tau, min_quality
        self.prime_sample_weighting = prime_sample_weighting

    @torch.no_grad()
    def __call__(self, pred_logits, pred_boxes, gt_labels, gt_boxes, *, reference_boxes=None, valid=None,
                 generator=None) -> list[AssignResult]:
        check_batch(pred_logits, pred_boxes, gt_labels, gt_boxes, reference_boxes, valid)
        running_k, results = self.copies, []
        for b in range(pred_logits.shape[0]):
            own_cap = capped_copies(self.copies, gt_labels[b].numel(), pred_logits.shape[1])
            k = capped_copies(running_k, gt_labels[b].numel(), pred_logits.shape[1]) if self.k_cap == "released" else own_cap
            if self.k_cap == "released":
                running_k = k
            result = self.assign_image(pred_logits[b], pred_boxes[b], gt_labels[b], gt_boxes[b],
                                       valid=None if valid is None else valid[b], copies=k)
            results.append(dataclasses.replace(result, carried_cap=k < own_cap and gt_labels[b].numel() > 0))
        return results

    @torch.no_grad()
    def assign_image(self, pred_logits, pred_boxes, gt_labels, gt_boxes, *, reference_boxes=None, valid=None,
                     generator=None, copies: int | None = None) -> AssignResult:
        """One image; ``copies`` overrides the capped k (the batch call passes it)."""
        if copies is None:
            copies = capped_copies(self.copies, gt_labels.numel(), pred_logits.shape[0])
        pred_idx, gt_idx = match_valid(self.cost, pred_logits, pred_boxes, gt_labels, gt_boxes, valid, copies)
        iou, quality = matched_quality(pred_logits[pred_idx, gt_labels[gt_idx]], pred_boxes[pred_idx], gt_boxes[gt_idx],
                                       self.alpha, self.min_quality)
        rank = rank_within_groups(gt_idx, quality)
        weight = prime_sample_weights(rank, self.tau) if self.prime_sample_weighting else torch.ones_like(quality)
        return AssignResult(pred_logits.shape[0], gt_labels.numel(), pred_idx, gt_idx, iou=iou, quality=quality,
                            rank=rank, weight=weight)


def align_plan(assign: "AssignConfig", loss: "LossConfig") -> AssignmentPlan:
    """k copies (``mixed_k``) on the encoder proposals and auxiliary layers, one-to-one on the last."""
    def make(copies: int) -> MixedAssigner:
        return MixedAssigner(match_cost_from_config(assign), copies, k_cap=assign.k_cap, alpha=loss.ia_bce_alpha,
                             tau=loss.prime_sample_tau, prime_sample_weighting=loss.prime_sample_weighting,
                             min_quality=loss.ia_bce_min_quality)
    many = make(assign.mixed_k)
    return AssignmentPlan(encoder=many, auxiliary=many, last=make(1))
