"""The criterion on fake model outputs that follow the model contract."""
import pytest
import torch
from torchvision.ops import box_convert, box_iou

import assignlab.losses.targets as targets_module
from assignlab.config import AssignConfig, Config, LossConfig
from assignlab.assign.base import METHODS as REGISTERED_METHODS
from assignlab.losses.criterion import CLASSIFICATION_LOSSES, Criterion, check_objective

B, Q, S, C, L = 2, 12, 40, 4, 3
METHODS = ["hungarian", "b_matching", "deta", "align"]


def fake_outputs(seed=0, batch=B, iou_branch=True):
    g = torch.Generator().manual_seed(seed)

    def layer(n):
        return {"pred_logits": torch.randn(batch, n, C, generator=g).requires_grad_(),
                "pred_boxes": (torch.rand(batch, n, 4, generator=g) * 0.4 + 0.3).requires_grad_()}

    out = layer(Q)
    if iou_branch:
        out["pred_iou"] = torch.randn(batch, Q, 1, generator=g).requires_grad_()
    out["aux_outputs"] = [layer(Q) for _ in range(L - 1)]
    enc = layer(S)
    enc["anchors"] = torch.rand(batch, S, 4, generator=g) * 0.4 + 0.3
    enc["valid"] = torch.ones(batch, S, dtype=torch.bool)
    enc["valid"][:, -5:] = False
    enc["pred_boxes"] = enc["pred_boxes"].detach().clone()
    enc["pred_boxes"][:, -5:] = float("inf")  # padding tokens may hold anything
    enc["pred_boxes"].requires_grad_()
    out["enc_outputs"] = enc
    out["proposal_boxes"] = torch.rand(batch, Q, 4, generator=g) * 0.4 + 0.3
    return out


def leaves(outputs):
    layers = [outputs, *outputs["aux_outputs"], outputs["enc_outputs"]]
    return [t for layer in layers for k, t in layer.items() if k.startswith("pred_")]


TARGETS = [{"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.45, 0.2, 0.15]])},
           {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]


def criterion(method="hungarian", cls_loss="focal", assign=None, loss=None, **kw):
    assign_cfg = AssignConfig(method=method, first_stage_b=2, second_stage_b=2, **(assign or {}))
    return Criterion(assign_cfg, LossConfig(cls_loss=cls_loss, **(loss or {})), C, num_decoder_layers=L, **kw)


@pytest.mark.parametrize("cls_loss", sorted(CLASSIFICATION_LOSSES))
@pytest.mark.parametrize("method", METHODS)
def test_forward_backward_every_method_and_loss(method, cls_loss):
    outputs = fake_outputs()
    losses = criterion(method, cls_loss)(outputs, TARGETS, generator=torch.Generator().manual_seed(0))
    names = ["enc", "dec0", "dec1", "dec2"]
    for name in names:
        for term in ("cls", "l1", "giou"):
            assert torch.isfinite(losses[f"loss_{term}_{name}"])
    assert "loss_iou_dec2" in losses and "loss_iou_dec0" not in losses  # only the last layer has pred_iou here
    weights = criterion(method, cls_loss).weight_dict
    expected = sum(weights[k] * v for k, v in losses.items() if k.startswith("loss_"))
    torch.testing.assert_close(losses["loss"], expected)
    losses["loss"].backward()
    for t in leaves(outputs):
        assert t.grad is not None and torch.isfinite(t.grad[torch.isfinite(t)]).all()
    assert outputs["pred_logits"].grad[1].abs().sum() > 0  # the image without objects still learns negatives


def test_weight_table_built_once_with_paper_weights():
    weights = criterion().weight_dict
    assert weights["loss_cls_enc"] == 1 and weights["loss_l1_dec1"] == 5 and weights["loss_giou_dec2"] == 2
    assert len(weights) == 4 * 3 + 3  # cls/l1/giou per output, iou-branch per decoder layer


@pytest.mark.parametrize("method", METHODS)
def test_batch_without_objects(method):
    outputs = fake_outputs()
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}] * B
    losses = criterion(method, "ia_bce")(outputs, empty)
    assert torch.isfinite(losses["loss"]) and losses["loss_l1_dec2"] == 0
    losses["loss"].backward()


