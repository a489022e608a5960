"""Two-stage Deformable-DETR with iterative box refinement: the DETA architecture.

Module names mirror Deformable-DETR/DETA (``input_proj``, ``level_embed``, ``encoder.layers``,
``decoder.layers``, ``enc_output``/``enc_output_norm``, ``pos_trans``/``pos_trans_norm``,
``pix_trans``/``pix_trans_norm``, ``class_embed``/``bbox_embed`` with one head per decoder layer plus
one for the encoder proposals), so released checkpoints map onto it by renaming keys.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from assignlab.config import ModelConfig
from assignlab.models.decoder import DeformableDecoder, DeformableDecoderLayer
from assignlab.models.encoder import DeformableEncoder, DeformableEncoderLayer
from assignlab.models.hybrid import one2many_attention_mask, select_one2many_queries, split_query_groups
from assignlab.models.ms_deform_attn import MSDeformAttn
from assignlab.models.position_encoding import SinePositionEncoding, proposal_position_embedding
from assignlab.models.query_selection import select_queries


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (the box head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def token_anchors(spatial_shapes: torch.Tensor, padding_mask: torch.Tensor,
                  anchor_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed anchors of the encoder tokens and each token's level.

    A token (i, j) of level l gets the box centred at ((j + 0.5) / valid_W_l, (i + 0.5) / valid_H_l)
    with w = h = anchor_scale * 2**l, normalised to the unpadded image.
    spatial_shapes [L, 2]; padding_mask [B, S] -> anchors [B, S, 4] cxcywh, level_ids [S] long.
    """
    batch = padding_mask.shape[0]
    anchors, level_ids, start = [], [], 0
    for level, (height, width) in enumerate(spatial_shapes.tolist()):
        level_mask = padding_mask[:, start:start + height * width].view(batch, height, width)
        valid_h = (~level_mask[:, :, 0]).sum(1).float()
        valid_w = (~level_mask[:, 0, :]).sum(1).float()
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=padding_mask.device),
                                torch.arange(width, dtype=torch.float32, device=padding_mask.device),
                                indexing="ij")
        centres = torch.stack([xs, ys], -1)[None] + 0.5  # (1, H, W, 2)
        centres = centres / torch.stack([valid_w, valid_h], -1).view(batch, 1, 1, 2)
        sizes = torch.full_like(centres, anchor_scale * 2.0 ** level)
        anchors.append(torch.cat([centres, sizes], -1).view(batch, -1, 4))
        level_ids.append(torch.full((height * width,), level, dtype=torch.long, device=padding_mask.device))
        start += height * width
    return torch.cat(anchors, 1), torch.cat(level_ids)


def valid_ratios_of(mask: torch.Tensor) -> torch.Tensor:
    """mask [B, H, W] -> [B, 2] (valid width / W, valid height / H), read on the first row/column."""
    _, height, width = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).float()
    valid_w = (~mask[:, 0, :]).sum(1).float()
    return torch.stack([valid_w / width, valid_h / height], -1)


def prediction_heads(d: int, config) -> tuple[nn.ModuleList, nn.ModuleList, nn.ModuleList | None]:
    """Class heads (d -> num_classes) and box heads (MLP d -> 4) for decoder layers 0..L-1 plus one
    (index L) for the encoder proposals, all starting from one initialisation, and the optional
    IoU-branch heads (one per decoder layer)."""
    class_head = nn.Linear(d, config.num_classes)
    box_head = MLP(d, d, 4, 3)
    class_embed = nn.ModuleList(copy.deepcopy(class_head) for _ in range(config.dec_layers + 1))
    bbox_embed = nn.ModuleList(copy.deepcopy(box_head) for _ in range(config.dec_layers + 1))
    iou_embed = nn.ModuleList(nn.Linear(d, 1) for _ in range(config.dec_layers)) if config.iou_branch else None
    return class_embed, bbox_embed, iou_embed


