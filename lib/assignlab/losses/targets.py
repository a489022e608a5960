"""Target validation and the object count that normalises every loss term.

Rules for bad input (applied before any assignment):

- missing "labels"/"boxes", wrong shapes, labels outside [0, num_classes), NaN/inf coordinates,
  negative width or height -> ValueError naming the image and the problem;
- boxes reaching outside the image are clipped to it: corners (xyxy) are clamped to [0, 1] and
  the box converted back to cxcywh, so a box hanging over the border becomes its visible part;
- zero-area boxes are kept. Hungarian-style matching still matches them (L1 and GIoU costs stay
  finite); IoU assignment gives them no positive (their IoU with any box is 0);
- an image without objects contributes only negatives.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torchvision.ops import box_convert


def prepare_targets(targets: Sequence[Mapping[str, Any]], num_classes: int, batch_size: int,
                    device: torch.device | str) -> list[dict[str, Tensor]]:
    """Validated copies of the targets: {"labels": [n] long, "boxes": [n, 4] float cxcywh in [0, 1]}."""
    if len(targets) != batch_size:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch_size} images")
    prepared = []
    for i, target in enumerate(targets):
        missing = {"labels", "boxes"} - set(target)
        if missing:
            raise ValueError(f"target {i} lacks {sorted(missing)}")
        labels = torch.as_tensor(target["labels"], device=device)
        boxes = torch.as_tensor(target["boxes"], device=device, dtype=torch.float32)
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if labels.dim() != 1 or boxes.dim() != 2 or boxes.shape != (labels.numel(), 4):
            raise ValueError(f"target {i}: labels must be [n] and boxes [n, 4], got {tuple(labels.shape)} "
                             f"and {tuple(boxes.shape)}")
        if labels.numel() and (labels.is_floating_point() or labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"target {i}: labels must be integer class ids in [0, {num_classes}), "
                             f"got {labels.tolist()}")
        if not torch.isfinite(boxes).all():
            raise ValueError(f"target {i}: boxes contain NaN or inf")
        if (boxes[:, 2:] < 0).any():
            raise ValueError(f"target {i}: boxes have negative width or height (expected cxcywh)")
        xyxy = box_convert(boxes, "cxcywh", "xyxy").clamp(0, 1)
        prepared.append({"labels": labels.long(), "boxes": box_convert(xyxy, "xyxy", "cxcywh")})
    return prepared


def num_objects_for_normalisation(targets: Sequence[Mapping[str, Tensor]], device: torch.device | str) -> float:
    """Objects per process: the batch's object count, averaged over processes when
    torch.distributed is initialised (all-reduce), clamped to >= 1."""
    count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return float(count.clamp(min=1).item())
