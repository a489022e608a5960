"""DAB-DETR: queries as learned 4-D anchor boxes, refined layer by layer (Align-DETR Table 2's base).

Single-scale features (C5, or dilated C5 with ``model.dilated_c5``), a standard transformer encoder
whose position embedding is rescaled per layer from the features, and a decoder whose queries are
anchor boxes A = (x, y, w, h):

- positional query P = MLP(PE(A)), PE the sine embedding of each coordinate (d/2 features each);
- self-attention with content and position projected separately and added (Conditional-DETR);
- cross-attention per head on [content ; position] concatenations: the query position part is
  PE(x, y) scaled elementwise by MLP(content) (from the second layer on) and width/height
  modulated: the x features times w_ref / w, the y features times h_ref / h, with
  (w_ref, h_ref) = sigmoid(MLP(content)), so an anchor's attention spreads with its box size;
  the key position part is the projected sine embedding of the feature map;
- each layer predicts deltas in inverse-sigmoid space, as released: the next layer's anchor is
  A_{l+1} = sigmoid(bbox_embed(h_l) + inverse_sigmoid(A_l)) from the layer's output h_l, detached
  before the next layer; the supervised box is sigmoid(bbox_embed(norm(h_l)) + inverse_sigmoid(R_l))
  with R_l = A_l undetached (look-forward-twice, ``model.look_forward_twice``: layer l's box loss
  also trains layer l-1) or the detached A_l (plain refinement).

There is no encoder proposal, so the output has no ``enc_outputs``; ``proposal_boxes`` holds the
(detached) anchors fed to the first layer, the reference boxes IoU assignment measures against.
Content queries start at zero; class and box heads are shared by all layers, as released; with
``model.dab_random_refpoints_xy`` the anchor centres start uniform over the image (released),
otherwise the logits are N(0, 1); ``model.transformer_activation`` "prelu" is the released FFN
activation.

Deviation: the feature-map sine embedding keeps this package's half-pixel offset.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from assignlab.config import ModelConfig
from assignlab.models.decoder import inverse_sigmoid
from assignlab.models.detector import MLP, check_images, xavier_init_matrices
from assignlab.models.position_encoding import SinePositionEncoding, box_sine_embedding
from assignlab.models.transformer import (VanillaEncoder, VanillaEncoderLayer, activation_layer, flatten_map,
                                          single_scale_features)

FEATURE_TEMPERATURE = 20.0  # DAB-DETR's temperature of the feature-map sine embedding (anchor boxes: 10000)


def refine_anchors(anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """A_{l+1} = sigmoid(deltas + inverse_sigmoid(A_l)); anchors, deltas [..., 4] -> [..., 4]."""
    return (deltas + inverse_sigmoid(anchors)).sigmoid()


class ProjectedAttention(nn.Module):
    """Multi-head scaled dot-product attention on inputs that are already projected.

    The query and the key may come in parts (each [B, N, d]); each part is split into heads and the
    parts are concatenated per head, so with parts [content, position] a head compares
    [content_h ; position_h] vectors of dimension 2 d / heads (Conditional-DETR's cross-attention).
    Only the output projection is learned here.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        return x.view(batch, length, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, h, N, d/h)

    def forward(self, query_parts: Sequence[torch.Tensor], key_parts: Sequence[torch.Tensor], value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query parts [B, Q, d]; key parts, value [B, S, d]; key_padding_mask [B, S] (True = padding) -> [B, Q, d]."""
        batch, num_queries, d = query_parts[0].shape
        query = torch.cat([self._heads(part) for part in query_parts], -1)
        key = torch.cat([self._heads(part) for part in key_parts], -1)
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        attended = F.scaled_dot_product_attention(query, key, self._heads(value), attn_mask=mask,
                                                  dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, num_queries, d))


class DABDecoderLayer(nn.Module):
    """Conditional self-attention, conditional cross-attention, FFN (post-norm).

    ``first``: the first layer also adds the projected positional query to the content query and
    the key position to the key content (``ca_qpos_proj``), as released.
    """

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_heads: int, first: bool,
                 activation: str = "relu") -> None:
        super().__init__()
        linear = lambda: nn.Linear(d_model, d_model)  # noqa: E731
        self.sa_qcontent_proj, self.sa_qpos_proj = linear(), linear()
        self.sa_kcontent_proj, self.sa_kpos_proj, self.sa_v_proj = linear(), linear(), linear()
        self.self_attn = ProjectedAttention(d_model, n_heads, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ca_qcontent_proj = linear()
        self.ca_qpos_proj = linear() if first else None
        self.ca_kcontent_proj, self.ca_kpos_proj, self.ca_v_proj = linear(), linear(), linear()
        self.ca_qpos_sine_proj = linear()
        self.cross_attn = ProjectedAttention(d_model, n_heads, dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.activation = activation_layer(activation)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, query_sine: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, memory_padding_mask: torch.Tensor) -> torch.Tensor:
        """tgt, query_pos, query_sine [B, Q, d]; memory, memory_pos [B, S, d]; mask [B, S] -> [B, Q, d]."""
        q = self.sa_qcontent_proj(tgt) + self.sa_qpos_proj(query_pos)
        k = self.sa_kcontent_proj(tgt) + self.sa_kpos_proj(query_pos)
        mixed = self.self_attn([q], [k], self.sa_v_proj(tgt))
        tgt = self.norm1(tgt + self.dropout1(mixed))

        q_content, k_content = self.ca_qcontent_proj(tgt), self.ca_kcontent_proj(memory)
        k_pos = self.ca_kpos_proj(memory_pos)
        if self.ca_qpos_proj is not None:
            q_content = q_content + self.ca_qpos_proj(query_pos)
            k_content = k_content + k_pos
        attended = self.cross_attn([q_content, self.ca_qpos_sine_proj(query_sine)], [k_content, k_pos],
                                   self.ca_v_proj(memory), memory_padding_mask)
        tgt = self.norm2(tgt + self.dropout2(attended))
        hidden = self.linear2(self.dropout3(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(hidden))


class DABDecoder(nn.Module):
    """Decoder layers that read and refine 4-D anchor boxes (see the module docstring).

    ``ref_point_head`` (2d -> d) makes the positional query from PE(A); ``query_scale`` (d -> d)
    rescales PE(x, y) from the content; ``ref_anchor_head`` (d -> 2) predicts (w_ref, h_ref) when
    ``modulate_hw_attn``; ``norm`` normalises every layer's output before the heads.
    """

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_heads: int, num_layers: int,
                 modulate_hw_attn: bool = True, look_forward_twice: bool = True, activation: str = "relu") -> None:
        super().__init__()
        self.d_model = d_model
        self.look_forward_twice = look_forward_twice
        self.layers = nn.ModuleList(DABDecoderLayer(d_model, d_ffn, dropout, n_heads, first=(i == 0),
                                                    activation=activation) for i in range(num_layers))
        self.query_scale = MLP(d_model, d_model, d_model, 2)
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.ref_anchor_head = MLP(d_model, d_model, 2, 2) if modulate_hw_attn else None
        self.norm = nn.LayerNorm(d_model)

    def positional_queries(self, anchors: torch.Tensor, content: torch.Tensor, first: bool
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """anchors [B, Q, 4] cxcywh, content [B, Q, d] -> (query_pos [B, Q, d], query_sine [B, Q, d])."""
        half = self.d_model // 2
        sine = box_sine_embedding(anchors, half)  # (B, Q, 2d): x, y, w, h groups
        query_pos = self.ref_point_head(sine)
        query_sine = sine[..., :self.d_model]  # x, y groups
        if not first:
            query_sine = query_sine * self.query_scale(content)
        if self.ref_anchor_head is not None:
            reference_wh = self.ref_anchor_head(content).sigmoid()  # (B, Q, 2)
            ratio = reference_wh / anchors[..., 2:].clamp(min=1e-6)  # (w_ref / w, h_ref / h)
            query_sine = query_sine * torch.repeat_interleave(ratio, half, dim=-1)
        return query_pos, query_sine

    def forward(self, tgt: torch.Tensor, anchors: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                memory_padding_mask: torch.Tensor, bbox_embed: nn.Module
                ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            tgt: [B, Q, d] content queries; anchors: [B, Q, 4] normalised cxcywh (sigmoid of the learned anchors).
            memory, memory_pos: [B, S, d]; memory_padding_mask: [B, S] bool.
            bbox_embed: the box head (deltas d -> 4), shared by all layers.
        Returns:
            normalised hidden states, boxes and input anchors per layer (each [B, Q, d] / [B, Q, 4] / [B, Q, 4]).
        """
        hidden_states, boxes, layer_anchors = [], [], []
        output, undetached = tgt, anchors  # the first layer's anchors are the learned ones themselves
        for index, layer in enumerate(self.layers):
            query_pos, query_sine = self.positional_queries(anchors, output, first=(index == 0))
            output = layer(output, query_pos, query_sine, memory, memory_pos, memory_padding_mask)
            hidden = self.norm(output)
            reference = undetached if self.look_forward_twice else anchors
            hidden_states.append(hidden)
            boxes.append(refine_anchors(reference, bbox_embed(hidden)))
            layer_anchors.append(anchors)
            undetached = refine_anchors(anchors, bbox_embed(output))  # the next anchor, from the un-normalised output
            anchors = undetached.detach()
        return hidden_states, boxes, layer_anchors


class DABDETR(nn.Module):
    """forward(images [B, 3, H, W], mask [B, H, W] bool True at padding) -> output dict.

    Output dict: ``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4] cxcywh, ``pred_iou`` [B, Q, 1]
    (only with ``iou_branch``), ``aux_outputs`` (decoder layers 0..L-2, same keys),
    ``proposal_boxes`` [B, Q, 4] (the detached learned anchors fed to the first layer). No
    ``enc_outputs``: this base has no encoder proposals.
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        d = config.hidden_dim
        self.config = config
        self.num_queries = config.num_queries
        self.backbone = backbone
        self.position_encoding = SinePositionEncoding(d // 2, temperature=FEATURE_TEMPERATURE)
        self.input_proj = nn.Conv2d(backbone.num_channels[-1], d, kernel_size=1)
        self.refpoint_embed = nn.Embedding(config.num_queries, 4)  # anchors as logits (inverse sigmoid)
        activation = config.transformer_activation
        self.encoder = VanillaEncoder(VanillaEncoderLayer(d, config.dim_feedforward, config.dropout, config.nheads,
                                                          activation), config.enc_layers, pos_scale=MLP(d, d, d, 2))
        self.decoder = DABDecoder(d, config.dim_feedforward, config.dropout, config.nheads, config.dec_layers,
                                  modulate_hw_attn=config.dab_modulate_hw_attn,
                                  look_forward_twice=config.look_forward_twice, activation=activation)
        self.class_embed = nn.Linear(d, config.num_classes)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.iou_embed = (nn.ModuleList(nn.Linear(d, 1) for _ in range(config.dec_layers))
                          if config.iou_branch else None)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        xavier_init_matrices(self.encoder, self.decoder)
        nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.constant_(self.bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(self.bbox_embed.layers[-1].bias, 0)
        if self.config.dab_random_refpoints_xy:
            with torch.no_grad():  # centres uniform over the image, learned like the sizes
                centres = self.refpoint_embed.weight[:, :2]
                centres.copy_(inverse_sigmoid(torch.rand_like(centres)))

    def anchors(self, batch: int) -> torch.Tensor:
        """[batch, Q, 4] the learned anchor boxes, normalised cxcywh."""
        return self.refpoint_embed.weight.sigmoid()[None].expand(batch, -1, -1)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        mask = check_images(images, mask)
        source, feature_mask, position = single_scale_features(
            self.backbone, self.input_proj, self.position_encoding, images, mask)
        src_flat, pos_flat, mask_flat = flatten_map(source), flatten_map(position), feature_mask.flatten(1)
        memory = self.encoder(src_flat, pos_flat, mask_flat)

        batch, d = images.shape[0], self.config.hidden_dim
        anchors = self.anchors(batch)
        tgt = memory.new_zeros(batch, self.num_queries, d)
        hidden_states, boxes, _ = self.decoder(tgt, anchors, memory, pos_flat, mask_flat, self.bbox_embed)
        per_layer = []
        for layer, (hidden, box) in enumerate(zip(hidden_states, boxes)):
            output = {"pred_logits": self.class_embed(hidden), "pred_boxes": box}
            if self.iou_embed is not None:
                output["pred_iou"] = self.iou_embed[layer](hidden)
            per_layer.append(output)
        result = dict(per_layer[-1])
        result["aux_outputs"] = per_layer[:-1]
        result["proposal_boxes"] = anchors.detach()
        return result
