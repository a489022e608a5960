"""Assigners against hand-worked cases and brute force."""
import itertools
import math

import pytest
import torch
from torchvision.ops import box_convert

from assignlab.assign import AssignResult, build_plan
from assignlab.assign.base import rank_within_groups
from assignlab.assign.costs import MatchCost, focal_class_cost
from assignlab.assign.deta import BETWEEN, NEGATIVE, POSITIVE, IoUAssigner, match_by_iou, subsample_positives
from assignlab.assign.hungarian import HungarianAssigner, match_with_copies
from assignlab.assign.mixed import MixedAssigner, capped_copies
from assignlab.config import AssignConfig, LossConfig


def strip_boxes(x_intervals, y=(0.4, 0.6)):
    """cxcywh boxes [n, 4] spanning the given x intervals and a common y interval.

    Boxes with the same y extent have IoU = IoU of their x intervals, easy to work by hand.
    """
    xyxy = torch.tensor([[x0, y[0], x1, y[1]] for x0, x1 in x_intervals], dtype=torch.float32)
    return box_convert(xyxy, "xyxy", "cxcywh")


def pairs(result: AssignResult):
    return sorted(zip(result.pred_idx.tolist(), result.gt_idx.tolist()))


def iou_assign(objects, boxes, k=None, behaviour="released", low_quality=True, valid=None, threshold=0.6):
    """Stage-2-like assignment without subsampling (positive_fraction 1)."""
    assigner = IoUAssigner((threshold,), allow_low_quality=low_quality, positive_fraction=1.0, batch_per_image=None,
                           object_balance_k=k, topk_behaviour=behaviour)
    n = boxes.shape[0]
    return assigner.assign_image(torch.zeros(n, 1), boxes, torch.zeros(len(objects), dtype=torch.long), objects,
                                 reference_boxes=boxes, valid=valid)


# Three objects A, B, C and ten boxes. IoU by hand (x-intervals, same y extent):
#   A=[0,.2]: b0 1.0, b1 .9, b2 .8, b3 .7, b4 .65     B=[.4,.6]: b5 .8, b6 .5
#   C=[.8,.9]: b7 .5 (its best box), b8 .3            b9 overlaps nothing
OBJECTS = strip_boxes([(0.0, 0.2), (0.4, 0.6), (0.8, 0.9)])
BOXES = strip_boxes([(0.0, 0.2), (0.0, 0.18), (0.0, 0.16), (0.0, 0.14), (0.0, 0.13),
                     (0.4, 0.56), (0.4, 0.5), (0.8, 0.85), (0.8, 0.83), (0.25, 0.35)])


@pytest.mark.parametrize("k, expected", [
    (None, [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (7, 2)]),
    (2, [(0, 0), (1, 0), (5, 1), (7, 2)]),
    (1, [(0, 0), (5, 1), (7, 2)]),
])
@pytest.mark.parametrize("behaviour", ["released", "fixed"])
def test_iou_assignment_hand_worked(k, expected, behaviour):
    result = iou_assign(OBJECTS, BOXES, k=k, behaviour=behaviour)
    assert pairs(result) == expected
    assert result.positives_per_object().tolist() == [sum(g == j for _, g in expected) for j in range(3)]
    # b7 is positive only through the low-quality rule (IoU .5 < .6)
    torch.testing.assert_close(result.iou[result.pred_idx == 7], torch.tensor([0.5]), atol=1e-5, rtol=0)
    assert result.gt_index.tolist()[9] == -1 and result.gt_index.tolist()[6] == -1


def test_iou_assignment_without_low_quality_leaves_small_object_unmatched():
    result = iou_assign(OBJECTS, BOXES, k=None, low_quality=False)
    assert pairs(result) == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 1)]
    assert result.positives_per_object().tolist() == [5, 1, 0]


