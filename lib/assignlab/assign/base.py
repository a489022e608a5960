"""AssignResult, the assigner interface and the registry of assignment methods.

A new method is one file that defines a plan function ``(AssignConfig, LossConfig) ->
AssignmentPlan`` plus one line in :data:`METHODS`.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:
    from assignlab.config import AssignConfig, LossConfig

NEGATIVE = -1  # per-prediction label of a prediction matched to no object

# method name -> "module:plan function"; the module is imported when the method is first built
METHODS: dict[str, str] = {
    "hungarian": "assignlab.assign.hungarian:hungarian_plan",
    "b_matching": "assignlab.assign.b_matching:b_matching_plan",
    "deta": "assignlab.assign.deta:deta_plan",
    "deta_decoder_only": "assignlab.assign.deta_decoder_only:deta_decoder_only_plan",
    "align": "assignlab.assign.mixed:align_plan",
}


@dataclass(frozen=True, eq=False)
class AssignResult:
    """The assignment of one image's predictions to its objects.

    The matches are the pairs ``(pred_idx[i], gt_idx[i])``. A prediction appears in at most one
    pair, except under DETA's released top-K (``topk_behaviour="released"``), where one prediction
    can be matched to two objects.

    Attributes:
        num_preds: N, number of predictions of the output (queries or encoder tokens).
        num_gts: M, number of objects in the image.
        pred_idx: [P] long, index of the matched prediction in [0, N).
        gt_idx: [P] long, index of the matched object in [0, M).
        iou: [P] float or None, IoU the assigner measured for the pair (DETA: reference box vs
            object; mixed matching: predicted box vs object).
        quality: [P] float or None, Align-DETR quality t = p^alpha * IoU^(1-alpha) of the pair.
        rank: [P] long or None, rank of the pair among its object's matches by quality (0 = best).
        weight: [P] float or None, prime-sample weight exp(-rank / tau) of the pair.
        carried_cap: mixed matching only: this image's k was lowered by the cap of an earlier,
            more crowded image of the batch (the released k cap), not by its own objects.
        zero_iou_objects: DETA with low-quality matches only: objects whose IoU with every valid
            reference box is 0. detectron2's ``Matcher``, which the released code uses, would make
            every box a positive for them; here they add no low-quality match.
    """

    num_preds: int
    num_gts: int
    pred_idx: Tensor
    gt_idx: Tensor
    iou: Tensor | None = None
    quality: Tensor | None = None
    rank: Tensor | None = None
    weight: Tensor | None = None
    carried_cap: bool = False
    zero_iou_objects: int = 0

    def __post_init__(self) -> None:
        n = self.pred_idx.shape
        if self.pred_idx.dim() != 1 or self.gt_idx.shape != n:
            raise ValueError(f"pred_idx {tuple(n)} and gt_idx {tuple(self.gt_idx.shape)} must be equal 1-d")
        for name in ("iou", "quality", "rank", "weight"):
            value = getattr(self, name)
            if value is not None and value.shape != n:
                raise ValueError(f"AssignResult.{name} has shape {tuple(value.shape)}, expected {tuple(n)}")

    @classmethod
    def empty(cls, num_preds: int, num_gts: int, device: torch.device | str = "cpu") -> "AssignResult":
        """No matches: every prediction is a negative."""
        idx = torch.zeros(0, dtype=torch.long, device=device)
        return cls(num_preds, num_gts, idx, idx.clone())

    @property
    def num_matches(self) -> int:
        return int(self.pred_idx.numel())

    @property
    def gt_index(self) -> Tensor:
        """[N] long: matched object per prediction, ``NEGATIVE`` (-1) when unmatched.

        A prediction matched to several objects (released DETA top-K) shows the smallest index.
        """
        out = torch.full((self.num_preds,), self.num_gts, dtype=torch.long, device=self.pred_idx.device)
        out.scatter_reduce_(0, self.pred_idx, self.gt_idx, reduce="amin")
        out[out == self.num_gts] = NEGATIVE
        return out

    def positives_per_object(self) -> Tensor:
        """[M] long: number of predictions matched to each object."""
        return torch.bincount(self.gt_idx, minlength=self.num_gts)

    @property
    def num_shared_predictions(self) -> int:
        """Predictions matched to two or more objects (only DETA's released top-K makes them)."""
        return int((torch.bincount(self.pred_idx, minlength=1) > 1).sum()) if self.num_matches else 0


class Assigner(ABC):
    """Assigns each image's predictions to its objects; stateless apart from its settings.

    Call it on a batch; subclasses implement :meth:`assign_image` (and override ``__call__``
    only when images of a batch influence each other, as the released Align-DETR k cap does).
    """

    @torch.no_grad()
    def __call__(
        self,
        pred_logits: Tensor,
        pred_boxes: Tensor,
        gt_labels: Sequence[Tensor],
        gt_boxes: Sequence[Tensor],
        *,
        reference_boxes: Tensor | None = None,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> list[AssignResult]:
        """Assign a batch.

        Args:
            pred_logits: [B, N, C] raw class logits.
            pred_boxes: [B, N, 4] predicted boxes, normalised cxcywh.
            gt_labels: B tensors [M_b] long, class ids in [0, C).
            gt_boxes: B tensors [M_b, 4], normalised cxcywh.
            reference_boxes: [B, N, 4] cxcywh boxes the predictions start from (encoder anchors or
                the detached proposals fed to the decoder); used by IoU assigners.
            valid: [B, N] bool; False marks predictions that may not be matched (padding tokens).
            generator: random source of the subsampling (global RNG when None).
        """
        check_batch(pred_logits, pred_boxes, gt_labels, gt_boxes, reference_boxes, valid)
        return [
            self.assign_image(
                pred_logits[b], pred_boxes[b], gt_labels[b], gt_boxes[b],
                reference_boxes=None if reference_boxes is None else reference_boxes[b],
                valid=None if valid is None else valid[b],
                generator=generator,
            )
            for b in range(pred_logits.shape[0])
        ]

    @abstractmethod
    def assign_image(
        self,
        pred_logits: Tensor,
        pred_boxes: Tensor,
        gt_labels: Tensor,
        gt_boxes: Tensor,
        *,
        reference_boxes: Tensor | None = None,
        valid: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AssignResult:
        """Same arguments as ``__call__`` without the batch dimension."""


@dataclass(frozen=True)
class AssignmentPlan:
    """Which assigner serves which output of the detector.

    ``decoder_shared``: the decoder assignment depends only on the reference (proposal) boxes, so
    it is computed once per step and reused by every decoder layer (DETA's second stage).
    """

    encoder: Assigner
    auxiliary: Assigner
    last: Assigner
    decoder_shared: bool = False


def check_method(method: str) -> None:
    """ValueError listing :data:`METHODS` when ``method`` (``assign.method``) is not one of them."""
    if method not in METHODS:
        raise ValueError(f"unknown assignment method assign.method={method!r}; allowed: {', '.join(sorted(METHODS))}")


def build_plan(assign: "AssignConfig", loss: "LossConfig") -> AssignmentPlan:
    """The plan of ``assign.method`` (see :data:`METHODS`)."""
    check_method(assign.method)
    module_name, _, function_name = METHODS[assign.method].partition(":")
    plan_fn: Callable[..., AssignmentPlan] = getattr(importlib.import_module(module_name), function_name)
    return plan_fn(assign, loss)


def rank_within_groups(groups: Tensor, scores: Tensor) -> Tensor:
    """Rank of each element among the elements of its group, by descending score (0 = best).

    Args:
        groups: [P] long group id per element (e.g. the matched object).
        scores: [P] float.
    Returns:
        [P] long; ties keep the order of appearance.
    """
    if groups.numel() == 0:
        return groups.new_zeros(0)
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    sorted_rank = torch.arange(groups.numel(), device=groups.device) - torch.repeat_interleave(starts, counts)
    rank = torch.empty_like(sorted_rank)
    rank[order] = sorted_rank
    return rank


def check_batch(
    pred_logits: Tensor,
    pred_boxes: Tensor,
    gt_labels: Sequence[Tensor],
    gt_boxes: Sequence[Tensor],
    reference_boxes: Tensor | None,
    valid: Tensor | None,
) -> None:
    """Raise ValueError naming the first inconsistent shape."""
    if pred_logits.dim() != 3:
        raise ValueError(f"pred_logits must be [B, N, C], got {tuple(pred_logits.shape)}")
    b, n = pred_logits.shape[:2]
    if pred_boxes.shape != (b, n, 4):
        raise ValueError(f"pred_boxes must be [{b}, {n}, 4], got {tuple(pred_boxes.shape)}")
    if len(gt_labels) != b or len(gt_boxes) != b:
        raise ValueError(f"expected {b} target label/box tensors, got {len(gt_labels)}/{len(gt_boxes)}")
    if reference_boxes is not None and reference_boxes.shape != (b, n, 4):
        raise ValueError(f"reference_boxes must be [{b}, {n}, 4], got {tuple(reference_boxes.shape)}")
    if valid is not None and valid.shape != (b, n):
        raise ValueError(f"valid must be [{b}, {n}], got {tuple(valid.shape)}")
