"""Trained models, DETA Figure 3 and the plots of the alignment diagnostics.

- loading a run's trained model with its criterion (:func:`load_trained`);
- DETA Figure 3: on one image, the predictions matched to an object (green) and the confident
  predictions matched to none (red), beside the objects (white);
- Align-DETR Figures 1 and 4 drawn from an :class:`~assignlab.diagnostics.AlignmentAnalysis`.

The computations (best-regressed recall, matched confidence and IoU, positives per object by size,
:func:`~assignlab.diagnostics.analyse_alignment`) live in :mod:`assignlab.diagnostics`, below the
engine, which records them at the end of every run; the names the study imports from here are
re-exported.

Boxes are normalised cxcywh unless stated otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from torch import Tensor
from torchvision.ops import box_convert

from assignlab.assign.base import AssignResult
from assignlab.config import Config
from assignlab.diagnostics import (  # noqa: F401  (re-exported: the study imports them from here)
    AlignmentAnalysis,
    TrainedModel,
    analyse_alignment,
    forward_with_assignment,
    last_output_name,
)
from assignlab.engine.checkpoint import load_checkpoint
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model


# ------------------------------------------------------------------------------------- models
def load_trained(checkpoint: str | Path, name: str | None = None) -> TrainedModel:
    """The model of a run's ``checkpoint.pth`` in eval mode, with the criterion of its config."""
    state = load_checkpoint(checkpoint)
    config = Config.from_dict(state["config"])
    model = build_model(config.model)
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedModel(name or config.assign.method, config, model, Criterion.from_config(config))


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


# ---------------------------------------------------------------------- Align-DETR Figures 1, 4
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