def test_match_by_iou_labels_and_band():
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.2],
                        [0.1, 0.6, 0.25, 0.0]])
    matched, labels = match_by_iou(iou, (0.3, 0.7), allow_low_quality=False)
    assert matched.tolist() == [0, 1, 1, 0]
    assert labels.tolist() == [POSITIVE, BETWEEN, NEGATIVE, NEGATIVE]
    # low quality: object 1's best box (IoU .6) becomes positive, still matched to its argmax
    _, labels = match_by_iou(iou, (0.3, 0.7), allow_low_quality=True)
    assert labels.tolist() == [POSITIVE, POSITIVE, NEGATIVE, NEGATIVE]


def test_low_quality_ties_and_zero_iou_object():
    iou = torch.tensor([[0.4, 0.4, 0.1], [0.0, 0.0, 0.0]])  # object 1 overlaps nothing
    _, labels = match_by_iou(iou, (0.6,), allow_low_quality=True)
    assert labels.tolist() == [POSITIVE, POSITIVE, NEGATIVE]  # both tied best boxes, nothing for object 1


# Two overlapping objects D=[0,.4], E=[.05,.45]; q0=[0,.42]: IoU D .952, E .822 (argmax D);
# q1=[.17,.45]: IoU E .7, D .511 (argmax E); q2 far away. K = 1.
DE_OBJECTS = strip_boxes([(0.0, 0.4), (0.05, 0.45)])
DE_BOXES = strip_boxes([(0.0, 0.42), (0.17, 0.45), (0.7, 0.9)])


def test_released_topk_assigns_one_box_to_two_objects():
    released = iou_assign(DE_OBJECTS, DE_BOXES, k=1, behaviour="released")
    assert pairs(released) == [(0, 0), (0, 1)]  # q0 serves D and E, q1 loses its positive
    assert released.gt_index.tolist() == [0, -1, -1]
    fixed = iou_assign(DE_OBJECTS, DE_BOXES, k=1, behaviour="fixed")
    assert pairs(fixed) == [(0, 0), (1, 1)]
    assert (released.num_shared_predictions, fixed.num_shared_predictions) == (1, 0)
    for behaviour in ("released", "fixed"):  # no balancing: both behaviours agree
        assert pairs(iou_assign(DE_OBJECTS, DE_BOXES, k=None, behaviour=behaviour)) == [(0, 0), (1, 1)]
    torch.testing.assert_close(released.iou, torch.tensor([0.40 / 0.42, 0.37 / 0.45]), atol=1e-5, rtol=0)


def test_iou_assignment_no_objects_and_invalid_boxes():
    empty = iou_assign(torch.zeros(0, 4), BOXES, k=4)
    assert empty.num_matches == 0 and empty.gt_index.tolist() == [-1] * 10
    valid = torch.ones(10, dtype=torch.bool)
    valid[0] = False  # b0 (IoU 1 with A) may not be matched
    result = iou_assign(OBJECTS, BOXES, k=1, valid=valid)
    assert pairs(result) == [(1, 0), (5, 1), (7, 2)]


def test_zero_area_object_gets_no_iou_positive():
    objects = torch.cat([OBJECTS[:1], torch.tensor([[0.3, 0.5, 0.0, 0.0]])])
    result = iou_assign(objects, BOXES, k=None)
    assert result.positives_per_object().tolist() == [5, 0]
    assert result.zero_iou_objects == 1


def test_zero_iou_objects_counts_objects_that_overlap_no_valid_box():
    far = strip_boxes([(0.92, 0.98)])  # overlaps none of the ten boxes
    assert iou_assign(OBJECTS, BOXES, k=4).zero_iou_objects == 0
    assert iou_assign(torch.cat([OBJECTS, far, far]), BOXES, k=4).zero_iou_objects == 2
    valid = torch.ones(10, dtype=torch.bool)
    valid[[7, 8]] = False  # C=[.8,.9] overlaps only b7 and b8
    assert iou_assign(OBJECTS, BOXES, k=4, valid=valid).zero_iou_objects == 1
    # without low-quality matches the case cannot arise in the released code either
    assert iou_assign(torch.cat([OBJECTS, far]), BOXES, k=4, low_quality=False).zero_iou_objects == 0


