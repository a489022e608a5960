"""Multi-scale deformable attention: dispatch between the compiled op (ext/msda) and the PyTorch reference."""
from __future__ import annotations

import warnings

import torch

from assignlab.ops import msda_library
from assignlab.ops.msda_checks import check_msda_inputs
from assignlab.ops.msda_reference import ms_deform_attn_reference

IMPLS = ("auto", "cpp", "cuda", "reference")
COMPILED_DTYPES = (torch.float32, torch.float64)
LOW_PRECISION_DTYPES = (torch.float16, torch.bfloat16)

_warned_fallback = False


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    impl: str = "auto",
) -> torch.Tensor:
    """Multi-scale deformable attention (Deformable-DETR, eq. 3), differentiable in value, locations, weights.

    Args:
        value: [N, S, M, D], S = sum over levels of H_l * W_l, M heads, D channels per head.
        spatial_shapes: [L, 2] integer, (H_l, W_l) per level.
        level_start_index: [L] integer, offset of each level in S (exclusive cumulative sum of H_l * W_l).
        sampling_locations: [N, Q, M, L, P, 2], normalised (x, y); (0, 0) is the top-left corner of the
            map, (1, 1) the bottom-right. Bilinear sampling as ``grid_sample(align_corners=False)``;
            points outside the map read zeros.
        attention_weights: [N, Q, M, L, P].
        impl: "cpp" (compiled CPU kernels), "cuda" (compiled CUDA kernels), "reference" (grid_sample),
            or "auto": the compiled kernel for the tensors' device, falling back to the reference (with
            one warning per process) if it cannot be built, or on other devices.
    Returns:
        [N, Q, M * D] in value's dtype. Mixed precision (autocast): when value, sampling_locations or
        attention_weights is float16/bfloat16, all three are computed in float32 (sampling locations
        need its precision; the kernels accumulate in it) and the output is cast to value's dtype.
    Raises:
        TypeError / ValueError for inputs that disagree (see ``check_msda_inputs``); RuntimeError when
        ``impl`` names a compiled kernel that cannot be built.
    """
    if impl not in IMPLS:
        raise ValueError(f"ms_deform_attn: impl must be one of {IMPLS}, got {impl!r}")
    if _has_low_precision(value, sampling_locations, attention_weights):
        with torch.autocast(value.device.type, enabled=False):
            output = ms_deform_attn(value.float(), spatial_shapes, level_start_index, sampling_locations.float(),
                                    attention_weights.float(), impl)
        return output.to(value.dtype)
    inputs = check_msda_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    device_type = inputs[0].device.type
    if impl == "reference":
        return ms_deform_attn_reference(*inputs)
    if impl == "auto":
        if device_type not in ("cpu", "cuda") or inputs[0].dtype not in COMPILED_DTYPES:
            return ms_deform_attn_reference(*inputs)
        try:
            msda_library.load(device_type)
        except RuntimeError as error:
            _warn_fallback(device_type, error)
            return ms_deform_attn_reference(*inputs)
        return torch.ops.assignlab_msda.ms_deform_attn(*inputs)
    wanted = "cpu" if impl == "cpp" else "cuda"
    if device_type != wanted:
        raise ValueError(f"ms_deform_attn: impl={impl!r} needs {wanted} tensors, got {device_type}")
    if inputs[0].dtype not in COMPILED_DTYPES:
        raise TypeError(f"ms_deform_attn: impl={impl!r} supports float32 and float64, got {inputs[0].dtype}")
    msda_library.load(device_type)
    return torch.ops.assignlab_msda.ms_deform_attn(*inputs)


def _has_low_precision(*tensors) -> bool:
    """True when every argument is a floating tensor and one of them is float16/bfloat16 (anything
    else is left to ``check_msda_inputs``, which names the bad argument)."""
    return (all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tensors)
            and any(t.dtype in LOW_PRECISION_DTYPES for t in tensors))


def _warn_fallback(device_type: str, error: RuntimeError) -> None:
    global _warned_fallback
    if _warned_fallback:
        return
    _warned_fallback = True
    needs = "a C++ compiler and ninja (`pip install ninja`)"
    if device_type == "cuda":
        needs += f", and a CUDA toolkit matching torch's CUDA {torch.version.cuda} (CUDA_HOME or nvcc on PATH)"
    warnings.warn(
        f"assignlab: the compiled multi-scale deformable attention op for {device_type} could not be built "
        f"({error}); using the PyTorch reference instead, which is tens of times slower. To fix it, run "
        f"`python -m assignlab.ops.build --verbose` (or `make ext`) to see the compiler output; the build needs "
        f"{needs}.",
        RuntimeWarning,
        stacklevel=3,
    )
