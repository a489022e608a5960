"""Deformable transformer encoder: every token attends to sampled points on all feature levels."""
from __future__ import annotations

import copy

import torch
from torch import nn

from assignlab.models.ms_deform_attn import MSDeformAttn


class DeformableEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention, then a ReLU FFN, each with residual + LayerNorm."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int,
                 msda_impl: str = "auto") -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, impl=msda_impl)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        """src, pos [B, S, d]; reference_points [B, S, levels, 2]; padding_mask [B, S] -> [B, S, d]."""
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear2(self.dropout2(torch.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(hidden))


def encoder_reference_points(spatial_shapes: torch.Tensor, valid_ratios: torch.Tensor) -> torch.Tensor:
    """Token centres as reference points, seen from every level.

    A token (i, j) of level l sits at ((j + 0.5) / valid_W_l, (i + 0.5) / valid_H_l) of the unpadded
    image; multiplying by each level's valid ratio expresses it in that level's padded map.
    spatial_shapes [L, 2] (H, W); valid_ratios [B, L, 2] (w, h) -> [B, S, L, 2] normalised (x, y).
    """
    points = []
    for level, (height, width) in enumerate(spatial_shapes.tolist()):
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=valid_ratios.device) + 0.5,
            torch.arange(width, dtype=torch.float32, device=valid_ratios.device) + 0.5,
            indexing="ij",
        )
        ref_y = ys.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * height)
        ref_x = xs.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * width)
        points.append(torch.stack((ref_x, ref_y), -1))
    reference_points = torch.cat(points, 1)  # (B, S, 2) in unpadded-image coordinates
    return reference_points[:, :, None] * valid_ratios[:, None]


class DeformableEncoder(nn.Module):
    """A stack of ``DeformableEncoderLayer`` (``layers.{i}``)."""

    def __init__(self, layer: DeformableEncoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                valid_ratios: torch.Tensor, pos: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """src, pos [B, S, d]; valid_ratios [B, L, 2]; padding_mask [B, S] -> memory [B, S, d]."""
        reference_points = encoder_reference_points(spatial_shapes, valid_ratios)
        output = src
        for layer in self.layers:
            output = layer(output, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return output