def test_subsampling_keeps_only_limit_positives_deterministically():
    positives = torch.arange(0, 100, 3)
    kept = subsample_positives(positives, 5, torch.Generator().manual_seed(1))
    again = subsample_positives(positives, 5, torch.Generator().manual_seed(1))
    assert kept.tolist() == again.tolist() and len(kept) == 5
    assert set(kept.tolist()) <= set(positives.tolist())
    assert subsample_positives(positives, 50).tolist() == positives.tolist()


def test_stage1_subsampling_limits_positives_only():
    # one big object, 40 anchors all with IoU >= .7: at most int(16 * .5) = 8 positives survive
    objects = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    anchors = objects.repeat(40, 1) + torch.linspace(0, 0.02, 40)[:, None] * torch.tensor([1.0, 0, 0, 0])
    assigner = IoUAssigner((0.3, 0.7), allow_low_quality=True, positive_fraction=0.5, batch_per_image=16,
                           object_balance_k=None, topk_behaviour="released")
    args = (torch.zeros(1, 40, 1), anchors[None], [torch.zeros(1, dtype=torch.long)], [objects])
    first = assigner(*args, reference_boxes=anchors[None], generator=torch.Generator().manual_seed(3))[0]
    second = assigner(*args, reference_boxes=anchors[None], generator=torch.Generator().manual_seed(3))[0]
    assert first.num_matches == 8 and pairs(first) == pairs(second)


def brute_force_min_cost(cost, copies=1):
    n, m = cost.shape
    columns = [j for j in range(m) for _ in range(copies)]
    rows_needed = min(n, len(columns))
    best = math.inf
    for rows in itertools.permutations(range(n), rows_needed):
        if rows_needed < len(columns):
            for cols in itertools.permutations(range(len(columns)), rows_needed):
                best = min(best, sum(cost[r, columns[c]] for r, c in zip(rows, cols)))
        else:
            best = min(best, sum(cost[r, columns[c]] for c, r in enumerate(rows)))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(6, 3, generator=g, dtype=torch.float64)
    pred_idx, gt_idx = match_with_copies(cost)
    assert sorted(gt_idx.tolist()) == [0, 1, 2] and len(set(pred_idx.tolist())) == 3
    total = cost[pred_idx, gt_idx].sum().item()
    assert total == pytest.approx(brute_force_min_cost(cost.numpy()), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_b_matching_matches_brute_force_and_gives_b_per_object(seed):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(5, 2, generator=g, dtype=torch.float64)
    pred_idx, gt_idx = match_with_copies(cost, copies=2)
    assert torch.bincount(gt_idx, minlength=2).tolist() == [2, 2]
    assert len(set(pred_idx.tolist())) == 4
    assert cost[pred_idx, gt_idx].sum().item() == pytest.approx(brute_force_min_cost(cost.numpy(), 2), abs=1e-12)


def random_image(seed, n=12, m=3, c=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g)
    boxes = torch.rand(n, 4, generator=g) * 0.4 + 0.2
    labels = torch.randint(0, c, (m,), generator=g)
    gt = torch.rand(m, 4, generator=g) * 0.4 + 0.2
    return logits, boxes, labels, gt


@pytest.mark.parametrize("b", [1, 2, 4])
def test_b_matching_assigner_exactly_b_per_object(b):
    logits, boxes, labels, gt = random_image(0)
    result = HungarianAssigner(MatchCost(), copies=b).assign_image(logits, boxes, labels, gt)
    assert result.positives_per_object().tolist() == [b] * 3
    assert len(set(result.pred_idx.tolist())) == 3 * b  # a prediction serves one object


def test_hungarian_assigner_cost_is_optimal_and_respects_valid():
    logits, boxes, labels, gt = random_image(1, n=6)
    cost = MatchCost()(logits, boxes, labels, gt)
    result = HungarianAssigner(MatchCost()).assign_image(logits, boxes, labels, gt)
    assert cost[result.pred_idx, result.gt_idx].sum().item() == pytest.approx(
        brute_force_min_cost(cost.double().numpy()), abs=1e-4)
    valid = torch.tensor([False, True, False, True, True, True])
    result = HungarianAssigner(MatchCost()).assign_image(logits, boxes, labels, gt, valid=valid)
    assert not set(result.pred_idx.tolist()) & {0, 2}


def test_focal_class_cost_formula():
    logits = torch.tensor([[-2.0, 0.5], [1.0, 3.0]])
    labels = torch.tensor([1, 0, 1])
    p = logits.sigmoid()
    expected = torch.empty(2, 3)
    for i in range(2):
        for j, c in enumerate(labels.tolist()):
            pos = 0.25 * (1 - p[i, c]) ** 2 * -torch.log(p[i, c])
            neg = 0.75 * p[i, c] ** 2 * -torch.log(1 - p[i, c])
            expected[i, j] = pos - neg
    torch.testing.assert_close(focal_class_cost(logits, labels, 0.25, 2.0), expected)


def test_match_cost_weights_pieces():
    logits, boxes, labels, gt = random_image(2, n=4, m=2)
    only_l1 = MatchCost(class_weight=0, bbox_weight=1, giou_weight=0)(logits, boxes, labels, gt)
    torch.testing.assert_close(only_l1[1, 0], (boxes[1] - gt[0]).abs().sum())


def test_every_assigner_handles_no_objects():
    logits, boxes, _, _ = random_image(3)
    no_labels, no_boxes = torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)
    assigners = [HungarianAssigner(MatchCost()), HungarianAssigner(MatchCost(), copies=3),
                 IoUAssigner((0.3, 0.7), allow_low_quality=True, positive_fraction=0.5, batch_per_image=256,
                             object_balance_k=4), MixedAssigner(MatchCost(), 3)]
    for assigner in assigners:
        (result,) = assigner(logits[None], boxes[None], [no_labels], [no_boxes], reference_boxes=boxes[None])
        assert result.num_matches == 0 and result.num_gts == 0 and result.gt_index.eq(-1).all()


