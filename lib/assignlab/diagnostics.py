"""How well a detector's confidence follows its box quality, and how many positives its training
objective gives each object: the pure computations, below the engine (which records them at the
end of every run) and the analysis (which loads trained models and plots them).

- Align-DETR Figure 1: recall of the best-regressed (BR) predictions among the top-k confident
  (HC) ones: per object, the prediction whose box has the highest IoU with it is its BR sample;
  the recall at k = m * N (N objects in the image) is the fraction of objects whose BR sample is
  among the k predictions of highest confidence (max class probability).
- Align-DETR Figure 4: confidence (probability of the object's class) against IoU for the matched
  predictions of the last decoder layer, with Pearson's r.
- DETA's positives per object: how many predictions the training objective assigns to each
  object, by object size (COCO's small/medium/large box-area ranges, scaled to the image size).

Boxes are normalised cxcywh unless stated otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor

from assignlab.assign.base import AssignResult
from assignlab.box_ops import box_iou_cxcywh
from assignlab.config import Config
from assignlab.data.areas import scaled_area_ranges
from assignlab.data.collate import collate_detection
from assignlab.losses.criterion import Criterion


# ------------------------------------------------------------------------------------- models
@dataclass
class TrainedModel:
    """A trained detector with its (resolved) config and criterion."""

    name: str
    config: Config
    model: torch.nn.Module
    criterion: Criterion


@torch.no_grad()
def forward_with_assignment(trained: TrainedModel, images: Tensor, mask: Tensor, targets: Sequence[dict],
                            seed: int = 0) -> tuple[dict, dict[str, list[AssignResult]]]:
    """Model outputs on a batch and the assignment its training objective would make
    ({"enc", "dec0", ...}: one AssignResult per image); DETA's subsampling draws from ``seed``."""
    outputs = trained.model(images, mask)
    generator = torch.Generator().manual_seed(seed)
    return outputs, trained.criterion.assign(outputs, targets, generator=generator)


def last_output_name(trained: TrainedModel) -> str:
    return f"dec{trained.config.model.dec_layers - 1}"


