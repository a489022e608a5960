"""The detector: output contract, gradients, decoder variants, query selection, post-processing,
anchors, small images, padding and bad input. Hand-worked cases unless stated otherwise."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from assignlab.models import build_model, postprocess
from assignlab.models.build import build_postprocessor
from assignlab.models.decoder import DeformableDecoderLayer, ReplacementFFN, count_parameters
from assignlab.models.detector import token_anchors
from assignlab.models.query_selection import level_quota_selection, per_level_nms_selection, select_queries
from assignlab.presets import preset

SMOKE = preset("smoke").model


def smoke_model(seed: int = 0, **changes) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(SMOKE, **changes))
    return model.eval()


def stand_in_loss(outputs: dict) -> torch.Tensor:
    """A differentiable stand-in for the criterion, touching every output the criterion uses."""
    loss = outputs["pred_logits"].sigmoid().mean() + outputs["pred_boxes"].mean()
    for aux in outputs["aux_outputs"]:
        loss = loss + aux["pred_logits"].sigmoid().mean() + aux["pred_boxes"].mean()
    enc = outputs["enc_outputs"]
    valid = enc["valid"]
    return loss + enc["pred_logits"][valid].sigmoid().mean() + enc["pred_boxes"][valid].mean()


# ------------------------------------------------------------------------------------ contract
def test_output_contract_shapes():
    model = smoke_model()
    images = torch.randn(2, 3, 96, 64)
    out = model(images)
    queries, classes = SMOKE.num_queries, SMOKE.num_classes
    # 3 levels at strides 8, 16, 32: 12x8 + 6x4 + 3x2 tokens
    tokens = 12 * 8 + 6 * 4 + 3 * 2
    assert out["pred_logits"].shape == (2, queries, classes)
    assert out["pred_boxes"].shape == (2, queries, 4)
    assert "pred_iou" not in out
    assert len(out["aux_outputs"]) == SMOKE.dec_layers - 1
    for aux in out["aux_outputs"]:
        assert set(aux) == {"pred_logits", "pred_boxes"}
        assert aux["pred_logits"].shape == (2, queries, classes)
    enc = out["enc_outputs"]
    assert enc["pred_logits"].shape == (2, tokens, classes)
    assert enc["pred_boxes"].shape == enc["anchors"].shape == (2, tokens, 4)
    assert enc["valid"].shape == (2, tokens) and enc["valid"].dtype == torch.bool
    assert out["proposal_boxes"].shape == (2, queries, 4) and not out["proposal_boxes"].requires_grad
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
    # the proposals fed to the decoder are the selected encoder proposals
    picked = torch.gather(enc["pred_boxes"], 1, out["proposal_indices"][..., None].expand(-1, -1, 4))
    torch.testing.assert_close(out["proposal_boxes"], picked.detach())


def test_iou_branch_only_when_configured():
    out = smoke_model(iou_branch=True)(torch.randn(1, 3, 64, 64))
    assert out["pred_iou"].shape == (1, SMOKE.num_queries, 1)
    assert all(aux["pred_iou"].shape == (1, SMOKE.num_queries, 1) for aux in out["aux_outputs"])
    assert "pred_iou" not in smoke_model()(torch.randn(1, 3, 64, 64))


def test_forward_backward_reaches_every_part():
    model = smoke_model().train()
    loss = stand_in_loss(model(torch.randn(2, 3, 64, 96)))
    loss.backward()
    for prefix in ("backbone.", "input_proj.", "encoder.", "decoder.", "enc_output.", "pix_trans.",
                   "pos_trans.", "class_embed.", "bbox_embed."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), prefix
        assert any(g.abs().sum() > 0 for g in grads), prefix
    # the level embedding only enters through the encoder's sampling offsets and attention
    # weights, whose weight matrices start at zero: its first gradient is exactly zero
    assert model.level_embed.grad is not None and not model.level_embed.grad.any()


def test_deterministic_for_a_seed():
    """The same seed builds the same model: two builds in one process, same machine and threads."""
    images = torch.randn(1, 3, 64, 64)
    first, second = smoke_model(seed=3)(images), smoke_model(seed=3)(images)
    assert torch.equal(first["pred_logits"], second["pred_logits"])
    assert torch.equal(first["pred_boxes"], second["pred_boxes"])
    other = smoke_model(seed=4)(images)
    assert not torch.equal(first["pred_logits"], other["pred_logits"])


# ---------------------------------------------------------------------------- decoder variants
@pytest.mark.parametrize("self_attn,cross_attn", [(False, True), (True, False)])
def test_decoder_variants_run_and_match_parameter_count(self_attn, cross_attn):
    d = SMOKE.hidden_dim
    kwargs = dict(d_model=d, d_ffn=64, dropout=0.0, n_levels=3, n_heads=4, n_points=2)
    default = count_parameters(DeformableDecoderLayer(**kwargs))
    variant_layer = DeformableDecoderLayer(**kwargs, self_attn=self_attn, cross_attn=cross_attn)
    replaced = "self_attn" if not self_attn else "cross_attn"
    assert not hasattr(variant_layer, replaced) and hasattr(variant_layer, replaced + "_ffn")
    # an FFN has h * (2d + 1) + d parameters: equal to within less than one hidden unit (<= d)
    assert abs(count_parameters(variant_layer) - default) <= d

    model = smoke_model(dec_self_attn=self_attn, dec_cross_attn=cross_attn).train()
    full = smoke_model()
    assert abs(count_parameters(model) - count_parameters(full)) <= d * SMOKE.dec_layers
    stand_in_loss(model(torch.randn(1, 3, 64, 64))).backward()


@pytest.mark.parametrize("target", [4 * 256 * 256 + 4 * 256, 254944, 5000])
def test_replacement_ffn_width_is_the_closest_possible(target):
    d = 256 if target > 10000 else 32
    counts = {h: h * (2 * d + 1) + d for h in range(1, 2000)}  # brute force over widths
    best = min(abs(c - target) for c in counts.values())
    assert abs(count_parameters(ReplacementFFN(d, target, 0.0)) - target) == best


def test_released_size_parameter_count_is_detas():
    """DETA reports about 48M parameters for its ResNet-50 model (5 levels, FFN 2048)."""
    config = dataclasses.replace(preset("paper-r50-1x").model, pretrained_backbone=False)
    with torch.device("meta"):
        model = build_model(config)
    total = count_parameters(model)
    assert 47.5e6 < total < 49.0e6
    # only layer2..layer4 of the ResNet are trained, as released
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("backbone.body.conv1", "backbone.body.layer1")) for n in frozen)


# ------------------------------------------------------------------------------ building blocks
def test_deformable_attention_initialisation():
    """Deformable-DETR's start: head h samples along the ray at angle 2*pi*h/heads (scaled so the
    larger coordinate is 1), point p at distance p + 1, with uniform attention weights."""
    from assignlab.models.ms_deform_attn import MSDeformAttn

    attention = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    offsets = attention.sampling_offsets.bias.detach().view(4, 2, 3, 2)
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for point in range(3):
        for level in range(2):
            torch.testing.assert_close(offsets[:, level, point], directions * (point + 1), atol=1e-6, rtol=0)
    assert not attention.sampling_offsets.weight.any() and not attention.attention_weights.weight.any()


def test_sine_position_encoding_by_hand():
    from assignlab.models.position_encoding import SinePositionEncoding

    # one feature pair: frequencies (1, 1), so a coordinate c gives (sin c, cos c)
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[0, :, 2] = True  # the last column is padding
    pos = SinePositionEncoding(num_pos_feats=2)(mask)
    assert pos.shape == (1, 4, 2, 3)
    x = (1 - 0.5) / 2 * 2 * math.pi  # column 0 of 2 valid columns
    y = (2 - 0.5) / 2 * 2 * math.pi  # row 1 of 2 rows
    torch.testing.assert_close(pos[0, :, 1, 0], torch.tensor([math.sin(y), math.cos(y), math.sin(x), math.cos(x)]),
                               atol=1e-5, rtol=0)
    # unpadded pixels get the embedding of the unpadded image
    alone = SinePositionEncoding(num_pos_feats=2)(torch.zeros(1, 2, 2, dtype=torch.bool))
    torch.testing.assert_close(pos[..., :2], alone)


def test_inverse_sigmoid_is_finite_at_the_ends():
    from assignlab.models.decoder import inverse_sigmoid

    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    y = inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[1:3], torch.tensor([math.log(1 / 3), 0.0]))


# ----------------------------------------------------------------------------- query selection
def _boxes(*xyxy):
    return torch.tensor(xyxy, dtype=torch.float32)


def test_selection_nms_removes_a_near_duplicate():
    # A and A' overlap with IoU 0.95 > 0.9; B and C are disjoint from everything
    boxes = _boxes([0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.4, 0.38], [0.5, 0.5, 0.9, 0.9], [0.5, 0.0, 0.9, 0.4])
    assert box_iou(boxes[:1], boxes[1:2]).item() == pytest.approx(0.95)
    scores = torch.tensor([3.0, 2.0, 1.0, 0.0])
    levels = torch.zeros(4, dtype=torch.long)
    chosen = per_level_nms_selection(boxes, scores, levels, num_queries=2, num_levels=1)
    assert chosen.tolist() == [0, 2]
    # below the threshold (IoU 0.85) both stay
    boxes[1] = torch.tensor([0.0, 0.0, 0.4, 0.34])
    assert per_level_nms_selection(boxes, scores, levels, num_queries=2, num_levels=1).tolist() == [0, 1]


def test_selection_nms_runs_per_level():
    # the same box on two levels: NMS is per level, so both survive
    boxes = _boxes([0.1, 0.1, 0.3, 0.3], [0.1, 0.1, 0.3, 0.3])
    chosen = per_level_nms_selection(boxes, torch.tensor([1.0, 0.5]), torch.tensor([0, 1]), 2, 2)
    assert chosen.tolist() == [0, 1]


def _disjoint_boxes(n):
    # n disjoint boxes on a row
    return torch.stack([torch.tensor([i / n, 0.0, (i + 0.5) / n, 0.1]) for i in range(n)])


def test_selection_keeps_a_quota_per_level_in_score_order():
    # tokens 0..5 on level 0 hold the best scores; tokens 6..8 on level 1
    levels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])
    scores = torch.tensor([9.0, 8, 7, 6, 5, 4, 1, 3, 2])
    chosen = per_level_nms_selection(_disjoint_boxes(9), scores, levels, num_queries=4, num_levels=2)
    assert chosen.tolist() == [0, 1, 7, 8]  # 2 per level, ordered by score


def test_selection_pads_a_short_level_with_the_next_best():
    # level 1 has a single token: its quota (2) is short by one, filled by level 0's third best
    levels = torch.tensor([0, 0, 0, 0, 1])
    scores = torch.tensor([5.0, 4, 3, 2, 0])
    chosen = per_level_nms_selection(_disjoint_boxes(5), scores, levels, num_queries=4, num_levels=2)
    assert chosen.tolist() == [0, 1, 2, 4]
    # the same through the quota function directly
    assert level_quota_selection(torch.tensor([0, 1, 2, 3, 4]), levels, 4, 2).tolist() == [0, 1, 2, 4]


def test_selection_with_fewer_tokens_than_topk_per_level():
    levels = torch.tensor([0] * 6 + [1] * 3)
    scores = torch.arange(9, 0, -1).float()
    chosen = per_level_nms_selection(_disjoint_boxes(9), scores, levels, 4, 2, topk_per_level=1000)
    assert chosen.tolist() == [0, 1, 6, 7]
    chosen = per_level_nms_selection(_disjoint_boxes(9), scores, levels, 4, 2, topk_per_level=1000, released=True)
    assert chosen.tolist() == [0, 1, 6, 7]


def test_selection_falls_back_to_topk_when_nms_leaves_too_few():
    # every level holds copies of one box: NMS leaves one per level (2 < 4 queries), so the
    # candidates become the plain top-4 [0, 1, 2, 3]; the quota keeps 0, 1 (level 0) and 3 (level 1)
    # and pads with 2
    boxes = _boxes(*([[0.1, 0.1, 0.5, 0.5]] * 6))
    levels = torch.tensor([0, 0, 0, 1, 1, 1])
    scores = torch.tensor([6.0, 5, 4, 3, 2, 1])
    assert per_level_nms_selection(boxes, scores, levels, 4, 2).tolist() == [0, 1, 2, 3]
    scores = torch.tensor([6.0, 5, 1, 4, 3, 2])
    assert per_level_nms_selection(boxes, scores, levels, 4, 2).tolist() == [0, 1, 3, 4]


def test_selection_released_candidates_equal_ours_when_levels_are_full():
    torch.manual_seed(0)
    levels = torch.tensor([0] * 40 + [1] * 30 + [2] * 20)
    centres = torch.rand(90, 2)
    boxes = torch.cat([centres - 0.05, centres + 0.05], 1).clamp(0, 1)
    scores = torch.randn(90)
    ours = per_level_nms_selection(boxes, scores, levels, 12, 3, topk_per_level=15)
    released = per_level_nms_selection(boxes, scores, levels, 12, 3, topk_per_level=15, released=True)
    assert torch.equal(ours, released)


def test_selection_skips_invalid_tokens_unless_released_behaviour():
    boxes_cxcywh = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.3, 0.3, 0.1, 0.1], [0.6, 0.6, 0.1, 0.1],
                                  [0.9, 0.9, 0.1, 0.1]]])
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0]])
    valid = torch.tensor([[False, True, True, True]])
    levels = torch.zeros(4, dtype=torch.long)
    for method in ("nms", "topk"):
        chosen = select_queries(scores, boxes_cxcywh, levels, valid, 2, 1, method=method)
        assert chosen.tolist() == [[3, 2]]
        chosen = select_queries(scores, boxes_cxcywh, levels, valid, 2, 1, method=method, valid_only=False)
        assert chosen.tolist() == [[0, 3]]


def test_selection_errors_name_the_problem():
    with pytest.raises(ValueError, match="fewer than num_queries"):
        select_queries(torch.zeros(1, 3), torch.rand(1, 3, 4), torch.zeros(3, dtype=torch.long),
                       torch.ones(1, 3, dtype=torch.bool), 5, 1)
    with pytest.raises(ValueError, match="query_selection"):
        select_queries(torch.zeros(1, 3), torch.rand(1, 3, 4), torch.zeros(3, dtype=torch.long),
                       torch.ones(1, 3, dtype=torch.bool), 2, 1, method="greedy")


@pytest.mark.parametrize("method", ["nms", "nms_released", "topk"])
def test_small_image_with_levels_under_1000_tokens(method):
    # 64 x 64: 64 + 16 + 4 tokens, far below the 1000 candidates per level of the released code
    model = smoke_model(query_selection=method)
    assert model.config.proposal_topk_per_level == 1000
    out = model(torch.randn(2, 3, 64, 64))
    assert out["pred_boxes"].shape == (2, SMOKE.num_queries, 4)
    assert torch.isfinite(out["pred_logits"]).all()
    # queries are distinct tokens
    assert all(row.unique().numel() == SMOKE.num_queries for row in out["proposal_indices"])


# ------------------------------------------------------------------------------------- anchors
def test_anchors_are_centred_on_tokens_with_side_005_times_2_to_the_level():
    shapes = torch.tensor([[2, 4], [1, 2]])
    no_padding = torch.zeros(1, 10, dtype=torch.bool)
    anchors, levels = token_anchors(shapes, no_padding, 0.05)
    assert levels.tolist() == [0] * 8 + [1] * 2
    # level 0 token (row 1, col 3) is index 7; level 1 token (row 0, col 1) is index 9
    torch.testing.assert_close(anchors[0, 7], torch.tensor([3.5 / 4, 1.5 / 2, 0.05, 0.05]))
    torch.testing.assert_close(anchors[0, 9], torch.tensor([1.5 / 2, 0.5 / 1, 0.1, 0.1]))
    # with the right half of level 0 padded, centres are relative to the unpadded width
    padding = no_padding.clone()
    padding[0, [2, 3, 6, 7]] = True
    padding[0, 9] = True
    anchors, _ = token_anchors(shapes, padding, 0.05)
    torch.testing.assert_close(anchors[0, 5], torch.tensor([1.5 / 2, 1.5 / 2, 0.05, 0.05]))


def test_model_anchors_and_validity():
    out = smoke_model()(torch.randn(1, 3, 96, 96))
    enc = out["enc_outputs"]
    k = torch.arange(144)  # level 0 is 12 x 12
    expected = torch.stack([(k % 12 + 0.5) / 12, (k // 12 + 0.5) / 12, torch.full((144,), 0.05),
                            torch.full((144,), 0.05)], -1)
    torch.testing.assert_close(enc["anchors"][0, :144], expected)
    # level 2 (3 x 3, side 0.2): every centre is inside (0.01, 0.99): all valid
    assert enc["valid"][0, 144 + 36:].all()


# ------------------------------------------------------------------------------- postprocessing
def _two_query_outputs():
    # q0 and q1 overlap with IoU 0.8; class 0 scores 0.9 / 0.8, class 1 scores 0.05 / 0.7
    probabilities = torch.tensor([[[0.9, 0.05], [0.8, 0.7]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.5, 0.52, 0.4, 0.36]]])  # cxcywh
    return {"pred_logits": torch.logit(probabilities), "pred_boxes": boxes}


def test_postprocess_classwise_nms():
    outputs = _two_query_outputs()
    xyxy = torch.tensor([[0.3, 0.3, 0.7, 0.7], [0.3, 0.34, 0.7, 0.70]])
    assert box_iou(xyxy[:1], xyxy[1:]).item() == pytest.approx(0.9)
    sizes = torch.tensor([[100, 200]])  # height, width
    result = postprocess(outputs, sizes, method="nms", nms_iou=0.7)[0]
    # (q1, class 0) is suppressed by (q0, class 0); (q1, class 1) is another class and stays
    torch.testing.assert_close(result["scores"], torch.tensor([0.9, 0.7]))
    assert result["labels"].tolist() == [0, 1]
    torch.testing.assert_close(result["boxes"], torch.tensor([[60.0, 30, 140, 70], [60.0, 34, 140, 70]]))
    # end-to-end top-k keeps the duplicate
    top = postprocess(outputs, sizes, method="topk", max_detections=3)[0]
    torch.testing.assert_close(top["scores"], torch.tensor([0.9, 0.8, 0.7]))
    # pre-top-k limits the candidates before NMS; max_detections the result
    assert postprocess(outputs, sizes, pre_topk=1)[0]["scores"].tolist() == pytest.approx([0.9])
    assert len(postprocess(outputs, sizes, max_detections=1)[0]["scores"]) == 1


def test_postprocess_iou_fusion():
    outputs = _two_query_outputs()
    outputs["pred_iou"] = torch.logit(torch.tensor([[[0.5], [0.25]]]))
    result = postprocess(outputs, torch.tensor([[10, 10]]), method="topk", max_detections=1, iou_fusion=0.3)[0]
    assert result["scores"].item() == pytest.approx(0.9 ** 0.7 * 0.5 ** 0.3, rel=1e-5)
    with pytest.raises(ValueError, match="pred_iou"):
        postprocess(_two_query_outputs(), torch.tensor([[10, 10]]), iou_fusion=0.3)


def test_postprocess_rejects_nan_predictions():
    outputs = _two_query_outputs()
    outputs["pred_boxes"][0, 1, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        postprocess(outputs, torch.tensor([[10, 10]]))


def test_postprocessor_from_config_on_model_output():
    model = smoke_model()
    outputs = model(torch.randn(2, 3, 64, 64))
    results = build_postprocessor(model.config)(outputs, torch.tensor([[480, 640], [64, 64]]))
    assert len(results) == 2
    for result, (h, w) in zip(results, [(480, 640), (64, 64)]):
        assert len(result["scores"]) <= SMOKE.max_detections
        assert (result["scores"][:-1] >= result["scores"][1:]).all()
        assert (result["boxes"][:, 2] <= w + 1e-4).all() and (result["boxes"][:, 3] <= h + 1e-4).all()


# ------------------------------------------------------------------------------------- padding
def test_transformer_ignores_padding_exactly():
    """Given the same features, an image padded inside a batch (garbage in the padded region) gets
    the outputs it gets alone: masked values, valid ratios, anchors and position embeddings all
    work on the unpadded region. This holds when each level's unpadded size equals the image's
    own map size (stride-aligned sizes); otherwise valid ratios round, as in Deformable-DETR.
    The whole model is only approximately invariant: the input projections' GroupNorm takes its
    statistics over the padded map and the backbone's convolutions see past the border (the
    released code behaves the same way)."""
    model = smoke_model(seed=1)
    d = SMOKE.hidden_dim
    torch.manual_seed(5)
    alone_shapes, padded_shapes = [(8, 6), (4, 3), (2, 2)], [(12, 8), (6, 4), (3, 2)]
    alone_src = [torch.randn(1, d, h, w) for h, w in alone_shapes]
    batch_src, batch_masks = [], []
    for src, (h, w), (ph, pw) in zip(alone_src, alone_shapes, padded_shapes):
        padded = torch.randn(2, d, ph, pw) * 10  # garbage everywhere, image 0 pasted top-left
        padded[0, :, :h, :w] = src[0]
        mask = torch.zeros(2, ph, pw, dtype=torch.bool)
        mask[0, h:, :] = True
        mask[0, :, w:] = True
        batch_src.append(padded)
        batch_masks.append(mask)
    alone_masks = [torch.zeros(1, h, w, dtype=torch.bool) for h, w in alone_shapes]
    with torch.no_grad():
        alone = model.forward_transformer(alone_src, alone_masks, [model.position_encoding(m) for m in alone_masks])
        batch = model.forward_transformer(batch_src, batch_masks, [model.position_encoding(m) for m in batch_masks])
    for key in ("pred_logits", "pred_boxes", "proposal_boxes"):
        torch.testing.assert_close(batch[key][0], alone[key][0], atol=1e-5, rtol=0)
    for layer_alone, layer_batch in zip(alone["aux_outputs"], batch["aux_outputs"]):
        torch.testing.assert_close(layer_batch["pred_boxes"][0], layer_alone["pred_boxes"][0], atol=1e-5, rtol=0)
    # encoder proposals of the unpadded tokens match too
    batch_valid = ~torch.cat([m[0].flatten() for m in batch_masks])
    torch.testing.assert_close(batch["enc_outputs"]["pred_logits"][0, batch_valid],
                               alone["enc_outputs"]["pred_logits"][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch["enc_outputs"]["anchors"][0, batch_valid],
                               alone["enc_outputs"]["anchors"][0])


def test_padded_image_in_a_batch_runs_and_never_selects_padding():
    model = smoke_model()
    images = torch.randn(2, 3, 96, 96)
    mask = torch.zeros(2, 96, 96, dtype=torch.bool)
    mask[0, :, 64:] = True
    mask[0, 64:, :] = True
    images[0][mask[0].expand(3, -1, -1)] = 0.0
    out = model(images, mask)
    valid = out["enc_outputs"]["valid"]
    assert not valid[0].all() and valid[1].any()
    assert torch.gather(valid, 1, out["proposal_indices"]).all()
    assert torch.isfinite(out["pred_boxes"]).all()


# ------------------------------------------------------------------------------------ bad input
def test_bad_input_gives_clear_errors():
    model = smoke_model()
    images = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="NaN"):
        model(images.masked_fill(torch.rand_like(images) < 0.01, math.nan))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="mask"):
        model(images, torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="no unpadded pixel"):
        model(images, torch.ones(1, 64, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="fewer than num_queries"):
        smoke_model(num_queries=60)(torch.randn(1, 3, 48, 48))  # 36 + 9 + 4 tokens < 60 queries
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(1, 3, 32, 32))  # a 1 x 1 map cannot be group-normalised with 1 channel per group
    with pytest.raises(ValueError, match="hidden_dim"):
        build_model(dataclasses.replace(SMOKE, hidden_dim=48))
    with pytest.raises(ValueError, match="backbone"):
        build_model(dataclasses.replace(SMOKE, backbone="vgg"))


def test_missing_imagenet_weights_is_a_clear_error(monkeypatch):
    import torchvision.models._api as weights_api

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="pretrained_backbone"):
        build_model(dataclasses.replace(SMOKE, backbone="resnet50", pretrained_backbone=True))


# ------------------------------------------------------------------------------------- describe
def test_describe_prints_groups_and_the_total(capsys):
    from assignlab.cli import main

    assert main(["describe", "--preset", "smoke", "--set", "model.dec_layers=3"]) == 0
    text = capsys.readouterr().out
    torch.manual_seed(0)
    total = count_parameters(build_model(dataclasses.replace(SMOKE, dec_layers=3)))
    for group in ("backbone", "input_proj", "encoder", "two_stage", "decoder", "heads"):
        assert f"\n{group} " in text
    assert f"total: {total / 1e6:.2f}M parameters" in text
    assert f"{total:,}" in text
    assert main(["describe", "--preset", "smoke", "--set", "model.bogus=1"]) == 2
    assert "model.bogus" in capsys.readouterr().err


def test_extra_levels_are_strided_convolutions_of_c5():
    model = smoke_model(num_feature_levels=5, num_queries=25)
    c5_channels = model.backbone.num_channels[-1]
    extra, second_extra = model.input_proj[3][0], model.input_proj[4][0]
    assert (extra.in_channels, extra.kernel_size, extra.stride) == (c5_channels, (3, 3), (2, 2))
    assert (second_extra.in_channels, second_extra.stride) == (SMOKE.hidden_dim, (2, 2))
    out = model(torch.randn(1, 3, 256, 192))
    # strides 8..128: 32x24 + 16x12 + 8x6 + 4x3 + 2x2 tokens; the last level's anchors have side 0.8
    assert out["enc_outputs"]["anchors"].shape[1] == 768 + 192 + 48 + 12 + 4
    torch.testing.assert_close(out["enc_outputs"]["anchors"][0, -1], torch.tensor([0.75, 0.75, 0.8, 0.8]))