def reset_prediction_heads(class_embed: nn.ModuleList, bbox_embed: nn.ModuleList) -> None:
    """Class biases at an initial foreground probability of 0.01; box deltas start at zero."""
    prior_bias = -math.log((1 - 0.01) / 0.01)
    for class_head, box_head in zip(class_embed, bbox_embed):
        nn.init.constant_(class_head.bias, prior_bias)
        nn.init.constant_(box_head.layers[-1].weight, 0)
        nn.init.constant_(box_head.layers[-1].bias, 0)


def input_projection(in_channels: int, d: int, kernel_size: int = 1, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv2d (in_channels -> d) + GroupNorm(32, d): a feature map's projection to the transformer width."""
    return nn.Sequential(nn.Conv2d(in_channels, d, kernel_size, stride=stride, padding=padding), nn.GroupNorm(32, d))


def xavier_init_matrices(*modules: nn.Module) -> None:
    """Xavier-uniform initialisation of every weight matrix (parameters with more than one
    dimension) of ``modules``, in the order given (the order fixes what a seed produces)."""
    for module in modules:
        for parameter in module.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)


def check_images(images: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Validate a batch: images [B, 3, H, W] float, mask [B, H, W] bool (True at padding) or None.
    Returns the mask (all False when None)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a [B, 3, H, W] tensor, got {shape}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (normalised), got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if mask is None:
        return torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.bool, device=images.device)
    if mask.dtype != torch.bool or mask.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"mask must be a bool [B, H, W] tensor matching images {tuple(images.shape)}, "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    return mask


