"""The optimisation recipe: AdamW with parameter groups and a step schedule.

Deformable-DETR's and DETA's recipe (the default): the backbone at ``lr_backbone``, sampling
offsets and reference points at ``lr * lr_linear_proj_mult``, weight decay on every parameter.
detrex's, which Align-DETR's DINO uses: ``lr_linear_proj_mult`` 1 and ``weight_decay_norm`` 0
(normalisation layers are not decayed).
"""
from __future__ import annotations

import torch
from torch import nn

from assignlab.config import TrainConfig

# Deformable-DETR trains these with a lower learning rate (lr * lr_linear_proj_mult).
LINEAR_PROJ_NAMES = ("sampling_offsets", "reference_points")
# detectron2's (and so detrex's) normalisation layers for weight_decay_norm
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
              nn.LocalResponseNorm)


def norm_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the parameters that belong to normalisation layers (``NORM_TYPES``)."""
    return {id(p) for module in model.modules() if isinstance(module, NORM_TYPES)
            for p in module.parameters(recurse=False)}


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Backbone (``lr_backbone``), sampling offsets / reference points (``lr * lr_linear_proj_mult``)
    and everything else (``lr``). With ``weight_decay_norm`` set, each group's normalisation
    parameters form a group of their own with that weight decay. Frozen parameters are left out."""
    backbone, linear_proj, rest = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("backbone.") or ".backbone." in name:
            backbone.append(param)
        elif any(key in name for key in LINEAR_PROJ_NAMES):
            linear_proj.append(param)
        else:
            rest.append(param)
    groups = [
        {"params": rest, "lr": cfg.lr, "name": "default"},
        {"params": backbone, "lr": cfg.lr_backbone, "name": "backbone"},
        {"params": linear_proj, "lr": cfg.lr * cfg.lr_linear_proj_mult, "name": "linear_proj"},
    ]
    if cfg.weight_decay_norm is not None:
        norms = norm_parameter_ids(model)
        groups = [part for group in groups for part in (
            {**group, "params": [p for p in group["params"] if id(p) not in norms]},
            {**group, "params": [p for p in group["params"] if id(p) in norms], "name": f"{group['name']}_norm",
             "weight_decay": cfg.weight_decay_norm})]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (weight decay ``cfg.weight_decay``) and a MultiStepLR stepped once per epoch.

    The fused AdamW kernel (one pass over all parameters) where every parameter is on a device it
    supports; it computes the same update as the per-tensor loop, to within float rounding."""
    groups = parameter_groups(model, cfg)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_drop_epochs), gamma=cfg.lr_drop_factor)
    return optimizer, scheduler
