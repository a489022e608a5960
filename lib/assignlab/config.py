"""Run configuration: frozen dataclasses for model, assignment, loss, data and training.

A run is (Config, seed). Configs are immutable; variants are made with dotted overrides::

    cfg = preset("cpu").override({"model.dec_layers": 3, "assign.object_balance_k": None})

``to_json``/``from_json`` round-trip exactly and ``stable_hash`` is the same on every machine
(it hashes the canonical JSON), so it can name a run's result file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping


# the detectors ``model.base`` names (built by assignlab.models.build)
BASES = ("two_stage_deformable", "detr_dc5", "dab_detr", "dino")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the detector (two-stage Deformable-DETR with box refinement by default)."""

    base: str = "two_stage_deformable"    # one of BASES
    backbone: str = "resnet50"            # "resnet50" (torchvision, frozen BN) or "small_resnet"
    pretrained_backbone: bool = False     # ImageNet weights through torchvision, when available
    backbone_width: int = 32              # stem width of "small_resnet"
    dilated_c5: bool = False              # DC5: last backbone stage dilated, C5 at stride 16 (detr_dc5)
    dab_modulate_hw_attn: bool = True     # dab_detr: width/height-modulated positional cross-attention
    dab_random_refpoints_xy: bool = False # dab_detr: anchor centres start uniform over the image (released)
    transformer_activation: str = "relu"  # FFN activation of the single-scale bases: "relu" or "prelu" (DAB-DETR)
    num_classes: int = 91                 # set from the dataset's categories by the engine
    num_feature_levels: int = 4
    hidden_dim: int = 256
    nheads: int = 8
    enc_n_points: int = 4
    dec_n_points: int = 4
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 1024
    dropout: float = 0.1
    num_queries: int = 300
    dec_self_attn: bool = True            # DETA Table 7: False replaces it by an FFN of equal size
    dec_cross_attn: bool = True           # DETA Table 7: False replaces it by an FFN of equal size
    query_selection: str = "nms"          # "nms" (DETA, per-level NMS), "nms_released" or "topk"
    enc_class_agnostic: bool = True       # encoder proposals learn "object" (DETA) or the classes (DINO)
    enc_loss_selected_only: bool = False  # encoder loss on the num_queries selected proposals (DINO), not every token
    proposal_topk_per_level: int = 1000   # candidates per level before the selection NMS
    query_nms_iou: float = 0.9            # IoU of the per-level NMS in query selection
    anchor_scale: float = 0.05            # anchor side = anchor_scale * 2**level (normalised)
    select_valid_proposals_only: bool = True  # False: released code (padding tokens selectable)
    msda_impl: str = "auto"               # deformable attention op: "auto", "cpp", "cuda", "reference"
    postprocess: str = "nms"              # "nms" (DETA) or "topk" (end-to-end)
    postprocess_nms_iou: float = 0.7
    postprocess_pre_topk: int = 10000
    max_detections: int = 100
    iou_branch: bool = False              # Align-DETR Table 4: predict IoU beside the class
    iou_branch_fusion: float = 0.0        # score = p^(1-w) * iou^w at inference (0.3 in the paper)
    # DINO base (base="dino"): contrastive denoising, released values
    dn_number: int = 100                  # denoising groups = dn_number // max objects per image (>= 1)
    label_noise_ratio: float = 0.5        # a denoising label is redrawn with probability ratio / 2 (released)
    box_noise_scale: float = 1.0          # lambda: positives move corners < lambda * half-size, negatives [lambda, 2 lambda)
    look_forward_twice: bool = True       # DINO's box refinement; False = plain refinement (detached)
    content_query_init: str = "normal"    # DINO's learned content queries: "xavier" (released) or "normal" N(0, 1)
    dino_decoder_norm: bool = False       # DINO: one more LayerNorm before the heads (released)
    # hybrid matching (H-Deformable-DETR), base="two_stage_deformable"; dropped at inference
    num_queries_one2many: int = 0         # extra one-to-many queries in training (1500 in the paper); 0 = off


