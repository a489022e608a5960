"""The training objective: per output, which assignment and which losses apply.

Outputs (the model contract) are named ``"enc"`` (encoder proposals, ``outputs["enc_outputs"]``),
``"dec0"`` ... ``"dec{L-2}"`` (``outputs["aux_outputs"]``) and ``"dec{L-1}"`` (the last layer,
the top-level ``pred_logits``/``pred_boxes``). For each output the criterion computes

- ``loss_cls_<output>``: the configured classification loss (``LossConfig.cls_loss``). The
  encoder proposals get the *same* loss as the decoder, as both released codes do (DETA: focal
  everywhere; Align-DETR: IA-BCE on the encoder proposals too). With
  ``model.enc_class_agnostic`` (DETA's two-stage release) every object is label 0 there; without
  it (DINO and Align-DETR's release) the proposals learn the object classes;
- ``loss_l1_<output>``, ``loss_giou_<output>``: box losses of the matches, each multiplied by the
  match's prime-sample weight when the assignment gives one (Align-DETR eq. 7);
- ``loss_iou_<output>``: the IoU-branch loss, on decoder outputs that carry ``pred_iou``.

Two further output groups, each present only when the model makes it:

- ``"dn0"`` ... ``"dn{L-1}"`` (DINO's denoising queries, ``outputs["dn_outputs"]``): fixed
  matches (each positive denoising query to its object, as the model records them), the
  configured classification loss and the box losses with weight 1, normalised by the object count
  times the number of denoising groups (released Align-DETR);
- ``"one2many_dec0"`` ... (hybrid matching, ``outputs["one2many_outputs"]``): Hungarian matching
  with every object repeated ``assign.hybrid_k`` times, normalised by the object count times
  ``hybrid_k`` (the released code repeats the targets), weighted by ``assign.hybrid_loss_weight``.

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

from assignlab.assign.base import AssignResult, build_plan, check_method
from assignlab.assign.hungarian import HungarianAssigner, match_cost_from_config
from assignlab.assign.quality import matched_quality
from assignlab.config import AssignConfig, Config, LossConfig
from assignlab.losses.boxes import giou_box_loss, l1_box_loss
from assignlab.losses.focal import focal_loss
from assignlab.losses.ia_bce import ia_bce_loss, ia_bce_variant_loss, variant_key
from assignlab.losses.iou_branch import iou_branch_loss
from assignlab.losses.qfl import quality_focal_loss
from assignlab.losses.targets import num_objects_for_normalisation, prepare_targets
from assignlab.losses.vfl import varifocal_loss

ENCODER = "enc"
DENOISING = "dn"
ONE2MANY = "one2many_dec"


@dataclass(frozen=True)
class Positives:
    """The matches of one output, flattened over the batch (all [P]).

    rows: index into the [B * N] flattened predictions; classes: the object's class (0 on the
    encoder when it is trained class-agnostically); iou: IoU of the predicted box with its object (detached); quality: Align-DETR t
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


