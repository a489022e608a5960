"""Hybrid matching (H-Deformable-DETR) on the two-stage base: the one-to-many group's selection and
attention mask, its absence at inference, the one-to-one group's independence from it, and the
criterion's one-to-many losses."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from assignlab.losses.criterion import Criterion
from assignlab.models import build_model
from assignlab.models import detector as detector_module
from assignlab.models.hybrid import one2many_attention_mask, select_one2many_queries
from assignlab.presets import preset

ONE2MANY = 5 * preset("smoke").model.num_queries  # the cpu-scale ratio: 5 x num_queries
HYBRID = preset("smoke").override({"model.num_queries_one2many": ONE2MANY, "model.query_selection": "topk",
                                   "model.postprocess": "topk", "assign.method": "hungarian"})
TARGETS = [
    {"labels": torch.tensor([1, 2, 3]),
     "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2], [0.7, 0.6, 0.3, 0.3]])},
    {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.4, 0.5, 0.3, 0.2]])},
]


def hybrid_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(HYBRID.model).train()


def test_attention_mask_hand_worked():
    # 2 one-to-one queries then 3 one-to-many queries; 1 = blocked
    expected = torch.tensor([[0, 0, 1, 1, 1],
                             [0, 0, 1, 1, 1],
                             [1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(one2many_attention_mask(2, 3), expected)


def test_one2many_queries_are_the_next_best_valid_proposals():
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.95, 0.3]])
    valid = torch.tensor([[True, True, True, True, False, True]])
    one2one = torch.tensor([[0, 2]])
    # left: 3 (0.7), 5 (0.3), 1 (0.1), then the invalid token 4 however high its score
    assert select_one2many_queries(scores, valid, one2one, 3).tolist() == [[3, 5, 1]]
    assert select_one2many_queries(scores, valid, one2one, 4).tolist() == [[3, 5, 1, 4]]
    with pytest.raises(ValueError, match="num_queries_one2many"):
        select_one2many_queries(scores, valid, one2one, 5)


def test_one2many_queries_only_in_training():
    model = hybrid_model()
    images = torch.randn(2, 3, 96, 96)
    queries, classes = HYBRID.model.num_queries, HYBRID.model.num_classes
    train = model(images)
    group = train["one2many_outputs"]
    assert group["pred_logits"].shape == (2, ONE2MANY, classes) and group["pred_boxes"].shape == (2, ONE2MANY, 4)
    assert len(group["aux_outputs"]) == HYBRID.model.dec_layers - 1
    assert train["pred_logits"].shape == (2, queries, classes) and train["proposal_boxes"].shape == (2, queries, 4)
    evaluated = model.eval()(images)
    assert "one2many_outputs" not in evaluated
    assert evaluated["pred_logits"].shape == (2, queries, classes)
    assert all(aux["pred_boxes"].shape == (2, queries, 4) for aux in evaluated["aux_outputs"])


def test_one2one_group_does_not_see_the_one2many_group(monkeypatch):
    model = hybrid_model()
    images = torch.randn(2, 3, 96, 96)
    hybrid = model(images)
    model.config = dataclasses.replace(model.config, num_queries_one2many=0)
    alone = model(images)
    for key in ("pred_logits", "pred_boxes", "proposal_boxes"):
        torch.testing.assert_close(hybrid[key], alone[key], atol=1e-5, rtol=1e-5)
    for with_group, without in zip(hybrid["aux_outputs"], alone["aux_outputs"]):
        torch.testing.assert_close(with_group["pred_logits"], without["pred_logits"], atol=1e-5, rtol=1e-5)
    # without the mask the groups would mix: the same check fails
    model.config = dataclasses.replace(model.config, num_queries_one2many=ONE2MANY)
    monkeypatch.setattr(detector_module, "one2many_attention_mask",
                        lambda q1, q2, device: torch.zeros(q1 + q2, q1 + q2, dtype=torch.bool, device=device))
    unmasked = model(images)
    assert not torch.allclose(unmasked["pred_logits"], alone["pred_logits"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls_loss", ["focal", "ia_bce"])
def test_forward_backward_and_one2many_losses(cls_loss):
    config = HYBRID.override({"loss.cls_loss": cls_loss})
    model = hybrid_model()
    out = model(torch.randn(2, 3, 96, 96))
    criterion = Criterion.from_config(config)
    losses, assignments = criterion(out, TARGETS, return_assignments=True)
    layers = HYBRID.model.dec_layers
    for layer in range(layers):
        for term in ("cls", "l1", "giou"):
            assert torch.isfinite(losses[f"loss_{term}_one2many_dec{layer}"])
        # every object matched hybrid_k = 6 times; the one-to-one group once
        assert [r.positives_per_object().tolist() for r in assignments[f"one2many_dec{layer}"]] == [[6, 6, 6], [6]]
        assert [r.positives_per_object().tolist() for r in assignments[f"dec{layer}"]] == [[1, 1, 1], [1]]
    # normalised by objects x k: the last layer's L1 term by hand
    group, last = out["one2many_outputs"], assignments[f"one2many_dec{layers - 1}"]
    expected = sum((group["pred_boxes"][b, r.pred_idx] - TARGETS[b]["boxes"][r.gt_idx]).abs().sum()
                   for b, r in enumerate(last)) / (4 * 6)
    torch.testing.assert_close(losses[f"loss_l1_one2many_dec{layers - 1}"], expected)
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.decoder.parameters() if p.requires_grad)


def test_one2many_loss_weight():
    config = HYBRID.override({"assign.hybrid_loss_weight": 0.5})
    weights = Criterion.from_config(config).weight_dict
    assert weights["loss_cls_one2many_dec0"] == 0.5 and weights["loss_l1_one2many_dec1"] == 2.5
    assert "loss_cls_one2many_dec0" not in Criterion.from_config(preset("smoke")).weight_dict


def test_outputs_without_a_criterion_for_them_are_an_error():
    out = hybrid_model()(torch.randn(2, 3, 96, 96))
    with pytest.raises(ValueError, match="one2many_outputs"):
        Criterion.from_config(preset("smoke"))(out, TARGETS)