@dataclass(frozen=True)
class AssignConfig:
    """Which predictions are positives for which objects, per output."""

    method: str = "hungarian"             # a key of assignlab.assign.base.METHODS (the registry of methods)
    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    cost_focal_alpha: float = 0.25        # focal class cost of the matching
    cost_focal_gamma: float = 2.0
    first_stage_b: int = 1                # B-matching (DETA Table 6): copies of each GT, encoder
    second_stage_b: int = 1               # B-matching: copies of each GT, decoder
    stage1_iou_thresholds: tuple[float, float] = (0.3, 0.7)
    stage1_allow_low_quality: bool = True
    stage1_batch_per_image: int = 256
    stage1_positive_fraction: float = 0.5
    stage2_iou_threshold: float = 0.6
    stage2_allow_low_quality: bool = True
    stage2_positive_fraction: float = 0.25
    object_balance_k: int | None = 4      # DETA's K, both stages; None = infinity (no balancing)
    topk_behaviour: str = "released"      # "released" (a prediction may serve two GTs) or "fixed"
    mixed_k: int = 3                      # Align-DETR: GT copies on encoder and auxiliary layers
    k_cap: str = "released"               # "released" (cap carries over the batch) or "per_image"
    hybrid_k: int = 6                     # hybrid matching: GT repeated k times for the one-to-many queries
    hybrid_loss_weight: float = 1.0       # hybrid matching: weight of the one-to-many losses (lambda)


@dataclass(frozen=True)
class LossConfig:
    """Classification loss and loss weights."""

    cls_loss: str = "focal"               # a key of assignlab.losses.criterion.CLASSIFICATION_LOSSES
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    cls_weight: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    ia_bce_alpha: float = 0.25
    ia_bce_gamma: float = 2.0             # negatives: p^gamma * BCE(p, 0) ("loss_gamma" of Table A)
    ia_bce_min_quality: float = 0.01      # t = p^alpha * IoU^(1-alpha) is clamped to at least this
    prime_sample_weighting: bool = True
    prime_sample_tau: float = 1.5
    ia_bce_variant: str = "t,1-t"         # Align-DETR Table B: "w_pos,w_neg"
    qfl_gamma: float = 2.0
    vfl_alpha: float = 0.75
    vfl_gamma: float = 2.0
    iou_branch_weight: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    """Dataset location and input pipeline."""

    root: str = "data/synth"              # folder with images/ and annotations/ (COCO layout)
    train_split: str = "train"
    val_split: str = "val"
    synthetic: bool = True                # generate the split under root if it is missing
    synth_train_images: int = 2000
    synth_val_images: int = 500
    synth_seed: int = 0
    synth_image_size: int = 256
    train_transform: str = "fixed"        # "fixed" (resize to image_size) or "multiscale" (DETR's)
    image_size: int = 256                 # side of the fixed resize; ignored by "multiscale"
    num_workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe (DETA's released one by default)."""

    epochs: int = 12
    batch_size: int = 16
    lr: float = 2e-4
    lr_backbone: float = 2e-5
    lr_linear_proj_mult: float = 0.1      # sampling offsets and reference points
    weight_decay: float = 1e-4
    weight_decay_norm: float | None = None  # normalisation layers' weight decay (detrex: 0); None = weight_decay
    clip_max_norm: float = 0.1
    lr_drop_epochs: tuple[int, ...] = (10,)
    lr_drop_factor: float = 0.1
    amp: bool = False                     # older switch for bf16 autocast on CUDA only; see precision
    precision: str = "fp32"               # "fp32" or "bf16" (autocast: matmuls and convolutions in bf16; loss,
                                          # assignment and deformable sampling in fp32), on CPU and CUDA
    compile: bool = False                 # torch.compile the model: an execution setting, not in the run id
    eval_every: int = 1
    alignment_images: int = 200           # validation images for the end-of-run alignment diagnostics (0: none)


@dataclass(frozen=True)
class Config:
    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    assign: AssignConfig = field(default_factory=AssignConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def override(self, overrides: Mapping[str, Any]) -> "Config":
        """Return a copy with dotted keys replaced, e.g. ``{"model.dec_layers": 3}``."""
        return apply_overrides(self, overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        return _from_dict(cls, data, path="")

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))

    def stable_hash(self, length: int = 12) -> str:
        """Hash of the canonical JSON (independent of process, platform and field order). A field
        of ``HASH_NEUTRAL_DEFAULTS`` at its listed value is left out, so that adding a field does
        not change the id of any run cached before it existed; configs that train the same model
        (:func:`training_equivalent`) hash the same, so they share their runs."""
        data = training_equivalent(experiment_of(self.to_dict()))
        for dotted, neutral in HASH_NEUTRAL_DEFAULTS.items():
            section, key = dotted.split(".")
            if data[section][key] == neutral:
                del data[section][key]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:length]


# Fields added after study runs were cached, with the value that reproduces the behaviour from
# before they existed (every new field must be listed here with that value).
HASH_NEUTRAL_DEFAULTS: dict[str, Any] = {
    "model.enc_loss_selected_only": False,
    "model.dab_random_refpoints_xy": False,
    "model.transformer_activation": "relu",
    "model.content_query_init": "normal",
    "model.dino_decoder_norm": False,
    "train.weight_decay_norm": None,
    "train.precision": "fp32",
}