# ------------------------------------------------------------------------ Align-DETR Figure 1
def best_regressed_hits(scores: Tensor, pred_boxes: Tensor, gt_boxes: Tensor, multipliers: Sequence[int]) -> dict[int, int]:
    """For one image: per multiplier m, how many objects have their best-regressed prediction
    among the top-(m * M) confident predictions.

    Args:
        scores: [Q] confidence per prediction (max class probability).
        pred_boxes: [Q, 4], gt_boxes: [M, 4], both cxcywh (any common scale).
    """
    num_objects = gt_boxes.shape[0]
    if num_objects == 0:
        return {m: 0 for m in multipliers}
    iou = box_iou_cxcywh(gt_boxes, pred_boxes)  # (M, Q)
    best_regressed = iou.argmax(1)  # (M,)
    order = scores.argsort(descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return {m: int((rank[best_regressed] < m * num_objects).sum()) for m in multipliers}


# ------------------------------------------------------------------------ Align-DETR Figure 4
def matched_confidence_iou(pred_logits: Tensor, pred_boxes: Tensor, target: dict, result: AssignResult) -> pd.DataFrame:
    """One line per match of one image: confidence (probability of the object's class) and the IoU
    of the predicted box with the object."""
    if result.num_matches == 0:
        return pd.DataFrame({"confidence": [], "iou": []})
    labels = target["labels"][result.gt_idx]
    confidence = pred_logits[result.pred_idx, labels].sigmoid()
    iou = box_iou_cxcywh(pred_boxes[result.pred_idx], target["boxes"][result.gt_idx]).diagonal()
    return pd.DataFrame({"confidence": confidence.double().numpy(), "iou": iou.double().numpy()})


def pearson_r(frame: pd.DataFrame) -> float:
    """Pearson correlation of confidence and IoU (NaN with fewer than 3 matches or no spread)."""
    if len(frame) < 3 or frame["confidence"].std() == 0 or frame["iou"].std() == 0:
        return float("nan")
    return float(stats.pearsonr(frame["confidence"], frame["iou"]).statistic)


# ------------------------------------------------------------------ DETA positives per object
SIZES = ("small", "medium", "large")


def object_sizes(target: dict, image_size: int | None) -> list[str]:
    """Size class of each object of one image by its box area in original-image pixels.

    Args:
        target: {"boxes" [M, 4] normalised cxcywh, "orig_size" (h, w)}.
        image_size: side of the synthetic images (scaled COCO ranges) or None (COCO's ranges).
    """
    height, width = (float(v) for v in target["orig_size"])
    areas = (target["boxes"][:, 2] * width * target["boxes"][:, 3] * height).tolist()
    ranges = scaled_area_ranges(image_size)
    return [next(s for s in SIZES if area < ranges[s][1]) for area in areas]


def positives_by_size(result: AssignResult, sizes: Sequence[str]) -> pd.DataFrame:
    """One line per object of one image: its size and how many predictions it was assigned."""
    return pd.DataFrame({"size": list(sizes), "positives": result.positives_per_object().tolist()})


# --------------------------------------------------------------------------------- datasets
@dataclass
class AlignmentAnalysis:
    """Figure 1 recall per multiplier, Figure 4 matched pairs and positives per object, for one
    model on a dataset."""

    name: str
    recall: pd.DataFrame            # columns: multiplier, recall, objects
    pairs: pd.DataFrame             # columns: confidence, iou
    positives: pd.DataFrame | None = None  # columns: output ("enc" / "last"), size, positives

    @property
    def pearson(self) -> float:
        return pearson_r(self.pairs)

    def summary(self) -> dict[str, float]:
        """Flat numbers for a result file: ``br_recall_m{m}``, ``pearson_r``, ``matches`` and
        ``positives_per_object_{output}_{size}`` (mean over objects; NaN where there is none)."""
        out = {f"br_recall_m{int(m)}": float(r) for m, r in zip(self.recall["multiplier"], self.recall["recall"])}
        out["pearson_r"] = self.pearson
        out["matches"] = float(len(self.pairs))
        if self.positives is not None:
            for (output, size), value in self.positives.groupby(["output", "size"])["positives"].mean().items():
                out[f"positives_per_object_{output}_{size}"] = float(value)
            for output, value in self.positives.groupby("output")["positives"].mean().items():
                out[f"positives_per_object_{output}_all"] = float(value)
        return out


@torch.no_grad()
def analyse_alignment(trained: TrainedModel, dataset, indices: Iterable[int] | None = None,
                      multipliers: Sequence[int] = (1, 2, 3, 5, 10), batch_size: int = 4,
                      area_image_size: int | None = None) -> AlignmentAnalysis:
    """Figure 1 and Figure 4 data of the last decoder layer over ``indices`` of ``dataset``, and
    the positives per object of the encoder proposals and the last decoder layer by object size
    (``area_image_size``: see :func:`object_sizes`).

    Confidence is the classifier's probability: an IoU branch's fusion (``model.iou_branch_fusion``)
    re-scores only the final detections and is not applied here, so the diagnostics describe what
    the classification head learned."""
    indices = list(range(len(dataset)) if indices is None else indices)
    device = next(trained.model.parameters()).device
    hits = {m: 0 for m in multipliers}
    objects = 0
    frames, positives = [], []
    name = last_output_name(trained)
    for start in range(0, len(indices), batch_size):
        images, mask, targets = collate_detection([dataset[i] for i in indices[start:start + batch_size]])
        outputs, assignment = forward_with_assignment(trained, images.to(device), mask.to(device), targets)
        logits, boxes = outputs["pred_logits"].cpu(), outputs["pred_boxes"].cpu()
        for b, target in enumerate(targets):
            scores = logits[b].sigmoid().max(-1).values
            for m, n in best_regressed_hits(scores, boxes[b], target["boxes"], multipliers).items():
                hits[m] += n
            objects += len(target["boxes"])
            frames.append(matched_confidence_iou(logits[b], boxes[b], target, assignment[name][b]))
            sizes = object_sizes(target, area_image_size)
            for output, key in (("enc", "enc"), ("last", name)):
                if key in assignment:
                    positives.append(positives_by_size(assignment[key][b], sizes).assign(output=output))
    recall = pd.DataFrame({"multiplier": list(multipliers),
                           "recall": [hits[m] / objects if objects else np.nan for m in multipliers],
                           "objects": objects})
    return AlignmentAnalysis(trained.name, recall, pd.concat(frames, ignore_index=True),
                             pd.concat(positives, ignore_index=True) if positives else None)
