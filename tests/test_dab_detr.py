"""DAB-DETR: output contract without encoder proposals, layer-by-layer anchor refinement,
width/height-modulated positional queries, every objective, configuration checks and parameter counts."""
from __future__ import annotations

import contextlib
import io
import math
from argparse import Namespace

import pytest
import torch
from torch import nn
from torchvision.ops import box_convert, box_iou

from assignlab.losses.criterion import Criterion
from assignlab.models import build_model
from assignlab.models.dab_detr import DABDecoder, ProjectedAttention, refine_anchors
from assignlab.models.describe import run as describe_run
from assignlab.models.position_encoding import box_sine_embedding
from assignlab.models.transformer import VanillaEncoder, VanillaEncoderLayer
from assignlab.presets import preset

SMOKE = preset("smoke-dab-detr")
TARGETS = [
    {"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
    {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])},
]


def smoke_model(seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    config = SMOKE.override({f"model.{k}": v for k, v in overrides.items()}) if overrides else SMOKE
    return build_model(config.model)


def randomise_box_head(model: nn.Module, seed: int = 1) -> None:
    """The box head's last layer starts at zero (no refinement); give it weights so layers move the boxes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        last = model.bbox_embed.layers[-1]
        last.weight.copy_(torch.randn(last.weight.shape, generator=generator) * 0.1)
        last.bias.copy_(torch.randn(last.bias.shape, generator=generator) * 0.1)


# ------------------------------------------------------------------------------------ contract
def test_output_contract_without_encoder_proposals():
    model = smoke_model().eval()
    out = model(torch.randn(2, 3, 96, 64))
    queries, classes = SMOKE.model.num_queries, SMOKE.model.num_classes
    assert out["pred_logits"].shape == (2, queries, classes)
    assert out["pred_boxes"].shape == (2, queries, 4)
    assert len(out["aux_outputs"]) == SMOKE.model.dec_layers - 1
    assert "enc_outputs" not in out and "proposal_indices" not in out
    anchors = model.refpoint_embed.weight.sigmoid()
    torch.testing.assert_close(out["proposal_boxes"], anchors[None].expand(2, -1, -1))
    assert not out["proposal_boxes"].requires_grad
    # zero-initialised box head: every layer starts at the learned anchors
    torch.testing.assert_close(out["pred_boxes"], out["proposal_boxes"])


def test_non_dilated_backbone_and_iou_branch():
    model = smoke_model(dilated_c5=False, iou_branch=True)
    out = model(torch.randn(1, 3, 96, 96))  # C5 at stride 32: 3 x 3 tokens
    assert out["pred_iou"].shape == (1, SMOKE.model.num_queries, 1)
    assert all(aux["pred_iou"].shape == (1, SMOKE.model.num_queries, 1) for aux in out["aux_outputs"])


# --------------------------------------------------------------------------- anchor refinement
def test_refine_anchors_hand_worked():
    anchors = torch.tensor([0.5, 0.5, 0.2, 0.2])
    deltas = torch.tensor([0.0, math.log(3.0), 0.0, math.log(4.0)])
    # sigmoid(0 + ln 3) = 3/4; logit(0.2) = ln(1/4), + ln 4 = 0 -> 0.5
    torch.testing.assert_close(refine_anchors(anchors, deltas), torch.tensor([0.5, 0.75, 0.2, 0.5]))


def test_anchors_are_refined_layer_by_layer():
    model = smoke_model(dec_layers=3).eval()
    randomise_box_head(model)
    out = model(torch.randn(1, 3, 96, 96))
    boxes = [aux["pred_boxes"] for aux in out["aux_outputs"]] + [out["pred_boxes"]]
    anchors = out["proposal_boxes"]
    for before, after in zip([anchors] + boxes[:-1], boxes):
        assert (before - after).abs().max() > 1e-4  # each layer moves its boxes


class ConstantLayer(nn.Module):
    """A decoder layer whose output ignores its inputs: what follows it sees the earlier layers
    only through the reference boxes."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(d))

    def forward(self, tgt, *args):
        return self.value.expand_as(tgt)


def run_decoder(look_forward_twice: bool, constant_from: int | None = None):
    torch.manual_seed(0)
    d = 32
    decoder = DABDecoder(d, 64, 0.0, 4, num_layers=3, look_forward_twice=look_forward_twice)
    if constant_from is not None:
        for index in range(constant_from, 3):
            decoder.layers[index] = ConstantLayer(d)
    box_head = nn.Linear(d, 4)
    anchors = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.4]]], requires_grad=True)
    memory, memory_pos = torch.randn(1, 6, d), torch.randn(1, 6, d)
    hidden, boxes, inputs = decoder(torch.zeros(1, 2, d), anchors, memory, memory_pos,
                                    torch.zeros(1, 6, dtype=torch.bool), box_head)
    return decoder, anchors, hidden, boxes, inputs, box_head


