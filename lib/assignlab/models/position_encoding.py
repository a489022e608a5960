"""Sine position embeddings: per pixel of a feature map, and per box (two-stage proposals, DINO's
reference boxes, DAB-DETR's anchors)."""
from __future__ import annotations

import math

import torch
from torch import nn


def _frequencies(num_pos_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    """[num_pos_feats] wavelengths temperature ** (2 * floor(i / 2) / num_pos_feats)."""
    index = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_pos_feats)


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """[..., F] angles -> [..., F] with sin on even and cos on odd features, grouped as in DETR."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


class SinePositionEncoding(nn.Module):
    """DETR's normalised 2-D sine embedding, with Deformable-DETR's half-pixel offset.

    Coordinates are counted over the unpadded region only (cumulative sum of the valid mask) and
    normalised to [0, 2*pi], so a pixel gets the same embedding whether or not its image is padded.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask [B, H, W] bool, True at padding -> [B, 2 * num_pos_feats, H, W] (y features, then x)."""
        valid = ~mask
        y_embed = valid.cumsum(1, dtype=torch.float32)
        x_embed = valid.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale
        x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * self.scale
        freqs = _frequencies(self.num_pos_feats, self.temperature, mask.device)
        pos_x = _interleave_sin_cos(x_embed[..., None] / freqs)
        pos_y = _interleave_sin_cos(y_embed[..., None] / freqs)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def box_sine_embedding(boxes: torch.Tensor, num_pos_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """boxes [..., 4] normalised cxcywh -> [..., 4 * num_pos_feats] sine features, grouped per
    coordinate (cx, cy, w, h) in that order."""
    freqs = _frequencies(num_pos_feats, temperature, boxes.device)
    return _interleave_sin_cos(boxes[..., None] * (2 * math.pi) / freqs).flatten(-2)


def proposal_position_embedding(
    proposals_unact: torch.Tensor, num_pos_feats: int = 128, temperature: float = 10000.0
) -> torch.Tensor:
    """Sine embedding of proposal boxes given as logits (inverse sigmoid of cxcywh).

    proposals_unact [B, Q, 4] -> [B, Q, 4 * num_pos_feats], features grouped per coordinate (cx, cy, w, h).
    """
    return box_sine_embedding(proposals_unact.sigmoid(), num_pos_feats, temperature)
