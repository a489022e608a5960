"""The DINO base: denoising queries (attention mask, box and label noise, layout), look-forward-twice,
the matching part's independence from the denoising part, the criterion's denoising losses, and
forward + backward with every assignment method and classification loss."""
from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from assignlab.losses.criterion import Criterion
from assignlab.models import dino as dino_module
from assignlab.models import build_model
from assignlab.models.build import check_model_config
from assignlab.models.denoising import (build_denoising_queries, denoising_attention_mask, noise_boxes,
                                        noise_labels, num_denoising_groups)
from assignlab.presets import preset

SMOKE_DINO = preset("smoke-dino")
TARGETS = [
    {"labels": torch.tensor([1, 2, 3]),
     "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2], [0.7, 0.6, 0.3, 0.3]])},
    {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.4, 0.5, 0.3, 0.2]])},
]


def dino_model(seed: int = 0, **changes) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(SMOKE_DINO.model, **changes)).train()


# ------------------------------------------------------------------------------- attention mask
def test_attention_mask_hand_worked():
    # 2 groups x 2 objects x (positive, negative) = 8 denoising queries, then 3 matching queries.
    # 1 = blocked. A group sees itself and the matching queries; matching queries see only themselves.
    rows = [
        "0000 1111 000",
        "0000 1111 000",
        "0000 1111 000",
        "0000 1111 000",
        "1111 0000 000",
        "1111 0000 000",
        "1111 0000 000",
        "1111 0000 000",
        "1111 1111 000",
        "1111 1111 000",
        "1111 1111 000",
    ]
    expected = torch.tensor([[c == "1" for c in row.replace(" ", "")] for row in rows])
    assert torch.equal(denoising_attention_mask(num_groups=2, group_size=4, num_queries=3), expected)


def test_number_of_groups_as_released():
    assert num_denoising_groups(100, 3) == 33   # 33 groups x 2 x 3 = 198 denoising queries
    assert num_denoising_groups(100, 1) == 100
    assert num_denoising_groups(100, 150) == 1  # at least one group


def test_layout_of_the_denoising_queries():
    embedding = torch.nn.Embedding(10, 8)
    dn = build_denoising_queries(TARGETS, dn_number=6, label_noise_ratio=0.0, box_noise_scale=0.0,
                                 num_classes=10, label_embedding=embedding, num_queries=5)
    assert (dn.num_groups, dn.group_size, dn.pad_size) == (2, 6, 12)  # 6 // 3 groups of 2 * 3 slots
    assert dn.self_attn_mask.shape == (17, 17)
    # image 0: positives of group 0 at 0..2, negatives at 3..5; group 1 at 6..8 and 9..11
    assert dn.pred_idx[0].tolist() == [0, 1, 2, 6, 7, 8] and dn.gt_idx[0].tolist() == [0, 1, 2, 0, 1, 2]
    assert dn.pred_idx[1].tolist() == [0, 6] and dn.gt_idx[1].tolist() == [0, 0]
    # without noise every copy is its object: content = label embedding, box = object box
    for slot, obj in [(0, 0), (4, 1), (11, 2)]:
        torch.testing.assert_close(dn.content[0, slot], embedding.weight[TARGETS[0]["labels"][obj]])
        torch.testing.assert_close(dn.boxes[0, slot], TARGETS[0]["boxes"][obj])
    # image 1 has one object: its slots 1, 2, 4, 5 (and 7, 8, 10, 11) are padding
    padding = [1, 2, 4, 5, 7, 8, 10, 11]
    assert (dn.content[1, padding] == 0).all() and (dn.boxes[1, padding] == 0.5).all()
    torch.testing.assert_close(dn.boxes[1, 3], TARGETS[1]["boxes"][0])  # its negative copy, group 0


def test_no_denoising_without_objects():
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    assert build_denoising_queries(empty, 100, 0.5, 1.0, 10, torch.nn.Embedding(10, 8), 5) is None


