"""How a training step executes: numeric precision (autocast) and torch.compile.

``train.precision="bf16"`` runs the model's matrix multiplications and convolutions in bfloat16
under autocast (on the CPU these use AMX/AVX-512-BF16 where present) while the loss, the
assignment and the deformable sampling stay in float32. ``train.compile`` compiles the backbone
and every transformer layer with ``torch.compile`` (``CompiledForward``); where compilation fails
it warns once and the step runs eagerly.
"""
from __future__ import annotations

import platform
import re
import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from assignlab.engine.machine import all_cpu_flags, cpu_model
from assignlab.ops import msda_library
from assignlab.ops.msda import LOW_PRECISION_DTYPES

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
# x86 instructions that multiply bf16 natively; without either, PyTorch's CPU bf16 matmuls are
# emulated (measured at rung M on a 2-core AMD EPYC: 0.11x the fp32 step)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def autocast_for(precision: str, device: torch.device, amp: bool = False) -> AbstractContextManager:
    """The autocast context of ``train.precision`` on ``device`` (``amp``: the older CUDA-only bf16 switch)."""
    check_precision(precision)
    dtype = PRECISIONS[precision]
    if dtype is None and amp and device.type == "cuda":
        dtype = torch.bfloat16
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def check_precision(precision: str) -> None:
    """Raise ValueError naming ``train.precision`` unless it is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {sorted(PRECISIONS)}, got {precision!r}")


def emulated_precision_reason(precision: str, device_type: str = "cpu") -> str | None:
    """Why ``precision`` will be much slower than fp32 on this machine, or None: bf16 on an x86 CPU
    whose flags (``/proc/cpuinfo``) show neither of ``NATIVE_BF16_FLAGS``. Says nothing where the
    flags cannot be read (another OS or architecture)."""
    if precision != "bf16" or device_type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = all_cpu_flags()
    if not flags or any(flag in flags for flag in NATIVE_BF16_FLAGS):
        return None
    return (f"train.precision=bf16 on a CPU without native bf16 ({cpu_model()}: no {' or '.join(NATIVE_BF16_FLAGS)}):"
            " PyTorch emulates bf16 matmuls here, about 9x slower than fp32 in a training step; train on a CPU with AMX or"
            " AVX512-BF16, or on a GPU")


def in_float32(outputs: Any) -> Any:
    """``outputs`` (nested dicts, lists, tuples of tensors) with every low-precision floating tensor
    cast to float32, so that the loss and the assignment see full-precision predictions."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.dtype in LOW_PRECISION_DTYPES else outputs
    if isinstance(outputs, dict):
        return {key: in_float32(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(in_float32(value) for value in outputs)
    return outputs


class CompiledForward(nn.Module):
    """``module`` with its repeated blocks compiled (``compile_regions``), falling back to eager
    (one warning) if compiling fails.

    Regions rather than the whole model: proposal selection, NMS and input validation depend on
    the data and would split a whole-model graph into many; the backbone and each encoder and
    decoder layer have static shapes and compile whole. Compilation is in place (``nn.Module.compile``),
    so parameter names and checkpoints are unchanged, and the wrapped model runs compiled wherever
    it is called (evaluation too). It happens at the first call (and again for each new input
    shape); the fallback covers failures in the forward, where dynamo and inductor compile it (the
    backward graph is compiled then too, but lazily: a failure there surfaces in ``backward()``).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.regions = compile_regions(module)
        self._eager = False
        _load_deformable_attention(module)
        for region in self.regions:
            region.compile()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self._eager:
            rng = torch.get_rng_state()  # the eager retry draws what the failed attempt drew
            try:
                return self.module(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure means: run eagerly
                if not _is_compile_failure(error):
                    raise
                torch.set_rng_state(rng)
                self._eager = True
                for region in self.regions:
                    region._compiled_call_impl = None  # undo nn.Module.compile
                warnings.warn(f"assignlab: torch.compile failed ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200]}); training continues without compilation",
                              RuntimeWarning, stacklevel=2)
        return self.module(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.load_state_dict(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # the wrapped model's attributes (e.g. ``takes_targets``)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)


REGION_NAME = re.compile(r"backbone|(encoder|decoder)\.layers\.\d+")


def compile_regions(model: nn.Module) -> list[nn.Module]:
    """The submodules ``CompiledForward`` compiles: ``backbone`` and every ``encoder.layers.i`` /
    ``decoder.layers.i``; the model itself when it has none of them."""
    regions = [module for name, module in model.named_modules() if REGION_NAME.fullmatch(name)]
    return regions or [model]


def _load_deformable_attention(model: nn.Module) -> None:
    """Load the compiled deformable-attention op before tracing, so that the graph calls the
    registered op instead of breaking on the build (a failed build leaves the reference in use)."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type not in ("cpu", "cuda"):
        return
    try:
        msda_library.load(parameter.device.type)
    except RuntimeError:
        pass  # ms_deform_attn warns and uses the reference when it is called


def _is_compile_failure(error: Exception) -> bool:
    """Errors raised by dynamo/inductor (missing compiler, unsupported construct), not by the model
    (dynamo's ``TorchRuntimeError`` wraps an error of the model's own operations)."""
    if isinstance(error, torch._dynamo.exc.TorchRuntimeError):
        return False
    return type(error).__module__.startswith(("torch._dynamo", "torch._inductor"))


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``CompiledForward(model)`` when ``enabled``, else ``model`` itself."""
    return CompiledForward(model) if enabled else model
