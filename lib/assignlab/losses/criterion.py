"""The training objective: per output, which assignment and which losses apply.

Outputs (the model contract) are named ``"enc"`` (encoder proposals, ``outputs["enc_outputs"]``),
``"dec0"`` ... ``"dec{L-2}"`` (``outputs["aux_outputs"]``) and ``"dec{L-1}"`` (the last layer,
the top-level ``pred_logits``/``pred_boxes``). For each output the criterion computes

- ``loss_cls_<output>``: the configured classification loss (``LossConfig.cls_loss``). The
  encoder proposals are trained class-agnostically (every object gets label 0) with the *same*
  loss as the decoder, as both released codes do (DETA: focal everywhere; Align-DETR: IA-BCE on
  the encoder proposals too);
- ``loss_l1_<output>``, ``loss_giou_<output>``: box losses of the matches, each multiplied by the
  match's prime-sample weight when the assignment gives one (Align-DETR eq. 7);
- ``loss_iou_<output>``: the IoU-branch loss, on decoder outputs that carry ``pred_iou``.

Every term is a sum divided by the number of objects (all-reduced across processes, >= 1), never
by the number of positives. ``"loss"`` is the weighted total (weights in :attr:`weight_dict`,
built once: cls 1, L1 5, GIoU 2 by default). Keys ``stat_*`` are detached statistics, not losses.

Where the prime-sample weight w enters: box losses always; IA-BCE and its Table B variants use the
target t * w; focal, QFL and VFL leave the class term unweighted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from assignlab.assign.base import AssignResult, build_plan
from assignlab.config import AssignConfig, Config, LossConfig
from assignlab.losses.boxes import giou_box_loss, l1_box_loss, paired_box_iou
from assignlab.losses.focal import focal_loss
from assignlab.losses.ia_bce import alignment_quality, ia_bce_loss, ia_bce_variant_loss, variant_key
from assignlab.losses.iou_branch import iou_branch_loss
from assignlab.losses.qfl import quality_focal_loss
from assignlab.losses.targets import num_objects_for_normalisation, prepare_targets
from assignlab.losses.vfl import varifocal_loss

ENCODER = "enc"


@dataclass(frozen=True)
class Positives:
    """The matches of one output, flattened over the batch (all [P]).

    rows: index into the [B * N] flattened predictions; classes: the object's class (0 on the
    encoder); iou: IoU of the predicted box with its object (detached); quality: Align-DETR t
    (detached); weight: prime-sample weight (1 where the assignment gives none).
    """

    rows: Tensor
    classes: Tensor
    iou: Tensor
    quality: Tensor
    weight: Tensor


ClassificationLoss = Callable[[Tensor, Positives, LossConfig], Tensor]

CLASSIFICATION_LOSSES: dict[str, ClassificationLoss] = {
    "focal": lambda x, p, c: focal_loss(x, p.rows, p.classes, c.focal_alpha, c.focal_gamma),
    "ia_bce": lambda x, p, c: ia_bce_loss(x, p.rows, p.classes, p.quality * p.weight, c.ia_bce_gamma),
    "ia_bce_variant": lambda x, p, c: ia_bce_variant_loss(x, p.rows, p.classes, p.quality * p.weight,
                                                          c.ia_bce_variant, c.ia_bce_gamma),
    "qfl": lambda x, p, c: quality_focal_loss(x, p.rows, p.classes, p.iou, c.qfl_gamma),
    "vfl": lambda x, p, c: varifocal_loss(x, p.rows, p.classes, p.iou, c.vfl_alpha, c.vfl_gamma),
}


def decoder_output_name(layer: int) -> str:
    return f"dec{layer}"


class Criterion(nn.Module):
    """Assignment plus losses for every output of the two-stage detector.

    Args:
        assign: which assignment method (``assign.method``) and its settings.
        loss: which classification loss and the loss weights.
        num_classes: C, number of object classes (logit channels).
        num_decoder_layers: L; the outputs must hold L - 1 auxiliary layers.
        generator: random source of DETA's subsampling (global RNG when None).
    """

    def __init__(self, assign: AssignConfig, loss: LossConfig, num_classes: int, *, num_decoder_layers: int = 6,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if loss.cls_loss not in CLASSIFICATION_LOSSES:
            raise ValueError(f"unknown cls_loss {loss.cls_loss!r}; known: {sorted(CLASSIFICATION_LOSSES)}")
        if loss.cls_loss == "ia_bce_variant":
            variant_key(loss.ia_bce_variant)
        if num_decoder_layers < 1:
            raise ValueError(f"num_decoder_layers must be >= 1, got {num_decoder_layers}")
        self.assign_config, self.loss_config = assign, loss
        self.num_classes, self.num_decoder_layers = num_classes, num_decoder_layers
        self.plan = build_plan(assign, loss)
        self.generator = generator
        self.output_names = (ENCODER,) + tuple(decoder_output_name(i) for i in range(num_decoder_layers))
        self.weight_dict = self._build_weight_dict()

    @classmethod
    def from_config(cls, config: Config, generator: torch.Generator | None = None) -> "Criterion":
        return cls(config.assign, config.loss, config.model.num_classes,
                   num_decoder_layers=config.model.dec_layers, generator=generator)

    def _build_weight_dict(self) -> dict[str, float]:
        cfg = self.loss_config
        weights = {}
        for name in self.output_names:
            weights.update({f"loss_cls_{name}": cfg.cls_weight, f"loss_l1_{name}": cfg.l1_weight,
                            f"loss_giou_{name}": cfg.giou_weight})
            if name != ENCODER:
                weights[f"loss_iou_{name}"] = cfg.iou_branch_weight
        return weights

    # ----------------------------------------------------------------------------------- outputs
    def named_outputs(self, outputs: Mapping[str, Any]) -> dict[str, Mapping[str, Tensor]]:
        """{"enc": ..., "dec0": ..., ..., "dec{L-1}": ...}; "enc" only when the model has one."""
        for key in ("pred_logits", "pred_boxes"):
            if key not in outputs:
                raise ValueError(f"model outputs lack {key!r}")
        aux = list(outputs.get("aux_outputs", []))
        if len(aux) + 1 != self.num_decoder_layers:
            raise ValueError(f"criterion built for {self.num_decoder_layers} decoder layers, outputs hold "
                             f"{len(aux)} auxiliary + 1 last")
        named: dict[str, Mapping[str, Tensor]] = {}
        if outputs.get("enc_outputs") is not None:
            named[ENCODER] = outputs["enc_outputs"]
        for i, layer in enumerate(aux + [outputs]):
            named[decoder_output_name(i)] = layer
        for name, out in named.items():
            _check_finite(name, out)
        return named

    # -------------------------------------------------------------------------------- assignment
    def assign(self, outputs: Mapping[str, Any], targets: Sequence[Mapping[str, Any]],
               generator: torch.Generator | None = None) -> dict[str, list[AssignResult]]:
        """Per output name, one AssignResult per image (what the losses would use)."""
        named = self.named_outputs(outputs)
        logits = outputs["pred_logits"]
        prepared = prepare_targets(targets, self.num_classes, logits.shape[0], logits.device)
        return self._assign(named, outputs, prepared, generator)

    def _assign(self, named, outputs, targets, generator) -> dict[str, list[AssignResult]]:
        generator = generator if generator is not None else self.generator
        labels = [t["labels"] for t in targets]
        boxes = [t["boxes"] for t in targets]
        last = decoder_output_name(self.num_decoder_layers - 1)
        results: dict[str, list[AssignResult]] = {}
        shared = None
        for name, out in named.items():
            if name == ENCODER:
                results[name] = self.plan.encoder(
                    out["pred_logits"], out["pred_boxes"], [torch.zeros_like(x) for x in labels], boxes,
                    reference_boxes=out.get("anchors"), valid=out.get("valid"), generator=generator)
                continue
            if self.plan.decoder_shared and shared is not None:
                results[name] = shared
                continue
            assigner = self.plan.last if name == last else self.plan.auxiliary
            results[name] = assigner(out["pred_logits"], out["pred_boxes"], labels, boxes,
                                     reference_boxes=outputs.get("proposal_boxes"), generator=generator)
            shared = results[name]
        return results

    # ------------------------------------------------------------------------------------ losses
    def forward(self, outputs: Mapping[str, Any], targets: Sequence[Mapping[str, Any]],
                generator: torch.Generator | None = None, return_assignments: bool = False):
        """Loss terms, ``"loss"`` (weighted total) and ``stat_*`` statistics.

        Args:
            outputs: the model's output dict (see the module docstring).
            targets: per image {"labels": [n] long, "boxes": [n, 4] cxcywh in [0, 1]}.
            generator: random source of the subsampling for this call.
            return_assignments: also return the assignments used, per output name.
        """
        named = self.named_outputs(outputs)
        logits = outputs["pred_logits"]
        prepared = prepare_targets(targets, self.num_classes, logits.shape[0], logits.device)
        num_objects = num_objects_for_normalisation(prepared, logits.device)
        assignments = self._assign(named, outputs, prepared, generator)
        losses: dict[str, Tensor] = {}
        for name, out in named.items():
            losses.update(self._output_losses(name, out, prepared, assignments[name], num_objects))
        losses["loss"] = sum(self.weight_dict[key] * value for key, value in losses.items())
        losses.update(assignment_statistics(assignments))
        return (losses, assignments) if return_assignments else losses

    def _output_losses(self, name: str, out: Mapping[str, Tensor], targets: list[dict[str, Tensor]],
                       results: list[AssignResult], num_objects: float) -> dict[str, Tensor]:
        cfg = self.loss_config
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        batch, num_preds, _ = logits.shape
        flat_logits = logits.flatten(0, 1)
        batch_idx = torch.cat([torch.full_like(r.pred_idx, b) for b, r in enumerate(results)])
        pred_idx = torch.cat([r.pred_idx for r in results])
        target_boxes = torch.cat([t["boxes"][r.gt_idx] for t, r in zip(targets, results)])
        classes = torch.cat([t["labels"][r.gt_idx] for t, r in zip(targets, results)])
        if name == ENCODER:
            classes = torch.zeros_like(classes)
        weight = torch.ones(pred_idx.shape, device=logits.device)
        if cfg.prime_sample_weighting:
            weight = torch.cat([torch.ones(r.num_matches, device=logits.device) if r.weight is None
                                else r.weight.to(logits.device).float() for r in results])
        rows = batch_idx * num_preds + pred_idx
        src_boxes = boxes[batch_idx, pred_idx]
        with torch.no_grad():
            iou = paired_box_iou(src_boxes.float(), target_boxes)
            prob = flat_logits[rows, classes].float().sigmoid()
            quality = alignment_quality(prob, iou, cfg.ia_bce_alpha, cfg.ia_bce_min_quality)
        positives = Positives(rows, classes, iou, quality, weight)
        terms = {
            f"loss_cls_{name}": CLASSIFICATION_LOSSES[cfg.cls_loss](flat_logits, positives, cfg),
            f"loss_l1_{name}": (weight * l1_box_loss(src_boxes, target_boxes)).sum(),
            f"loss_giou_{name}": (weight * giou_box_loss(src_boxes, target_boxes)).sum(),
        }
        if name != ENCODER and out.get("pred_iou") is not None:
            iou_logits = out["pred_iou"].reshape(batch * num_preds)[rows]
            terms[f"loss_iou_{name}"] = iou_branch_loss(iou_logits, iou)
        return {key: value / num_objects for key, value in terms.items()}


def positives_per_object(results: Sequence[AssignResult]) -> Tensor:
    """[total objects of the batch] long: how many predictions each object was matched to."""
    counts = [r.positives_per_object() for r in results]
    return torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)


def assignment_statistics(assignments: Mapping[str, Sequence[AssignResult]]) -> dict[str, Tensor]:
    """Per output: mean positives per object and the fraction of objects left without a positive."""
    stats = {}
    for name, results in assignments.items():
        counts = positives_per_object(results).float()
        if counts.numel() == 0:
            counts = torch.zeros(1)
            unmatched = torch.zeros(())
        else:
            unmatched = (counts == 0).float().mean()
        stats[f"stat_pos_per_object_{name}"] = counts.mean().detach()
        stats[f"stat_unmatched_objects_{name}"] = unmatched.detach()
    return stats


def _check_finite(name: str, out: Mapping[str, Tensor]) -> None:
    """ValueError when an output holds NaN or inf (encoder boxes: only where ``valid``)."""
    valid = out.get("valid")
    for key in ("pred_logits", "pred_boxes", "pred_iou"):
        value = out.get(key)
        if value is None:
            continue
        if key == "pred_boxes" and valid is not None:
            value = value[valid]
        if not torch.isfinite(value.detach()).all():
            raise ValueError(f"model output {name}.{key} contains NaN or inf")