@pytest.mark.parametrize("look_forward_twice", [True, False])
def test_decoder_update_uses_inverse_sigmoid_deltas_and_detaches_between_layers(look_forward_twice):
    _, anchors, hidden, boxes, inputs, box_head = run_decoder(look_forward_twice)
    assert inputs[0] is anchors
    for layer in range(3):
        logit = torch.log(inputs[layer] / (1 - inputs[layer]))
        torch.testing.assert_close(boxes[layer], torch.sigmoid(box_head(hidden[layer]) + logit))
        if layer:
            assert not inputs[layer].requires_grad  # each layer reads a detached anchor
    # the learned anchors get a gradient (first layer: not detached)
    grad_anchor, = torch.autograd.grad(boxes[0].sum(), anchors)
    assert grad_anchor.abs().sum() > 0


@pytest.mark.parametrize("look_forward_twice", [True, False])
def test_look_forward_twice_trains_the_previous_layer_through_the_box(look_forward_twice):
    # layer 1 ignores its input, so layer 0 can reach layer 1's box only through its reference box
    decoder, *_, boxes, _, _ = run_decoder(look_forward_twice, constant_from=1)
    weight = decoder.layers[0].linear2.weight
    grad, = torch.autograd.grad(boxes[1].sum(), weight, allow_unused=True)
    reached = grad is not None and grad.abs().sum() > 0
    assert reached == look_forward_twice


def test_width_height_modulated_positional_query_hand_worked():
    d = 32
    decoder = DABDecoder(d, 64, 0.0, 4, num_layers=1)
    # ref_anchor_head outputs logits of (w_ref, h_ref) = (0.2, 0.4) whatever the content
    last = decoder.ref_anchor_head.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.log(torch.tensor([0.2, 0.4]) / torch.tensor([0.8, 0.6])))
    x, y, w, h = 0.3, 0.7, 0.1, 0.8
    anchors = torch.tensor([[[x, y, w, h]]])
    _, query_sine = decoder.positional_queries(anchors, torch.randn(1, 1, d), first=True)
    half = d // 2
    # x features scaled by w_ref / w = 2, y features by h_ref / h = 0.5; feature 0 = sin(2 pi x), 1 = cos(2 pi x)
    torch.testing.assert_close(query_sine[0, 0, 0], torch.tensor(2 * math.sin(2 * math.pi * x)))
    torch.testing.assert_close(query_sine[0, 0, 1], torch.tensor(2 * math.cos(2 * math.pi * x)))
    torch.testing.assert_close(query_sine[0, 0, half], torch.tensor(0.5 * math.sin(2 * math.pi * y)))
    # feature 2 of a group has wavelength 10000 ** (2 / half)
    torch.testing.assert_close(query_sine[0, 0, 2], torch.tensor(2 * math.sin(2 * math.pi * x / 10000 ** (2 / half))))
    assert query_sine.shape == (1, 1, d)
    # without modulation the same features are the plain sine embedding of (x, y)
    plain = DABDecoder(d, 64, 0.0, 4, num_layers=1, modulate_hw_attn=False)
    _, unmodulated = plain.positional_queries(anchors, torch.randn(1, 1, d), first=True)
    torch.testing.assert_close(unmodulated, box_sine_embedding(anchors, half)[..., :d])


