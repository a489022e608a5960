"""Dense [N, C] classification targets from a list of positive (row, class, value) entries."""
from __future__ import annotations

import torch
from torch import Tensor


def dense_targets(logits: Tensor, rows: Tensor, classes: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Positive mask and target value per logit entry.

    Args:
        logits: [N, C] (only its shape, dtype and device are used).
        rows: [P] long prediction index; classes: [P] long class index.
        values: [P] target of each positive entry (1 when None).
    Returns:
        mask [N, C] bool, target [N, C] (0 off the positives). An entry listed twice (one
        prediction matched to two objects of the same class) keeps the larger target.
    """
    mask = torch.zeros_like(logits, dtype=torch.bool)
    target = torch.zeros_like(logits)
    if rows.numel() == 0:
        return mask, target
    if values is None:
        values = torch.ones(rows.shape, dtype=logits.dtype, device=logits.device)
    mask[rows, classes] = True
    flat = rows * logits.shape[1] + classes
    target.view(-1).scatter_reduce_(0, flat, values.to(logits.dtype), reduce="amax")
    return mask, target