def test_normalised_by_object_count_hand_worked():
    # one image, two objects, last layer predicts them with known L1 offsets; Hungarian matches them
    outputs = fake_outputs(batch=1)
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.2, 0.2, 0.1, 0.1]])
    pred = outputs["pred_boxes"].detach().clone()
    pred[0, 3] = boxes[0] + torch.tensor([0.01, 0.0, 0.0, 0.0])
    pred[0, 7] = boxes[1] + torch.tensor([0.0, 0.02, 0.0, -0.01])
    pred[0, [i for i in range(Q) if i not in (3, 7)]] = torch.tensor([0.8, 0.8, 0.05, 0.05])
    outputs["pred_boxes"] = pred
    targets = [{"labels": torch.tensor([0, 1]), "boxes": boxes}]
    losses, assignments = criterion()(outputs, targets, return_assignments=True)
    last = assignments["dec2"][0]
    assert sorted(zip(last.pred_idx.tolist(), last.gt_idx.tolist())) == [(3, 0), (7, 1)]
    assert losses["loss_l1_dec2"].item() == pytest.approx((0.01 + 0.03) / 2, abs=1e-6)


def test_distributed_object_count_is_all_reduced(monkeypatch):
    # simulate a second process holding 6 objects: (2 + 6) / 2 processes = 4 objects per process
    monkeypatch.setattr(targets_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(targets_module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(targets_module.dist, "all_reduce", lambda t: t.add_(6))
    assert targets_module.num_objects_for_normalisation(TARGETS, "cpu") == 4.0
    monkeypatch.setattr(targets_module.dist, "all_reduce", lambda t: t.mul_(0))
    assert targets_module.num_objects_for_normalisation(TARGETS, "cpu") == 1.0  # clamped


def test_deta_decoder_assignment_is_computed_once_from_proposals():
    crit = criterion("deta", assign={"object_balance_k": None})  # released top-K would swap box 9 for 11
    outputs = fake_outputs()
    assignments = crit.assign(outputs, TARGETS, generator=torch.Generator().manual_seed(0))
    assert assignments["dec0"] is assignments["dec1"] is assignments["dec2"]
    moved = fake_outputs(seed=1)
    moved["proposal_boxes"] = outputs["proposal_boxes"]  # same proposals, different predictions
    moved["enc_outputs"]["anchors"] = outputs["enc_outputs"]["anchors"]
    again = crit.assign(moved, TARGETS, generator=torch.Generator().manual_seed(0))
    for name in ("enc", "dec2"):
        assert again[name][0].pred_idx.tolist() == assignments[name][0].pred_idx.tolist()
    # each object's best proposal is a positive (low-quality rule; it keeps its own argmax object,
    # as in detectron2), and no invalid token is
    best = box_iou(box_convert(TARGETS[0]["boxes"], "cxcywh", "xyxy"),
                   box_convert(outputs["proposal_boxes"][0], "cxcywh", "xyxy")).argmax(dim=1)
    assert set(best.tolist()) <= set(assignments["dec2"][0].pred_idx.tolist())
    assert (assignments["enc"][0].pred_idx < S - 5).all()


def test_deta_reports_objects_with_zero_iou_to_every_reference_box():
    degenerate = [{"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.5, 0.5, 0.0, 0.0]])},
                  {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]])}]
    stats = criterion("deta")(fake_outputs(), degenerate, generator=torch.Generator().manual_seed(0))
    for name in ("enc", "dec0", "dec2"):  # the zero-area object of image 0 overlaps nothing
        assert stats[f"stat_zero_iou_images_{name}"] == 0.5 and stats[f"stat_zero_iou_steps_{name}"] == 1
    stats = criterion("deta")(fake_outputs(), TARGETS, generator=torch.Generator().manual_seed(0))
    assert stats["stat_zero_iou_steps_enc"] == 0 and stats["stat_zero_iou_steps_dec0"] == 0


