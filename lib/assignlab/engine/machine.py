"""The machine a run trained on, recorded in its result file (``machine``).

Float results depend on it: the instruction set PyTorch dispatches to and the math libraries
decide the order of the sums, so the same config and seed give the same metrics on one machine and
slightly different ones on another (README, "Determinism").
"""
from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch


# CPU features that change which kernels run (vector width, bf16 and AMX matmuls)
NOTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@functools.lru_cache(maxsize=1)
def _first_cpu() -> dict[str, str]:
    """The fields of the first processor in ``/proc/cpuinfo`` (empty where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
    return fields


def cpu_model() -> str:
    """The CPU's model name, with family/model/stepping (a virtual machine often shows a generic
    name; the numbers still tell the microarchitecture). ``platform.processor()`` off Linux."""
    fields = _first_cpu()
    if "model name" in fields:
        ids = [f"{key} {fields[key]}" for key in ("cpu family", "model", "stepping") if key in fields]
        return f"{fields['model name']} ({', '.join(ids)})" if ids else fields["model name"]
    return platform.processor() or platform.machine() or "unknown"


def all_cpu_flags() -> set[str]:
    """Every flag of the first processor in ``/proc/cpuinfo`` (empty where it cannot be read)."""
    return set(_first_cpu().get("flags", "").split())


def cpu_flags() -> list[str]:
    """Which of ``NOTED_FLAGS`` the CPU has."""
    flags = all_cpu_flags()
    return [flag for flag in NOTED_FLAGS if flag in flags]


def math_libraries() -> dict[str, str]:
    """Versions of the math libraries this torch build uses, read from ``torch.__config__.show()``:
    ``blas`` (BLAS_INFO: mkl, openblas, ...), ``mkl`` and ``onednn`` where the build has them."""
    text = torch.__config__.show()
    found: dict[str, str] = {}
    blas = re.search(r"BLAS_INFO=(\w+)", text)
    if blas:
        found["blas"] = blas.group(1)
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", text)
    if mkl:
        found["mkl"] = mkl.group(1)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([\w.]+)", text)
    if onednn:
        found["onednn"] = onednn.group(1)
    return found


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, the instruction set PyTorch's CPU kernels dispatch to, logical cores, torch
    threads, math library versions, and the GPU's name when ``device`` is CUDA."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        **math_libraries(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def machine_slug(info: dict[str, Any] | None = None) -> str:
    """A file-name-safe name of the machine kind: CPU model and instruction set, e.g.
    ``intel-xeon-processor-cpu-family-6-model-143-stepping-8-avx512``."""
    info = info or machine_info()
    words = re.sub(r"\((r|tm)\)", " ", f"{info['cpu']} {info['cpu_capability']}".lower())
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-")[:80]