def test_projected_attention_concatenates_parts_per_head():
    """Two heads of width 2 per part: the score of a head is q_c . k_c + q_p . k_p over its own slices."""
    attention = ProjectedAttention(4, 2, 0.0)
    with torch.no_grad():
        attention.out_proj.weight.copy_(torch.eye(4))
        attention.out_proj.bias.zero_()
    q_c, q_p = torch.randn(1, 1, 4), torch.randn(1, 1, 4)
    k_c, k_p, value = torch.randn(1, 3, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    out = attention([q_c, q_p], [k_c, k_p], value)
    for head in range(2):
        s = slice(2 * head, 2 * head + 2)
        scores = (k_c[0, :, s] @ q_c[0, 0, s] + k_p[0, :, s] @ q_p[0, 0, s]) / math.sqrt(4)
        expected = torch.softmax(scores, 0) @ value[0, :, s]
        torch.testing.assert_close(out[0, 0, s], expected)


def test_encoder_position_scale_multiplies_the_embedding():
    torch.manual_seed(0)
    layer = VanillaEncoderLayer(32, 64, 0.0, 4)
    zero_scale = nn.Linear(32, 32)
    nn.init.zeros_(zero_scale.weight)
    nn.init.zeros_(zero_scale.bias)
    scaled = VanillaEncoder(layer, 2, pos_scale=zero_scale)
    plain = VanillaEncoder(layer, 2)
    plain.layers.load_state_dict(scaled.layers.state_dict())
    src, pos, mask = torch.randn(1, 5, 32), torch.randn(1, 5, 32), torch.zeros(1, 5, dtype=torch.bool)
    torch.testing.assert_close(scaled(src, pos, mask), plain(src, torch.zeros_like(pos), mask))


# ---------------------------------------------------------------------------------- objectives
@pytest.mark.parametrize("method,cls_loss", [("hungarian", "focal"), ("b_matching", "focal"), ("deta", "focal"),
                                             ("deta_decoder_only", "focal"), ("align", "ia_bce")])
def test_forward_backward_with_every_objective(method, cls_loss):
    config = SMOKE.override({"assign.method": method, "loss.cls_loss": cls_loss, "assign.second_stage_b": 2})
    model = smoke_model().train()
    randomise_box_head(model)
    criterion = Criterion.from_config(config, generator=torch.Generator().manual_seed(0))
    losses = criterion(model(torch.randn(2, 3, 96, 80)), TARGETS)
    assert torch.isfinite(losses["loss"])
    assert not any(key.endswith("_enc") for key in losses)  # no encoder proposals, no encoder loss
    assert {"loss_cls_dec0", "loss_cls_dec1"} <= set(losses)
    losses["loss"].backward()
    for prefix in ("backbone.", "input_proj.", "encoder.", "decoder.", "refpoint_embed.", "class_embed.",
                   "bbox_embed."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), prefix


def test_deta_assignment_measures_iou_against_the_learned_anchors():
    model = smoke_model().eval()
    with torch.no_grad():  # anchor 0 on the object, anchor 1 close to it, the rest elsewhere
        model.refpoint_embed.weight[0] = torch.logit(torch.tensor([0.5, 0.5, 0.2, 0.2]))
        model.refpoint_embed.weight[1] = torch.logit(torch.tensor([0.52, 0.5, 0.2, 0.2]))
        model.refpoint_embed.weight[2:] = torch.logit(torch.tensor([0.1, 0.1, 0.05, 0.05]))
    outputs = model(torch.randn(1, 3, 96, 96))
    targets = [{"labels": torch.tensor([4]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    results = Criterion.from_config(SMOKE.override({"assign.method": "deta"})).assign(outputs, targets)
    assert set(results) == {"dec0", "dec1"}
    assert results["dec1"][0].pred_idx.tolist() == [0, 1]  # IoU 1 and 0.18 / 0.22 >= 0.6
    iou = box_iou(box_convert(targets[0]["boxes"], "cxcywh", "xyxy"),
                  box_convert(outputs["proposal_boxes"][0], "cxcywh", "xyxy"))[0]
    torch.testing.assert_close(results["dec1"][0].iou, iou[:2])


def test_iou_assignment_without_reference_boxes_is_a_clear_error():
    outputs = smoke_model()(torch.randn(1, 3, 96, 96))
    outputs.pop("proposal_boxes")
    with pytest.raises(ValueError, match="reference_boxes"):
        Criterion.from_config(SMOKE.override({"assign.method": "deta"}))(outputs, TARGETS[:1])


# ------------------------------------------------------------------------------- configuration
def test_single_scale_base_rejects_several_feature_levels():
    with pytest.raises(ValueError, match="num_feature_levels must be 1"):
        build_model(SMOKE.override({"model.num_feature_levels": 4}).model)


def test_describe_prints_the_paper_preset_parameter_count():
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert describe_run(Namespace(preset="dab-detr-r50", overrides=[])) == 0
    text = stdout.getvalue()
    assert "dab_detr" in text and "300 queries" in text
    total = float(text.strip().splitlines()[-1].split("total: ")[1].split("M")[0])
    assert 43.0 < total < 45.0  # the DAB-DETR paper: 44M


def test_released_initialisation_and_activation():
    model = smoke_model(seed=3)  # the DAB-DETR presets: released initialisation and PReLU
    centres = model.refpoint_embed.weight.sigmoid()[:, :2].detach()
    assert centres.min() >= 0 and centres.max() <= 1 and centres.requires_grad is False
    assert model.refpoint_embed.weight.requires_grad  # learned, centres included
    # uniform over the image: about a tenth of the centres in each tenth of [0, 1] (N(0, 1) logits
    # would crowd the middle); with 2 x queries values a loose bound suffices
    plain = smoke_model(seed=3, dab_random_refpoints_xy=False, transformer_activation="relu")
    default = plain.refpoint_embed.weight.sigmoid()[:, :2].detach()
    assert ((centres - 0.5).abs() > 0.3).float().mean() > ((default - 0.5).abs() > 0.3).float().mean()
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert len(prelus) == SMOKE.model.enc_layers + SMOKE.model.dec_layers
    assert not any(isinstance(m, nn.PReLU) for m in plain.modules())
    with pytest.raises(ValueError, match="transformer_activation"):
        smoke_model(transformer_activation="gelu")
