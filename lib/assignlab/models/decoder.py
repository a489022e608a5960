"""Deformable transformer decoder with iterative box refinement, and DETA Table 7's layer variants.

A decoder layer is self-attention among queries, deformable cross-attention into the encoder memory,
then an FFN (post-norm, as in Deformable-DETR). Table 7 replaces either attention by an FFN "to
maintain parameter parity": ``ReplacementFFN`` sizes its hidden width for that.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from assignlab.models.ms_deform_attn import MSDeformAttn


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to at least ``eps`` (finite at 0 and 1)."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class ReplacementFFN(nn.Module):
    """Linear(d, h) -> ReLU -> dropout -> Linear(h, d) standing in for an attention sublayer.

    h is the width whose parameter count h * (2d + 1) + d is nearest to ``target_params``; an FFN
    cannot match an arbitrary count exactly, so the two differ by at most d parameters.
    """

    def __init__(self, d_model: int, target_params: int, dropout: float) -> None:
        super().__init__()
        hidden = max(1, round((target_params - d_model) / (2 * d_model + 1)))
        self.linear1 = nn.Linear(d_model, hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))


class DeformableDecoderLayer(nn.Module):
    """One decoder layer; ``self_attn=False`` / ``cross_attn=False`` swap that sublayer for an FFN.

    Module names follow Deformable-DETR (cross_attn/norm1, self_attn/norm2, linear1/linear2/norm3);
    a replaced sublayer is called ``self_attn_ffn`` or ``cross_attn_ffn`` and keeps its norm.
    """

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int,
                 self_attn: bool = True, cross_attn: bool = True, msda_impl: str = "auto") -> None:
        super().__init__()
        deformable = MSDeformAttn(d_model, n_levels, n_heads, n_points, impl=msda_impl)
        if cross_attn:
            self.cross_attn = deformable
        else:
            self.cross_attn_ffn = ReplacementFFN(d_model, count_parameters(deformable), dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        if self_attn:
            self.self_attn = attention
        else:
            self.self_attn_ffn = ReplacementFFN(d_model, count_parameters(attention), dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.has_self_attn = self_attn
        self.has_cross_attn = cross_attn

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, reference_points: torch.Tensor,
                memory: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                memory_padding_mask: torch.Tensor, self_attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tgt, query_pos [B, Q, d]; reference_points [B, Q, levels, 4] cxcywh; memory [B, S, d] -> [B, Q, d].

        self_attn_mask: optional [Q, Q] bool, True where query i may not attend to query j (the
        denoising groups of DINO, the one-to-many group of hybrid matching).
        """
        if self.has_self_attn:
            q = k = tgt + query_pos
            mixed = self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        else:
            mixed = self.self_attn_ffn(tgt + query_pos)
        tgt = self.norm2(tgt + self.dropout2(mixed))
        if self.has_cross_attn:
            attended = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes,
                                       level_start_index, memory_padding_mask)
        else:
            attended = self.cross_attn_ffn(tgt + query_pos)
        tgt = self.norm1(tgt + self.dropout1(attended))
        hidden = self.linear2(self.dropout3(torch.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(hidden))


class DeformableDecoder(nn.Module):
    """A stack of decoder layers with iterative box refinement.

    Layer l refines its (detached) input boxes: box_l = sigmoid(bbox_embed[l](h_l) + inverse_sigmoid(ref_l)),
    and box_l.detach() is the next layer's reference. The box heads live in the detector and are
    passed in, so each is registered once.
    """

    def __init__(self, layer: DeformableDecoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, tgt: torch.Tensor, reference_points: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, valid_ratios: torch.Tensor,
                query_pos: torch.Tensor, memory_padding_mask: torch.Tensor, bbox_embed: nn.ModuleList,
                self_attn_mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            tgt, query_pos: [B, Q, d] content and positional queries.
            reference_points: [B, Q, 4] normalised cxcywh of the selected proposals (detached).
            memory: [B, S, d]; valid_ratios: [B, L, 2]; memory_padding_mask: [B, S].
            bbox_embed: one box head per decoder layer (extra heads are ignored).
            self_attn_mask: optional [Q, Q] bool, True where query i may not attend to query j.
        Returns:
            hidden states per layer ([B, Q, d] each) and boxes per layer ([B, Q, 4] cxcywh each).
        """
        hidden_states, boxes = [], []
        output = tgt
        scale = torch.cat([valid_ratios, valid_ratios], -1)[:, None]  # (B, 1, L, 4)
        for index, layer in enumerate(self.layers):
            reference_input = reference_points[:, :, None] * scale
            output = layer(output, query_pos, reference_input, memory, spatial_shapes,
                           level_start_index, memory_padding_mask, self_attn_mask)
            box = (bbox_embed[index](output) + inverse_sigmoid(reference_points)).sigmoid()
            hidden_states.append(output)
            boxes.append(box)
            reference_points = box.detach()
        return hidden_states, boxes
