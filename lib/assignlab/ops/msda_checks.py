"""Input validation of multi-scale deformable attention: bad input becomes a Python error that names
the offending argument, before any kernel sees it."""
from __future__ import annotations

import torch

_NAMES = ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")


def check_msda_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate the five inputs and return them contiguous, with int64 shapes and start indices.

    Expected: value [N, S, M, D] floating point; spatial_shapes [L, 2] integer (H, W);
    level_start_index [L] integer; sampling_locations [N, Q, M, L, P, 2] and attention_weights
    [N, Q, M, L, P] of value's dtype; all on one device; S = sum_l H_l * W_l with level l starting at
    level_start_index[l] = sum_{k<l} H_k * W_k.

    Raises:
        TypeError: an argument is not a tensor, or has the wrong dtype.
        ValueError: shapes disagree with each other or with spatial_shapes / level_start_index,
            or the tensors are on different devices.
    """
    tensors = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    for name, t in zip(_NAMES, tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"ms_deform_attn: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"ms_deform_attn: value must be floating point, got {value.dtype}")
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if t.dtype != value.dtype:
            raise TypeError(f"ms_deform_attn: {name} has dtype {t.dtype} but value has {value.dtype}")
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"ms_deform_attn: {name} must be an integer tensor, got {t.dtype}")
    devices = {name: t.device for name, t in zip(_NAMES, tensors)}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"ms_deform_attn: all inputs must be on one device, got {listing}")

    _expect_dims("value", value, 4, "[N, S, M, D]")
    _expect_dims("sampling_locations", sampling_locations, 6, "[N, Q, M, L, P, 2]")
    _expect_dims("attention_weights", attention_weights, 5, "[N, Q, M, L, P]")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"ms_deform_attn: spatial_shapes must be [L, 2], got {list(spatial_shapes.shape)}")
    num_levels = spatial_shapes.shape[0]
    if num_levels == 0:
        raise ValueError("ms_deform_attn: spatial_shapes must describe at least one level")
    if level_start_index.dim() != 1 or level_start_index.shape[0] != num_levels:
        raise ValueError(
            f"ms_deform_attn: level_start_index must be [L] = [{num_levels}], got {list(level_start_index.shape)}")
    n, _, heads, _ = value.shape
    expected_locations = (n, sampling_locations.shape[1], heads, num_levels, sampling_locations.shape[4], 2)
    if tuple(sampling_locations.shape) != expected_locations:
        raise ValueError(
            f"ms_deform_attn: sampling_locations must be [N, Q, M, L, P, 2] with N={n}, M={heads} (from value) "
            f"and L={num_levels} (from spatial_shapes), got {list(sampling_locations.shape)}")
    if tuple(attention_weights.shape) != expected_locations[:5]:
        raise ValueError(
            f"ms_deform_attn: attention_weights must be {list(expected_locations[:5])} to match "
            f"sampling_locations, got {list(attention_weights.shape)}")
    if not torch.compiler.is_compiling():  # the level layout is data: checked eagerly only
        _check_level_layout(value, spatial_shapes, level_start_index)
    return (value.contiguous(), spatial_shapes.long().contiguous(), level_start_index.long().contiguous(),
            sampling_locations.contiguous(), attention_weights.contiguous())


def _expect_dims(name: str, t: torch.Tensor, dims: int, layout: str) -> None:
    if t.dim() != dims:
        raise ValueError(f"ms_deform_attn: {name} must be {layout}, got shape {list(t.shape)}")


def _check_level_layout(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor) -> None:
    # one host transfer for both tensors (one synchronisation on CUDA)
    layout = torch.cat([spatial_shapes.reshape(-1).long(), level_start_index.long()]).tolist()
    num_levels = spatial_shapes.shape[0]
    shapes = [(layout[2 * level], layout[2 * level + 1]) for level in range(num_levels)]
    given_starts = layout[2 * num_levels:]
    if any(h < 1 or w < 1 for h, w in shapes):
        raise ValueError(f"ms_deform_attn: spatial_shapes must be positive, got {shapes}")
    sizes = [h * w for h, w in shapes]
    if sum(sizes) != value.shape[1]:
        raise ValueError(
            f"ms_deform_attn: value has S={value.shape[1]} tokens but spatial_shapes {shapes} sum to {sum(sizes)}")
    starts = [sum(sizes[:level]) for level in range(len(sizes))]
    if given_starts != starts:
        raise ValueError(
            f"ms_deform_attn: level_start_index must be {starts} for spatial_shapes {shapes}, got {given_starts}")