def test_deta_needs_proposals():
    outputs = fake_outputs()
    del outputs["proposal_boxes"]
    with pytest.raises(ValueError, match="reference_boxes"):
        criterion("deta")(outputs, TARGETS)


def test_encoder_is_class_agnostic():
    crit = criterion("hungarian", "focal")
    outputs = fake_outputs()
    losses, assignments = crit(outputs, TARGETS, return_assignments=True)
    # the encoder loss equals focal loss with every object relabelled 0
    relabelled = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in TARGETS]
    losses0 = crit(outputs, relabelled)
    torch.testing.assert_close(losses["loss_cls_enc"], losses0["loss_cls_enc"])
    assert not torch.isclose(losses["loss_cls_dec2"], losses0["loss_cls_dec2"])


def test_class_aware_encoder_uses_object_classes():
    outputs = fake_outputs()
    aware = criterion("hungarian", "focal", enc_class_agnostic=False)
    agnostic = criterion("hungarian", "focal")
    relabelled = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in TARGETS]
    # with every object of class 0 the two agree; with the real classes only the encoder term differs
    torch.testing.assert_close(aware(outputs, relabelled)["loss_cls_enc"], agnostic(outputs, TARGETS)["loss_cls_enc"])
    assert not torch.isclose(aware(outputs, TARGETS)["loss_cls_enc"], agnostic(outputs, TARGETS)["loss_cls_enc"])
    torch.testing.assert_close(aware(outputs, TARGETS)["loss_cls_dec2"], agnostic(outputs, TARGETS)["loss_cls_dec2"])


def test_released_behaviour_statistics():
    outputs = fake_outputs()
    stats = criterion("align", "ia_bce")(outputs, TARGETS)
    # one-to-one last layer never lowers k; the batch's first image cannot inherit a cap
    assert stats["stat_carried_cap_images_dec2"] == 0 and stats["stat_carried_cap_steps_dec2"] == 0
    assert stats["stat_shared_images_dec0"] == 0
    crowded = [{"labels": torch.zeros(4, dtype=torch.long), "boxes": torch.rand(4, 4) * 0.2 + 0.3},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]])}]
    # Q = 12: image 0 (4 objects) caps k at 1, image 1 inherits it under the released cap
    stats = criterion("align", "ia_bce")(outputs, crowded)
    assert stats["stat_carried_cap_images_dec0"] == 0.5 and stats["stat_carried_cap_steps_dec0"] == 1
    stats = criterion("align", "ia_bce", assign={"k_cap": "per_image"})(outputs, crowded)
    assert stats["stat_carried_cap_steps_dec0"] == 0
    assert stats["stat_zero_iou_steps_dec0"] == 0  # only DETA's low-quality matching reports it


def test_prime_sample_weights_scale_box_losses():
    outputs = fake_outputs()
    on, assignments = criterion("align", "ia_bce")(outputs, TARGETS, return_assignments=True)
    off = criterion("align", "ia_bce", loss={"prime_sample_weighting": False})(outputs, TARGETS)
    result = assignments["dec0"][0]
    assert sorted(result.weight.tolist())[-2:] == pytest.approx([1.0, 1.0])  # the prime sample of each object
    boxes = outputs["aux_outputs"][0]["pred_boxes"][0, result.pred_idx]
    l1 = (boxes - TARGETS[0]["boxes"][result.gt_idx]).abs().sum(-1)
    assert on["loss_l1_dec0"].item() == pytest.approx((result.weight * l1).sum().item() / 2, rel=1e-5)
    assert off["loss_l1_dec0"].item() == pytest.approx(l1.sum().item() / 2, rel=1e-5)
    assert on["stat_pos_per_object_dec0"].item() == 3 and on["stat_pos_per_object_dec2"].item() == 1