def test_rank_within_groups():
    groups = torch.tensor([1, 0, 1, 1, 0])
    scores = torch.tensor([0.2, 0.9, 0.7, 0.5, 0.1])
    assert rank_within_groups(groups, scores).tolist() == [2, 0, 0, 1, 1]


def test_mixed_matching_ranks_and_weights():
    # one object (label 0); three predictions coincide with it but differ in probability, so the
    # quality t = p^.25 * IoU^.75 = p^.25 is known: p = 1/16 -> t = .5, p = .0081 -> t = .3, p = .6561 -> t = .9
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    probs = torch.tensor([1 / 16, 0.0081, 0.6561])
    logits = torch.full((6, 1), -8.0)
    logits[:3, 0] = torch.logit(probs)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 3 + [[0.1, 0.1, 0.05, 0.05]] * 3)
    result = MixedAssigner(MatchCost(), copies=3, tau=1.5).assign_image(logits, boxes, torch.tensor([0]), gt)
    assert sorted(result.pred_idx.tolist()) == [0, 1, 2]
    by_pred = {p: i for i, p in enumerate(result.pred_idx.tolist())}
    quality = [result.quality[by_pred[p]].item() for p in range(3)]
    assert quality == pytest.approx([0.5, 0.3, 0.9], abs=1e-5)
    assert [result.rank[by_pred[p]].item() for p in range(3)] == [1, 2, 0]
    weights = [result.weight[by_pred[p]].item() for p in range(3)]
    assert weights == pytest.approx([math.exp(-1 / 1.5), math.exp(-2 / 1.5), 1.0], abs=1e-6)


def test_mixed_quality_is_clamped():
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[0.1, 0.1, 0.05, 0.05]])  # IoU 0 -> t clamped to .01
    result = MixedAssigner(MatchCost(), copies=1).assign_image(torch.zeros(1, 1), boxes, torch.tensor([0]), gt)
    assert result.quality.tolist() == pytest.approx([0.01])


