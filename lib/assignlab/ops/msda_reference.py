"""Pure-PyTorch multi-scale deformable attention (the semantics every implementation must match).

Bilinear sampling follows ``grid_sample(align_corners=False, padding_mode="zeros")``: a normalised
location (x, y) in [0, 1] maps to pixel coordinates (x * W - 0.5, y * H - 0.5); corners outside
the map contribute zero.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ms_deform_attn_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention by one ``grid_sample`` per level.

    Args:
        value: [N, S, M, D], S = sum over levels of H_l * W_l, M heads, D channels per head.
        spatial_shapes: [L, 2] long, (H_l, W_l) per level.
        level_start_index: [L] long, offset of each level in S (unused here; kept for the API).
        sampling_locations: [N, Lq, M, L, P, 2], normalised (x, y) in [0, 1].
        attention_weights: [N, Lq, M, L, P].
    Returns:
        [N, Lq, M * D]
    """
    n, _, heads, channels = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    value_per_level = value.split(sizes, dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample expects [-1, 1]
    sampled = []
    for level, (h, w) in enumerate(spatial_shapes.tolist()):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        v = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * heads, channels, int(h), int(w))
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (N*M, D, Lq, L, P) weighted by (N*M, 1, Lq, L, P)
    stacked = torch.stack(sampled, dim=-2)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, num_queries, num_levels, num_points)
    out = (stacked * weights).sum(dim=(-1, -2)).view(n, heads * channels, num_queries)
    return out.transpose(1, 2).contiguous()
