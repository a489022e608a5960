"""The match explorer on a hand-built image: three objects and a few predictions whose pairs and
candidate quantities are worked out by hand, for one-to-one matching, DETA and Align-DETR."""
import math

import pandas as pd
import pytest
import torch

from assignlab.analysis.explorer import FINAL, assemble_state, candidates, match_view
from assignlab.config import Config
from assignlab.diagnostics import TrainedModel
from assignlab.losses.criterion import Criterion

# three objects (normalised cxcywh) on a 100 x 100 image: A, B of class 1, C of class 2
OBJECTS = torch.tensor([[0.25, 0.25, 0.20, 0.20], [0.70, 0.30, 0.20, 0.20], [0.50, 0.75, 0.30, 0.20]])
LABELS = torch.tensor([1, 1, 2])
# five queries: q0 is A moved 0.02 right, q1 is B, q2 is C, q3 is A moved 0.05 down, q4 is far from all
QUERIES = torch.tensor([[0.27, 0.25, 0.20, 0.20], [0.70, 0.30, 0.20, 0.20], [0.50, 0.75, 0.30, 0.20],
                        [0.25, 0.30, 0.20, 0.20], [0.90, 0.90, 0.05, 0.05]])
HIGH, LOW = 3.0, -3.0
# q0-q2 score their object's class high; q3 scores A's class 0; q4 nothing
LOGITS = torch.full((5, 3), LOW)
LOGITS[0, 1], LOGITS[1, 1], LOGITS[2, 2], LOGITS[3, 1] = HIGH, HIGH, HIGH, 0.0
# the proposals DETA's decoder assignment measures: q0's is A itself, q3's is A moved 0.02 down
PROPOSALS = torch.tensor([[0.25, 0.25, 0.20, 0.20], [0.70, 0.30, 0.20, 0.20], [0.50, 0.75, 0.30, 0.20],
                          [0.25, 0.27, 0.20, 0.20], [0.90, 0.90, 0.05, 0.05]])


def _state(method: str, cls_loss: str = "focal"):
    # DETA's decoder may make positives of all 5 queries (released: a quarter of the queries, here 1)
    config = Config().override({"assign.method": method, "loss.cls_loss": cls_loss, "model.num_classes": 3,
                                "model.dec_layers": 2, "model.postprocess": "topk", "model.max_detections": 5,
                                "assign.stage2_positive_fraction": 1.0})
    criterion = Criterion(config.assign, config.loss, 3, num_decoder_layers=2)
    layer = {"pred_logits": LOGITS[None].clone(), "pred_boxes": QUERIES[None].clone()}
    outputs = {**layer, "aux_outputs": [dict(layer)], "proposal_boxes": PROPOSALS[None].clone(),
               "enc_outputs": {"pred_logits": LOGITS[None].clone(), "pred_boxes": QUERIES[None].clone(),
                               "anchors": PROPOSALS[None].clone(), "valid": torch.ones(1, 5, dtype=torch.bool)}}
    target = {"labels": LABELS, "boxes": OBJECTS, "size": torch.tensor([100, 100])}
    trained = TrainedModel(method, config, None, criterion)
    return assemble_state(trained, torch.zeros(3, 100, 100), target, outputs)


