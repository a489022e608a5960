"""Quality focal loss (Li et al., Generalized Focal Loss): |y - s|^gamma * BCE(s, y).

y is the IoU of the matched box with its object on the positive entries and 0 everywhere else.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from assignlab.losses.dense import dense_targets


def quality_focal_loss(logits: Tensor, rows: Tensor, classes: Tensor, iou: Tensor, gamma: float = 2.0) -> Tensor:
    """Summed QFL over [N, C] logits; ``iou`` [P] (detached) is the soft target of each positive."""
    _, y = dense_targets(logits, rows, classes, iou.detach().clamp(0, 1))
    scale = (y - logits.sigmoid()).abs().pow(gamma)
    return (scale * F.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
