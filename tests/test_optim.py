"""Parameter groups of the optimiser: which parameter trains at which rate and weight decay."""
import torch
from torch import nn

from assignlab.config import TrainConfig
from assignlab.engine.optim import build_optimizer, parameter_groups


class Tiny(nn.Module):
    """A backbone, a layer named like the deformable attention's sampling offsets, a LayerNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4))
        self.sampling_offsets = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.norm = nn.LayerNorm(4)


def groups_by_name(cfg: TrainConfig) -> dict[str, dict]:
    return {g["name"]: g for g in parameter_groups(Tiny(), cfg)}


def test_deformable_detr_recipe_has_three_groups_all_decayed():
    cfg = TrainConfig(lr=1e-3, lr_backbone=1e-4, lr_linear_proj_mult=0.1, weight_decay=0.05)
    groups = groups_by_name(cfg)
    assert set(groups) == {"default", "backbone", "linear_proj"}
    assert [len(groups[n]["params"]) for n in ("default", "backbone", "linear_proj")] == [4, 4, 2]
    assert groups["linear_proj"]["lr"] == 1e-4 and groups["backbone"]["lr"] == 1e-4
    optimizer, _ = build_optimizer(Tiny(), cfg)
    assert all(g["weight_decay"] == 0.05 for g in optimizer.param_groups)


def test_detrex_recipe_leaves_normalisation_layers_undecayed():
    cfg = TrainConfig(lr=1e-3, lr_backbone=1e-4, lr_linear_proj_mult=1.0, weight_decay=0.05, weight_decay_norm=0.0)
    optimizer, _ = build_optimizer(Tiny(), cfg)
    decay = {g["name"]: (g["weight_decay"], len(g["params"]), g["lr"]) for g in optimizer.param_groups}
    # head weight + bias decayed; the LayerNorm's 2 and the GroupNorm's 2 not
    assert decay == {"default": (0.05, 2, 1e-3), "default_norm": (0.0, 2, 1e-3), "backbone": (0.05, 2, 1e-4),
                     "backbone_norm": (0.0, 2, 1e-4), "linear_proj": (0.05, 2, 1e-3)}
    total = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert total == sum(p.numel() for p in Tiny().parameters())


def test_norm_parameters_do_not_move_under_decay_alone():
    # with zero gradients AdamW's update is the decay alone: normalisation weights keep their value
    model = Tiny()
    cfg = TrainConfig(lr=0.1, lr_backbone=0.1, lr_linear_proj_mult=1.0, weight_decay=0.5, weight_decay_norm=0.0)
    optimizer, _ = build_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before_norm, before_head = model.norm.weight.detach().clone(), model.head.weight.detach().clone()
    optimizer.step()
    torch.testing.assert_close(model.norm.weight.detach(), before_norm)
    torch.testing.assert_close(model.head.weight.detach(), before_head * (1 - 0.1 * 0.5))
