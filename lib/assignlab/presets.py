"""Named configurations: ``smoke`` (tests, seconds), ``cpu`` (the laptop study), ``paper-r50-1x``
(DETA's released ResNet-50 1x setting, for COCO on GPUs).

``preset(name)`` returns a ``Config``; variants are made with ``Config.override``.
"""
from __future__ import annotations

from typing import Callable

from assignlab.config import Config


def _smoke() -> Config:
    return Config(name="smoke").override({
        "model.backbone": "small_resnet",
        "model.backbone_width": 16,
        "model.num_classes": 10,          # the synthetic benchmark's categories
        "model.num_feature_levels": 3,
        "model.hidden_dim": 32,
        "model.nheads": 4,
        "model.enc_n_points": 2,
        "model.dec_n_points": 2,
        "model.enc_layers": 1,
        "model.dec_layers": 2,
        "model.dim_feedforward": 64,
        "model.dropout": 0.0,
        "model.num_queries": 20,
        "model.max_detections": 20,
        "data.root": "data/synth_smoke",
        "data.synth_train_images": 16,
        "data.synth_val_images": 8,
        "data.synth_image_size": 96,
        "data.image_size": 96,
        "train.epochs": 1,
        "train.batch_size": 2,
        "train.lr_drop_epochs": [],
    })


def _cpu() -> Config:
    # A first sizing for a 2-core machine: 3.3M parameters; one forward+backward of a batch of
    # 4 images at 256 px takes about 0.3 s with the PyTorch reference attention op.
    return Config(name="cpu").override({
        "model.backbone": "small_resnet",
        "model.backbone_width": 32,
        "model.num_classes": 10,          # the synthetic benchmark's categories
        "model.num_feature_levels": 4,
        "model.hidden_dim": 128,
        "model.nheads": 8,
        "model.enc_layers": 3,
        "model.dec_layers": 3,
        "model.dim_feedforward": 512,
        "model.dropout": 0.0,
        "model.num_queries": 100,
        "data.root": "data/synth",
        "data.synth_image_size": 256,
        "data.image_size": 256,
        "train.batch_size": 4,
        "train.epochs": 12,
        "train.lr_drop_epochs": [10],
    })


def _paper_r50_1x() -> Config:
    # DETA configs/deta.sh: two-stage + box refinement, 5 levels, 900 queries, FFN 2048, dropout 0,
    # IoU assignment in both stages; 12 epochs with the lr drop at 10; batch 16 (8 GPUs x 2).
    return Config(name="paper-r50-1x").override({
        "model.backbone": "resnet50",
        "model.pretrained_backbone": True,
        "model.num_classes": 91,
        "model.num_feature_levels": 5,
        "model.hidden_dim": 256,
        "model.nheads": 8,
        "model.enc_n_points": 4,
        "model.dec_n_points": 4,
        "model.enc_layers": 6,
        "model.dec_layers": 6,
        "model.dim_feedforward": 2048,
        "model.dropout": 0.0,
        "model.num_queries": 900,
        "model.query_selection": "nms",
        "model.postprocess": "nms",
        "assign.method": "deta",
        "data.root": "data/coco",
        "data.train_split": "train2017",
        "data.val_split": "val2017",
        "data.synthetic": False,
        "data.train_transform": "multiscale",
        "train.batch_size": 16,
        "train.epochs": 12,
        "train.lr_drop_epochs": [10],
        "train.lr": 2e-4,
        "train.lr_backbone": 2e-5,
    })


PRESETS: dict[str, Callable[[], Config]] = {
    "smoke": _smoke,
    "cpu": _cpu,
    "paper-r50-1x": _paper_r50_1x,
}


def preset(name: str) -> Config:
    """The named configuration (a fresh ``Config``); unknown names raise ``KeyError`` listing the known ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r} (available: {', '.join(PRESETS)})")
    return PRESETS[name]()