# ---------------------------------------------------------------------------------- box noise
def corner_shift_in_half_sizes(noised: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] |corner displacement| / (half width or half height)."""
    half = boxes[:, 2:].repeat(1, 2) / 2
    shift = box_convert(noised, "cxcywh", "xyxy") - box_convert(boxes, "cxcywh", "xyxy")
    return shift.abs() / half


def test_positives_stay_within_lambda_and_negatives_between_lambda_and_twice_lambda():
    generator = torch.Generator().manual_seed(0)
    # scale < 0.5: two opposite corners cannot cross (each moves < 2 * scale half-sizes), and the
    # boxes are far enough from the border that no corner is clamped (centre 0.5, side <= 0.2)
    n, scale = 4000, 0.45
    boxes = torch.cat([torch.full((n, 2), 0.5), torch.rand(n, 2, generator=generator) * 0.15 + 0.05], 1)
    negative = torch.arange(n) % 2 == 1
    shift = corner_shift_in_half_sizes(noise_boxes(boxes, negative, scale, generator), boxes)
    assert (shift[~negative] < scale + 1e-4).all()
    assert (shift[negative] > scale - 1e-4).all() and (shift[negative] < 2 * scale + 1e-4).all()
    # the whole band is used: positives near 0 and near lambda, negatives near lambda and 2 lambda
    assert shift[~negative].min() < 0.05 and shift[~negative].max() > 0.95 * scale
    assert shift[negative].max() > 1.95 * scale


def test_noised_boxes_stay_inside_the_image():
    generator = torch.Generator().manual_seed(1)
    n = 2000
    centres = torch.rand(n, 2, generator=generator)
    sizes = torch.rand(n, 2, generator=generator) * 2 * torch.minimum(centres, 1 - centres)  # inside
    boxes = torch.cat([centres, sizes], 1)
    noised = noise_boxes(boxes, torch.arange(n) % 2 == 0, 1.0, generator)
    corners = box_convert(noised, "cxcywh", "xyxy")
    assert ((corners >= 0) & (corners <= 1)).all() and (noised[:, 2:] >= 0).all()


def test_negatives_are_farther_from_their_object_than_positives():
    generator = torch.Generator().manual_seed(2)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.3]]).repeat(500, 1)
    positives = noise_boxes(boxes, torch.zeros(500, dtype=torch.bool), 1.0, generator)
    negatives = noise_boxes(boxes, torch.ones(500, dtype=torch.bool), 1.0, generator)
    l1 = lambda noised: (noised - boxes).abs().sum(1)  # noqa: E731
    assert l1(negatives).min() > 0 and l1(negatives).mean() > 2 * l1(positives).mean()
    # lambda = 1: a positive's corners move less than half the side, so it still holds the centre
    corners = box_convert(positives, "cxcywh", "xyxy")
    assert ((corners[:, :2] < 0.5) & (corners[:, 2:] > 0.5)).all()
    object_xyxy = box_convert(boxes[:1], "cxcywh", "xyxy")
    iou_pos = box_iou(corners, object_xyxy)[:, 0]
    iou_neg = box_iou(box_convert(negatives, "cxcywh", "xyxy"), object_xyxy)[:, 0]
    assert iou_neg.mean() < 0.5 * iou_pos.mean()


# -------------------------------------------------------------------------------- label noise
def test_label_noise_redraws_half_the_ratio_as_released():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (40000,), generator=generator)
    noised = noise_labels(labels, 0.5, 10, generator)
    # redrawn with probability 0.5 / 2 = 0.25, uniformly over 10 classes: changed with 0.25 * 0.9
    changed = (noised != labels).float().mean().item()
    assert abs(changed - 0.225) < 0.01
    assert ((noised >= 0) & (noised < 10)).all()
    assert torch.equal(noise_labels(labels, 0.0, 10, generator), labels)
    assert abs((noise_labels(labels, 1.0, 10, generator) != labels).float().mean().item() - 0.45) < 0.01


# ------------------------------------------------------------------------- look-forward-twice
def box_head_gradient_of_last_layer_box_loss(model) -> torch.Tensor | None:
    images = torch.randn(1, 3, 64, 64)
    out = model(images)  # no targets: no denoising queries
    out["pred_boxes"].sum().backward()  # the box loss of the last layer (layer 1 of 2)
    return model.bbox_embed[0].layers[-1].bias.grad  # the previous layer's box head


def test_look_forward_twice_trains_the_previous_layers_box_head():
    grad = box_head_gradient_of_last_layer_box_loss(dino_model(look_forward_twice=True))
    assert grad is not None and grad.abs().sum() > 0


def test_plain_refinement_does_not():
    grad = box_head_gradient_of_last_layer_box_loss(dino_model(look_forward_twice=False))
    assert grad is None or grad.abs().sum() == 0
    torch.manual_seed(0)
    two_stage = build_model(preset("smoke").model).train()  # the two-stage base: detached references
    grad = box_head_gradient_of_last_layer_box_loss(two_stage)
    assert grad is None or grad.abs().sum() == 0


def test_both_refinements_give_the_same_boxes():
    images = torch.randn(1, 3, 64, 64)
    twice, plain = dino_model(look_forward_twice=True), dino_model(look_forward_twice=False)
    plain.load_state_dict(twice.state_dict())
    torch.testing.assert_close(twice(images)["pred_boxes"], plain(images)["pred_boxes"])


# --------------------------------------------------------------------------------- the model
def test_matching_queries_do_not_see_the_denoising_queries():
    model = dino_model()
    images = torch.randn(2, 3, 64, 64)
    with_dn = model(images, None, TARGETS)
    without = model(images)
    assert "dn_outputs" in with_dn and "dn_outputs" not in without
    dn = with_dn["dn_outputs"]
    assert dn["num_groups"] == 3 and dn["pad_size"] == 18  # dn_number 10 // 3 objects
    assert dn["pred_logits"].shape == (2, 18, SMOKE_DINO.model.num_classes)
    assert len(dn["aux_outputs"]) == SMOKE_DINO.model.dec_layers - 1
    for key in ("pred_logits", "pred_boxes"):
        torch.testing.assert_close(with_dn[key], without[key], atol=1e-5, rtol=1e-5)


def test_a_denoising_group_does_not_see_the_other_groups(monkeypatch):
    model = dino_model()
    images = torch.randn(2, 3, 64, 64)
    cfg = model.config
    dn = build_denoising_queries(TARGETS, cfg.dn_number, cfg.label_noise_ratio, cfg.box_noise_scale,
                                 cfg.num_classes, model.label_enc, cfg.num_queries)
    monkeypatch.setattr(dino_module, "build_denoising_queries", lambda *args, **kwargs: dn)
    first = model(images, None, TARGETS)
    other = dn.group_size  # change groups 1 and 2, keep group 0
    content, boxes = dn.content.detach().clone(), dn.boxes.clone()
    content[:, other:] = torch.randn_like(content[:, other:])
    boxes[:, other:] = torch.rand_like(boxes[:, other:]) * 0.5 + 0.25
    monkeypatch.setattr(dino_module, "build_denoising_queries",
                        lambda *args, **kwargs: dataclasses.replace(dn, content=content, boxes=boxes))
    second = model(images, None, TARGETS)
    for key in ("pred_logits", "pred_boxes"):
        group0 = first["dn_outputs"][key][:, :other], second["dn_outputs"][key][:, :other]
        torch.testing.assert_close(*group0, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(first["dn_outputs"][key][:, other:], second["dn_outputs"][key][:, other:])
        torch.testing.assert_close(first[key], second[key], atol=1e-5, rtol=1e-5)  # matching part
    # the checks can fail: without the mask the matching part sees the denoising queries
    unmasked = dataclasses.replace(dn, self_attn_mask=torch.zeros_like(dn.self_attn_mask))
    monkeypatch.setattr(dino_module, "build_denoising_queries", lambda *args, **kwargs: unmasked)
    assert not torch.allclose(model(images, None, TARGETS)["pred_logits"], first["pred_logits"], atol=1e-5)


def test_eval_mode_has_only_the_matching_queries():
    model = dino_model().eval()
    out = model(torch.randn(2, 3, 64, 64), None, TARGETS)
    assert "dn_outputs" not in out
    assert out["pred_logits"].shape == (2, SMOKE_DINO.model.num_queries, SMOKE_DINO.model.num_classes)


def test_denoising_loss_uses_fixed_matches_normalised_by_objects_times_groups():
    model = dino_model()
    out = model(torch.randn(2, 3, 64, 64), None, TARGETS)
    losses = Criterion.from_config(SMOKE_DINO)(out, TARGETS)
    dn = out["dn_outputs"]
    last = f"dn{SMOKE_DINO.model.dec_layers - 1}"
    expected = sum((dn["pred_boxes"][b, dn["pred_idx"][b]] - TARGETS[b]["boxes"][dn["gt_idx"][b]]).abs().sum()
                   for b in range(2)) / (4 * dn["num_groups"])
    torch.testing.assert_close(losses[f"loss_l1_{last}"], expected)
    for layer in range(SMOKE_DINO.model.dec_layers):
        assert {f"loss_cls_dn{layer}", f"loss_giou_dn{layer}"} <= set(losses)


def test_encoder_outputs_are_the_selected_proposals_as_released():
    selected = dino_model(enc_loss_selected_only=True)
    every = dino_model(enc_loss_selected_only=False)  # same seed: the same weights
    images = torch.randn(2, 3, 64, 64)
    out, out_every = selected(images, None, TARGETS), every(images, None, TARGETS)
    indices = out["proposal_indices"]
    assert out["enc_outputs"]["pred_logits"].shape[:2] == indices.shape == (2, SMOKE_DINO.model.num_queries)
    for key, value in out_every["enc_outputs"].items():  # token t of every image, at the position it was selected
        expected = torch.stack([value[b, indices[b]] for b in range(2)])
        torch.testing.assert_close(out["enc_outputs"][key], expected)
    # the proposal boxes the decoder starts from are these encoder boxes, detached
    torch.testing.assert_close(out["proposal_boxes"], out["enc_outputs"]["pred_boxes"].detach())
    # the encoder loss reaches the encoder's heads through the gathered proposals only
    losses = Criterion.from_config(SMOKE_DINO)(out, TARGETS)
    losses["loss_cls_enc"].backward()
    head = selected.class_embed[SMOKE_DINO.model.dec_layers]
    assert head.weight.grad.abs().sum() > 0
    assert SMOKE_DINO.model.enc_loss_selected_only and preset("cpu-dino").model.enc_loss_selected_only
    assert not preset("cpu").model.enc_loss_selected_only  # the two-stage base supervises every token


def test_the_two_stage_base_can_supervise_the_selected_proposals_too():
    config = preset("smoke").override({"model.enc_loss_selected_only": True})
    torch.manual_seed(0)
    model = build_model(config.model).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out["enc_outputs"]["anchors"].shape == (2, config.model.num_queries, 4)
    assert out["enc_outputs"]["valid"].shape == (2, config.model.num_queries)
    with pytest.raises(ValueError, match="model.enc_loss_selected_only"):
        check_model_config(dataclasses.replace(preset("smoke-dab-detr").model, enc_loss_selected_only=True))


METHODS = ("hungarian", "b_matching", "deta", "align")
CLS_LOSSES = ("focal", "ia_bce", "qfl", "vfl")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cls_loss", CLS_LOSSES)
def test_forward_backward_with_every_objective(method, cls_loss):
    config = SMOKE_DINO.override({"assign.method": method, "loss.cls_loss": cls_loss})
    torch.manual_seed(0)
    model = build_model(config.model).train()
    out = model(torch.randn(2, 3, 64, 64), None, TARGETS)
    losses = Criterion.from_config(config)(out, TARGETS)
    assert torch.isfinite(losses["loss"]) and "loss_cls_dn0" in losses
    losses["loss"].backward()
    assert model.label_enc.weight.grad.abs().sum() > 0  # the denoising queries learn
    assert model.tgt_embed.weight.grad.abs().sum() > 0  # so do the learned content queries
    assert model.decoder.ref_point_head.layers[0].weight.grad.abs().sum() > 0


def test_training_loop_gives_the_targets_to_the_model():
    from assignlab.engine.loop import train_one_epoch

    torch.manual_seed(0)
    model = build_model(SMOKE_DINO.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = (torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool), TARGETS)
    summary = train_one_epoch(model, Criterion.from_config(SMOKE_DINO), [batch], optimizer, torch.device("cpu"),
                              epoch=0, progress=False)
    assert "train_loss_cls_dn0" in summary


def test_configuration_errors_name_the_field():
    with pytest.raises(ValueError, match="num_queries_one2many"):
        check_model_config(dataclasses.replace(SMOKE_DINO.model, num_queries_one2many=10))
    with pytest.raises(ValueError, match="label_noise_ratio"):
        check_model_config(dataclasses.replace(SMOKE_DINO.model, label_noise_ratio=1.5))
    with pytest.raises(ValueError, match="dn_number"):
        check_model_config(dataclasses.replace(SMOKE_DINO.model, dn_number=-1))


def test_describe_prints_the_summary_and_parameter_count(capsys):
    from assignlab.models.describe import run

    assert run(argparse.Namespace(preset="dino-r50-1x", overrides=[])) == 0
    text = capsys.readouterr().out
    assert "dino" in text and "900 queries" in text
    total = float(text.split("total: ")[1].split("M")[0])
    assert 45 < total < 50  # DINO-4scale R50: 47M in the paper


def test_content_queries_start_xavier_uniform_as_released():
    torch.manual_seed(0)
    config = preset("cpu-dino").model
    queries, d = config.num_queries, config.hidden_dim
    model = build_model(dataclasses.replace(config, num_classes=10))
    weight = model.tgt_embed.weight.detach()
    bound = (6 / (queries + d)) ** 0.5  # xavier-uniform of a [Q, d] matrix
    assert weight.abs().max() <= bound and float(weight.std()) == pytest.approx(bound / 3 ** 0.5, rel=0.05)
    assert model.label_enc.weight.detach().std() == pytest.approx(1.0, rel=0.1)  # outside the transformer: N(0, 1)
    normal = build_model(dataclasses.replace(config, num_classes=10, content_query_init="normal"))
    assert normal.tgt_embed.weight.detach().std() == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="content_query_init"):
        build_model(dataclasses.replace(config, num_classes=10, content_query_init="zeros"))


def test_heads_read_the_layer_output_through_one_more_layernorm_as_released():
    model = dino_model()
    assert isinstance(model.decoder.norm, torch.nn.LayerNorm)
    captured = []
    model.decoder.layers[-1].register_forward_hook(lambda module, args, output: captured.append(output))
    out = model(torch.randn(1, 3, 64, 64))
    normalised = model.decoder.norm(captured[0])
    torch.testing.assert_close(out["pred_logits"], model.class_embed[len(model.decoder.layers) - 1](normalised))
    without = dino_model(dino_decoder_norm=False)
    assert without.decoder.norm is None
