"""``python -m assignlab describe --preset NAME``: the detector's module tree and parameter counts."""
from __future__ import annotations

import argparse
import dataclasses
import sys

import torch
from torch import nn

from assignlab.config import parse_set_arguments
from assignlab.models.build import build_model
from assignlab.presets import PRESETS, preset

# top-level modules shown together under one heading
GROUPS = {
    "backbone": ("backbone",),
    "input_proj": ("input_proj", "level_embed"),
    "encoder": ("encoder",),
    "two_stage": ("enc_output", "enc_output_norm", "pos_trans", "pos_trans_norm", "pix_trans", "pix_trans_norm"),
    "decoder": ("decoder",),
    "queries": ("tgt_embed", "label_enc"),  # DINO: learned content queries, denoising label embedding
    "heads": ("class_embed", "bbox_embed", "iou_embed"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="named configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override, e.g. model.dec_layers=3 (repeatable)")


def _count(parameters) -> tuple[int, int]:
    parameters = list(parameters)
    return sum(p.numel() for p in parameters), sum(p.numel() for p in parameters if p.requires_grad)


def _owned_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    attribute = getattr(model, name, None)
    if isinstance(attribute, nn.Parameter):
        return [attribute]
    if isinstance(attribute, nn.Module):
        return list(attribute.parameters())
    return []


def describe_model(model: nn.Module) -> str:
    """A table of parameter counts per module group (with their children), then the totals."""
    lines = [f"{'module':<64}{'parameters':>14}{'trainable':>14}"]
    for group, names in GROUPS.items():
        total, trainable = _count(p for name in names for p in _owned_parameters(model, name))
        lines.append(f"{group:<64}{total:>14,}{trainable:>14,}")
        for name in names:
            attribute = getattr(model, name, None)
            if attribute is None:
                continue
            children = list(attribute.named_children()) if isinstance(attribute, nn.Module) else []
            if len(names) > 1:
                sub_total, sub_trainable = _count(_owned_parameters(model, name))
                lines.append(f"  {name:<62}{sub_total:>14,}{sub_trainable:>14,}")
            elif children:
                for child_name, child in children:
                    if isinstance(child, nn.ModuleList) and len(child):
                        per_item, _ = _count(child[0].parameters())
                        label = f"{name}.{child_name} ({len(child)} x {type(child[0]).__name__}, {per_item:,} each)"
                    else:
                        label = f"{name}.{child_name} ({type(child).__name__})"
                    sub_total, sub_trainable = _count(child.parameters())
                    lines.append(f"  {label:<62}{sub_total:>14,}{sub_trainable:>14,}")
    total, trainable = _count(model.parameters())
    lines.append(f"{'total':<64}{total:>14,}{trainable:>14,}")
    lines.append(f"total: {total / 1e6:.2f}M parameters ({trainable / 1e6:.2f}M trainable)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        config = preset(args.preset).override(parse_set_arguments(args.overrides))
    except (KeyError, ValueError) as error:
        print(f"describe: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    # counts do not depend on the weights: never load them here
    model_config = dataclasses.replace(config.model, pretrained_backbone=False)
    with torch.device("meta"):
        model = build_model(model_config)
    m = model_config
    print(f"preset {args.preset} (config hash {config.stable_hash()}): {m.base}, backbone {m.backbone}, "
          f"{m.num_feature_levels} levels, hidden {m.hidden_dim}, {m.enc_layers} encoder / {m.dec_layers} decoder "
          f"layers, FFN {m.dim_feedforward}, {m.num_queries} queries, {m.num_classes} classes")
    print(describe_model(model))
    return 0