def test_k_cap_released_carries_over_per_image_does_not():
    # Q = 10 predictions; image 0 has 3 objects -> k = floor(5 / 3) = 1; image 1 (no objects) keeps it;
    # image 2 has 1 object -> per image k = min(5, 3) = 3, released k = 1 (carried over).
    g = torch.Generator().manual_seed(0)
    logits, boxes = torch.randn(3, 10, 2, generator=g), torch.rand(3, 10, 4, generator=g) * 0.4 + 0.2
    labels = [torch.tensor([0, 1, 1]), torch.zeros(0, dtype=torch.long), torch.tensor([1])]
    gts = [torch.rand(3, 4, generator=g) * 0.4 + 0.2, torch.zeros(0, 4), torch.tensor([[0.5, 0.5, 0.3, 0.3]])]
    released = MixedAssigner(MatchCost(), 3, k_cap="released")(logits, boxes, labels, gts)
    per_image = MixedAssigner(MatchCost(), 3, k_cap="per_image")(logits, boxes, labels, gts)
    assert [r.positives_per_object().tolist() for r in released] == [[1, 1, 1], [], [1]]
    assert [r.positives_per_object().tolist() for r in per_image] == [[1, 1, 1], [], [3]]
    # image 0 is capped by its own objects, image 1 has none: only image 2 fires
    assert [r.carried_cap for r in released] == [False, False, True]
    assert [r.carried_cap for r in per_image] == [False, False, False]
    assert capped_copies(3, 20, 10) == 1  # never below one copy


def test_batch_of_one_equals_batch_element():
    g = torch.Generator().manual_seed(4)
    logits, boxes = torch.randn(2, 12, 3, generator=g), torch.rand(2, 12, 4, generator=g) * 0.4 + 0.2
    refs = torch.rand(2, 12, 4, generator=g) * 0.4 + 0.2
    labels = [torch.tensor([0, 2]), torch.tensor([1, 1, 0])]
    gts = [torch.rand(2, 4, generator=g) * 0.4 + 0.2, torch.rand(3, 4, generator=g) * 0.4 + 0.2]
    assigners = [HungarianAssigner(MatchCost()), HungarianAssigner(MatchCost(), 2),
                 IoUAssigner((0.6,), allow_low_quality=True, positive_fraction=1.0, batch_per_image=None,
                             object_balance_k=4), MixedAssigner(MatchCost(), 3, k_cap="per_image")]
    for assigner in assigners:
        batch = assigner(logits, boxes, labels, gts, reference_boxes=refs)
        for b in range(2):
            (single,) = assigner(logits[b:b + 1], boxes[b:b + 1], labels[b:b + 1], gts[b:b + 1],
                                 reference_boxes=refs[b:b + 1])
            assert pairs(single) == pairs(batch[b])


def test_plans_for_each_method():
    loss = LossConfig()
    deta = build_plan(AssignConfig(method="deta"), loss)
    assert deta.decoder_shared and deta.encoder.thresholds == (0.3, 0.7) and deta.last.thresholds == (0.6,)
    assert deta.encoder.batch_per_image == 256 and deta.last.positive_fraction == 0.25
    b = build_plan(AssignConfig(method="b_matching", first_stage_b=4, second_stage_b=2), loss)
    assert (b.encoder.copies, b.auxiliary.copies, b.last.copies) == (4, 2, 2)
    align = build_plan(AssignConfig(method="align", mixed_k=3), loss)
    assert (align.encoder.copies, align.auxiliary.copies, align.last.copies) == (3, 3, 1)
    with pytest.raises(ValueError, match="unknown assignment method"):
        build_plan(AssignConfig(method="nope"), loss)
    with pytest.raises(ValueError, match="topk_behaviour"):
        build_plan(AssignConfig(method="deta", topk_behaviour="sometimes"), loss)


def test_match_with_copies_rejects_non_finite_cost():
    with pytest.raises(ValueError, match="NaN or inf"):
        match_with_copies(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
