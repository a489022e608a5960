"""Detections from the last decoder layer: DETA's class-wise NMS, or end-to-end top-k; and the
translation of an imported model's labels into a dataset's (:func:`remap_postprocess`)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torchvision.ops import batched_nms, box_convert

POSTPROCESS_METHODS = ("nms", "topk")


def fused_scores(pred_logits: torch.Tensor, pred_iou: torch.Tensor | None, fusion: float) -> torch.Tensor:
    """sigmoid(logits) [B, Q, C], or p^(1 - w) * sigmoid(iou)^w when an IoU branch is fused (w > 0)."""
    scores = pred_logits.sigmoid()
    if fusion > 0:
        if pred_iou is None:
            raise ValueError("iou_branch_fusion > 0 needs outputs['pred_iou'] (set model.iou_branch=True)")
        scores = scores.pow(1 - fusion) * pred_iou.sigmoid().pow(fusion)
    return scores


@torch.no_grad()
def postprocess(outputs: dict, target_sizes: torch.Tensor, method: str = "nms", nms_iou: float = 0.7,
                pre_topk: int = 10000, max_detections: int = 100,
                iou_fusion: float = 0.0) -> list[dict[str, torch.Tensor]]:
    """Turn model outputs into detections.

    Args:
        outputs: the model's dict (``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4] normalised
            cxcywh, optional ``pred_iou`` [B, Q, 1]).
        target_sizes: [B, 2] (height, width) in pixels of each original image.
        method: ``"nms"`` (DETA: every (query, class) pair is a candidate; the best ``pre_topk`` when
            more exist; class-wise NMS at ``nms_iou``; the best ``max_detections`` survive) or
            ``"topk"`` (end-to-end: the best ``max_detections`` (query, class) pairs).
    Returns:
        per image {"boxes" [n, 4] absolute xyxy pixels, "scores" [n], "labels" [n] long}, by score.
    """
    if method not in POSTPROCESS_METHODS:
        raise ValueError(f"unknown model.postprocess {method!r} (expected one of {POSTPROCESS_METHODS})")
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    if target_sizes.shape != (logits.shape[0], 2):
        raise ValueError(f"target_sizes must be [B, 2] (height, width) with B={logits.shape[0]}, "
                         f"got {tuple(target_sizes.shape)}")
    if not (torch.isfinite(logits).all() and torch.isfinite(boxes).all()):
        raise ValueError("predictions contain NaN or infinite values (pred_logits or pred_boxes)")
    scores = fused_scores(logits, outputs.get("pred_iou"), iou_fusion)
    batch, num_queries, num_classes = scores.shape
    heights, widths = target_sizes.unbind(1)
    scale = torch.stack([widths, heights, widths, heights], 1).to(boxes)[:, None]  # (B, 1, 4)
    boxes_xyxy = box_convert(boxes, "cxcywh", "xyxy") * scale  # (B, Q, 4)
    results = []
    for b in range(batch):
        flat = scores[b].flatten()  # (Q * C,), index = query * C + class
        keep_count = min(max_detections if method == "topk" else pre_topk, flat.numel())
        top_scores, top_index = flat.topk(keep_count)
        queries = torch.div(top_index, num_classes, rounding_mode="floor")
        labels = top_index % num_classes
        image_boxes = boxes_xyxy[b, queries]
        if method == "nms":
            keep = batched_nms(image_boxes.float(), top_scores.float(), labels, nms_iou)[:max_detections]
            top_scores, labels, image_boxes = top_scores[keep], labels[keep], image_boxes[keep]
        results.append({"boxes": image_boxes, "scores": top_scores, "labels": labels})
    return results


def dataset_labels_of(label_to_category_id: Sequence[int | None], dataset_category_ids: Sequence[int]) -> torch.Tensor:
    """[num_model_labels] long: the dataset's contiguous label of each model label, -1 where the
    model label has no category or the dataset lacks it."""
    contiguous = {category: index for index, category in enumerate(dataset_category_ids)}
    return torch.tensor([contiguous.get(c, -1) if c is not None else -1 for c in label_to_category_id], dtype=torch.long)


def remap_postprocess(postprocess: Callable, label_to_category_id: Sequence[int | None],
                      dataset_category_ids: Sequence[int]) -> Callable:
    """Wrap ``postprocess`` so that its labels become the dataset's contiguous labels.

    Detections whose label has no category in the dataset (COCO's unused ids, index 0) are
    dropped; COCO evaluation would ignore them anyway, since no ground truth has their id.
    """
    table = dataset_labels_of(label_to_category_id, dataset_category_ids)

    def remapped(outputs: dict, target_sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        results = []
        for detections in postprocess(outputs, target_sizes):
            labels = table.to(detections["labels"].device)[detections["labels"]]
            keep = labels >= 0
            results.append({"boxes": detections["boxes"][keep], "scores": detections["scores"][keep], "labels": labels[keep]})
        return results

    return remapped
