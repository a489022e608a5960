"""IoU-branch loss (Align-DETR Table 4): BCE of a predicted IoU logit against the IoU of the
matched box with its object, on the positives only. Fusing the predicted IoU into the score at
inference is the model's post-processing, not a loss."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def iou_branch_loss(iou_logits: Tensor, iou: Tensor) -> Tensor:
    """Summed BCE(sigmoid(iou_logits), iou) over the P positives (both [P]; ``iou`` detached)."""
    return F.binary_cross_entropy_with_logits(iou_logits, iou.detach().clamp(0, 1), reduction="sum")
