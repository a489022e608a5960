"""Which predictions each method assigns to which object, and how well confidence follows box quality.

- DETA Figure 3: on one image, the predictions matched to an object (green) and the confident
  predictions matched to none (red), beside the objects (white).
- Align-DETR Figure 1: recall of the best-regressed (BR) predictions among the top-k confident
  (HC) ones: per object, the prediction whose box has the highest IoU with it is its BR sample;
  the recall at k = m * N (N objects in the image) is the fraction of objects whose BR sample is
  among the k predictions of highest confidence (max class probability).
- Align-DETR Figure 4: confidence (probability of the object's class) against IoU for the matched
  predictions of the last decoder layer, as a density with Pearson's r.
- DETA's positives per object: how many predictions the training objective assigns to each
  object, by object size (COCO's small/medium/large box-area ranges, scaled to the image size).

Boxes are normalised cxcywh unless stated otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from assignlab.assign.base import AssignResult
from assignlab.config import Config
from assignlab.data.areas import scaled_area_ranges
from assignlab.data.collate import collate_detection
from assignlab.engine.checkpoint import load_checkpoint
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model


# ------------------------------------------------------------------------------------- models
@dataclass
class TrainedModel:
    """A trained detector with its (resolved) config and criterion."""

    name: str
    config: Config
    model: torch.nn.Module
    criterion: Criterion


def load_trained(checkpoint: str | Path, name: str | None = None) -> TrainedModel:
    """The model of a run's ``checkpoint.pth`` in eval mode, with the criterion of its config."""
    state = load_checkpoint(checkpoint)
    config = Config.from_dict(state["config"])
    model = build_model(config.model)
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedModel(name or config.assign.method, config, model, Criterion.from_config(config))


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


# --------------------------------------------------------------------------- DETA Figure 3
@dataclass(frozen=True)
class MatchPicture:
    """One image's boxes in absolute xyxy pixels: objects [M, 4], matched predictions [P, 4] with
    the object each serves [P], and confident unmatched predictions [R, 4] with their scores [R]."""

    objects: Tensor
    matched: Tensor
    matched_object: Tensor
    background: Tensor
    background_scores: Tensor


def match_picture(pred_logits: Tensor, pred_boxes: Tensor, target: dict, result: AssignResult,
                  score_threshold: float = 0.3) -> MatchPicture:
    """Boxes to draw for one image and one output.

    Args:
        pred_logits: [Q, C]; pred_boxes: [Q, 4] normalised cxcywh (one image).
        target: {"boxes" [M, 4] normalised cxcywh, "size" (h, w) of the network input}.
        result: the output's assignment for this image.
        score_threshold: a prediction matched to no object is drawn when its max class
            probability exceeds this.
    """
    height, width = (int(v) for v in target["size"])
    scale = torch.tensor([width, height, width, height], dtype=pred_boxes.dtype)
    to_pixels = lambda b: box_convert(b.reshape(-1, 4), "cxcywh", "xyxy") * scale  # noqa: E731
    scores = pred_logits.sigmoid().max(-1).values
    unmatched = result.gt_index < 0
    confident = unmatched & (scores > score_threshold)
    return MatchPicture(to_pixels(target["boxes"]), to_pixels(pred_boxes[result.pred_idx]), result.gt_idx.clone(),
                        to_pixels(pred_boxes[confident]), scores[confident])


def draw_match_picture(ax, image: Tensor, picture: MatchPicture, title: str = "") -> None:
    """DETA Figure 3 style: objects white, matched predictions green, confident background red."""
    from assignlab.analysis.draw import draw_boxes

    boxes = torch.cat([picture.objects, picture.matched, picture.background])
    colours = (["white"] * len(picture.objects) + ["lime"] * len(picture.matched)
               + ["red"] * len(picture.background))
    draw_boxes(ax, image, boxes, color=colours, linewidth=1.0)
    ax.set_title(f"{title}\n{len(picture.matched)} matched (green), {len(picture.background)} confident background (red)",
                 fontsize=8)


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
    iou = box_iou(box_convert(gt_boxes, "cxcywh", "xyxy"), box_convert(pred_boxes, "cxcywh", "xyxy"))  # (M, Q)
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
    boxes = box_convert(pred_boxes[result.pred_idx], "cxcywh", "xyxy")
    objects = box_convert(target["boxes"][result.gt_idx], "cxcywh", "xyxy")
    iou = box_iou(boxes, objects).diagonal()
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


def plot_recall(analyses: Sequence[AlignmentAnalysis], ax) -> None:
    """Align-DETR Figure 1a: recall of BR samples against k = m * N, one line per model."""
    import seaborn as sns

    frame = pd.concat([a.recall.assign(model=a.name) for a in analyses], ignore_index=True)
    sns.lineplot(data=frame, x="multiplier", y="recall", hue="model", marker="o", ax=ax)
    ax.set(xlabel="top-k confident, k = m x N objects (m)", ylabel="recall of best-regressed", ylim=(0, 1.02))


def plot_confidence_iou(analysis: AlignmentAnalysis, ax) -> None:
    """Align-DETR Figure 4: density of (IoU, confidence) of the matched predictions, with Pearson r."""
    import seaborn as sns

    if len(analysis.pairs) >= 3:
        sns.histplot(data=analysis.pairs, x="iou", y="confidence", bins=25, cmap="magma", ax=ax,
                     binrange=((0, 1), (0, 1)), cbar=False)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="IoU with the object", ylabel="confidence")
    ax.set_title(f"{analysis.name}: Pearson r = {analysis.pearson:.2f} ({len(analysis.pairs)} matches)", fontsize=9)
