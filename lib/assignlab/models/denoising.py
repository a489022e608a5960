"""DINO's contrastive denoising queries: noised copies of the objects that the decoder must restore.

Per training batch, following the released DINO / Align-DETR code:

- number of groups G = dn_number // (max objects per image in the batch), at least 1 (released
  ``dn_number = 100``: 100 positive queries, and as many negatives, at most);
- a group holds, per image, a positive copy and a negative copy of every object:
  ``group_size = 2 * max_objects`` slots, the positives first (slot j = object j), then the
  negatives (slot max_objects + j); slots of images with fewer objects are padding (content 0,
  box (0.5, 0.5, 0.5, 0.5)) and are never matched;
- label noise: each copy's class is redrawn uniformly over the C classes with probability
  ``label_noise_ratio / 2`` (the released code halves the ratio), so it may keep its class;
- box noise (lambda = ``box_noise_scale``): each corner coordinate (xyxy) moves by
  ``sign * u * lambda * (half the box's width or height)`` with u uniform in [0, 1) for
  positives and in [1, 2) for negatives, then the corners are clamped to the image [0, 1];
- attention: the matching queries may not see any denoising query, and a group may not see the
  other groups (it may see the matching queries, as released);
- the positives of group g are matched to their objects (query g * group_size + j <-> object j);
  negatives and padding are trained as background.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert


@dataclass(frozen=True)
class DenoisingQueries:
    """The denoising part of the decoder input for one batch (P = num_groups * group_size).

    content: [B, P, d] label embeddings; boxes: [B, P, 4] noised cxcywh in [0, 1];
    self_attn_mask: [P + Q, P + Q] bool, True where query i may not attend to query j (denoising
    queries first, then the Q matching queries); pred_idx / gt_idx: per image [n_b * G] long,
    the positive query of each object copy and its object.
    """

    content: Tensor
    boxes: Tensor
    self_attn_mask: Tensor
    num_groups: int
    group_size: int
    pred_idx: list[Tensor]
    gt_idx: list[Tensor]

    @property
    def pad_size(self) -> int:
        return self.num_groups * self.group_size


def num_denoising_groups(dn_number: int, max_objects: int) -> int:
    """G = dn_number // max_objects, at least 1 (``max_objects`` >= 1)."""
    return max(1, dn_number // max_objects)


def denoising_attention_mask(num_groups: int, group_size: int, num_queries: int,
                             device: torch.device | str = "cpu") -> Tensor:
    """[P + Q, P + Q] bool (P = num_groups * group_size), True = blocked.

    Denoising query i (group i // group_size) may attend to its own group and to the matching
    queries; matching queries attend only to matching queries.
    """
    pad = num_groups * group_size
    index = torch.arange(pad + num_queries, device=device)
    group = torch.where(index < pad, torch.div(index, group_size, rounding_mode="floor"), -1)  # -1: matching
    query_group, key_group = group[:, None], group[None, :]
    return (key_group != -1) & (key_group != query_group)


def noise_labels(labels: Tensor, ratio: float, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """Copy of ``labels`` [N] with each entry redrawn uniformly in [0, num_classes) with
    probability ``ratio / 2`` (released DINO)."""
    if ratio <= 0 or labels.numel() == 0:
        return labels.clone()
    draw = torch.rand(labels.shape, generator=generator, device=labels.device) < ratio * 0.5
    new = torch.randint(0, num_classes, labels.shape, generator=generator, device=labels.device)
    return torch.where(draw, new, labels)


def noise_boxes(boxes: Tensor, negative: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """Noised copies of ``boxes`` [N, 4] cxcywh; ``negative`` [N] bool selects the far band.

    Each xyxy corner coordinate moves by sign * u * scale * (w/2 or h/2), u in [0, 1) for
    positives and [1, 2) for negatives; the corners are clamped to [0, 1] and the box returned as
    cxcywh, with a negative width or height (crossed corners) set to 0.
    """
    if scale <= 0 or boxes.numel() == 0:
        return boxes.clone()
    half = boxes[:, 2:].repeat(1, 2) / 2  # (N, 4): w/2, h/2, w/2, h/2
    magnitude = torch.rand(boxes.shape, generator=generator, device=boxes.device) + negative[:, None].float()
    sign = torch.randint(0, 2, boxes.shape, generator=generator, device=boxes.device).float() * 2 - 1
    corners = box_convert(boxes, "cxcywh", "xyxy") + sign * magnitude * half * scale
    noised = box_convert(corners.clamp(0.0, 1.0), "xyxy", "cxcywh")
    # corners that crossed give a zero-size box (released: inverse_sigmoid clamps the negative size to 0)
    return torch.cat([noised[:, :2], noised[:, 2:].clamp(min=0.0)], 1)


def build_denoising_queries(targets: Sequence[Mapping[str, Tensor]], dn_number: int, label_noise_ratio: float,
                            box_noise_scale: float, num_classes: int, label_embedding: nn.Embedding,
                            num_queries: int, generator: torch.Generator | None = None) -> DenoisingQueries | None:
    """The denoising queries of a batch, or None when the batch has no object (or dn_number <= 0).

    targets: per image {"labels": [n] long, "boxes": [n, 4] normalised cxcywh}.
    """
    device = label_embedding.weight.device
    labels = [torch.as_tensor(t["labels"], device=device).long().reshape(-1) for t in targets]
    boxes = [torch.as_tensor(t["boxes"], device=device, dtype=torch.float32).reshape(-1, 4) for t in targets]
    counts = [len(x) for x in labels]
    max_objects = max(counts, default=0)
    if dn_number <= 0 or max_objects == 0:
        return None
    groups = num_denoising_groups(dn_number, max_objects)
    group_size = 2 * max_objects
    batch, dim = len(targets), label_embedding.embedding_dim
    content = torch.zeros(batch, groups * group_size, dim, device=device)
    noised = torch.full((batch, groups * group_size, 4), 0.5, device=device)
    pred_idx, gt_idx = [], []
    for b, (image_labels, image_boxes, n) in enumerate(zip(labels, boxes, counts)):
        objects = torch.arange(n, device=device)
        # slots: group g, positive copy of object j at g * group_size + j, negative at ... + max_objects
        positive_slots = (torch.arange(groups, device=device)[:, None] * group_size + objects).flatten()
        slots = torch.cat([positive_slots, positive_slots + max_objects])
        copies = objects.repeat(2 * groups)
        negative = torch.arange(slots.numel(), device=device) >= positive_slots.numel()
        content[b, slots] = label_embedding(noise_labels(image_labels[copies], label_noise_ratio, num_classes,
                                                         generator))
        noised[b, slots] = noise_boxes(image_boxes[copies], negative, box_noise_scale, generator)
        pred_idx.append(positive_slots)
        gt_idx.append(objects.repeat(groups))
    mask = denoising_attention_mask(groups, group_size, num_queries, device)
    return DenoisingQueries(content, noised, mask, groups, group_size, pred_idx, gt_idx)
