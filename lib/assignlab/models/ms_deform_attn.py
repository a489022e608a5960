"""Multi-scale deformable attention module (Deformable-DETR), on top of ``assignlab.ops.msda``."""
from __future__ import annotations

import math

import torch
from torch import nn

from assignlab.ops.msda import LOW_PRECISION_DTYPES, ms_deform_attn


def softmax_over_points(logits: torch.Tensor, points: int) -> torch.Tensor:
    """Softmax over consecutive groups of ``points`` values: [..., G * points] -> [G_total, points]
    contiguous (every (query, head) row normalised over its levels x points).

    PyTorch's CPU softmax vectorises along the reduced dimension, which is only 8-16 values here; on
    the transposed [points, G_total] layout it vectorises across rows instead (4x faster forward and
    backward at the cpu preset, equal to within float rounding)."""
    rows = logits.reshape(-1, points)
    return rows.t().contiguous().softmax(0).t().contiguous()


def sampling_locations(reference_points: torch.Tensor, offsets: torch.Tensor, spatial_shapes: torch.Tensor,
                       n_heads: int, n_points: int) -> torch.Tensor:
    """Where each head samples: reference + offset, normalised (x, y).

    Args:
        reference_points: [B, Lq, L, 2] normalised (x, y); offsets are then in pixels of each level
            (divided by (W_l, H_l)). Or [B, Lq, L, 4] normalised cxcywh boxes; offsets are then
            scaled by half the box size / n_points.
        offsets: [B, Lq, heads * L * n_points * 2], (x, y) innermost.
        spatial_shapes: [L, 2] (H_l, W_l).
    Returns:
        [B, Lq, heads, L, n_points, 2]
    """
    batch, num_queries, levels, size = reference_points.shape
    if size not in (2, 4):
        raise ValueError(f"reference_points must end in 2 or 4 values, got shape {tuple(reference_points.shape)}")

    def per_point(t: torch.Tensor) -> torch.Tensor:  # [B, Lq, L, 2] -> [B, Lq, 1, L * n_points * 2]
        return t[:, :, :, None, :].expand(batch, num_queries, levels, n_points, 2).reshape(batch, num_queries, 1, -1)

    # The broadcasts run over [heads] with a contiguous (level, point, xy) row of values on both
    # sides: elementwise the same arithmetic as broadcasting [B, Lq, 1, L, 1, 2] into
    # [B, Lq, heads, L, P, 2], but vectorised (4x faster forward and backward on the CPU).
    offsets = offsets.view(batch, num_queries, n_heads, -1)
    if offsets.dtype in LOW_PRECISION_DTYPES:  # autocast: locations in float32 all the same
        offsets = offsets.float()
    if size == 2:
        normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
        scale = normalizer[:, None, :].expand(levels, n_points, 2).reshape(-1)
        locations = per_point(reference_points) + offsets / scale
    else:
        locations = per_point(reference_points[..., :2]) + offsets / n_points * per_point(reference_points[..., 2:]) * 0.5
    return locations.view(batch, num_queries, n_heads, levels, n_points, 2)


class MSDeformAttn(nn.Module):
    """Each query attends to ``n_points`` sampled locations per head and level around its reference.

    Parameters (names as in Deformable-DETR, so released weights map one to one):
    ``sampling_offsets`` [d -> heads*levels*points*2], ``attention_weights`` [d -> heads*levels*points],
    ``value_proj`` and ``output_proj`` [d -> d].
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 impl: str = "auto") -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"hidden_dim ({d_model}) must be divisible by nheads ({n_heads})")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.impl = impl
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR's initialisation: offsets start on rays at 8 head-dependent angles,
        point i at distance i + 1; uniform attention; Xavier projections."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)  # (heads, 2)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        grid = directions.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value_input: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        value_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            query: [B, Lq, d] (content + position).
            reference_points: [B, Lq, levels, 2] normalised (x, y), or [B, Lq, levels, 4] normalised
                cxcywh boxes (offsets are then scaled by half the box size / n_points).
            value_input: [B, S, d] flattened multi-level features.
            spatial_shapes: [levels, 2] long (H_l, W_l); level_start_index: [levels] long.
            value_padding_mask: [B, S] bool, True at padding (those values are zeroed).
        Returns:
            [B, Lq, d]
        """
        batch, num_queries, _ = query.shape
        value = self.value_proj(value_input)
        if value_padding_mask is not None:
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(batch, -1, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query)  # [B, Lq, heads * levels * points * 2]
        weights = softmax_over_points(self.attention_weights(query), self.n_levels * self.n_points).view(
            batch, num_queries, self.n_heads, self.n_levels, self.n_points)
        locations = sampling_locations(reference_points, offsets, spatial_shapes, self.n_heads, self.n_points)
        output = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, impl=self.impl)
        return self.output_proj(output)
