"""Which predictions a method assigns to which object, for one image and one output.

The pieces the match explorer (:mod:`assignlab.analysis.explorer_widget`) and the static figures
of ``inspect_matches`` show:

- :func:`image_state`: a model's outputs on one image, the assignment its own training objective
  makes for every output (through its criterion, :func:`~assignlab.diagnostics.forward_with_assignment`)
  and its final detections (its post-processing);
- :func:`match_view`: for one output, the objects, the pairs (prediction, object) the assignment
  made with IoU and score, the confident predictions matched to nothing;
- :func:`candidates`: for one object, its candidate predictions with the method's own quantities
  (DETA: IoU of the reference box against the stage's thresholds and the top-K cut; Align-DETR:
  quality t, rank and prime-sample weight; one-to-one and B-matching: the terms of the match cost);
- :func:`draw_view`: the picture.

Nothing here assigns: the pairs are the ``AssignResult`` of the method's assigner. Boxes are
absolute xyxy pixels of the network input unless stated otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from assignlab.assign.base import AssignResult
from assignlab.assign.costs import focal_class_cost, giou_cost, l1_cost
from assignlab.assign.hungarian import match_cost_from_config
from assignlab.assign.quality import matched_quality
from assignlab.data.collate import collate_detection
from assignlab.diagnostics import TrainedModel, best_regressed_hits
from assignlab.models.build import build_postprocessor

FINAL = "final"   # the output name of the post-processed detections


@dataclass
class ImageState:
    """One model on one image: the normalised image [3, H, W], its target (normalised cxcywh
    ``boxes`` [M, 4], ``labels`` [M], ``size`` (H, W)), the model's named outputs ({"enc",
    "dec0", ...}: ``pred_logits`` [1, N, C], ``pred_boxes`` [1, N, 4] normalised cxcywh, and the
    reference boxes IoU assignment measures: ``anchors`` for "enc", the proposals for the decoder),
    the assignment per output and the final detections (absolute xyxy ``boxes``, ``scores``,
    ``labels``)."""

    trained: TrainedModel
    image: Tensor
    target: dict
    outputs: dict[str, dict[str, Tensor]]
    assignment: dict[str, AssignResult]
    detections: dict[str, Tensor]

    @property
    def output_names(self) -> list[str]:
        return [*self.assignment, FINAL]


@torch.no_grad()
def image_state(trained: TrainedModel, dataset, index: int) -> ImageState:
    """Run ``trained`` on ``dataset[index]`` and assign as its training objective would."""
    image, target = dataset[index]
    images, mask, targets = collate_detection([(image, target)])
    return assemble_state(trained, image, target, trained.model(images, mask))


@torch.no_grad()
def assemble_state(trained: TrainedModel, image: Tensor, target: dict, outputs: dict, seed: int = 0) -> ImageState:
    """The :class:`ImageState` of model ``outputs`` (batch of one) on ``image``: the assignment of
    ``trained``'s criterion (DETA's subsampling draws from ``seed``, as
    :func:`~assignlab.diagnostics.forward_with_assignment`) and its post-processed detections."""
    assignment = trained.criterion.assign(outputs, [target], generator=torch.Generator().manual_seed(seed))
    named = dict(trained.criterion.named_outputs(outputs))
    for name, out in named.items():
        reference = out.get("anchors") if name == "enc" else outputs.get("proposal_boxes")
        named[name] = {**out, "reference_boxes": reference}
    height, width = (int(v) for v in target["size"])
    detections = build_postprocessor(trained.config.model)(outputs, torch.tensor([[height, width]]))[0]
    return ImageState(trained, image, target, named, {name: results[0] for name, results in assignment.items()
                                                       if name in named}, detections)


def _to_pixels(boxes: Tensor, size) -> Tensor:
    height, width = (int(v) for v in size)
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    return box_convert(boxes.reshape(-1, 4).float(), "cxcywh", "xyxy") * scale


@dataclass(frozen=True)
class MatchView:
    """What one output shows for one image.

    objects: [M, 4] xyxy pixels with ``object_labels`` [M]; pairs: one line per assigned
    (prediction, object) with ``pred``, ``object``, ``iou`` (predicted box vs object), ``score``
    (probability of the object's class), ``x0, y0, x1, y1`` (the predicted box); background: the
    predictions matched to nothing whose best class probability exceeds the threshold (``pred``,
    ``score``, box). For the final detections, pairs are empty and background holds the detections
    above the threshold (``pred`` is the detection's rank)."""

    name: str
    output: str
    objects: Tensor
    object_labels: Tensor
    pairs: pd.DataFrame
    background: pd.DataFrame


BOX_COLUMNS = ["x0", "y0", "x1", "y1"]


def match_view(state: ImageState, output: str, score_threshold: float = 0.3) -> MatchView:
    """The pairs of ``output``'s assignment (or the final detections, ``output="final"``)."""
    objects = _to_pixels(state.target["boxes"], state.target["size"])
    labels = state.target["labels"]
    if output == FINAL:
        keep = state.detections["scores"] > score_threshold
        boxes = state.detections["boxes"][keep]
        frame = pd.DataFrame(boxes.tolist(), columns=BOX_COLUMNS).assign(
            pred=range(int(keep.sum())), score=state.detections["scores"][keep].tolist(),
            label=state.detections["labels"][keep].tolist())
        return MatchView(state.trained.name, output, objects, labels, pd.DataFrame(columns=["pred", "object"]), frame)
    out, result = state.outputs[output], state.assignment[output]
    probs = out["pred_logits"][0].sigmoid()
    boxes = _to_pixels(out["pred_boxes"][0], state.target["size"])
    pred, obj = result.pred_idx, result.gt_idx
    class_of = torch.zeros_like(labels) if output == "enc" and state.trained.criterion.enc_class_agnostic else labels
    iou = box_iou(boxes[pred], objects).gather(1, obj[:, None]).squeeze(1) if len(pred) else torch.zeros(0)
    pairs = pd.DataFrame(boxes[pred].tolist(), columns=BOX_COLUMNS).assign(
        pred=pred.tolist(), object=obj.tolist(), iou=iou.tolist(), score=probs[pred, class_of[obj]].tolist())
    matched = torch.zeros(len(boxes), dtype=torch.bool)
    matched[pred] = True
    valid = out.get("valid")
    best = probs.max(-1).values
    show = ~matched & (best > score_threshold) & (valid[0] if valid is not None else True)
    index = torch.nonzero(show, as_tuple=True)[0]
    background = pd.DataFrame(boxes[index].tolist(), columns=BOX_COLUMNS).assign(
        pred=index.tolist(), score=best[index].tolist())
    return MatchView(state.trained.name, output, objects, labels, pairs, background)


def candidates(state: ImageState, output: str, object_index: int, limit: int = 10) -> pd.DataFrame:
    """The ``limit`` predictions of ``output`` closest to object ``object_index`` (by the IoU of
    their boxes with it; by the method's own ranking quantity where it has one), with: ``pred``,
    ``assigned`` (the assignment pairs it with this object), ``iou`` (predicted box), ``score``
    (probability of the object's class) and the method's quantities:

    - DETA (``deta``, ``deta_decoder_only`` decoder): ``ref_iou`` (the reference box's IoU, which
      IoU assignment thresholds), ``threshold`` (the stage's positive threshold), ``iou_rank`` (its
      rank among all reference boxes by ``ref_iou``, 0 = best) and ``top_k`` (K of object
      balancing; empty for K = inf);
    - Align-DETR (``align``): ``quality_t`` = p^alpha IoU^(1-alpha) (clamped as in training),
      ``rank`` and ``weight`` of the assigned ones (from the assignment);
    - every method: ``cost_class``, ``cost_l1``, ``cost_giou`` and ``cost`` (weighted, as the
      Hungarian matcher sums them; lower = better), the quantities one-to-one and B-matching rank by.
    Empty for the final detections and for an object index the image does not have."""
    if output == FINAL or not 0 <= object_index < len(state.target["labels"]):
        return pd.DataFrame()
    config = state.trained.config
    out, result = state.outputs[output], state.assignment[output]
    logits, boxes_n = out["pred_logits"][0], out["pred_boxes"][0]
    label = state.target["labels"][object_index:object_index + 1]
    if output == "enc" and state.trained.criterion.enc_class_agnostic:
        label = torch.zeros_like(label)
    object_box = state.target["boxes"][object_index:object_index + 1]
    iou = box_iou(_to_pixels(boxes_n, (1, 1)), _to_pixels(object_box, (1, 1)))[:, 0]
    valid = out.get("valid")
    if valid is not None:
        iou = iou.masked_fill(~valid[0], -1.0)
    mine = result.gt_idx == object_index
    assigned = dict(zip(result.pred_idx[mine].tolist(), range(int(mine.sum()))))
    frame = pd.DataFrame({"pred": range(len(iou)), "iou": iou.tolist(),
                          "score": logits[:, label[0]].sigmoid().tolist()})
    frame["assigned"] = frame["pred"].isin(list(assigned))
    match_cost = match_cost_from_config(config.assign)
    frame["cost_class"] = focal_class_cost(logits.float(), label, match_cost.focal_alpha,
                                           match_cost.focal_gamma)[:, 0].tolist()
    frame["cost_l1"] = l1_cost(boxes_n.float(), object_box.float())[:, 0].tolist()
    frame["cost_giou"] = giou_cost(boxes_n.float(), object_box.float())[:, 0].tolist()
    frame["cost"] = match_cost(logits, boxes_n, label, object_box)[:, 0].tolist()
    order = "iou"
    method = config.assign.method
    reference = out.get("reference_boxes")
    if method in ("deta", "deta_decoder_only") and reference is not None and not (
            method == "deta_decoder_only" and output == "enc"):
        ref_iou = box_iou(_to_pixels(reference[0], (1, 1)), _to_pixels(object_box, (1, 1)))[:, 0]
        if valid is not None:
            ref_iou = ref_iou.masked_fill(~valid[0], -1.0)
        frame["ref_iou"] = ref_iou.tolist()
        frame["iou_rank"] = frame["ref_iou"].rank(ascending=False, method="first").astype(int) - 1
        thresholds = config.assign.stage1_iou_thresholds if output == "enc" else (config.assign.stage2_iou_threshold,)
        frame["threshold"] = max(thresholds)
        frame["top_k"] = config.assign.object_balance_k
        order = "ref_iou"
    elif method == "align":
        quality = matched_quality(logits[:, label[0]], boxes_n, object_box.expand(len(boxes_n), 4),
                                  config.loss.ia_bce_alpha, config.loss.ia_bce_min_quality)[1]
        frame["quality_t"] = quality.tolist()
        for column in ("rank", "weight"):
            values = getattr(result, column)
            frame[column] = [values[mine][assigned[p]].item() if p in assigned and values is not None else None
                             for p in frame["pred"]]
        order = "quality_t"
    elif method in ("hungarian", "b_matching"):
        order = "cost"
    frame = frame[frame["iou"] >= 0]  # padding tokens of the encoder
    ascending = order == "cost"
    chosen = frame.sort_values(order, ascending=ascending, kind="stable").head(limit)
    chosen = pd.concat([chosen, frame[frame["assigned"] & ~frame["pred"].isin(chosen["pred"])]])
    return chosen.reset_index(drop=True)


def image_alignment(state: ImageState, multipliers=(1, 2, 3, 4, 5)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Align-DETR Figures 1 and 4 for this image and the last decoder layer: (recall of the
    best-regressed prediction of each object among the top m x N confident, per multiplier m;
    confidence and IoU of each assigned pair)."""
    last = [name for name in state.assignment if name != "enc"][-1]
    out = state.outputs[last]
    scores = out["pred_logits"][0].sigmoid().max(-1).values
    objects = len(state.target["boxes"])
    hits = best_regressed_hits(scores, out["pred_boxes"][0], state.target["boxes"], multipliers) if objects else {}
    recall = pd.DataFrame({"multiplier": list(multipliers),
                           "recall": [hits.get(m, 0) / objects if objects else float("nan") for m in multipliers]})
    view = match_view(state, last)
    return recall, view.pairs[["iou", "score"]].rename(columns={"score": "confidence"})


# ------------------------------------------------------------------------------------ drawing
OBJECT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                  "#bcbd22", "#7f7f7f"]


def object_colour(index: int) -> str:
    return OBJECT_COLOURS[index % len(OBJECT_COLOURS)]


def draw_view(ax, image: Tensor, view: MatchView, selected: int | None = None, names=None) -> None:
    """Objects (solid, numbered, in their colour), each assigned prediction (dashed, in its
    object's colour) with a line from its centre to its object's and its IoU / score written at
    it, confident predictions matched to nothing (red, dotted) and a legend. ``selected``: the
    object whose candidate table is shown, drawn thicker."""
    import matplotlib.patches as patches
    from matplotlib.lines import Line2D

    from assignlab.analysis.draw import denormalize

    ax.imshow(denormalize(image))
    ax.set_axis_off()

    def rectangle(box, colour, style, width):
        x0, y0, x1, y1 = box
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                                       linestyle=style, linewidth=width))

    for i, box in enumerate(view.objects.tolist()):
        rectangle(box, object_colour(i), "-", 3.0 if i == selected else 1.8)
        label = int(view.object_labels[i])
        text = f"{i}" + (f" {names[label]}" if names is not None and label < len(names) else "")
        ax.text(box[0], box[1], text, fontsize=7, color="white", va="bottom",
                bbox=dict(facecolor=object_colour(i), alpha=0.9, pad=0.6, linewidth=0))
    for line in view.pairs.itertuples(index=False):
        colour = object_colour(int(line.object))
        rectangle((line.x0, line.y0, line.x1, line.y1), colour, "--", 1.1)
        obj = view.objects[int(line.object)].tolist()
        centre = ((line.x0 + line.x1) / 2, (line.y0 + line.y1) / 2)
        ax.plot([centre[0], (obj[0] + obj[2]) / 2], [centre[1], (obj[1] + obj[3]) / 2], color=colour, lw=0.8)
        ax.text(centre[0], centre[1], f"{line.iou:.2f}/{line.score:.2f}", fontsize=5.5, color="black",
                ha="center", va="center", bbox=dict(facecolor="white", alpha=0.6, pad=0.2, linewidth=0))
    for line in view.background.itertuples(index=False):
        rectangle((line.x0, line.y0, line.x1, line.y1), "red", ":", 1.1)
        ax.text(line.x1, line.y1, f"{line.score:.2f}", fontsize=5.5, color="red", ha="right", va="top")
    final = view.output == FINAL
    handles = [Line2D([], [], color="0.2", lw=1.8, label="object (number: index)")]
    if final:
        handles.append(Line2D([], [], color="red", lw=1.1, ls=":", label="detection above the threshold (score)"))
    else:
        handles += [Line2D([], [], color="0.2", lw=1.1, ls="--", label="assigned prediction, line to its object "
                                                                         "(IoU / score)"),
                    Line2D([], [], color="red", lw=1.1, ls=":", label="confident, assigned to nothing (score)")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=7, frameon=False)
    what = "final detections" if final else f"output {view.output}: {len(view.pairs)} pairs"
    ax.set_title(f"{view.name}: {what}, {len(view.background)} {'shown' if final else 'confident unassigned'}",
                 fontsize=9)