def _iou(a, b):
    """IoU of two cxcywh boxes, by hand."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _focal_cost(logit, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-logit))
    return alpha * (1 - p) ** gamma * -math.log(p) - (1 - alpha) * p ** gamma * -math.log(1 - p)


def test_one_to_one_pairs_and_cost_terms():
    state = _state("hungarian")
    view = match_view(state, "dec1", score_threshold=0.3)
    result = state.assignment["dec1"]
    # the explorer shows exactly the assigner's pairs, which are the obvious ones here
    assert sorted(zip(view.pairs["pred"], view.pairs["object"])) == \
        sorted(zip(result.pred_idx.tolist(), result.gt_idx.tolist())) == [(0, 0), (1, 1), (2, 2)]
    pair = view.pairs.set_index("pred").loc[0]
    assert pair["iou"] == pytest.approx(0.036 / 0.044, rel=1e-5)          # 0.18 x 0.20 over 0.044
    assert pair["score"] == pytest.approx(1 / (1 + math.exp(-HIGH)), rel=1e-6)
    assert [round(v) for v in (pair["x0"], pair["y0"], pair["x1"], pair["y1"])] == [17, 15, 37, 35]
    # q3 scores 0.5 > 0.3 on A's class and is matched to nothing: drawn as confident background
    assert view.background["pred"].tolist() == [3] and view.background["score"].item() == pytest.approx(0.5)
    table = candidates(state, "dec1", 0).set_index("pred")
    assert table.index[0] == 0 and table.loc[0, "assigned"] and not table.loc[3, "assigned"]
    for q in (0, 3):
        iou = _iou(QUERIES[q].tolist(), OBJECTS[0].tolist())
        l1 = float((QUERIES[q] - OBJECTS[0]).abs().sum())
        giou = -iou  # the enclosing box is the union for these side-by-side boxes
        assert table.loc[q, "iou"] == pytest.approx(iou, rel=1e-5)
        assert table.loc[q, "cost_class"] == pytest.approx(_focal_cost(float(LOGITS[q, 1])), rel=1e-5)
        assert table.loc[q, "cost_l1"] == pytest.approx(l1, rel=1e-5)
        assert table.loc[q, "cost_giou"] == pytest.approx(giou, rel=1e-5)
        assert table.loc[q, "cost"] == pytest.approx(2 * _focal_cost(float(LOGITS[q, 1])) + 5 * l1 + 2 * giou, rel=1e-5)


def test_deta_candidates_show_the_reference_iou_against_the_threshold():
    state = _state("deta")
    view = match_view(state, "dec1")
    result = state.assignment["dec1"]
    assert sorted(zip(view.pairs["pred"], view.pairs["object"])) == \
        sorted(zip(result.pred_idx.tolist(), result.gt_idx.tolist()))
    table = candidates(state, "dec1", 0).set_index("pred")
    ref_iou_q3 = _iou(PROPOSALS[3].tolist(), OBJECTS[0].tolist())             # 0.2 x 0.18 over 0.044
    assert table.loc[3, "ref_iou"] == pytest.approx(0.036 / 0.044, rel=1e-5) == pytest.approx(ref_iou_q3)
    assert table.loc[0, "ref_iou"] == pytest.approx(1.0) and table.loc[0, "iou_rank"] == 0
    assert table.loc[3, "iou_rank"] == 1
    assert (table["threshold"] == 0.6).all() and (table["top_k"] == 4).all()
    # both reference boxes clear 0.6: DETA assigns both q0 and q3 to A (one-to-many)
    assert table.loc[0, "assigned"] and table.loc[3, "assigned"]
    assert {0, 3} <= set(view.pairs.loc[view.pairs["object"] == 0, "pred"])


def test_align_candidates_show_quality_rank_and_weight():
    state = _state("align", "ia_bce")
    result = state.assignment["dec1"]          # the last layer: one-to-one
    view = match_view(state, "dec1")
    assert sorted(zip(view.pairs["pred"], view.pairs["object"])) == \
        sorted(zip(result.pred_idx.tolist(), result.gt_idx.tolist())) == [(0, 0), (1, 1), (2, 2)]
    table = candidates(state, "dec1", 0).set_index("pred")
    p, iou = 1 / (1 + math.exp(-HIGH)), 0.036 / 0.044
    assert table.loc[0, "quality_t"] == pytest.approx(p ** 0.25 * iou ** 0.75, rel=1e-5)
    assert table.loc[0, "rank"] == 0 and table.loc[0, "weight"] == pytest.approx(1.0)
    q3 = _iou(QUERIES[3].tolist(), OBJECTS[0].tolist())
    assert table.loc[3, "quality_t"] == pytest.approx(0.5 ** 0.25 * q3 ** 0.75, rel=1e-5)
    assert pd.isna(table.loc[3, "rank"]) and pd.isna(table.loc[3, "weight"])
    # the auxiliary layer gives each object k = 3 copies (capped at half the 5 queries over 3 objects: 1)
    aux = state.assignment["dec0"]
    assert sorted(zip(aux.pred_idx.tolist(), aux.gt_idx.tolist())) == \
        sorted(zip(match_view(state, "dec0").pairs["pred"], match_view(state, "dec0").pairs["object"]))


def test_final_detections_have_no_pairs():
    state = _state("hungarian")
    assert state.output_names == ["enc", "dec0", "dec1", FINAL]
    view = match_view(state, FINAL, score_threshold=0.3)
    assert view.pairs.empty and len(view.background) == 4       # q0, q1, q2 at 0.95 and q3 at 0.5
    assert candidates(state, FINAL, 0).empty


def test_an_object_the_image_does_not_have_gives_no_candidates():
    state = _state("hungarian")
    assert candidates(state, "dec1", 3).empty and candidates(state, "dec1", -1).empty