class TwoStageProposals(nn.Module):
    """The two-stage pieces every proposal-based base shares (Deformable-DETR's two-stage form, as
    DETA trains it): one proposal per encoder token relative to its anchor, decoder queries made
    from the selected proposals (position from the box, content from the memory), and the class /
    box / IoU heads of every decoder layer (index ``dec_layers`` scores the proposals).

    Layer names (``enc_output``, ``pos_trans``, ``pix_trans`` and their norms, ``class_embed``,
    ``bbox_embed``) are the released code's: checkpoint import relies on them.
    """

    config: ModelConfig

    def build_two_stage_layers(self, config: ModelConfig) -> None:
        d = config.hidden_dim
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.pos_trans = nn.Linear(2 * d, 2 * d)
        self.pos_trans_norm = nn.LayerNorm(2 * d)
        self.pix_trans = nn.Linear(d, d)
        self.pix_trans_norm = nn.LayerNorm(d)
        self.class_embed, self.bbox_embed, self.iou_embed = prediction_heads(d, config)

    def reset_two_stage_parameters(self, input_projections: Iterable[nn.Sequential]) -> None:
        """Deformable-DETR's initialisation, in its order (what a seed gives depends on it; the
        backbone keeps its own): xavier-uniform on every weight matrix of the encoder, the decoder
        and the proposal projections (``enc_output``, ``pos_trans``, ``pix_trans``); the base's own
        parameters (:meth:`reset_base_parameters`); the input projections (xavier-uniform convolution
        weights, zero biases); the prediction heads (:func:`reset_prediction_heads`)."""
        xavier_init_matrices(self.encoder, self.decoder, self.enc_output, self.pos_trans, self.pix_trans)
        self.reset_base_parameters()
        for projection in input_projections:
            nn.init.xavier_uniform_(projection[0].weight, gain=1)
            nn.init.constant_(projection[0].bias, 0)
        reset_prediction_heads(self.class_embed, self.bbox_embed)

    def reset_base_parameters(self) -> None:
        """Parameters a base initialises between the shared matrices and the input projections (none)."""

    def first_stage(self, memory: torch.Tensor, anchors: torch.Tensor, mask_flat: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory [B, S, d], anchors [B, S, 4] cxcywh, mask_flat [B, S] (True at padding) ->
        valid [B, S] (not padding, anchor inside the image), output_memory [B, S, d],
        enc_logits [B, S, C], enc_coord_unact [B, S, 4] (inverse sigmoid of the proposal, cxcywh)."""
        valid = ((anchors > 0.01) & (anchors < 0.99)).all(-1) & ~mask_flat
        anchors_unact = torch.log(anchors / (1 - anchors)).masked_fill(~valid[..., None], float("inf"))
        output_memory = self.enc_output_norm(self.enc_output(memory.masked_fill(~valid[..., None], 0.0)))
        head = self.config.dec_layers
        enc_logits = self.class_embed[head](output_memory)
        enc_coord_unact = self.bbox_embed[head](output_memory) + anchors_unact
        return valid, output_memory, enc_logits, enc_coord_unact

    def proposal_queries(self, enc_coord_unact: torch.Tensor, output_memory: torch.Tensor, indices: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Second stage: decoder queries from the proposals at token ``indices`` [B, Q].

        Returns reference_points [B, Q, 4] (the detached proposals, cxcywh), query_pos [B, Q, d]
        and tgt [B, Q, d] (content: the box embedding's second half plus the projected memory)."""
        d = self.config.hidden_dim
        gather = indices[..., None]
        proposals_unact = torch.gather(enc_coord_unact, 1, gather.expand(-1, -1, 4)).detach()
        query_pos, tgt = self.pos_trans_norm(
            self.pos_trans(proposal_position_embedding(proposals_unact, d // 2))).split(d, dim=2)
        selected_memory = torch.gather(output_memory, 1, gather.expand(-1, -1, d)).detach()
        tgt = tgt + self.pix_trans_norm(self.pix_trans(selected_memory))
        return proposals_unact.sigmoid(), query_pos, tgt

    def layer_outputs(self, hidden_states: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[dict]:
        """Per decoder layer {"pred_logits", "pred_boxes"[, "pred_iou"]} from its hidden states and boxes."""
        per_layer = []
        for layer, (hidden, box) in enumerate(zip(hidden_states, boxes)):
            output = {"pred_logits": self.class_embed[layer](hidden), "pred_boxes": box}
            if self.iou_embed is not None:
                output["pred_iou"] = self.iou_embed[layer](hidden)
            per_layer.append(output)
        return per_layer


class TwoStageDeformableDETR(TwoStageProposals):
    """forward(images [B, 3, H, W], mask [B, H, W] bool True at padding) -> output dict of the contract.

    Output dict: ``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4] cxcywh, ``pred_iou`` [B, Q, 1]
    (only with ``iou_branch``), ``aux_outputs`` (decoder layers 0..L-2, same keys), ``enc_outputs``
    {``pred_logits`` [B, S, C], ``pred_boxes`` [B, S, 4], ``anchors`` [B, S, 4], ``valid`` [B, S]},
    ``proposal_boxes`` [B, Q, 4] (detached selected proposals), ``proposal_indices`` [B, Q] (their tokens);
    in training with hybrid matching (``num_queries_one2many`` > 0) also ``one2many_outputs``: the
    one-to-many group's last layer (same keys, [B, Q2, ...]), its ``aux_outputs`` and ``proposal_boxes``.
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        d = config.hidden_dim
        self.config = config
        self.num_queries = config.num_queries
        self.num_feature_levels = config.num_feature_levels
        self.num_backbone_levels = min(config.num_feature_levels, len(backbone.strides))
        self.backbone = backbone
        self.position_encoding = SinePositionEncoding(d // 2)

        in_channels = list(backbone.num_channels)[-self.num_backbone_levels:]
        projections = [input_projection(c, d) for c in in_channels]
        extra_in = in_channels[-1]
        for _ in range(config.num_feature_levels - self.num_backbone_levels):
            projections.append(input_projection(extra_in, d, kernel_size=3, stride=2, padding=1))
            extra_in = d
        self.input_proj = nn.ModuleList(projections)
        self.level_embed = nn.Parameter(torch.empty(config.num_feature_levels, d))

        self.encoder = DeformableEncoder(
            DeformableEncoderLayer(d, config.dim_feedforward, config.dropout, config.num_feature_levels,
                                   config.nheads, config.enc_n_points, config.msda_impl),
            config.enc_layers)
        self.decoder = DeformableDecoder(
            DeformableDecoderLayer(d, config.dim_feedforward, config.dropout, config.num_feature_levels,
                                   config.nheads, config.dec_n_points, self_attn=config.dec_self_attn,
                                   cross_attn=config.dec_cross_attn, msda_impl=config.msda_impl),
            config.dec_layers)
        self.build_two_stage_layers(config)
        self.reset_two_stage_parameters(self.input_proj)

    def reset_base_parameters(self) -> None:
        """The deformable attention's own initialisation, then the level embeddings."""
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    # ----------------------------------------------------------------------------------- inputs
    def _feature_levels(self, images: torch.Tensor, mask: torch.Tensor):
        """Projected feature maps [B, d, H_l, W_l], their padding masks and position embeddings."""
        features = self.backbone(images)[-self.num_backbone_levels:]
        sources = []
        for level in range(self.num_feature_levels):
            if level < self.num_backbone_levels:
                level_input = features[level]
            else:  # extra levels: stride-2 convolutions on C5, then on the previous extra level
                level_input = features[-1] if level == self.num_backbone_levels else sources[-1]
            conv, norm = self.input_proj[level]
            projected = conv(level_input)
            per_group = projected.shape[1] // norm.num_groups * projected.shape[2] * projected.shape[3]
            if per_group < 2:
                raise ValueError(f"images of size {tuple(images.shape[2:])} are too small: feature level "
                                 f"{level} is {tuple(projected.shape[2:])}, too few values for GroupNorm")
            sources.append(norm(projected))
        masks = [F.interpolate(mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0] for src in sources]
        for level, level_mask in enumerate(masks):
            empty = (valid_ratios_of(level_mask) == 0).any(1).nonzero()[:, 0]
            if empty.numel():
                raise ValueError(f"image {int(empty[0])} has no unpadded pixel at feature level {level} "
                                 f"(map {tuple(level_mask.shape[1:])}): its valid region is too small")
        positions = [self.position_encoding(level_mask).to(src.dtype) for src, level_mask in zip(sources, masks)]
        return sources, masks, positions

    # ---------------------------------------------------------------------------------- forward
    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        mask = check_images(images, mask)
        sources, masks, positions = self._feature_levels(images, mask)
        return self.forward_transformer(sources, masks, positions)

    def forward_transformer(self, sources: list[torch.Tensor], masks: list[torch.Tensor],
                            positions: list[torch.Tensor]) -> dict:
        """Encoder, query selection, decoder and heads on projected features.

        sources: per level [B, d, H_l, W_l]; masks: per level [B, H_l, W_l] bool (True at padding);
        positions: per level [B, d, H_l, W_l]. Returns the output dict of ``forward``. In training
        with ``num_queries_one2many`` > 0 (hybrid matching) it also holds ``one2many_outputs``.
        """
        stage = self.encoder_stage(sources, masks, positions)
        indices = self.select_proposals(stage)
        one2many = self.training and self.config.num_queries_one2many > 0
        self_attn_mask = None
        if one2many:
            extra = select_one2many_queries(stage.proposal_scores(self.config.enc_class_agnostic), stage.valid, indices,
                                            self.config.num_queries_one2many)
            all_indices = torch.cat([indices, extra], 1)
            self_attn_mask = one2many_attention_mask(self.num_queries, extra.shape[1], indices.device)
        else:
            all_indices = indices

        # second stage: queries from the selected proposals (position from the box, content from memory)
        reference_points, query_pos, tgt = self.proposal_queries(stage.enc_coord_unact, stage.output_memory,
                                                                 all_indices)

        hidden_states, boxes = self.decoder(tgt, reference_points, stage.memory, stage.spatial_shapes,
                                            stage.level_start_index, stage.valid_ratios, query_pos,
                                            stage.mask_flat, self.bbox_embed, self_attn_mask)
        per_layer = self.layer_outputs(hidden_states, boxes)
        if one2many:
            per_layer, per_layer_one2many = split_query_groups(per_layer, self.num_queries)
        result = dict(per_layer[-1])
        result["aux_outputs"] = per_layer[:-1]
        result["enc_outputs"] = stage.enc_outputs(indices if self.config.enc_loss_selected_only else None)
        result["proposal_boxes"] = reference_points[:, :self.num_queries]
        result["proposal_indices"] = indices
        if one2many:
            result["one2many_outputs"] = dict(per_layer_one2many[-1], aux_outputs=per_layer_one2many[:-1],
                                              proposal_boxes=reference_points[:, self.num_queries:])
        return result

    # ------------------------------------------------------------------- pieces shared by the bases
    def encoder_stage(self, sources: list[torch.Tensor], masks: list[torch.Tensor],
                      positions: list[torch.Tensor]) -> "EncoderStage":
        """Flatten the levels, run the encoder and make one proposal per token (first stage)."""
        device = sources[0].device
        spatial_shapes = torch.as_tensor([src.shape[-2:] for src in sources], dtype=torch.long, device=device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([valid_ratios_of(m) for m in masks], 1)  # (B, L, 2)
        src_flat = torch.cat([src.flatten(2).transpose(1, 2) for src in sources], 1)  # (B, S, d)
        mask_flat = torch.cat([m.flatten(1) for m in masks], 1)  # (B, S)
        pos_flat = torch.cat([pos.flatten(2).transpose(1, 2) + self.level_embed[level]
                              for level, pos in enumerate(positions)], 1)

        memory = self.encoder(src_flat, spatial_shapes, level_start_index, valid_ratios, pos_flat, mask_flat)

        # first stage: one proposal per token, relative to its fixed anchor
        anchors, level_ids = token_anchors(spatial_shapes, mask_flat, self.config.anchor_scale)
        valid, output_memory, enc_logits, enc_coord_unact = self.first_stage(memory, anchors, mask_flat)
        return EncoderStage(memory, spatial_shapes, level_start_index, valid_ratios, mask_flat, output_memory,
                            enc_logits, enc_coord_unact, anchors, level_ids, valid)

    def select_proposals(self, stage: "EncoderStage") -> torch.Tensor:
        """[B, num_queries] token indices of the proposals that become the decoder queries."""
        return select_queries(
            stage.proposal_scores(self.config.enc_class_agnostic), stage.enc_coord_unact.sigmoid(), stage.level_ids,
            stage.valid,
            self.num_queries, self.num_feature_levels, method=self.config.query_selection,
            topk_per_level=self.config.proposal_topk_per_level, iou_threshold=self.config.query_nms_iou,
            valid_only=self.config.select_valid_proposals_only)


@dataclass(frozen=True)
class EncoderStage:
    """What the encoder and the first stage hand to query selection (S tokens over all levels).

    memory [B, S, d]; spatial_shapes [L, 2]; level_start_index [L]; valid_ratios [B, L, 2];
    mask_flat [B, S] (True at padding); output_memory [B, S, d] (after enc_output/norm);
    enc_logits [B, S, C]; enc_coord_unact [B, S, 4] (inverse sigmoid of cxcywh);
    anchors [B, S, 4] cxcywh; level_ids [S]; valid [B, S] (not padding, anchor inside the image).
    """

    memory: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    valid_ratios: torch.Tensor
    mask_flat: torch.Tensor
    output_memory: torch.Tensor
    enc_logits: torch.Tensor
    enc_coord_unact: torch.Tensor
    anchors: torch.Tensor
    level_ids: torch.Tensor
    valid: torch.Tensor

    def proposal_scores(self, class_agnostic: bool) -> torch.Tensor:
        """[B, S] logit of each token's proposal: the "object" channel 0 when the proposals are
        trained class-agnostically, else the best class (DINO)."""
        return self.enc_logits[..., 0] if class_agnostic else self.enc_logits.max(-1).values

    def enc_outputs(self, indices: torch.Tensor | None = None) -> dict:
        """The ``enc_outputs`` entry of the output contract: every token ([B, S, ...]), or with
        ``indices`` [B, Q] only those tokens ([B, Q, ...], gradients kept), as DINO supervises its
        selected proposals."""
        outputs = {"pred_logits": self.enc_logits, "pred_boxes": self.enc_coord_unact.sigmoid(),
                   "anchors": self.anchors, "valid": self.valid}
        if indices is None:
            return outputs
        return {key: value.gather(1, indices.view(*indices.shape, *[1] * (value.dim() - 2))
                                  .expand(-1, -1, *value.shape[2:]))
                for key, value in outputs.items()}
