"""DETA's IoU assignment with object balancing (first and second stage).

Per image, following the released code (design.md, "Semantics the released code has"):

1. IoU between every object and every reference box: the fixed anchors of the encoder tokens
   (stage 1) or the detached proposal boxes fed to the decoder (stage 2), never the predictions.
2. Each reference box takes its highest-IoU object. Labels as detectron2's ``Matcher``: positive
   at IoU >= the high threshold, negative below the low threshold, "between" in the band (stage 1
   only). With low-quality matches allowed, every box whose IoU equals an object's best IoU is
   positive too (its object stays its own argmax); unlike detectron2, an object whose best IoU is
   0 (zero-area or off-image) adds no such match, since it would make every box positive.
3. Subsampling (Faster R-CNN style) keeps at most ``int(batch_per_image * positive_fraction)``
   randomly chosen positives. It only limits the positives: every box that is not a kept
   positive is a negative in the loss (no ignore), so the band of step 2 acts as negative and
   the low threshold has no effect.
4. Object balancing (top-K per object, K = ``object_balance_k``; None = infinity = no balancing):
   - ``"released"``: for an object with c positives, the positives become the top min(c, K) boxes
     by IoU with that object over *all* reference boxes. A box may thus serve two objects, or be
     a positive although it was not one before (acknowledged upstream as a bug, DETA issue #8).
   - ``"fixed"``: keep the top min(c, K) by IoU among the object's own positives (upstream fix).

Invalid boxes (``valid`` False: padding tokens, anchors outside the image) are never positives.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from assignlab.assign.base import AssignmentPlan, Assigner, AssignResult, rank_within_groups
from assignlab.box_ops import box_iou_cxcywh

if TYPE_CHECKING:
    from assignlab.config import AssignConfig, LossConfig

POSITIVE, NEGATIVE, BETWEEN = 1, 0, -1
TOPK_BEHAVIOURS = ("released", "fixed")


def match_by_iou(iou: Tensor, thresholds: Sequence[float], allow_low_quality: bool) -> tuple[Tensor, Tensor]:
    """Best object and label of each reference box.

    Args:
        iou: [M, N] IoU of M objects with N boxes (M >= 1); entries < 0 mark boxes that may not match.
        thresholds: (high,) or (low, high).
        allow_low_quality: add each object's best box(es), ties included, as positives.
    Returns:
        matched [N] long object index (argmax over objects), labels [N] int8 in
        {POSITIVE, NEGATIVE, BETWEEN}.
    """
    if len(thresholds) not in (1, 2) or list(thresholds) != sorted(thresholds):
        raise ValueError(f"thresholds must be (high,) or (low, high) ascending, got {thresholds}")
    low, high = thresholds[0], thresholds[-1]
    best, matched = iou.max(dim=0)
    labels = torch.full_like(matched, BETWEEN, dtype=torch.int8)
    labels[best < low] = NEGATIVE
    labels[best >= high] = POSITIVE
    if allow_low_quality:
        best_per_object = iou.max(dim=1, keepdim=True).values  # (M, 1)
        is_best = (iou == best_per_object) & (best_per_object > 0)
        labels[is_best.any(dim=0)] = POSITIVE
    return matched, labels


def subsample_positives(positives: Tensor, limit: int, generator: torch.Generator | None = None) -> Tensor:
    """At most ``limit`` of the ``positives`` indices, chosen uniformly at random, sorted."""
    if positives.numel() <= limit:
        return positives
    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(positives.numel(), generator=generator, device=device)[:limit]
    return positives[perm.to(positives.device)].sort().values


def balance_released(pred_idx: Tensor, gt_idx: Tensor, iou: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Released top-K: per object, the top min(count, K) boxes by IoU over all N boxes."""
    if pred_idx.numel() == 0:
        return pred_idx, gt_idx
    objects, counts = torch.unique(gt_idx, return_counts=True)
    top = iou[objects].topk(min(k, iou.shape[1]), dim=1).indices  # (G, k)
    keep = torch.arange(top.shape[1], device=top.device)[None] < counts[:, None]
    return top[keep], objects[:, None].expand_as(top)[keep]


