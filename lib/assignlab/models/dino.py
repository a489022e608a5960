"""DINO (Align-DETR's base): contrastive denoising, mixed query selection, look-forward-twice.

Shared with the two-stage detector: backbone, input projections, deformable encoder, the first
stage (one proposal per token relative to its anchor; ``enc_outputs`` over all tokens, so every
assigner applies to it) and the per-layer heads (``class_embed``/``bbox_embed``, one per decoder
layer plus one for the encoder proposals, as in the Align-DETR code).

DINO's own parts:

- mixed query selection: the decoder's reference boxes are the selected encoder proposals
  (detached), its content queries are learned (``tgt_embed``, one per query, xavier-initialised
  as released; ``model.content_query_init``);
- the decoder computes each layer's positional query from its current reference box
  (``ref_point_head`` on the box's sine embedding);
- look-forward-twice: layer l's box is refined from layer l-1's box *before* the detach, so the
  box loss of layer l also trains layer l-1 (``look_forward_twice=False``: plain refinement);
- contrastive denoising in training (``models/denoising.py``), outputs under ``dn_outputs``.

The encoder loss covers the ``num_queries`` selected proposals only (``model.enc_loss_selected_only``,
set by the DINO presets; ``enc_outputs`` is then [B, Q, ...] in the order of ``proposal_indices``),
as in the released DINO and Align-DETR code; the two-stage base supervises every token.

With ``model.dino_decoder_norm`` (the DINO presets), the heads read each layer's output through one
more LayerNorm and the next layer's reference comes from the output before it, as released.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from assignlab.config import ModelConfig
from assignlab.models.decoder import inverse_sigmoid
from assignlab.models.denoising import build_denoising_queries
from assignlab.models.detector import MLP, TwoStageDeformableDETR, check_images, xavier_init_matrices
from assignlab.models.position_encoding import box_sine_embedding


# The released code draws the content queries N(0, 1) and then re-initialises every matrix of the
# transformer with xavier, so they start xavier-uniform (about a tenth of N(0, 1)'s scale at d = 256);
# the denoising label embedding lives outside the transformer and stays N(0, 1).
CONTENT_QUERY_INITS = {"xavier": nn.init.xavier_uniform_, "normal": nn.init.normal_}


class DINODecoder(nn.Module):
    """Deformable decoder layers whose positional queries follow the reference boxes.

    Layer l: query_pos = ref_point_head(sine(ref_l)); h_l = layer(h_{l-1}, query_pos, ref_l);
    r_l = sigmoid(bbox_embed[l](h_l) + inverse_sigmoid(ref_l)) and ref_{l+1} = r_l detached. The
    heads read n_l = norm(h_l) (``final_norm``, as released; else n_l = h_l), and the supervised box
    is box_l = sigmoid(bbox_embed[l](n_l) + inverse_sigmoid(base_l)) with base_l = ref_l (plain)
    or r_{l-1} undetached (look-forward-twice: the box loss of layer l also trains layer l-1).
    """

    def __init__(self, layers: nn.ModuleList, d_model: int, look_forward_twice: bool = True,
                 final_norm: bool = False) -> None:
        super().__init__()
        self.layers = layers
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.look_forward_twice = look_forward_twice
        self.norm = nn.LayerNorm(d_model) if final_norm else None
        xavier_init_matrices(self.ref_point_head)

    def forward(self, tgt: torch.Tensor, reference_points: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, valid_ratios: torch.Tensor,
                memory_padding_mask: torch.Tensor, bbox_embed: nn.ModuleList,
                self_attn_mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """
        Args:
            tgt: [B, Q, d] content queries; reference_points: [B, Q, 4] cxcywh (detached).
            memory: [B, S, d]; valid_ratios: [B, L, 2]; memory_padding_mask: [B, S].
            bbox_embed: one box head per decoder layer (extra heads are ignored).
            self_attn_mask: optional [Q, Q] bool, True where query i may not attend to query j.
        Returns:
            the heads' inputs per layer ([B, Q, d] each) and boxes per layer ([B, Q, 4] cxcywh each).
        """
        d = tgt.shape[-1]
        scale = torch.cat([valid_ratios, valid_ratios], -1)[:, None]  # (B, 1, L, 4)
        hidden_states, boxes = [], []
        output, previous = tgt, reference_points
        for index, layer in enumerate(self.layers):
            reference_input = reference_points[:, :, None] * scale  # (B, Q, L, 4)
            query_pos = self.ref_point_head(box_sine_embedding(reference_input[:, :, 0], d // 2))
            output = layer(output, query_pos, reference_input, memory, spatial_shapes, level_start_index,
                           memory_padding_mask, self_attn_mask)
            delta = bbox_embed[index](output)
            refined = (delta + inverse_sigmoid(reference_points)).sigmoid()
            hidden = output if self.norm is None else self.norm(output)
            head_delta = delta if self.norm is None else bbox_embed[index](hidden)
            if self.look_forward_twice:
                box = (head_delta + inverse_sigmoid(previous)).sigmoid()
            else:
                box = refined if self.norm is None else (head_delta + inverse_sigmoid(reference_points)).sigmoid()
            hidden_states.append(hidden)
            boxes.append(box)
            previous, reference_points = refined, refined.detach()
        return hidden_states, boxes


class DINO(TwoStageDeformableDETR):
    """forward(images [B, 3, H, W], mask [B, H, W] | None, targets | None) -> output dict.

    The output dict is the two-stage detector's (``pred_logits`` [B, Q, C], ``pred_boxes``,
    ``aux_outputs``, ``enc_outputs``, ``proposal_boxes``, ``proposal_indices``), plus in training
    with targets ``dn_outputs``: {``pred_logits`` [B, P, C], ``pred_boxes`` [B, P, 4] (last layer),
    ``aux_outputs`` (layers 0..L-2), ``pad_size`` P, ``num_groups`` G, ``group_size``,
    ``pred_idx``/``gt_idx`` (per image [n_b * G] long: positive denoising query <-> object)}.
    """

    takes_targets = True  # the training loop passes the targets to forward (denoising queries)

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__(config, backbone)
        d = config.hidden_dim
        # DINO makes its queries without the two-stage detector's pos/pix projections
        del self.pos_trans, self.pos_trans_norm, self.pix_trans, self.pix_trans_norm
        # the decoder layers keep the initialisation the two-stage detector gave them
        self.decoder = DINODecoder(self.decoder.layers, d, config.look_forward_twice, config.dino_decoder_norm)
        self.tgt_embed = nn.Embedding(config.num_queries, d)
        self.label_enc = nn.Embedding(config.num_classes, d)
        content_init = CONTENT_QUERY_INITS.get(config.content_query_init)
        if content_init is None:
            raise ValueError(f"model.content_query_init must be one of {sorted(CONTENT_QUERY_INITS)}, "
                             f"got {config.content_query_init!r}")
        content_init(self.tgt_embed.weight)
        nn.init.normal_(self.label_enc.weight)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None,
                targets: Sequence[Mapping[str, torch.Tensor]] | None = None) -> dict:
        """targets: per image {"labels" [n], "boxes" [n, 4] normalised cxcywh}; used in training only."""
        mask = check_images(images, mask)
        sources, masks, positions = self._feature_levels(images, mask)
        return self.forward_transformer(sources, masks, positions, targets)

    def forward_transformer(self, sources: list[torch.Tensor], masks: list[torch.Tensor],
                            positions: list[torch.Tensor],
                            targets: Sequence[Mapping[str, torch.Tensor]] | None = None) -> dict:
        stage = self.encoder_stage(sources, masks, positions)
        indices = self.select_proposals(stage)
        batch = indices.shape[0]
        proposals = torch.gather(stage.enc_coord_unact, 1, indices[..., None].expand(-1, -1, 4)).detach().sigmoid()
        tgt = self.tgt_embed.weight[None].expand(batch, -1, -1)
        reference_points, self_attn_mask, denoising = proposals, None, None
        if self.training and targets is not None:
            cfg = self.config
            denoising = build_denoising_queries(targets, cfg.dn_number, cfg.label_noise_ratio, cfg.box_noise_scale,
                                                cfg.num_classes, self.label_enc, self.num_queries)
        if denoising is not None:
            tgt = torch.cat([denoising.content, tgt], 1)
            reference_points = torch.cat([denoising.boxes, proposals], 1)
            self_attn_mask = denoising.self_attn_mask

        hidden_states, boxes = self.decoder(tgt, reference_points, stage.memory, stage.spatial_shapes,
                                            stage.level_start_index, stage.valid_ratios, stage.mask_flat,
                                            self.bbox_embed, self_attn_mask)
        per_layer = self.layer_outputs(hidden_states, boxes)
        if denoising is not None:
            pad = denoising.pad_size
            dn_layers = [{key: value[:, :pad] for key, value in layer.items()} for layer in per_layer]
            per_layer = [{key: value[:, pad:] for key, value in layer.items()} for layer in per_layer]
        result = dict(per_layer[-1])
        result["aux_outputs"] = per_layer[:-1]
        result["enc_outputs"] = stage.enc_outputs(indices if self.config.enc_loss_selected_only else None)
        result["proposal_boxes"] = proposals
        result["proposal_indices"] = indices
        if denoising is not None:
            result["dn_outputs"] = dict(dn_layers[-1], aux_outputs=dn_layers[:-1], pad_size=denoising.pad_size,
                                        num_groups=denoising.num_groups, group_size=denoising.group_size,
                                        pred_idx=denoising.pred_idx, gt_idx=denoising.gt_idx)
        return result