def check_objective(assign: AssignConfig, loss: LossConfig) -> None:
    """ValueError naming the allowed values when ``assign.method`` is not a key of
    :data:`assignlab.assign.base.METHODS`, ``loss.cls_loss`` not one of :data:`CLASSIFICATION_LOSSES`
    or, for ``"ia_bce_variant"``, ``loss.ia_bce_variant`` not a row of Table B.

    The config module, below both registries, cannot check these names; the criterion checks them
    when it is built, and ``train_run`` before it builds any data."""
    check_method(assign.method)
    if loss.cls_loss not in CLASSIFICATION_LOSSES:
        raise ValueError(f"unknown cls_loss loss.cls_loss={loss.cls_loss!r}; allowed: "
                         f"{', '.join(sorted(CLASSIFICATION_LOSSES))}")
    if loss.cls_loss == "ia_bce_variant":
        variant_key(loss.ia_bce_variant)


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
        denoising: the model makes DINO's denoising outputs (``dn_outputs``).
        one2many: the model makes hybrid matching's one-to-many outputs (``one2many_outputs``).
        enc_class_agnostic: the encoder proposals learn one "object" class (label 0 for every
            object) instead of the object classes.
    """

    def __init__(self, assign: AssignConfig, loss: LossConfig, num_classes: int, *, num_decoder_layers: int = 6,
                 generator: torch.Generator | None = None, denoising: bool = False, one2many: bool = False,
                 enc_class_agnostic: bool = True) -> None:
        super().__init__()
        check_objective(assign, loss)
        if num_decoder_layers < 1:
            raise ValueError(f"num_decoder_layers must be >= 1, got {num_decoder_layers}")
        self.assign_config, self.loss_config = assign, loss
        self.num_classes, self.num_decoder_layers = num_classes, num_decoder_layers
        self.enc_class_agnostic = enc_class_agnostic
        self.plan = build_plan(assign, loss)
        self.generator = generator
        self.output_names = (ENCODER,) + tuple(decoder_output_name(i) for i in range(num_decoder_layers))
        self.denoising_names = tuple(f"{DENOISING}{i}" for i in range(num_decoder_layers)) if denoising else ()
        self.one2many_names = tuple(f"{ONE2MANY}{i}" for i in range(num_decoder_layers)) if one2many else ()
        if one2many and assign.hybrid_k < 1:
            raise ValueError(f"assign.hybrid_k must be >= 1, got {assign.hybrid_k}")
        self.one2many_assigner = (HungarianAssigner(match_cost_from_config(assign), copies=assign.hybrid_k)
                                  if one2many else None)
        self.weight_dict = self._build_weight_dict()

    @classmethod
    def from_config(cls, config: Config, generator: torch.Generator | None = None) -> "Criterion":
        model = config.model
        return cls(config.assign, config.loss, model.num_classes, num_decoder_layers=model.dec_layers,
                   generator=generator, denoising=model.base == "dino" and model.dn_number > 0,
                   one2many=model.num_queries_one2many > 0, enc_class_agnostic=model.enc_class_agnostic)

    def _build_weight_dict(self) -> dict[str, float]:
        cfg = self.loss_config
        weights = {}
        for name in self.output_names:
            weights.update({f"loss_cls_{name}": cfg.cls_weight, f"loss_l1_{name}": cfg.l1_weight,
                            f"loss_giou_{name}": cfg.giou_weight})
            if name != ENCODER:
                weights[f"loss_iou_{name}"] = cfg.iou_branch_weight
        for name in self.denoising_names:
            weights.update({f"loss_cls_{name}": cfg.cls_weight, f"loss_l1_{name}": cfg.l1_weight,
                            f"loss_giou_{name}": cfg.giou_weight, f"loss_iou_{name}": cfg.iou_branch_weight})
        scale = self.assign_config.hybrid_loss_weight
        for name in self.one2many_names:
            weights.update({f"loss_cls_{name}": scale * cfg.cls_weight, f"loss_l1_{name}": scale * cfg.l1_weight,
                            f"loss_giou_{name}": scale * cfg.giou_weight,
                            f"loss_iou_{name}": scale * cfg.iou_branch_weight})
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

    def group_outputs(self, outputs: Mapping[str, Any], key: str,
                      names: Sequence[str]) -> dict[str, Mapping[str, Tensor]]:
        """Per layer name, the layers of an extra query group (``dn_outputs``, ``one2many_outputs``);
        empty when the outputs lack the group."""
        group = outputs.get(key)
        if group is None:
            return {}
        if not names:
            raise ValueError(f"model outputs hold {key!r} but the criterion was not built for them "
                             "(use Criterion.from_config with the model's config)")
        layers = list(group.get("aux_outputs", [])) + [group]
        if len(layers) != len(names):
            raise ValueError(f"{key} holds {len(layers)} decoder layers, the criterion expects {len(names)}")
        named = dict(zip(names, layers))
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
        encoder_labels = [torch.zeros_like(x) for x in labels] if self.enc_class_agnostic else labels
        for name, out in named.items():
            if name == ENCODER:
                results[name] = self.plan.encoder(
                    out["pred_logits"], out["pred_boxes"], encoder_labels, boxes,
                    reference_boxes=out.get("anchors"), valid=out.get("valid"), generator=generator)
                continue
            if self.plan.decoder_shared and shared is not None:
                results[name] = shared
                continue
            assigner = self.plan.last if name == last else self.plan.auxiliary
            results[name] = assigner(out["pred_logits"], out["pred_boxes"], labels, boxes,
                                     reference_boxes=outputs.get("proposal_boxes"), generator=generator)
            shared = results[name]
        for name, out in self.group_outputs(outputs, "one2many_outputs", self.one2many_names).items():
            results[name] = self.one2many_assigner(out["pred_logits"], out["pred_boxes"], labels, boxes)
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
        for name, out in self.group_outputs(outputs, "one2many_outputs", self.one2many_names).items():
            losses.update(self._output_losses(name, out, prepared, assignments[name],
                                              num_objects * self.assign_config.hybrid_k))
        losses.update(self._denoising_losses(outputs, prepared, num_objects))
        losses["loss"] = sum(self.weight_dict[key] * value for key, value in losses.items())
        losses.update(assignment_statistics(assignments))
        return (losses, assignments) if return_assignments else losses

    def _denoising_losses(self, outputs: Mapping[str, Any], targets: list[dict[str, Tensor]],
                          num_objects: float) -> dict[str, Tensor]:
        """Losses of DINO's denoising queries: fixed matches, normalised by objects x groups."""
        named = self.group_outputs(outputs, "dn_outputs", self.denoising_names)
        if not named:
            return {}
        group = outputs["dn_outputs"]
        results = [AssignResult(group["pad_size"], len(t["labels"]), pred_idx.to(t["labels"].device),
                                gt_idx.to(t["labels"].device))
                   for t, pred_idx, gt_idx in zip(targets, group["pred_idx"], group["gt_idx"])]
        normaliser = num_objects * group["num_groups"]
        losses: dict[str, Tensor] = {}
        for name, out in named.items():
            losses.update(self._output_losses(name, out, targets, results, normaliser))
        return losses

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
        if name == ENCODER and self.enc_class_agnostic:
            classes = torch.zeros_like(classes)
        weight = torch.ones(pred_idx.shape, device=logits.device)
        if cfg.prime_sample_weighting:
            weight = torch.cat([torch.ones(r.num_matches, device=logits.device) if r.weight is None
                                else r.weight.to(logits.device).float() for r in results])
        rows = batch_idx * num_preds + pred_idx
        src_boxes = boxes[batch_idx, pred_idx]
        # IoU and quality t of every match, over the batch at once. Most assignments give no t
        # (Hungarian, DETA, the denoising queries' fixed matches, hybrid's one-to-many). Mixed
        # matching's own t (AssignResult.quality, which ranked its matches) has the same value but
        # is computed per image: on CPU, sigmoid and pow take a vectorised path on long tensors and
        # a scalar one on short ones, which can differ in the last bit, so reading it here would
        # change the losses of runs made before; the loss keeps its batch computation.
        with torch.no_grad():
            iou, quality = matched_quality(flat_logits[rows, classes], src_boxes, target_boxes, cfg.ia_bce_alpha,
                                           cfg.ia_bce_min_quality)
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
    """Per output: mean positives per object and the fraction of objects left without a positive;
    and how often the released behaviours fire, as the fraction of the batch's images (``_images``)
    and whether any image of the batch (``_steps``; its epoch mean is the fraction of steps):
    ``stat_shared_*`` a prediction matched to two objects (DETA's released top-K),
    ``stat_carried_cap_*`` k lowered by an earlier image (Align-DETR's released k cap),
    ``stat_zero_iou_*`` an object with zero IoU to every reference box (where DETA's released
    matcher would make every box a positive)."""
    stats = {}
    for name, results in assignments.items():
        shared = torch.tensor([r.num_shared_predictions > 0 for r in results], dtype=torch.float32)
        carried = torch.tensor([r.carried_cap for r in results], dtype=torch.float32)
        zero_iou = torch.tensor([r.zero_iou_objects > 0 for r in results], dtype=torch.float32)
        for key, fired in (("shared", shared), ("carried_cap", carried), ("zero_iou", zero_iou)):
            if fired.numel():
                stats[f"stat_{key}_images_{name}"] = fired.mean()
                stats[f"stat_{key}_steps_{name}"] = fired.max()
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
