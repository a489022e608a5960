"""Sigmoid focal loss (RetinaNet) over all predictions and classes, as DETR-family detectors use it."""
from __future__ import annotations

from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from assignlab.losses.dense import dense_targets


def focal_loss(logits: Tensor, rows: Tensor, classes: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Summed sigmoid focal loss with one-hot targets at the positive entries.

    Args:
        logits: [N, C] raw logits (all predictions of the batch, flattened).
        rows, classes: [P] long, the positive (prediction, class) entries.
    Returns:
        scalar sum over all N * C entries (the caller divides by the object count).
    """
    _, target = dense_targets(logits, rows, classes)
    return sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="sum")
