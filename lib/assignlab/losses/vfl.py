"""Varifocal loss (Zhang et al., VarifocalNet).

VFL(p, q) = -q (q ln p + (1 - q) ln(1 - p))   if q > 0   (q * BCE(p, q))
          = -alpha p^gamma ln(1 - p)            if q = 0
with q the IoU of the matched box with its object on the positive entries and 0 elsewhere (a
positive whose IoU is 0 falls under the second line, as the definition says).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from assignlab.losses.dense import dense_targets


def varifocal_loss(logits: Tensor, rows: Tensor, classes: Tensor, iou: Tensor, alpha: float = 0.75,
                   gamma: float = 2.0) -> Tensor:
    """Summed VFL over [N, C] logits; ``iou`` [P] (detached) is q of each positive."""
    _, q = dense_targets(logits, rows, classes, iou.detach().clamp(0, 1))
    bce = F.binary_cross_entropy_with_logits(logits, q, reduction="none")
    negative = alpha * logits.sigmoid().pow(gamma) * bce  # bce = -ln(1 - p) where q = 0
    return torch.where(q > 0, q * bce, negative).sum()
