"""Import released DETA weights into ``TwoStageDeformableDETR``.

``import_deta(state, fmt, metadata)`` renames the keys (``deta_layouts``), infers the architecture
from the tensors (levels, layers, hidden size, FFN width, classes, two-stage heads with box
refinement), takes what tensors cannot tell (attention heads, queries, selection) from the file's
own configuration or DETA's released settings, and checks the result strictly against the model
that configuration builds: a missing, extra or mis-shaped tensor is an error that names it. The
only tensors left out are the heads that the released code registers twice (checked equal first)
and batch-norm counters, and each is listed in ``ImportedCheckpoint.dropped``.

The imported configuration reproduces the released inference: ``query_selection="nms_released"``
and ``select_valid_proposals_only=False`` (see ``models/query_selection.py``), NMS post-processing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from assignlab.checkpoints.deta_layouts import FORMATS, duplicate_of, merge_hf_qkv, rename
from assignlab.checkpoints.labels import resolve_label_map
from assignlab.checkpoints.sources import READERS, CheckpointImportError
from assignlab.config import Config, DataConfig, ModelConfig

# DETA's released R50 settings for what the tensors cannot tell (its configs/deta.sh).
RELEASED_DEFAULTS = {"nheads": 8, "num_queries": 900, "dropout": 0.0, "query_selection": "nms_released"}
SHOWN = 8  # names listed per kind of problem


@dataclass
class ImportedCheckpoint:
    """The imported weights (our key names) with the configuration that uses them."""

    config: Config
    state_dict: dict[str, torch.Tensor]
    source_format: str
    source: str
    dropped: list[str] = field(default_factory=list)  # "<source key>: <why>"
    label_to_category_id: list[int | None] | None = None
    category_names: dict[int, str] = field(default_factory=dict)


def _listing(names: list[str]) -> str:
    more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _guess_format(keys: list[str]) -> str | None:
    """The layout most of the keys belong to, for the error message."""
    scores = {fmt: sum(rename(k, fmt) is not None or duplicate_of(k, fmt) is not None for k in keys) for fmt in FORMATS}
    best = max(scores, key=scores.get)
    return best if scores[best] > len(keys) // 2 else None


def _drop_known_duplicates(state: dict[str, torch.Tensor], fmt: str) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Remove the second registration of each head after checking it equals the first.

    Returns (state, dropped descriptions, problems). A duplicate whose first registration is absent
    (some exporters keep only one name of tied tensors) takes its place.
    """
    kept, dropped, problems = {}, [], []
    for key, tensor in state.items():
        original = duplicate_of(key, fmt)
        if original is None:
            if key.endswith("num_batches_tracked"):
                dropped.append(f"{key}: batch-norm counter (frozen batch norm has none)")
                continue
            kept[key] = tensor
            continue
        if original not in state:
            kept[original] = tensor
            dropped.append(f"{key}: kept under {original} (its only copy)")
        elif state[original].shape != tensor.shape or not torch.equal(state[original], tensor):
            problems.append(f"{key} differs from {original} (the released model shares these tensors)")
        else:
            dropped.append(f"{key}: duplicate of {original} (checked equal)")
    return kept, dropped, problems


def _layer_count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    indices = {int(m.group(1)) for k in state for m in [pattern.match(k)] if m}
    return max(indices) + 1 if indices else 0


