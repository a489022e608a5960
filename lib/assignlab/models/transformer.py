"""Vanilla (DETR) transformer pieces for the single-scale bases: dense multi-head attention over one
feature map instead of deformable attention.

- :func:`single_scale_features`: backbone C5 -> projection -> one feature map, its padding mask and
  its sine position embedding.
- :class:`VanillaEncoderLayer` / :class:`VanillaEncoder`: post-norm self-attention + FFN, queries
  and keys carry the position embedding (DETR); the encoder can rescale the position embedding per
  layer from the features (Conditional-DETR / DAB-DETR).
- :class:`VanillaDecoderLayer` / :class:`VanillaDecoder`: DETA's two-stage decoder with the
  deformable cross-attention replaced by ``nn.MultiheadAttention`` into the whole memory, and the
  same iterative box refinement as :class:`~assignlab.models.decoder.DeformableDecoder`.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from assignlab.models.decoder import inverse_sigmoid
from assignlab.models.position_encoding import SinePositionEncoding


def single_scale_features(backbone: nn.Module, input_proj: nn.Module, position_encoding: SinePositionEncoding,
                          images: torch.Tensor, mask: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The last backbone map, projected: (source [B, d, H, W], mask [B, H, W] bool True at padding,
    position [B, d, H, W]).

    Raises ValueError when an image has no unpadded position left on the map (attention over an
    all-padding row would be undefined).
    """
    source = input_proj(backbone(images)[-1])
    feature_mask = F.interpolate(mask[None].float(), size=source.shape[-2:]).to(torch.bool)[0]
    empty = feature_mask.flatten(1).all(1).nonzero()[:, 0]
    if empty.numel():
        raise ValueError(f"image {int(empty[0])} has no unpadded pixel on the feature map "
                         f"{tuple(source.shape[-2:])}: its valid region is too small")
    return source, feature_mask, position_encoding(feature_mask).to(source.dtype)


def flatten_map(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H * W, C] (row-major tokens)."""
    return x.flatten(2).transpose(1, 2)


ACTIVATIONS = {"relu": nn.ReLU, "prelu": nn.PReLU}  # PReLU: one learned slope per layer, DAB-DETR's choice


def activation_layer(name: str) -> nn.Module:
    """The FFN activation ``model.transformer_activation`` names (a new module each call)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.transformer_activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class VanillaEncoderLayer(nn.Module):
    """Post-norm encoder layer: src = norm1(src + SelfAttn(src + pos, src + pos, src)); src = norm2(src + FFN(src))."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_heads: int, activation: str = "relu") -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.activation = activation_layer(activation)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """src, pos [B, S, d]; padding_mask [B, S] bool (True = padding, never attended) -> [B, S, d]."""
        q = k = src + pos
        attended = self.self_attn(q, k, src, key_padding_mask=padding_mask, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(hidden))


class VanillaEncoder(nn.Module):
    """A stack of encoder layers. With ``pos_scale`` (an MLP d -> d), layer l sees the position
    embedding multiplied elementwise by pos_scale(input of layer l), as in Conditional-/DAB-DETR."""

    def __init__(self, layer: VanillaEncoderLayer, num_layers: int, pos_scale: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.pos_scale = pos_scale

    def forward(self, src: torch.Tensor, pos: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """src, pos [B, S, d]; padding_mask [B, S] -> memory [B, S, d]."""
        output = src
        for layer in self.layers:
            layer_pos = pos if self.pos_scale is None else pos * self.pos_scale(output)
            output = layer(output, layer_pos, padding_mask)
        return output


class VanillaDecoderLayer(nn.Module):
    """Self-attention among queries, dense cross-attention into the memory, FFN (post-norm).

    Same sublayers and names as :class:`~assignlab.models.decoder.DeformableDecoderLayer`
    (cross_attn/norm1, self_attn/norm2, linear1/linear2/norm3); the cross-attention is
    ``nn.MultiheadAttention`` with query tgt + query_pos, key memory + memory_pos, value memory.
    """

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_heads: int) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                memory_padding_mask: torch.Tensor) -> torch.Tensor:
        """tgt, query_pos [B, Q, d]; memory, memory_pos [B, S, d]; memory_padding_mask [B, S] -> [B, Q, d]."""
        q = k = tgt + query_pos
        tgt = self.norm2(tgt + self.dropout2(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attended = self.cross_attn(tgt + query_pos, memory + memory_pos, memory,
                                   key_padding_mask=memory_padding_mask, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attended))
        hidden = self.linear2(self.dropout3(torch.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(hidden))


class VanillaDecoder(nn.Module):
    """Decoder layers with iterative box refinement (as the deformable decoder):
    box_l = sigmoid(bbox_embed[l](h_l) + inverse_sigmoid(ref_l)), ref_{l+1} = box_l.detach().

    The reference boxes do not steer dense attention; they only anchor each layer's box prediction.
    """

    def __init__(self, layer: VanillaDecoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, tgt: torch.Tensor, reference_points: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, query_pos: torch.Tensor, memory_padding_mask: torch.Tensor,
                bbox_embed: nn.ModuleList) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            tgt, query_pos: [B, Q, d] content and positional queries.
            reference_points: [B, Q, 4] normalised cxcywh (detached proposals).
            memory, memory_pos: [B, S, d]; memory_padding_mask: [B, S] bool.
            bbox_embed: one box head per decoder layer (extra heads are ignored).
        Returns:
            hidden states per layer ([B, Q, d] each) and boxes per layer ([B, Q, 4] cxcywh each).
        """
        hidden_states, boxes = [], []
        output = tgt
        for index, layer in enumerate(self.layers):
            output = layer(output, query_pos, memory, memory_pos, memory_padding_mask)
            box = (bbox_embed[index](output) + inverse_sigmoid(reference_points)).sigmoid()
            hidden_states.append(output)
            boxes.append(box)
            reference_points = box.detach()
        return hidden_states, boxes
