"""Two-stage query selection: which encoder proposals become decoder queries.

``"topk"`` (Deformable-DETR): the num_queries best proposals by score.
``"nms"`` (DETA): per level the best min(topk_per_level, tokens of that level), NMS per level at
IoU 0.9, then num_queries // num_levels per level in score order, the rest filled with the next
best survivors of any level. If fewer than num_queries survive, plain top-k is used instead (as released).
``"nms_released"``: the released candidate step, top-k of sigmoid(score) * [token in level] over all
tokens; when a level has fewer tokens than topk_per_level this draws zero-scored tokens of other
levels into that level's candidates. Kept to reproduce the released code; it only differs from
``"nms"`` on small images (the released code crashes when the whole image has fewer tokens).
"""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms, box_convert

SELECTION_METHODS = ("nms", "nms_released", "topk")


def level_quota_selection(candidates: torch.Tensor, level_ids: torch.Tensor, num_queries: int,
                          num_levels: int) -> torch.Tensor:
    """Keep num_queries // num_levels of each level, then pad with the next best of any level.

    candidates: [K] token indices sorted by decreasing score, K >= num_queries; level_ids: [S].
    Returns [num_queries] token indices, in the candidates' order.
    """
    per_level = num_queries // num_levels
    levels = torch.arange(num_levels, device=candidates.device)
    in_level = level_ids[candidates][None] == levels[:, None]  # (L, K)
    keep = (in_level & (in_level.cumsum(1) <= per_level)).any(0)  # (K,)
    missing = num_queries - int(keep.sum())
    if missing > 0:
        keep[(~keep).nonzero()[:missing, 0]] = True
    return candidates[keep]


def per_level_nms_selection(boxes_xyxy: torch.Tensor, scores: torch.Tensor, level_ids: torch.Tensor,
                            num_queries: int, num_levels: int, topk_per_level: int = 1000,
                            iou_threshold: float = 0.9, released: bool = False) -> torch.Tensor:
    """DETA's selection for one image.

    boxes_xyxy: [S, 4] normalised proposal boxes; scores: [S] proposal logits (-inf = never select
    unless nothing else is left); level_ids: [S] long. Returns [num_queries] long token indices.
    """
    num_tokens = scores.shape[0]
    if num_tokens < num_queries:
        raise ValueError(f"the image has {num_tokens} feature tokens, fewer than num_queries={num_queries}; "
                         "use larger images or fewer queries")
    candidates = []
    if released:
        probabilities = scores.sigmoid()
        k = min(topk_per_level, num_tokens)
        for level in range(num_levels):
            candidates.append(torch.topk(probabilities * (level_ids == level), k)[1])
    else:
        for level in range(num_levels):
            tokens = ((level_ids == level) & (scores > float("-inf"))).nonzero()[:, 0]
            k = min(topk_per_level, tokens.numel())
            candidates.append(tokens[torch.topk(scores[tokens], k)[1]])
    candidates = torch.cat(candidates)
    kept = batched_nms(boxes_xyxy[candidates].float(), scores[candidates].float(), level_ids[candidates],
                       iou_threshold)
    survivors = candidates[kept]  # sorted by decreasing score
    if survivors.numel() < num_queries:
        survivors = torch.topk(scores, num_queries)[1]
    return level_quota_selection(survivors, level_ids, num_queries, num_levels)


def select_queries(scores: torch.Tensor, boxes_cxcywh: torch.Tensor, level_ids: torch.Tensor,
                   valid: torch.Tensor, num_queries: int, num_levels: int, method: str = "nms",
                   topk_per_level: int = 1000, iou_threshold: float = 0.9,
                   valid_only: bool = True) -> torch.Tensor:
    """Select decoder queries among the encoder proposals of a batch.

    Args:
        scores: [B, S] proposal logits; boxes_cxcywh: [B, S, 4] normalised proposal boxes.
        level_ids: [S] long feature level of each token; valid: [B, S] bool (not padding, anchor inside).
        valid_only: invalid tokens are chosen only when nothing else is left (False: as released,
            where they compete with their constant score).
    Returns:
        [B, num_queries] long token indices.
    """
    if method not in SELECTION_METHODS:
        raise ValueError(f"unknown model.query_selection {method!r} (expected one of {SELECTION_METHODS})")
    if scores.shape[1] < num_queries:
        raise ValueError(f"the images have {scores.shape[1]} feature tokens, fewer than "
                         f"num_queries={num_queries}; use larger images or fewer queries")
    scores = scores.detach()
    if valid_only:
        scores = scores.masked_fill(~valid, float("-inf"))
    if method == "topk":
        return torch.topk(scores, num_queries, dim=1)[1]
    boxes = box_convert(boxes_cxcywh.detach(), "cxcywh", "xyxy").clamp(0.0, 1.0)
    return torch.stack([
        per_level_nms_selection(boxes[b], scores[b], level_ids, num_queries, num_levels, topk_per_level,
                                iou_threshold, released=(method == "nms_released"))
        for b in range(scores.shape[0])
    ])
