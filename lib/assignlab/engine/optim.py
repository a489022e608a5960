"""DETA's optimisation recipe: AdamW with parameter groups and a step schedule."""
from __future__ import annotations

import torch
from torch import nn

from assignlab.config import TrainConfig

# Deformable-DETR trains these with a lower learning rate (lr * lr_linear_proj_mult).
LINEAR_PROJ_NAMES = ("sampling_offsets", "reference_points")


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Three groups: backbone (``lr_backbone``), sampling offsets / reference points
    (``lr * lr_linear_proj_mult``) and everything else (``lr``). Frozen parameters are left out."""
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
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (weight decay ``cfg.weight_decay``) and a MultiStepLR stepped once per epoch."""
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_drop_epochs), gamma=cfg.lr_drop_factor)
    return optimizer, scheduler
