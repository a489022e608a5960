"""Align-DETR's IoU-aware BCE (IA-BCE) and the Table B variants.

Per Algorithm 1 of the paper and the released code, with s = sigmoid(logit) and the quality t and
prime-sample weight w of each match (defined in :mod:`assignlab.assign.quality`):

- positive entries (matched prediction, object's class): BCE(s, t * w);
- every other entry: s^gamma * BCE(s, 0) (no alpha factor);
- summed (the caller divides by the object count); logs are computed from the logits
  (softplus), so saturated logits give finite values.

Table B writes every variant as L = -w_pos ln(s) - w_neg ln(1-s) on the positive entries; the
other entries keep s^gamma * BCE(s, 0). IA-BCE itself is (t, 1 - t).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from assignlab.losses.dense import dense_targets


def ia_bce_loss(logits: Tensor, rows: Tensor, classes: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Summed IA-BCE.

    Args:
        logits: [N, C] raw logits.
        rows, classes: [P] long, the positive entries.
        target: [P] positive targets t * w (already detached).
        gamma: exponent of s on the negative entries.
    """
    mask, dense = dense_targets(logits, rows, classes, target)
    positive = F.binary_cross_entropy_with_logits(logits, dense, reduction="none")
    negative = logits.sigmoid().pow(gamma) * F.softplus(logits)  # s^gamma * -ln(1 - s)
    return torch.where(mask, positive, negative).sum()


# Table B: (w_pos, w_neg) as functions of (s, t); the keys are the table's own spelling.
IA_BCE_VARIANTS: dict[str, Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    "(1-s)^2,0": lambda s, t: ((1 - s) ** 2, torch.zeros_like(s)),
    "1,0": lambda s, t: (torch.ones_like(s), torch.zeros_like(s)),
    "t,0": lambda s, t: (t, torch.zeros_like(s)),
    "(t-s)^2,(t-s)^2": lambda s, t: ((t - s) ** 2, (t - s) ** 2),
    "(t-s)^2,(1-t)*s^2": lambda s, t: ((t - s) ** 2, (1 - t) * s**2),
    "t,1-t": lambda s, t: (t, 1 - t),
}


def variant_key(name: str) -> str:
    """Normalise a Table B variant name ("t, 1-t" -> "t,1-t"); ValueError when unknown."""
    key = "".join(name.split())
    if key not in IA_BCE_VARIANTS:
        raise ValueError(f"unknown IA-BCE variant {name!r}; Table B lists {sorted(IA_BCE_VARIANTS)}")
    return key


def ia_bce_variant_loss(logits: Tensor, rows: Tensor, classes: Tensor, target: Tensor, variant: str,
                        gamma: float = 2.0) -> Tensor:
    """Summed Table B variant: -w_pos ln(s) - w_neg ln(1-s) on the positive entries (t = ``target``),
    s^gamma * -ln(1-s) elsewhere. The weights keep their gradient through s, as released."""
    weights = IA_BCE_VARIANTS[variant_key(variant)]
    mask, t = dense_targets(logits, rows, classes, target)
    s = logits.sigmoid()
    w_pos, w_neg = weights(s, t)
    positive = w_pos * F.softplus(-logits) + w_neg * F.softplus(logits)
    negative = s.pow(gamma) * F.softplus(logits)
    return torch.where(mask, positive, negative).sum()
