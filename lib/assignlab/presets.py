"""Named configurations: one per size and base detector (``build_preset``). Sizes: ``smoke``
(tests, seconds), ``cpu`` (the laptop study), ``cpu-m`` and ``cpu-l`` (the larger rungs of the
scale ladder, ``LADDER_MODELS``), ``paper`` (DETA's released ResNet-50 1x setting, ``paper-r50-1x``, for
COCO on GPUs); bases: DETA's two-stage Deformable-DETR (the size's config
itself), DETR-DC5, DAB-DETR and DINO (``PRESET_NAMES`` names each pair).

``preset(name)`` returns a ``Config``; variants are made with ``Config.override``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

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
    # Sized by measurement on a 2-core machine (results/README.md, "Sizing the cpu profile"): one
    # run takes about 7 minutes on one core and DETA reaches AP > 30 on the synthetic validation
    # set. The backbone trains from scratch, so it gets the full learning rate (the papers' 10x
    # lower backbone rate is for ImageNet weights; at 2e-5 it learned far more slowly here).
    return Config(name="cpu").override({
        "model.backbone": "small_resnet",
        "model.backbone_width": 32,
        "model.num_classes": 10,          # the synthetic benchmark's categories
        "model.num_feature_levels": 3,
        "model.hidden_dim": 64,
        "model.nheads": 8,
        "model.enc_layers": 3,
        "model.dec_layers": 3,
        "model.dim_feedforward": 256,
        "model.dropout": 0.0,
        "model.num_queries": 100,
        "data.root": "data/synth",
        "data.synth_image_size": 160,
        "data.image_size": 160,
        "train.batch_size": 4,
        "train.epochs": 5,
        "train.lr_drop_epochs": [4],
        "train.lr": 4e-4,
        "train.lr_backbone": 4e-4,
        "train.eval_every": 2,
    })


# The scale ladder (the ``scale`` table): the cpu profile's data recipe and schedule (2,000
# synthetic training images, 5 epochs, the lr drop after the 4th) with larger models. Sized by
# measurement on this study's machine kind (results/README.md, "The scale ladder"): rung M has the
# papers' depth and query count at half their width, rung L their transformer width too. M trains
# in fp32 like S, so the two differ in size only, and runs on any CPU: bf16 is 1.3x faster at M
# on a CPU with AMX but 9x slower on one without native bf16, where PyTorch emulates it. L trains
# in bf16 (autocast; loss and assignment in fp32), 1.8x fp32 with AMX, to keep an L run under two
# hours on one core; without native bf16 it needs a GPU.
LADDER_MODELS: dict[str, dict[str, Any]] = {
    "cpu-m": {
        "model.hidden_dim": 128,
        "model.dim_feedforward": 512,
        "model.enc_layers": 6,
        "model.dec_layers": 6,
        "model.num_queries": 300,
        "model.num_feature_levels": 4,
        "model.backbone_width": 48,
        "data.synth_image_size": 192,
        "data.image_size": 192,
    },
    "cpu-l": {
        "model.hidden_dim": 256,
        "model.dim_feedforward": 1024,
        "model.enc_layers": 6,
        "model.dec_layers": 6,
        "model.num_queries": 300,
        "model.num_feature_levels": 4,
        "model.backbone_width": 64,
        "data.synth_image_size": 256,
        "data.image_size": 256,
        "train.precision": "bf16",
    },
}


# What a base changes at every ladder rung beyond its cpu overrides. Two-stage DETR-DC5 selects its
# queries among its stride-16 tokens (144 at rung M's 192 px, 256 at L's 256 px): it keeps the cpu
# profile's 100.
LADDER_BASE_OVERRIDES: dict[str, dict[str, Any]] = {"detr_dc5": {"model.num_queries": 100}}


def _ladder_rung(size: str) -> Config:
    return _cpu().override({**LADDER_MODELS[size], "name": size})


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


# ----------------------------------------------------------------- single-scale bases (vanilla attention)
DETR_DC5_OVERRIDES = {  # DETA Section 5.1: dilated C5 (stride 16), 300 queries, two-stage, Hungarian then IoU
    "model.base": "detr_dc5",
    "model.num_feature_levels": 1,
    "model.dilated_c5": True,
    "model.anchor_scale": 0.1,     # the stride-16 level's anchor side in the multi-scale base
    "model.query_selection": "topk",  # the released code selects by NMS only after an IoU-assigned first stage
    "model.postprocess": "nms",
    "assign.method": "deta_decoder_only",
}

DAB_DETR_OVERRIDES = {  # Align-DETR Table 2's base: learned 4-D anchors, 300 queries, end-to-end (no NMS)
    "model.base": "dab_detr",
    "model.num_feature_levels": 1,
    "model.postprocess": "topk",
    "model.dab_random_refpoints_xy": True,  # as released (DAB-DETR --random_refpoints_xy, detrex, Align-DETR)
    "model.transformer_activation": "prelu",
    "train.weight_decay_norm": 0.0,  # detrex's optimiser, which Align-DETR's DAB-DETR configuration uses
}


# ------------------------------------------------------------------------------ DINO (Align-DETR's base)
_DINO = {  # contrastive denoising, mixed query selection, look-forward-twice; end-to-end (no NMS)
    "model.base": "dino",
    "model.query_selection": "topk",
    "model.postprocess": "topk",
    "assign.method": "hungarian",
    "loss.cls_loss": "focal",
    "model.enc_class_agnostic": False,  # DINO's encoder proposals learn the classes
    "model.enc_loss_selected_only": True,  # and only the selected ones are supervised
    "model.content_query_init": "xavier",  # the released initialisation of the learned content queries
    "model.dino_decoder_norm": True,       # and the LayerNorm before the heads
    # detrex's optimiser, which Align-DETR uses: no lower rate for the sampling offsets, no
    # weight decay on normalisation layers
    "train.lr_linear_proj_mult": 1.0,
    "train.weight_decay_norm": 0.0,
}


# --------------------------------------------------------------------------- (size, base) -> preset
TWO_STAGE = "two_stage_deformable"  # DETA's base, the default ``model.base``: a size's config as it is

SIZES: dict[str, Callable[[], Config]] = {
    "smoke": _smoke, "cpu": _cpu, "paper": _paper_r50_1x,
    **{size: functools.partial(_ladder_rung, size) for size in LADDER_MODELS},
}

# What each other base changes in each size's config
BASE_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "detr_dc5": {
        # DETA Table 1, DETR column: ResNet-50-DC5, 6 + 6 layers, FFN 2048, 300 queries, 50 epochs.
        "paper": {**DETR_DC5_OVERRIDES, "model.num_queries": 300, "train.epochs": 50, "train.lr_drop_epochs": [40]},
        "cpu": DETR_DC5_OVERRIDES,
        "smoke": DETR_DC5_OVERRIDES,
    },
    "dab_detr": {
        # DAB-DETR R50 as in Align-DETR Table 2: C5 (stride 32), 6 + 6 layers, FFN 2048, dropout 0,
        # 300 queries, Hungarian matching, lr 1e-4 (backbone 1e-5), 50 epochs with the drop at 40.
        "paper": {**DAB_DETR_OVERRIDES, "model.num_queries": 300, "model.max_detections": 300,
                  "assign.method": "hungarian", "train.lr": 1e-4, "train.lr_backbone": 1e-5, "train.epochs": 50,
                  "train.lr_drop_epochs": [40]},
        # dilated C5 (the DC5 row of Table 2): a 160 px image gives 10 x 10 tokens instead of 5 x 5
        "cpu": {**DAB_DETR_OVERRIDES, "model.dilated_c5": True},
        "smoke": {**DAB_DETR_OVERRIDES, "model.dilated_c5": True},
    },
    "dino": {
        # DINO-4scale R50 as configured by Align-DETR: 4 levels, 6 + 6 layers, FFN 2048, dropout 0, 900
        # queries, dn_number 100, label noise 0.5, box noise 1.0; lr 1e-4 (backbone 1e-5), 12 epochs,
        # drop at 11, batch 16.
        "paper": {**_DINO, "model.num_feature_levels": 4, "model.num_queries": 900, "model.max_detections": 300,
                  "train.lr": 1e-4, "train.lr_backbone": 1e-5, "train.lr_drop_epochs": [11]},
        "cpu": _DINO,
        # dn_number 10 (not 100): a few denoising groups keep the smoke model as fast as the others
        "smoke": {**_DINO, "model.dn_number": 10},
    },
}

# (size, base) -> the preset's name, in the order ``preset`` lists them
PRESET_NAMES: dict[tuple[str, str], str] = {
    ("smoke", TWO_STAGE): "smoke", ("cpu", TWO_STAGE): "cpu", ("paper", TWO_STAGE): "paper-r50-1x",
    ("paper", "detr_dc5"): "detr-dc5-r50", ("cpu", "detr_dc5"): "cpu-detr-dc5", ("smoke", "detr_dc5"): "smoke-detr-dc5",
    ("paper", "dab_detr"): "dab-detr-r50", ("cpu", "dab_detr"): "cpu-dab-detr", ("smoke", "dab_detr"): "smoke-dab-detr",
    ("paper", "dino"): "dino-r50-1x", ("cpu", "dino"): "cpu-dino", ("smoke", "dino"): "smoke-dino",
    **{(size, base): size if base == TWO_STAGE else f"{size}-{base.replace('_', '-')}"
       for size in LADDER_MODELS for base in (TWO_STAGE, "detr_dc5", "dab_detr", "dino")},
}


def preset_name(size: str, base: str = TWO_STAGE) -> str:
    """The name of the preset of ``base`` at ``size``; ``KeyError`` when there is none."""
    if (size, base) not in PRESET_NAMES:
        raise KeyError(f"no preset of model.base={base!r} at size {size!r}")
    return PRESET_NAMES[(size, base)]


def build_preset(size: str, base: str = TWO_STAGE) -> Config:
    """The preset of ``base`` at ``size``: the size's config (``SIZES``), for another base than the
    two-stage one with that base's overrides at that size (``BASE_OVERRIDES``) and the preset's name."""
    config = SIZES[size]()
    if base == TWO_STAGE:
        return config
    if size in LADDER_MODELS:  # a ladder rung is the cpu profile with a larger model
        overrides = {**BASE_OVERRIDES[base]["cpu"], **LADDER_BASE_OVERRIDES.get(base, {})}
    else:
        overrides = BASE_OVERRIDES[base][size]
    return config.override(overrides).override({"name": preset_name(size, base)})


PRESETS: dict[str, Callable[[], Config]] = {
    name: functools.partial(build_preset, size, base) for (size, base), name in PRESET_NAMES.items()
}


def preset(name: str) -> Config:
    """The named configuration (a fresh ``Config``); unknown names raise ``KeyError`` listing the known ones."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r} (available: {', '.join(PRESETS)})")
    return PRESETS[name]()
