"""Key layouts of released DETA weights and their renaming onto ``TwoStageDeformableDETR``.

Two layouts exist:

- ``deta-official``: DETA's repository (Deformable-DETR's module tree): ``backbone.0.body.*``
  (torchvision ResNet-50), ``transformer.{encoder,decoder,level_embed,enc_output,...}``, heads
  ``class_embed.{i}`` / ``bbox_embed.{i}.layers.{k}``; the heads are also registered as
  ``transformer.decoder.class_embed`` / ``transformer.decoder.bbox_embed`` (the same tensors twice).
- ``hf-deta``: transformers' ``DetaForObjectDetection``: ``model.backbone.model.*`` (transformers'
  ResNet: ``embedder``, ``encoder.stages.{s}.layers.{b}``), ``model.encoder.layers.{i}.fc1`` etc.,
  decoder self-attention as separate q/k/v projections, heads again under ``model.decoder``.

Each renaming is a table of (source pattern, our key template); a source key that no rule matches
is reported, never skipped. Known duplicates are listed by ``duplicate_of`` and checked equal by
the importer before they are dropped.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

FORMATS = ("deta-official", "hf-deta")

Rule = tuple[re.Pattern, Callable[[re.Match], str]]


def _rule(pattern: str, template: str | Callable[[re.Match], str]) -> Rule:
    expand = template if callable(template) else (lambda m, t=template: m.expand(t))
    return re.compile(pattern + r"$"), expand


def _plus_one(group: int, prefix: str) -> Callable[[re.Match], str]:
    return lambda m: f"{prefix}{int(m.group(group)) + 1}"


# Module names shared by both layouts once the prefix is removed.
_TRANSFORMER_PARTS = r"(enc_output|enc_output_norm|pos_trans|pos_trans_norm|pix_trans|pix_trans_norm)\.(weight|bias)"
_HEADS = [
    _rule(r"class_embed\.(\d+)\.(weight|bias)", r"class_embed.\1.\2"),
    _rule(r"bbox_embed\.(\d+)\.layers\.(\d+)\.(weight|bias)", r"bbox_embed.\1.layers.\2.\3"),
    _rule(r"input_proj\.(\d+)\.([01])\.(weight|bias)", r"input_proj.\1.\2.\3"),
]
_MSDA = r"(sampling_offsets|attention_weights|value_proj|output_proj)\.(weight|bias)"
_BN = r"(weight|bias|running_mean|running_var)"

OFFICIAL_RULES: list[Rule] = [
    _rule(r"backbone\.0\.body\.(conv1\.weight|bn1\.(?:weight|bias|running_mean|running_var))", r"backbone.body.\1"),
    _rule(r"backbone\.0\.body\.(layer[1-4]\.\d+\.(?:conv[1-3]\.weight|bn[1-3]\." + _BN + r"|downsample\.0\.weight|downsample\.1\." + _BN + r"))",
          r"backbone.body.\1"),
    _rule(r"transformer\.level_embed", "level_embed"),
    _rule(r"transformer\." + _TRANSFORMER_PARTS, r"\1.\2"),
    _rule(r"transformer\.encoder\.layers\.(\d+)\.self_attn\." + _MSDA, r"encoder.layers.\1.self_attn.\2.\3"),
    _rule(r"transformer\.encoder\.layers\.(\d+)\.(norm1|norm2|linear1|linear2)\.(weight|bias)", r"encoder.layers.\1.\2.\3"),
    _rule(r"transformer\.decoder\.layers\.(\d+)\.cross_attn\." + _MSDA, r"decoder.layers.\1.cross_attn.\2.\3"),
    _rule(r"transformer\.decoder\.layers\.(\d+)\.self_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
          r"decoder.layers.\1.self_attn.\2"),
    _rule(r"transformer\.decoder\.layers\.(\d+)\.(norm1|norm2|norm3|linear1|linear2)\.(weight|bias)", r"decoder.layers.\1.\2.\3"),
    *_HEADS,
]

_HF_RESNET = r"model\.backbone\.model\."
HF_RULES: list[Rule] = [
    _rule(_HF_RESNET + r"embedder\.embedder\.convolution\.weight", "backbone.body.conv1.weight"),
    _rule(_HF_RESNET + r"embedder\.embedder\.normalization\." + _BN, r"backbone.body.bn1.\1"),
    _rule(_HF_RESNET + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight",
          lambda m: f"backbone.body.layer{int(m.group(1)) + 1}.{m.group(2)}.downsample.0.weight"),
    _rule(_HF_RESNET + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\." + _BN,
          lambda m: f"backbone.body.layer{int(m.group(1)) + 1}.{m.group(2)}.downsample.1.{m.group(3)}"),
    _rule(_HF_RESNET + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.weight",
          lambda m: f"backbone.body.layer{int(m.group(1)) + 1}.{m.group(2)}.conv{int(m.group(3)) + 1}.weight"),
    _rule(_HF_RESNET + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\." + _BN,
          lambda m: f"backbone.body.layer{int(m.group(1)) + 1}.{m.group(2)}.bn{int(m.group(3)) + 1}.{m.group(4)}"),
    _rule(r"model\.level_embed", "level_embed"),
    _rule(r"model\." + _TRANSFORMER_PARTS, r"\1.\2"),
    _rule(r"model\.encoder\.layers\.(\d+)\.self_attn\." + _MSDA, r"encoder.layers.\1.self_attn.\2.\3"),
    _rule(r"model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.norm1.\2"),
    _rule(r"model\.encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.linear1.\2"),
    _rule(r"model\.encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.linear2.\2"),
    _rule(r"model\.encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.norm2.\2"),
    _rule(r"model\.decoder\.layers\.(\d+)\.encoder_attn\." + _MSDA, r"decoder.layers.\1.cross_attn.\2.\3"),
    _rule(r"model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.(weight|bias)", r"decoder.layers.\1.norm1.\2"),
    # q/k/v are merged into in_proj_* by merge_hf_qkv before renaming
    _rule(r"model\.decoder\.layers\.(\d+)\.self_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
          r"decoder.layers.\1.self_attn.\2"),
    _rule(r"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"decoder.layers.\1.norm2.\2"),
    _rule(r"model\.decoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"decoder.layers.\1.linear1.\2"),
    _rule(r"model\.decoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"decoder.layers.\1.linear2.\2"),
    _rule(r"model\.decoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"decoder.layers.\1.norm3.\2"),
    _rule(r"model\.input_proj\.(\d+)\.([01])\.(weight|bias)", r"input_proj.\1.\2.\3"),
    *_HEADS[:2],
]

RULES = {"deta-official": OFFICIAL_RULES, "hf-deta": HF_RULES}

# The heads registered a second time inside the decoder (iterative refinement / two-stage hack).
_DUPLICATES = {
    "deta-official": re.compile(r"transformer\.decoder\.((?:class_embed|bbox_embed)\..+)$"),
    "hf-deta": re.compile(r"model\.decoder\.((?:class_embed|bbox_embed)\..+)$"),
}


def duplicate_of(key: str, fmt: str) -> str | None:
    """The source key that ``key`` duplicates (same tensor registered twice), or None."""
    match = _DUPLICATES[fmt].match(key)
    return match.group(1) if match else None


def rename(key: str, fmt: str) -> str | None:
    """Our parameter name for a source key, or None when no rule of ``fmt`` matches it."""
    for pattern, expand in RULES[fmt]:
        match = pattern.match(key)
        if match:
            return expand(match)
    return None


_HF_QKV = re.compile(r"(model\.decoder\.layers\.\d+\.self_attn\.)([qkv])_proj\.(weight|bias)$")


def merge_hf_qkv(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Replace each decoder layer's separate q/k/v projections by one ``in_proj_{weight,bias}``
    (rows q, then k, then v, as ``nn.MultiheadAttention`` stores them).

    Returns the new state dict and the problems found (a projection present without its siblings).
    """
    groups: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    merged: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _HF_QKV.match(key)
        if match:
            groups.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = tensor
        else:
            merged[key] = tensor
    problems = []
    for (prefix, kind), parts in sorted(groups.items()):
        missing = [f"{prefix}{p}_proj.{kind}" for p in "qkv" if p not in parts]
        if missing:
            problems.append(f"missing {', '.join(missing)} (needed with the other self-attention projections)")
            continue
        merged[f"{prefix}in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return merged, problems
