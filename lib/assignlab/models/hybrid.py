"""Hybrid matching (H-Deformable-DETR): an extra one-to-many group of decoder queries.

In training the two-stage detector selects ``num_queries_one2many`` further encoder proposals
beside its ``num_queries`` one-to-one queries; both groups run through the same decoder, and the
self-attention mask keeps each group from seeing the other, so the one-to-one group computes
exactly what it computes alone. The one-to-many group is trained with each object repeated
``assign.hybrid_k`` times (the criterion) and is dropped at inference.

With top-k query selection the one-to-many group is the next best proposals after the one-to-one
group, which is what the released code's top-(300 + 1500) selection gives.
"""
from __future__ import annotations

import torch


def select_one2many_queries(scores: torch.Tensor, valid: torch.Tensor, one2one_indices: torch.Tensor,
                            num_queries_one2many: int) -> torch.Tensor:
    """The best ``num_queries_one2many`` tokens by proposal score that are not one-to-one queries.

    Args:
        scores: [B, S] proposal logits; valid: [B, S] bool (invalid tokens come last).
        one2one_indices: [B, Q] long token indices of the one-to-one queries.
    Returns:
        [B, num_queries_one2many] long token indices, by decreasing score.
    """
    num_tokens = scores.shape[1]
    if num_tokens < one2one_indices.shape[1] + num_queries_one2many:
        raise ValueError(f"the images have {num_tokens} feature tokens, fewer than num_queries="
                         f"{one2one_indices.shape[1]} + num_queries_one2many={num_queries_one2many}; "
                         "use larger images or fewer queries")
    scores = scores.detach().float().masked_fill(~valid, torch.finfo(torch.float32).min / 2)
    taken = torch.zeros_like(valid).scatter_(1, one2one_indices, True)
    scores = scores.masked_fill(taken, float("-inf"))
    return torch.topk(scores, num_queries_one2many, dim=1)[1]


def one2many_attention_mask(num_one2one: int, num_one2many: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[Q1 + Q2, Q1 + Q2] bool self-attention mask, True where attention is blocked: queries
    attend only within their own group (one-to-one first, then one-to-many)."""
    total = num_one2one + num_one2many
    group = torch.arange(total, device=device) >= num_one2one
    return group[:, None] != group[None, :]


def split_query_groups(per_layer: list[dict], num_one2one: int) -> tuple[list[dict], list[dict]]:
    """Split every per-layer output dict ([B, Q1 + Q2, ...] tensors) into the one-to-one part
    (first Q1 queries) and the one-to-many part."""
    one2one = [{key: value[:, :num_one2one] for key, value in layer.items()} for layer in per_layer]
    one2many = [{key: value[:, num_one2one:] for key, value in layer.items()} for layer in per_layer]
    return one2one, one2many
