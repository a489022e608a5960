"""DETA Table 2 on this machine: inference time per module, DETA against the end-to-end baseline.

The two detectors have the same architecture; they differ in query selection (per-level NMS vs
top-k) and post-processing (class-wise NMS vs top-k). Times are per image (batch of one),
the mean over repeats, measured with forward hooks (so the modules add up to the total):

- backbone: the backbone and the input projections of each feature level;
- transformer_encoder, transformer_decoder: the deformable encoder and decoder stacks;
- query_selection: the rest of the forward pass (proposal heads on the encoder memory, query
  selection, query embedding, prediction heads);
- postprocess_nms: turning the outputs into detections.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Callable

import pandas as pd
import torch
from torch import nn

from assignlab.config import Config
from assignlab.models.build import build_model, build_postprocessor

MODULES = ("backbone", "transformer_encoder", "query_selection", "transformer_decoder", "postprocess_nms")


def _module_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    return {"backbone": [model.backbone, *model.input_proj], "transformer_encoder": [model.encoder],
            "transformer_decoder": [model.decoder]}


@torch.no_grad()
def time_modules(model: nn.Module, postprocess: Callable, images: torch.Tensor, repeats: int = 10,
                 warmup: int = 2) -> dict[str, float]:
    """Milliseconds per image of each module in :data:`MODULES` and ``total`` (means over ``repeats``).

    Args:
        images: [B, 3, H, W] normalised input batch (no padding).
    """
    model.eval()
    mask = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.bool)
    sizes = torch.tensor([list(images.shape[2:])] * images.shape[0])
    spent: dict[str, float] = defaultdict(float)
    started: dict[int, float] = {}
    handles = []
    for group, modules in _module_groups(model).items():
        for module in modules:
            handles.append(module.register_forward_pre_hook(lambda m, args: started.__setitem__(id(m), time.perf_counter())))
            handles.append(module.register_forward_hook(
                lambda m, args, out, group=group: spent.__setitem__(group, spent[group] + time.perf_counter() - started[id(m)])))
    samples: dict[str, list[float]] = defaultdict(list)
    try:
        for step in range(warmup + repeats):
            spent.clear()
            start = time.perf_counter()
            outputs = model(images, mask)
            forward = time.perf_counter() - start
            start = time.perf_counter()
            postprocess(outputs, sizes)
            spent["postprocess_nms"] = time.perf_counter() - start
            spent["query_selection"] = forward - sum(spent[g] for g in _module_groups(model))
            spent["total"] = forward + spent["postprocess_nms"]
            if step >= warmup:
                for name, seconds in spent.items():
                    samples[name].append(seconds)
    finally:
        for handle in handles:
            handle.remove()
    per_image = 1000.0 / images.shape[0]
    return {name: statistics.fmean(samples[name]) * per_image for name in (*MODULES, "total")}


def runtime_table(base: Config, methods: dict[str, dict], repeats: int = 10, seed: int = 0) -> pd.DataFrame:
    """One column of milliseconds per method (overrides of ``base``), one line per module + total.

    The models are freshly initialised from ``seed`` (timing does not depend on training, except
    through how many boxes NMS keeps); the input is one image of ``base.data.image_size``.
    """
    size = base.data.image_size
    columns = {}
    for name, overrides in methods.items():
        config = base.override(overrides)
        torch.manual_seed(seed)
        model = build_model(config.model)
        images = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
        columns[name] = time_modules(model, build_postprocessor(config.model), images, repeats=repeats)
    return pd.DataFrame(columns).rename_axis("module")