def _require(state: Mapping[str, torch.Tensor], key: str, source: str, fmt: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointImportError(f"{source}: no tensor for {key} in the {fmt} layout; cannot infer the architecture "
                                    "(not a two-stage DETA checkpoint?)")
    return state[key]


def _check_metadata(metadata: Mapping[str, Any], source: str) -> None:
    """Reject configurations our detector does not implement, before looking at tensors."""
    backbone = metadata.get("backbone") or (metadata.get("backbone_config") or {}).get("model_type")
    if backbone and backbone not in ("resnet50", "resnet"):
        raise CheckpointImportError(f"{source}: backbone {backbone!r} is not supported (our detector has a ResNet-50 backbone)")
    for flag in ("two_stage", "with_box_refine"):
        if metadata.get(flag) is False:
            raise CheckpointImportError(f"{source}: {flag}=False in the file's configuration; only two-stage DETA with "
                                        "box refinement is supported")
    if metadata.get("dilation"):
        raise CheckpointImportError(f"{source}: dilation=True (DC5 backbone) is not supported")


def infer_model_config(state: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], source: str, fmt: str) -> ModelConfig:
    """The ``ModelConfig`` of renamed weights (our key names) and the file's configuration."""
    levels, hidden = _require(state, "level_embed", source, fmt).shape
    _require(state, "enc_output.weight", source, fmt)
    enc_layers = _layer_count(state, "encoder.layers")
    dec_layers = _layer_count(state, "decoder.layers")
    if dec_layers == 0:
        raise CheckpointImportError(f"{source}: no decoder layers found")
    widths = {f"{part} layer {i}": state[f"{part}.layers.{i}.linear1.weight"].shape[0]
              for part, count in (("encoder", enc_layers), ("decoder", dec_layers)) for i in range(count)
              if f"{part}.layers.{i}.linear1.weight" in state}
    if len(set(widths.values())) > 1:
        raise CheckpointImportError(f"{source}: FFN widths differ ({widths}); our model has one model.dim_feedforward")
    num_classes = _require(state, "class_embed.0.weight", source, fmt).shape[0]

    heads = int(metadata.get("nheads") or metadata.get("encoder_attention_heads") or RELEASED_DEFAULTS["nheads"])
    decoder_heads = int(metadata.get("decoder_attention_heads") or heads)
    if decoder_heads != heads:
        raise CheckpointImportError(f"{source}: encoder_attention_heads={heads} but decoder_attention_heads={decoder_heads}; "
                                    "our model has one model.nheads")

    def points(key: str) -> int:
        per_head_level = _require(state, key, source, fmt).shape[0] // 2
        if per_head_level % (heads * levels):
            raise CheckpointImportError(f"{source}: {key} has {2 * per_head_level} outputs, not 2 * {heads} heads * "
                                        f"{levels} levels * points")
        return per_head_level // (heads * levels)

    enc_points = points("encoder.layers.0.self_attn.sampling_offsets.weight") if enc_layers else 4
    dec_points = points("decoder.layers.0.cross_attn.sampling_offsets.weight")
    queries = metadata.get("num_queries") if fmt == "deta-official" else metadata.get("two_stage_num_proposals")
    assign_first_stage = metadata.get("assign_first_stage", True)
    return ModelConfig(
        backbone="resnet50", num_classes=int(num_classes), num_feature_levels=int(levels), hidden_dim=int(hidden),
        nheads=heads, enc_n_points=enc_points, dec_n_points=dec_points, enc_layers=enc_layers, dec_layers=dec_layers,
        dim_feedforward=int(next(iter(widths.values()), 1024)),
        dropout=float(metadata.get("dropout", RELEASED_DEFAULTS["dropout"])),
        num_queries=int(queries or RELEASED_DEFAULTS["num_queries"]),
        query_selection=RELEASED_DEFAULTS["query_selection"] if assign_first_stage else "topk",
        select_valid_proposals_only=False, postprocess="nms",
    )