# How a run executes, not what it trains (like the thread count): never part of the run id.
EXECUTION_FIELDS = ("train.compile",)


def experiment_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config's dict (``Config.to_dict``) without its ``EXECUTION_FIELDS``: what decides the
    trained model. A new dict; a field the dict lacks (written before it existed) is skipped."""
    result = {key: dict(value) if isinstance(value, Mapping) else value for key, value in data.items()}
    for dotted in EXECUTION_FIELDS:
        section, key = dotted.split(".")
        result.get(section, {}).pop(key, None)
    return result


# Read only by Align-DETR's mixed matching (assign.method "align"); any other method ignores them.
MIXED_MATCHING_FIELDS = {"assign.mixed_k": 3, "assign.k_cap": "released",
                         "loss.prime_sample_weighting": True, "loss.prime_sample_tau": 1.5}


def training_equivalent(data: dict[str, Any]) -> dict[str, Any]:
    """A config's dict (``Config.to_dict``) with settings that cannot change training written one way:

    - mixed matching with one copy per object (``assign.method="align"``, ``assign.mixed_k=1``) is
      one-to-one Hungarian matching on every output, and each object's single match has rank 0,
      so its prime-sample weight is exp(0) = 1 with or without the weighting: it is written as
      ``assign.method="hungarian"``;
    - under any method but ``"align"`` the fields of ``MIXED_MATCHING_FIELDS`` are read by nothing:
      they are written at their defaults.

    Used for the run id only; the run itself trains the config as given. Returns a new dict."""
    data = {section: dict(values) if isinstance(values, dict) else values for section, values in data.items()}
    if data["assign"]["method"] == "align" and data["assign"]["mixed_k"] == 1:
        data["assign"]["method"] = "hungarian"
    if data["assign"]["method"] != "align":
        for dotted, default in MIXED_MATCHING_FIELDS.items():
            section, key = dotted.split(".")
            data[section][key] = default
    return data


def coerce_value(value: Any, annotation: Any, path: str) -> Any:
    """Convert a JSON or command-line value to the field's declared type (``path`` names it in errors)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "inf")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return coerce_value(value, non_none[0], path)
    if origin is tuple:
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else value.split(",")
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ValueError(f"config field {path!r}: expected {len(item_types)} values, got {value!r}")
        return tuple(coerce_value(v, t, path) for v, t in zip(value, item_types))
    if annotation is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"config field {path!r}: {value!r} is not a boolean")
        return bool(value)
    if annotation in (int, float):
        try:
            converted = annotation(value)
        except (TypeError, ValueError):
            raise ValueError(f"config field {path!r}: {value!r} is not {annotation.__name__}") from None
        if annotation is int and isinstance(value, float) and value != converted:
            raise ValueError(f"config field {path!r}: {value!r} is not an integer")
        return converted
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"config field {path!r}: {value!r} is not a string")
        return value
    return value


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_dict(cls: type, data: Mapping[str, Any], path: str) -> Any:
    types = _field_types(cls)
    unknown = set(data) - set(types)
    if unknown:
        raise KeyError(f"unknown config field(s) {sorted(path + k for k in unknown)}")
    kwargs = {}
    for key, value in data.items():
        annotation = types[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _from_dict(annotation, value, path=f"{path}{key}.")
        else:
            kwargs[key] = coerce_value(value, annotation, path + key)
    return cls(**kwargs)


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Replace dotted fields of a (nested) frozen dataclass; values are coerced to field types."""
    for dotted, value in overrides.items():
        config = _replace_dotted(config, dotted.split("."), value, dotted)
    return config


def _replace_dotted(obj: Any, keys: list[str], value: Any, dotted: str) -> Any:
    types = _field_types(type(obj))
    head = keys[0]
    if head not in types:
        valid = ", ".join(f.name for f in fields(obj))
        raise KeyError(f"unknown config field {dotted!r} ({type(obj).__name__} has: {valid})")
    if len(keys) == 1:
        if dataclasses.is_dataclass(types[head]):
            raise KeyError(f"config field {dotted!r} is a section; set one of its fields")
        return replace(obj, **{head: coerce_value(value, types[head], dotted)})
    return replace(obj, **{head: _replace_dotted(getattr(obj, head), keys[1:], value, dotted)})


def parse_set_arguments(items: list[str]) -> dict[str, str]:
    """``["model.dec_layers=3", ...]`` (from ``--set``) -> ``{"model.dec_layers": "3"}``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides
