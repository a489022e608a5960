"""Losses against their formulas, written out independently on small tensors."""
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torchvision.ops import box_convert, box_iou, generalized_box_iou

from assignlab.assign.quality import alignment_quality, prime_sample_weights
from assignlab.box_ops import paired_box_iou
from assignlab.losses.boxes import giou_box_loss, l1_box_loss
from assignlab.losses.dense import dense_targets
from assignlab.losses.focal import focal_loss
from assignlab.losses.ia_bce import IA_BCE_VARIANTS, ia_bce_loss, ia_bce_variant_loss, variant_key
from assignlab.losses.iou_branch import iou_branch_loss
from assignlab.losses.qfl import quality_focal_loss
from assignlab.losses.vfl import varifocal_loss

TABLE_B = Path(__file__).resolve().parents[2] / "shared" / "paper_tables" / "align_tableB.csv"

# 4 predictions x 3 classes; positives at (0, 1), (2, 0), (3, 2)
LOGITS = torch.tensor([[-1.0, 0.3, 2.0], [0.5, -0.2, -3.0], [1.5, 0.1, -0.7], [-2.5, 0.8, 0.4]], dtype=torch.float64)
ROWS, CLASSES = torch.tensor([0, 2, 3]), torch.tensor([1, 0, 2])
TARGET = torch.tensor([0.7, 0.35, 0.05], dtype=torch.float64)


def entries():
    """(row, class, is_positive, target) for every entry, in plain Python."""
    positives = {(r, c): t for r, c, t in zip(ROWS.tolist(), CLASSES.tolist(), TARGET.tolist())}
    for r in range(LOGITS.shape[0]):
        for c in range(LOGITS.shape[1]):
            yield r, c, (r, c) in positives, positives.get((r, c), 0.0)


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_ia_bce_matches_align_detr_pseudo_code():
    # Algorithm 1 of the paper, literally: P activated, pos_w = w*t at positives, neg_w = P^gamma
    # elsewhere and 1 - w*t at positives, loss = sum(-pos_w log P - neg_w log(1-P)).
    P = LOGITS.sigmoid()
    pos_w = torch.zeros_like(P)
    pos_w[ROWS, CLASSES] = TARGET
    neg_w = P**2
    neg_w[ROWS, CLASSES] = 1 - TARGET
    expected = (-pos_w * P.log() - neg_w * (1 - P).log()).sum()
    torch.testing.assert_close(ia_bce_loss(LOGITS, ROWS, CLASSES, TARGET, gamma=2.0), expected)


def test_ia_bce_against_paper_equation_6():
    total = 0.0
    for r, c, positive, t in entries():
        s = sig(LOGITS[r, c].item())
        bce = lambda y: -(y * math.log(s) + (1 - y) * math.log(1 - s))  # noqa: E731
        total += bce(t) if positive else s**2 * bce(0.0)
    assert ia_bce_loss(LOGITS, ROWS, CLASSES, TARGET).item() == pytest.approx(total, rel=1e-12)


def test_alignment_quality_and_prime_sample_weights():
    prob = torch.tensor([0.0625, 0.9, 0.5])
    iou = torch.tensor([1.0, 0.0, 0.4])
    t = alignment_quality(prob, iou, alpha=0.25, min_quality=0.01)
    assert t.tolist() == pytest.approx([0.5, 0.01, 0.5**0.25 * 0.4**0.75], rel=1e-6)
    w = prime_sample_weights(torch.tensor([0, 1, 2]), tau=1.5)
    assert w.tolist() == pytest.approx([1.0, math.exp(-1 / 1.5), math.exp(-2 / 1.5)], rel=1e-6)
    assert not alignment_quality(prob.requires_grad_(), iou).requires_grad


def test_focal_loss_formula():
    total = 0.0
    for r, c, positive, _ in entries():
        p = sig(LOGITS[r, c].item())
        total += -0.25 * (1 - p) ** 2 * math.log(p) if positive else -0.75 * p**2 * math.log(1 - p)
    assert focal_loss(LOGITS, ROWS, CLASSES, 0.25, 2.0).item() == pytest.approx(total, rel=1e-12)


def test_qfl_formula():
    gamma = 1.5
    total = 0.0
    for r, c, _, y in entries():
        s = sig(LOGITS[r, c].item())
        total += abs(y - s) ** gamma * -((1 - y) * math.log(1 - s) + y * math.log(s))
    assert quality_focal_loss(LOGITS, ROWS, CLASSES, TARGET, gamma).item() == pytest.approx(total, rel=1e-12)


def test_vfl_formula():
    alpha, gamma = 0.75, 2.0
    total = 0.0
    for r, c, _, q in entries():
        p = sig(LOGITS[r, c].item())
        if q > 0:
            total += -q * (q * math.log(p) + (1 - q) * math.log(1 - p))
        else:
            total += -alpha * p**gamma * math.log(1 - p)
    assert varifocal_loss(LOGITS, ROWS, CLASSES, TARGET, alpha, gamma).item() == pytest.approx(total, rel=1e-12)


def variant_weights(name, s, t):
    """Table B written out by hand: (w_pos, w_neg)."""
    return {
        "(1-s)^2,0": ((1 - s) ** 2, 0.0),
        "1,0": (1.0, 0.0),
        "t,0": (t, 0.0),
        "(t-s)^2,(t-s)^2": ((t - s) ** 2, (t - s) ** 2),
        "(t-s)^2,(1-t)*s^2": ((t - s) ** 2, (1 - t) * s**2),
        "t,1-t": (t, 1 - t),
    }[name]


def test_table_b_lists_exactly_our_variants():
    # rows of Align-DETR Table B as printed: (w_pos, w_neg)
    printed = {"(1-s)^2,0", "1,0", "t,0", "(t-s)^2,(t-s)^2", "(t-s)^2,(1-t)*s^2", "t,1-t"}
    assert printed == set(IA_BCE_VARIANTS)
    if TABLE_B.exists():  # the study's copy of the table, where present
        table = pd.read_csv(TABLE_B, comment="#")
        assert {f"{p},{n}" for p, n in zip(table.w_pos, table.w_neg)} == printed


@pytest.mark.parametrize("name", sorted(IA_BCE_VARIANTS))
def test_table_b_variants_formula(name):
    total = 0.0
    for r, c, positive, t in entries():
        s = sig(LOGITS[r, c].item())
        if positive:
            w_pos, w_neg = variant_weights(name, s, t)
            total += -w_pos * math.log(s) - w_neg * math.log(1 - s)
        else:
            total += -(s**2) * math.log(1 - s)
    assert ia_bce_variant_loss(LOGITS, ROWS, CLASSES, TARGET, name).item() == pytest.approx(total, rel=1e-12)


def test_variant_t_1mt_is_ia_bce_and_names_are_normalised():
    torch.testing.assert_close(ia_bce_variant_loss(LOGITS, ROWS, CLASSES, TARGET, "t, 1-t"),
                               ia_bce_loss(LOGITS, ROWS, CLASSES, TARGET))
    with pytest.raises(ValueError, match="Table B"):
        variant_key("t,t")


def test_iou_branch_loss_formula():
    logits = torch.tensor([0.3, -1.0], dtype=torch.float64)
    iou = torch.tensor([0.8, 0.1], dtype=torch.float64)
    expected = sum(-(y * math.log(sig(x)) + (1 - y) * math.log(1 - sig(x))) for x, y in zip([0.3, -1.0], [0.8, 0.1]))
    assert iou_branch_loss(logits, iou).item() == pytest.approx(expected, rel=1e-12)


LOSSES = {
    "focal": lambda x, t: focal_loss(x, ROWS, CLASSES),
    "ia_bce": lambda x, t: ia_bce_loss(x, ROWS, CLASSES, t),
    "qfl": lambda x, t: quality_focal_loss(x, ROWS, CLASSES, t),
    "vfl": lambda x, t: varifocal_loss(x, ROWS, CLASSES, t),
    **{f"variant {k}": (lambda k: lambda x, t: ia_bce_variant_loss(x, ROWS, CLASSES, t, k))(k)
       for k in IA_BCE_VARIANTS},
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_saturated_logits_give_finite_loss_and_gradient(name):
    logits = torch.tensor([[100.0, -100.0, 100.0], [-100.0, 100.0, -100.0], [100.0, 100.0, -100.0],
                           [-100.0, -100.0, 100.0]], requires_grad=True)
    loss = LOSSES[name](logits, TARGET.float())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    iou_logits = torch.tensor([100.0, -100.0], requires_grad=True)
    iou_branch_loss(iou_logits, torch.tensor([0.3, 0.9])).backward()
    assert torch.isfinite(iou_logits.grad).all()


@pytest.mark.parametrize("name", ["ia_bce", "qfl", "vfl", "variant (t-s)^2,(1-t)*s^2"])
def test_gradcheck_float64(name):
    logits = LOGITS.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: LOSSES[name](x, TARGET), (logits,))


def test_dense_targets_duplicate_entry_keeps_larger_target():
    rows, classes, values = torch.tensor([1, 1]), torch.tensor([0, 0]), torch.tensor([0.2, 0.6])
    mask, target = dense_targets(torch.zeros(2, 2), rows, classes, values)
    assert mask.tolist() == [[False, False], [True, False]]
    assert target[1, 0].item() == pytest.approx(0.6)


def test_box_losses_against_torchvision():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 4, generator=g) * 0.4 + 0.2
    b = torch.rand(5, 4, generator=g) * 0.4 + 0.2
    xa, xb = box_convert(a, "cxcywh", "xyxy"), box_convert(b, "cxcywh", "xyxy")
    torch.testing.assert_close(paired_box_iou(a, b), box_iou(xa, xb).diagonal())
    torch.testing.assert_close(giou_box_loss(a, b), 1 - generalized_box_iou(xa, xb).diagonal(), atol=1e-6, rtol=0)
    torch.testing.assert_close(l1_box_loss(a, b), (a - b).abs().sum(-1))


def test_zero_area_boxes_are_finite():
    degenerate = torch.tensor([[0.5, 0.5, 0.0, 0.0]], requires_grad=True)
    assert paired_box_iou(degenerate, degenerate.detach()).item() == 0.0
    loss = giou_box_loss(degenerate, degenerate.detach()).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(degenerate.grad).all()