def test_batch_of_one_equals_batch_element():
    # loss sums decompose over images: batch term * objects = sum of single-image term * objects
    targets = [TARGETS[0], {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.6, 0.4, 0.2, 0.3]])}]
    outputs = fake_outputs(iou_branch=False)
    crit = criterion("hungarian", "ia_bce")
    batch = crit(outputs, targets)
    singles = []
    for b in range(2):
        one = {k: v[b:b + 1] for k, v in outputs.items() if torch.is_tensor(v)}
        one["aux_outputs"] = [{k: v[b:b + 1] for k, v in a.items()} for a in outputs["aux_outputs"]]
        one["enc_outputs"] = {k: v[b:b + 1] for k, v in outputs["enc_outputs"].items()}
        singles.append(crit(one, targets[b:b + 1]))
    for key in ("loss_cls_dec2", "loss_l1_dec0", "loss_giou_enc", "loss_cls_enc"):
        combined = singles[0][key] * 2 + singles[1][key] * 1
        torch.testing.assert_close(batch[key] * 3, combined)


def test_deta_subsampling_is_deterministic_with_a_seed():
    crit = criterion("deta", assign={"stage2_positive_fraction": 0.1})  # budget int(12 * .1) = 1 positive
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}] * B
    outputs = fake_outputs()
    outputs["proposal_boxes"] = torch.tensor([0.5, 0.5, 0.4, 0.4]).repeat(B, Q, 1) + torch.rand(B, Q, 4) * 0.01
    first = crit.assign(outputs, targets, generator=torch.Generator().manual_seed(5))["dec2"]
    second = crit.assign(outputs, targets, generator=torch.Generator().manual_seed(5))["dec2"]
    assert [r.pred_idx.tolist() for r in first] == [r.pred_idx.tolist() for r in second]
    assert all(r.num_matches == 1 for r in first)


def test_bad_inputs_raise_clear_errors():
    crit = criterion()
    outputs = fake_outputs()
    outputs["aux_outputs"][1]["pred_logits"] = outputs["aux_outputs"][1]["pred_logits"].detach().clone()
    outputs["aux_outputs"][1]["pred_logits"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"dec1\.pred_logits contains NaN"):
        crit(outputs, TARGETS)
    outputs = fake_outputs()
    with pytest.raises(ValueError, match="labels must be integer class ids"):
        crit(outputs, [{"labels": torch.tensor([C]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}, TARGETS[1]])
    with pytest.raises(ValueError, match="negative width"):
        crit(outputs, [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, -0.1, 0.1]])}, TARGETS[1]])
    with pytest.raises(ValueError, match="NaN or inf"):
        nan_box = torch.tensor([[0.5, float("nan"), 0.1, 0.1]])
        crit(outputs, [{"labels": torch.tensor([0]), "boxes": nan_box}, TARGETS[1]])
    with pytest.raises(ValueError, match="2 targets for a batch of 2|got 1 targets"):
        crit(outputs, TARGETS[:1])
    outputs["aux_outputs"] = outputs["aux_outputs"][:1]
    with pytest.raises(ValueError, match="decoder layers"):
        crit(outputs, TARGETS)
    with pytest.raises(ValueError, match="unknown cls_loss"):
        criterion(cls_loss="hinge")
    with pytest.raises(ValueError, match="Table B"):
        criterion(cls_loss="ia_bce_variant", loss={"ia_bce_variant": "s,s"})


def test_unknown_method_or_loss_lists_the_registered_names():
    with pytest.raises(ValueError, match="assign.method='nope'; allowed: " + ", ".join(sorted(REGISTERED_METHODS))):
        check_objective(AssignConfig(method="nope"), LossConfig())
    with pytest.raises(ValueError, match="loss.cls_loss='hinge'; allowed: " + ", ".join(sorted(CLASSIFICATION_LOSSES))):
        check_objective(AssignConfig(), LossConfig(cls_loss="hinge"))
    for method in REGISTERED_METHODS:
        for cls_loss in CLASSIFICATION_LOSSES:
            check_objective(AssignConfig(method=method), LossConfig(cls_loss=cls_loss))


