"""DETR-DC5 in DETA's two-stage form (DETA Section 5.1, Table 1 "DETR" column).

The two-stage detector of :mod:`assignlab.models.detector` with deformable attention replaced by
vanilla multi-head attention, on one feature map: the dilated C5 of the backbone (stride 16,
``model.dilated_c5``). Every encoder token predicts a proposal relative to its fixed anchor
(w = h = ``anchor_scale``, the single level is level 0), the selected proposals become the
queries (position from the box, content from the memory), and the decoder refines the boxes layer
by layer. The output dict is the two-stage contract, so every assigner and loss applies; DETA
trains this base with bipartite matching on the encoder proposals and IoU assignment on the
decoder (``assign.method="deta_decoder_only"``).

Deviations (not stated by the paper): the input projection keeps the two-stage base's
Conv1x1 + GroupNorm, and the decoder has no final LayerNorm (DETR's; every post-norm layer already
ends in one), so the bases differ only in attention and features.

At the cpu profile a 160 px image gives a 10 x 10 map, so all 100 tokens become the 100 queries and
the selection has no effect; the paper selects 300 of several thousand tokens.
"""
from __future__ import annotations

import torch
from torch import nn

from assignlab.config import ModelConfig
from assignlab.models.detector import TwoStageProposals, check_images, input_projection, token_anchors
from assignlab.models.position_encoding import SinePositionEncoding
from assignlab.models.query_selection import select_queries
from assignlab.models.transformer import (VanillaDecoder, VanillaDecoderLayer, VanillaEncoder,
                                          VanillaEncoderLayer, flatten_map, single_scale_features)


class TwoStageDETRDC5(TwoStageProposals):
    """forward(images [B, 3, H, W], mask [B, H, W] bool True at padding) -> output dict.

    Output dict (the two-stage contract): ``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4] cxcywh,
    ``pred_iou`` [B, Q, 1] (only with ``iou_branch``), ``aux_outputs`` (decoder layers 0..L-2),
    ``enc_outputs`` {``pred_logits`` [B, S, C], ``pred_boxes`` [B, S, 4], ``anchors`` [B, S, 4],
    ``valid`` [B, S]} with S = H/16 * W/16 tokens, ``proposal_boxes`` [B, Q, 4] (detached),
    ``proposal_indices`` [B, Q].
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        d = config.hidden_dim
        self.config = config
        self.num_queries = config.num_queries
        self.backbone = backbone
        self.position_encoding = SinePositionEncoding(d // 2)
        self.input_proj = input_projection(backbone.num_channels[-1], d)
        self.encoder = VanillaEncoder(
            VanillaEncoderLayer(d, config.dim_feedforward, config.dropout, config.nheads), config.enc_layers)
        self.decoder = VanillaDecoder(
            VanillaDecoderLayer(d, config.dim_feedforward, config.dropout, config.nheads), config.dec_layers)
        self.build_two_stage_layers(config)
        self.reset_two_stage_parameters([self.input_proj])

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        mask = check_images(images, mask)
        source, feature_mask, position = single_scale_features(
            self.backbone, self.input_proj, self.position_encoding, images, mask)
        norm = self.input_proj[1]
        if source.shape[1] // norm.num_groups * source.shape[2] * source.shape[3] < 2:
            raise ValueError(f"images of size {tuple(images.shape[2:])} are too small: the feature map is "
                             f"{tuple(source.shape[2:])}, too few values for GroupNorm")
        return self.forward_transformer(source, feature_mask, position)

    def forward_transformer(self, source: torch.Tensor, feature_mask: torch.Tensor, position: torch.Tensor) -> dict:
        """source, position [B, d, H, W]; feature_mask [B, H, W] (True at padding) -> output dict."""
        src_flat, pos_flat, mask_flat = flatten_map(source), flatten_map(position), feature_mask.flatten(1)
        memory = self.encoder(src_flat, pos_flat, mask_flat)

        # first stage: one proposal per token, relative to its fixed anchor (a single level)
        spatial_shapes = torch.as_tensor([source.shape[-2:]], dtype=torch.long, device=source.device)
        anchors, level_ids = token_anchors(spatial_shapes, mask_flat, self.config.anchor_scale)
        valid, output_memory, enc_logits, enc_coord_unact = self.first_stage(memory, anchors, mask_flat)
        enc_boxes = enc_coord_unact.sigmoid()
        indices = select_queries(
            enc_logits[..., 0], enc_boxes, level_ids, valid, self.num_queries, 1,
            method=self.config.query_selection, topk_per_level=self.config.proposal_topk_per_level,
            iou_threshold=self.config.query_nms_iou, valid_only=self.config.select_valid_proposals_only)

        # second stage: queries from the selected proposals
        reference_points, query_pos, tgt = self.proposal_queries(enc_coord_unact, output_memory, indices)

        hidden_states, boxes = self.decoder(tgt, reference_points, memory, pos_flat, query_pos, mask_flat,
                                            self.bbox_embed)
        per_layer = self.layer_outputs(hidden_states, boxes)
        result = dict(per_layer[-1])
        result["aux_outputs"] = per_layer[:-1]
        result["enc_outputs"] = {"pred_logits": enc_logits, "pred_boxes": enc_boxes,
                                 "anchors": anchors, "valid": valid}
        result["proposal_boxes"] = reference_points
        result["proposal_indices"] = indices
        return result
