"""The compiled op as seen from Python: lazy loading per device type, plus the registrations that
give ``torch.ops.assignlab_msda.ms_deform_attn`` autograd and a fake (meta) kernel for torch.compile."""
from __future__ import annotations

import torch

from assignlab.ops import build

OP = "assignlab_msda::ms_deform_attn"
BACKWARD_OP = "assignlab_msda::ms_deform_attn_backward"

_failures: dict[str, str] = {}  # device type -> why its library could not be built or loaded
_registered = False


def load(device_type: str) -> None:
    """Build/load the library serving ``device_type`` ("cpu" or "cuda"); raise RuntimeError saying why not."""
    if device_type in build.loaded_variants() and _registered:
        return
    if device_type in _failures:
        raise RuntimeError(_failures[device_type])
    variants = ("cpu",) if device_type == "cpu" else ("cpu", "cuda")  # the cpu library holds the schemas
    try:
        for variant in variants:
            build.build(variant)
        _register_python_kernels()
    except Exception as error:  # noqa: BLE001 - any build failure becomes the fallback's reason
        _failures[device_type] = f"{type(error).__name__}: {_first_error_line(str(error))}"
        raise RuntimeError(_failures[device_type]) from error


def _first_error_line(message: str) -> str:
    """The compiler's first 'error' line if the message holds a build log, else its first line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("Error building")]
    return (errors or lines or [""])[0][:300]


def _register_python_kernels() -> None:
    global _registered
    if _registered:
        return
    torch.library.register_fake(OP)(_fake_forward)
    torch.library.register_fake(BACKWARD_OP)(_fake_backward)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
    _registered = True


def _fake_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights) -> torch.Tensor:
    n, _, heads, channels = value.shape
    return value.new_empty((n, sampling_locations.shape[1], heads * channels))


def _fake_backward(grad_output, value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = torch.ops.assignlab_msda.ms_deform_attn_backward(
        grad_output.contiguous(), value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    return grad_value, None, None, grad_locations, grad_weights
