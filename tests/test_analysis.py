"""Match inspection (DETA Figure 3, Align-DETR Figures 1 and 4), runtime breakdown, results index."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from assignlab.analysis.matches import match_picture
from assignlab.analysis.runtime import MODULES, time_modules
from assignlab.assign.base import AssignResult
from assignlab.diagnostics import TrainedModel, analyse_alignment, best_regressed_hits, matched_confidence_iou, pearson_r
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model, build_postprocessor
from assignlab.study.report.index import build_index
from assignlab.study.run.plan import plan_runs
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.methods import deta, hungarian
from assignlab.study.tables.profiles import get_profile

OBJECTS = torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2]])
# p0 = object 0 exactly, p1 = object 1 shifted right by 0.05 (IoU 0.6), p2 = object 1 exactly, p3 = elsewhere
PREDICTIONS = torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.8, 0.75, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]])


def test_best_regressed_recall_on_a_hand_worked_image():
    # best-regressed: object 0 -> p0, object 1 -> p2
    scores = torch.tensor([0.1, 0.9, 0.2, 0.8])  # confidence order p1, p3, p2, p0
    assert best_regressed_hits(scores, PREDICTIONS, OBJECTS, [1, 2]) == {1: 0, 2: 2}
    scores = torch.tensor([0.1, 0.9, 0.85, 0.8])  # order p1, p2, p3, p0: p2 is in the top 2
    assert best_regressed_hits(scores, PREDICTIONS, OBJECTS, [1, 2]) == {1: 1, 2: 2}
    assert best_regressed_hits(scores, PREDICTIONS, OBJECTS[:0], [1]) == {1: 0}


def _logits(probabilities, num_classes=5, classes=None):
    """[Q, C] logits whose max probability per row is ``probabilities`` (at ``classes``), others 0.001."""
    probs = torch.full((len(probabilities), num_classes), 0.001)
    classes = classes or [0] * len(probabilities)
    for q, (p, c) in enumerate(zip(probabilities, classes)):
        probs[q, c] = p
    return torch.logit(probs)


def test_matched_confidence_and_iou_of_each_match():
    logits = _logits([0.3, 0.9, 0.7, 0.8], classes=[3, 1, 1, 0])
    target = {"boxes": OBJECTS, "labels": torch.tensor([3, 1])}
    result = AssignResult(4, 2, torch.tensor([0, 1]), torch.tensor([0, 1]))
    frame = matched_confidence_iou(logits, PREDICTIONS, target, result)
    assert frame["confidence"].tolist() == pytest.approx([0.3, 0.9], abs=1e-6)
    # p1 vs object 1: overlap 0.15 x 0.2 = 0.03, union 0.04 + 0.04 - 0.03 = 0.05
    assert frame["iou"].tolist() == pytest.approx([1.0, 0.6], abs=1e-6)
    empty = matched_confidence_iou(logits, PREDICTIONS, target, AssignResult.empty(4, 2))
    assert len(empty) == 0


def test_pearson_r_matches_numpy():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"confidence": rng.random(50), "iou": rng.random(50)})
    assert pearson_r(frame) == pytest.approx(np.corrcoef(frame["confidence"], frame["iou"])[0, 1])
    assert pearson_r(pd.DataFrame({"confidence": [0.1, 0.2, 0.3], "iou": [0.2, 0.4, 0.6]})) == pytest.approx(1.0)
    assert math.isnan(pearson_r(frame.head(2)))


def test_match_picture_colours_matched_and_confident_background_boxes():
    logits = _logits([0.95, 0.9, 0.2, 0.8])
    target = {"boxes": OBJECTS, "size": torch.tensor([100, 200])}  # (h, w)
    result = AssignResult(4, 2, torch.tensor([0, 2]), torch.tensor([0, 1]))
    picture = match_picture(logits, PREDICTIONS, target, result, score_threshold=0.5)
    assert picture.objects[0].tolist() == pytest.approx([30.0, 15.0, 70.0, 35.0])  # x 50 +- 20, y 25 +- 10
    assert torch.allclose(picture.matched, picture.objects)
    assert picture.matched_object.tolist() == [0, 1]
    assert len(picture.background) == 2  # p1 (0.9) and p3 (0.8); p0 is matched despite 0.95
    assert picture.background_scores.tolist() == pytest.approx([0.9, 0.8], abs=1e-6)
    assert len(match_picture(logits, PREDICTIONS, target, result, score_threshold=0.85).background) == 1


def test_alignment_of_a_one_to_one_model_has_one_match_per_object(synth_val):
    from assignlab.data.coco import CocoDetection
    from assignlab.data.transforms import DetectionTransform

    root, ann_file = synth_val
    config = get_profile("smoke").base_config().override(hungarian())
    torch.manual_seed(0)
    trained = TrainedModel("h", config, build_model(config.model).eval(), Criterion.from_config(config))
    dataset = CocoDetection(root / "images", ann_file, transforms=DetectionTransform("fixed", train=False, image_size=96))
    analysis = analyse_alignment(trained, dataset, indices=range(4), multipliers=(1, 2, 100))
    objects = sum(len(dataset[i][1]["boxes"]) for i in range(4))
    assert analysis.recall["objects"].iloc[0] == objects
    assert len(analysis.pairs) == objects
    recall = analysis.recall["recall"].tolist()
    assert recall == sorted(recall) and recall[-1] == 1.0  # k = 100 N covers every query
    assert analysis.pairs["iou"].between(0, 1).all() and analysis.pairs["confidence"].between(0, 1).all()


def test_runtime_modules_add_up_to_the_total():
    base = get_profile("smoke").base_config()
    for overrides in (deta(4), hungarian()):
        config = base.override(overrides)
        torch.manual_seed(0)
        model = build_model(config.model)
        times = time_modules(model, build_postprocessor(config.model), torch.randn(1, 3, 96, 96), repeats=2, warmup=1)
        assert set(times) == set(MODULES) | {"total"}
        assert all(times[m] > 0 for m in MODULES)
        assert sum(times[m] for m in MODULES) == pytest.approx(times["total"])
    assert not model.backbone._forward_hooks  # hooks are removed afterwards


def test_results_index_lists_tables_verdicts_and_notes(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "deta_table1.md").write_text("# t\n")
    pd.DataFrame([{"claim": "DETA beats Hungarian", "test": "d > 0", "mean": 1.5, "ci95": 0.5, "paper": 2.5,
                   "n_seeds": 3, "verdict": "reproduced"}]).to_csv(tmp_path / "tables" / "deta_table1_claims.csv")
    (tmp_path / "notes.md").write_text("Sizing: 42 minutes per run.")
    # a run of another table counts (tables share runs): Table 8's k=2 without the weighting, seed 0
    first_run = next(run for run in plan_runs("align_table8", "cpu") if run.rows == ("k=2, no PS",))
    (tmp_path / "runs" / "deta_table5").mkdir(parents=True)
    record = {"config": first_run.config.to_dict(), "wall_time_s": 600.0}
    (tmp_path / "runs" / "deta_table5" / f"{first_run.run_id}.json").write_text(json.dumps(record))
    text = build_index(tmp_path)
    assert "[table](tables/deta_table1.md)" in text
    assert "DETA beats Hungarian (d > 0): **reproduced** (d = +1.50 ± 0.50, paper +2.5, 3 seeds)" in text
    assert "Sizing: 42 minutes per run." in text
    assert "Align-DETR Table 4: classification losses against the misalignment problem: not run yet" in text
    assert "Align-DETR Table 8: prime-sample weighting: in progress, 1 of 15 runs finished at the cpu profile" in text
    distinct = len({run.run_id for name in TABLES for run in plan_runs(name, "cpu")})
    assert f"| total | {distinct} | 1 | 0.17 |" in text  # the compute section charges the run once