def expected_state_shapes(config: ModelConfig) -> dict[str, torch.Size]:
    """Parameter and buffer shapes of the model ``config`` builds (on the meta device: no memory)."""
    from assignlab.models.build import build_model

    with torch.device("meta"):
        model = build_model(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def import_deta(state: Mapping[str, torch.Tensor], fmt: str, metadata: Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | None = None, label_map: str = "auto",
                source: str = "<state dict>") -> ImportedCheckpoint:
    """Map a released DETA state dict of layout ``fmt`` onto our detector.

    Args:
        state: the released tensors by their names; metadata: the file's configuration (official
            ``args`` or transformers' ``config.json``), used for what tensors cannot tell.
        overrides: dotted config overrides applied last (e.g. ``{"model.num_queries": 300}``).
        label_map: ``"auto"``, ``"coco"`` or ``"contiguous"`` (see ``labels.resolve_label_map``).
    Raises:
        CheckpointImportError naming every missing, extra or mis-shaped tensor.
    """
    if fmt not in FORMATS:
        raise CheckpointImportError(f"unknown format {fmt!r} (expected one of {FORMATS})")
    metadata = dict(metadata or {})
    _check_metadata(metadata, source)
    state, dropped, problems = _drop_known_duplicates(dict(state), fmt)
    if fmt == "hf-deta":
        state, qkv_problems = merge_hf_qkv(state)
        problems += qkv_problems
    renamed, unmatched = {}, []
    for key, tensor in state.items():
        ours = rename(key, fmt)
        if ours is None:
            unmatched.append(key)
        else:
            renamed[ours] = tensor
    if unmatched and len(unmatched) > len(state) // 2:
        guess = _guess_format(list(state))
        hint = f"; the keys look like the {guess} layout: use --format {guess}" if guess and guess != fmt else ""
        raise CheckpointImportError(f"{source}: {len(unmatched)} of {len(state)} tensors are not part of the {fmt} layout "
                                    f"(e.g. {_listing(unmatched)}){hint}")

    config = Config(name="deta-import", model=infer_model_config(renamed, metadata, source, fmt),
                    data=DataConfig(root="data/coco", synthetic=False, train_split="train2017", val_split="val2017",
                                    train_transform="multiscale"))
    if overrides:
        config = config.override(overrides)
    expected = expected_state_shapes(config.model)
    if unmatched:
        problems.append(f"unexpected tensors (no counterpart in our model): {_listing(unmatched)}")
    extra = sorted(k for k in renamed if k not in expected)
    if extra:
        problems.append(f"extra tensors (our model has no such parameter): {_listing(extra)}")
    missing = sorted(k for k in expected if k not in renamed)
    if missing:
        problems.append(f"missing tensors: {_listing(missing)}")
    wrong = [f"{k} {tuple(renamed[k].shape)} (expected {tuple(expected[k])})"
             for k in sorted(expected) if k in renamed and renamed[k].shape != expected[k]]
    if wrong:
        problems.append(f"mis-shaped tensors: {_listing(wrong)}")
    if problems:
        raise CheckpointImportError(f"{source} ({fmt}): " + "; ".join(problems))

    labels, names = resolve_label_map(label_map, config.model.num_classes)
    id2label = metadata.get("id2label") or {}
    # transformers fills id2label with LABEL_<i> placeholders when a model has no names
    names = {**names, **{int(k): v for k, v in id2label.items() if v != "N/A" and not re.fullmatch(r"LABEL_\d+", v)}}
    weights = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in renamed.items()}
    return ImportedCheckpoint(config=config, state_dict=weights, source_format=fmt, source=source, dropped=dropped,
                              label_to_category_id=labels, category_names=names)


def import_deta_file(path: str | Path, fmt: str, overrides: Mapping[str, Any] | None = None,
                     label_map: str = "auto") -> ImportedCheckpoint:
    """Read ``path`` (see ``sources``) and ``import_deta`` it."""
    if fmt not in FORMATS:
        raise CheckpointImportError(f"unknown format {fmt!r} (expected one of {FORMATS})")
    state, metadata = READERS[fmt](path)
    return import_deta(state, fmt, metadata, overrides, label_map, source=str(path))


def save_imported(imported: ImportedCheckpoint, out: str | Path) -> Path:
    """Write an assignlab checkpoint that ``eval`` and ``predict`` read (epoch -1: not trained here)."""
    from assignlab.engine.checkpoint import save_checkpoint

    return save_checkpoint(
        out, model=imported.state_dict, config=imported.config.to_dict(), seed=None, epoch=-1,
        label_to_category_id=imported.label_to_category_id, category_names=imported.category_names,
        imported_from={"format": imported.source_format, "source": imported.source, "dropped": imported.dropped},
    )


__all__ = ["CheckpointImportError", "ImportedCheckpoint", "import_deta", "import_deta_file",
           "infer_model_config", "save_imported"]