def balance_fixed(pred_idx: Tensor, gt_idx: Tensor, iou: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Fixed top-K: per object, the top min(count, K) of its own positives by IoU."""
    keep = rank_within_groups(gt_idx, iou[gt_idx, pred_idx]) < k
    return pred_idx[keep], gt_idx[keep]


class IoUAssigner(Assigner):
    """DETA's stage-1 / stage-2 assigner (see the module docstring for the steps).

    Args:
        thresholds: (high,) or (low, high) IoU thresholds.
        allow_low_quality: add each object's best box as a positive.
        positive_fraction: fraction of ``batch_per_image`` that positives may fill.
        batch_per_image: subsampling budget; None = the number of reference boxes (stage 2 uses
            num_queries).
        object_balance_k: K of the top-K per object; None = infinity.
        topk_behaviour: "released" or "fixed".
    """

    def __init__(self, thresholds: Sequence[float], *, allow_low_quality: bool, positive_fraction: float,
                 batch_per_image: int | None, object_balance_k: int | None, topk_behaviour: str = "released") -> None:
        if topk_behaviour not in TOPK_BEHAVIOURS:
            raise ValueError(f"topk_behaviour must be one of {TOPK_BEHAVIOURS}, got {topk_behaviour!r}")
        if object_balance_k is not None and object_balance_k < 1:
            raise ValueError(f"object_balance_k must be >= 1 or None (infinity), got {object_balance_k}")
        if not 0 < positive_fraction <= 1:
            raise ValueError(f"positive_fraction must be in (0, 1], got {positive_fraction}")
        self.thresholds = tuple(thresholds)
        self.allow_low_quality = allow_low_quality
        self.positive_fraction = positive_fraction
        self.batch_per_image = batch_per_image
        self.object_balance_k = object_balance_k
        self.topk_behaviour = topk_behaviour

    @torch.no_grad()
    def assign_image(self, pred_logits, pred_boxes, gt_labels, gt_boxes, *, reference_boxes=None,
                     valid=None, generator=None) -> AssignResult:
        if reference_boxes is None:
            raise ValueError("IoU assignment needs reference_boxes (encoder anchors or decoder proposals)")
        num_boxes, num_gts = reference_boxes.shape[0], gt_boxes.shape[0]
        if num_gts == 0 or num_boxes == 0:
            return AssignResult.empty(num_boxes, num_gts, reference_boxes.device)
        iou = box_iou_cxcywh(gt_boxes.float(), reference_boxes.detach().float())  # (M, N)
        if valid is not None:
            iou = iou.masked_fill(~valid[None], -1.0)
        matched, labels = match_by_iou(iou, self.thresholds, self.allow_low_quality)
        budget = num_boxes if self.batch_per_image is None else self.batch_per_image
        positives = torch.nonzero(labels == POSITIVE, as_tuple=True)[0]
        pred_idx = subsample_positives(positives, int(budget * self.positive_fraction), generator)
        gt_idx = matched[pred_idx]
        if self.object_balance_k is not None:
            balance = balance_released if self.topk_behaviour == "released" else balance_fixed
            pred_idx, gt_idx = balance(pred_idx, gt_idx, iou, self.object_balance_k)
        order = torch.argsort(gt_idx * num_boxes + pred_idx)
        pred_idx, gt_idx = pred_idx[order], gt_idx[order]
        zero_iou_objects = int((iou.max(dim=1).values <= 0).sum()) if self.allow_low_quality else 0
        return AssignResult(num_boxes, num_gts, pred_idx, gt_idx, iou=iou[gt_idx, pred_idx],
                            zero_iou_objects=zero_iou_objects)


def stage1_assigner(assign: "AssignConfig") -> IoUAssigner:
    """Encoder proposals vs fixed anchors: [0.3, 0.7], low-quality, 256 at 0.5, top-K."""
    return IoUAssigner(assign.stage1_iou_thresholds, allow_low_quality=assign.stage1_allow_low_quality,
                       positive_fraction=assign.stage1_positive_fraction,
                       batch_per_image=assign.stage1_batch_per_image, object_balance_k=assign.object_balance_k,
                       topk_behaviour=assign.topk_behaviour)


def stage2_assigner(assign: "AssignConfig") -> IoUAssigner:
    """Decoder queries vs detached proposals: 0.6, low-quality, num_queries at 0.25, top-K."""
    return IoUAssigner((assign.stage2_iou_threshold,), allow_low_quality=assign.stage2_allow_low_quality,
                       positive_fraction=assign.stage2_positive_fraction, batch_per_image=None,
                       object_balance_k=assign.object_balance_k, topk_behaviour=assign.topk_behaviour)


def deta_plan(assign: "AssignConfig", loss: "LossConfig") -> AssignmentPlan:
    """Stage 1 on the encoder proposals; stage 2, computed once per step, for every decoder layer."""
    stage2 = stage2_assigner(assign)
    return AssignmentPlan(encoder=stage1_assigner(assign), auxiliary=stage2, last=stage2, decoder_shared=True)