def test_boxes_outside_the_image_are_clipped():
    crit = criterion()
    outputs = fake_outputs()
    # x in [.7, 1.1] is clipped to [.7, 1]
    outside = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.9, 0.5, 0.4, 0.2]])}, TARGETS[1]]
    clipped = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.85, 0.5, 0.3, 0.2]])}, TARGETS[1]]
    a, b = crit(outputs, outside), crit(outputs, clipped)
    for key in ("loss_l1_dec2", "loss_cls_dec2", "loss_giou_enc"):
        torch.testing.assert_close(a[key], b[key])


def test_zero_area_object_is_finite_for_every_method():
    targets = [{"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.4, 0.0, 0.0]])},
               TARGETS[1]]
    for method in METHODS:
        losses = criterion(method, "ia_bce")(fake_outputs(), targets)
        assert torch.isfinite(losses["loss"])
        losses["loss"].backward()


def test_from_config():
    cfg = Config().override({"model.num_classes": C, "model.dec_layers": L, "assign.method": "align"})
    crit = Criterion.from_config(cfg)
    assert crit.num_classes == C and crit.output_names == ("enc", "dec0", "dec1", "dec2")
    assert torch.isfinite(crit(fake_outputs(), TARGETS)["loss"])


@pytest.mark.parametrize("method", METHODS)
def test_saturated_logits_are_finite(method):
    for cls_loss in sorted(CLASSIFICATION_LOSSES):
        outputs = fake_outputs()
        for layer in [outputs, *outputs["aux_outputs"], outputs["enc_outputs"]]:
            layer["pred_logits"] = (torch.sign(layer["pred_logits"].detach()) * 100).requires_grad_()
        losses = criterion(method, cls_loss)(outputs, TARGETS)
        losses["loss"].backward()
        assert torch.isfinite(losses["loss"]) and torch.isfinite(outputs["pred_logits"].grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_forward_backward_on_cuda(method):
    def to_cuda(value):
        if torch.is_tensor(value):
            return value.detach().cuda().requires_grad_(value.requires_grad)
        if isinstance(value, dict):
            return {k: to_cuda(v) for k, v in value.items()}
        return [to_cuda(v) for v in value]

    outputs = to_cuda(fake_outputs())
    targets = [{k: v.cuda() for k, v in t.items()} for t in TARGETS]
    cpu = criterion(method, "ia_bce")(fake_outputs(), TARGETS, generator=torch.Generator().manual_seed(0))
    gpu = criterion(method, "ia_bce")(outputs, targets, generator=torch.Generator().manual_seed(0))
    gpu["loss"].backward()
    torch.testing.assert_close(gpu["loss"].cpu(), cpu["loss"].detach(), rtol=1e-4, atol=1e-4)


def test_mixed_matching_with_one_copy_gives_one_to_one_losses_bit_for_bit():
    # why configs with assign.mixed_k=1 share the run of one-to-one IA-BCE (config.training_equivalent)
    def losses(method, **assign_and_loss):
        assign = {k: v for k, v in assign_and_loss.items() if k in ("mixed_k",)}
        loss = {k: v for k, v in assign_and_loss.items() if k not in assign}
        return criterion(method, "ia_bce", assign=assign, loss=loss)(fake_outputs(), TARGETS,
                                                                     generator=torch.Generator().manual_seed(0))

    one_to_one = losses("hungarian")
    for weighting in (True, False):
        mixed_one = losses("align", mixed_k=1, prime_sample_weighting=weighting)
        assert mixed_one.keys() == one_to_one.keys()
        for name, value in one_to_one.items():
            assert torch.equal(mixed_one[name], value), name
    # two copies change the losses of the encoder and auxiliary layers
    mixed_two = losses("align", mixed_k=2)
    assert not torch.equal(mixed_two["loss_cls_dec0"], one_to_one["loss_cls_dec0"])
