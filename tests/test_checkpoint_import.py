"""Released DETA checkpoints: import from both layouts, output parity with transformers' DETA.

The oracle is an independent implementation of DETA inference: transformers'
``DetaForObjectDetection`` (``transformers.models.deprecated.deta``, an optional test dependency).
A small randomly initialised model (ResNet-50 backbone, 64-wide transformer, 5 feature levels) is
imported through our ``hf-deta`` mapping; both models see the same normalised images.
"""
import argparse
import json
import re
import warnings

import pytest
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment

transformers = pytest.importorskip("transformers")
deta = pytest.importorskip("transformers.models.deprecated.deta")

from assignlab.checkpoints.import_deta import CheckpointImportError, import_deta  # noqa: E402
from assignlab.cli import main  # noqa: E402
from assignlab.data.coco import CocoDetection  # noqa: E402
from assignlab.data.transforms import DetectionTransform  # noqa: E402
from assignlab.engine.checkpoint import load_checkpoint  # noqa: E402
from assignlab.engine.loop import evaluate_model  # noqa: E402
from assignlab.models.build import build_model, build_postprocessor  # noqa: E402
from assignlab.models.postprocess import dataset_labels_of, remap_postprocess  # noqa: E402

NUM_QUERIES = 100
DEC_LAYERS = 3
TOL = 1e-4


def make_hf_config():
    return deta.DetaConfig(
        backbone_config=transformers.ResNetConfig(out_features=["stage2", "stage3", "stage4"]),
        d_model=64, encoder_layers=2, decoder_layers=DEC_LAYERS, encoder_ffn_dim=128, decoder_ffn_dim=128,
        num_feature_levels=5, two_stage_num_proposals=NUM_QUERIES, num_queries=NUM_QUERIES, num_labels=91,
    )


def make_hf_model(seed=0):
    """transformers' DETA with every weight and batch-norm statistic perturbed away from its
    initial value (so that a mapping error cannot hide behind zeros, ones or shared inits)."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = deta.DetaForObjectDetection(make_hf_config()).eval()
    with torch.no_grad():
        seen = set()
        for name, tensor in model.state_dict().items():
            if id(tensor) in seen:  # heads registered twice are one tensor
                continue
            seen.add(id(tensor))
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.05)
    return model


def our_model(imported, msda_impl="reference", **overrides):
    config = imported.config.override({"model.msda_impl": msda_impl, **{f"model.{k}": v for k, v in overrides.items()}})
    model = build_model(config.model).eval()
    model.load_state_dict(imported.state_dict)
    return model


def padded_batch():
    """Two images 256x320; the second has a valid region of 200x288 (bottom and right padding)."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 256, 320, generator=generator)
    mask = torch.zeros(2, 256, 320, dtype=torch.bool)
    mask[1, 200:] = True
    mask[1, :, 288:] = True
    images[1][:, mask[1]] = 0.0
    return images, mask


def run_hf(model, images, mask):
    with torch.no_grad():
        return model(pixel_values=images, pixel_mask=(~mask).long())


@pytest.fixture(scope="module")
def hf():
    return make_hf_model()


@pytest.fixture(scope="module")
def imported(hf):
    return import_deta(hf.state_dict(), "hf-deta", metadata=hf.config.to_dict(), source="hf-test")


@pytest.fixture(scope="module")
def outputs(hf, imported):
    images, mask = padded_batch()
    with torch.no_grad():
        ours = our_model(imported, msda_impl="auto")(images, mask)  # the compiled op where it builds
    return ours, run_hf(hf, images, mask)


def test_configuration_is_inferred_from_the_weights(imported):
    model = imported.config.model
    assert (model.num_feature_levels, model.hidden_dim, model.enc_layers, model.dec_layers) == (5, 64, 2, DEC_LAYERS)
    assert (model.dim_feedforward, model.num_classes, model.nheads, model.enc_n_points, model.dec_n_points) == (128, 91, 8, 4, 4)
    assert model.num_queries == NUM_QUERIES and model.backbone == "resnet50"
    # the released inference, not our defaults
    assert model.query_selection == "nms_released" and model.select_valid_proposals_only is False
    assert model.postprocess == "nms"
    # dropped: exactly the heads registered a second time under model.decoder, each checked equal
    heads = DEC_LAYERS + 1
    assert len(imported.dropped) == heads * (2 + 6)
    assert all(d.startswith(("model.decoder.class_embed.", "model.decoder.bbox_embed.")) and "checked equal" in d
               for d in imported.dropped)
    # COCO label convention: label index = category id; 0 and unused ids have no category
    assert imported.label_to_category_id[1] == 1 and imported.label_to_category_id[90] == 90
    assert imported.label_to_category_id[0] is None and imported.label_to_category_id[12] is None


def test_encoder_proposals_match(outputs):
    ours, theirs = outputs
    enc = ours["enc_outputs"]
    torch.testing.assert_close(enc["pred_logits"], theirs.enc_outputs_class, atol=TOL, rtol=0)
    # padded tokens have infinite box logits in both (sigmoid -> 1)
    torch.testing.assert_close(enc["pred_boxes"], theirs.enc_outputs_coord_logits.sigmoid(), atol=TOL, rtol=0)
    assert (~enc["valid"][1]).any() and enc["valid"][0].all()


def test_selected_queries_match(outputs):
    """Assumes both select the same proposals in the same order: the encoder scores of the two
    models differ by about 1e-6, ten times less than the closest gap that decides the selection
    of this fixture (measured)."""
    ours, theirs = outputs
    indices = ours["proposal_indices"]
    assert indices.shape == (2, NUM_QUERIES)
    # transformers returns the selected proposals' boxes: they are its proposals at our indices, in our order
    gathered = torch.gather(theirs.enc_outputs_coord_logits.sigmoid(), 1, indices[..., None].expand(-1, -1, 4))
    torch.testing.assert_close(gathered, theirs.init_reference_points, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours["proposal_boxes"], theirs.init_reference_points, atol=TOL, rtol=0)


def test_every_decoder_layer_matches(hf, outputs):
    ours, theirs = outputs
    layers = ours["aux_outputs"] + [{"pred_logits": ours["pred_logits"], "pred_boxes": ours["pred_boxes"]}]
    assert len(layers) == DEC_LAYERS
    with torch.no_grad():
        for layer, output in enumerate(layers):
            their_logits = hf.class_embed[layer](theirs.intermediate_hidden_states[:, layer])
            torch.testing.assert_close(output["pred_logits"], their_logits, atol=TOL, rtol=0)
            torch.testing.assert_close(output["pred_boxes"], theirs.intermediate_reference_points[:, layer], atol=TOL, rtol=0)
    torch.testing.assert_close(ours["pred_logits"], theirs.logits, atol=TOL, rtol=0)
    torch.testing.assert_close(ours["pred_boxes"], theirs.pred_boxes, atol=TOL, rtol=0)


def test_final_detections_match(imported, outputs):
    ours, theirs = outputs
    sizes = torch.tensor([[256, 320], [200, 288]])
    processor = deta.DetaImageProcessor()
    their_detections = processor.post_process_object_detection(theirs, threshold=0.0, target_sizes=sizes, nms_threshold=0.7)
    our_detections = build_postprocessor(imported.config.model)(ours, sizes)
    for mine, other in zip(our_detections, their_detections):
        assert len(mine["scores"]) == len(other["scores"]) == 100
        # the same detections, matched one to one: two detections whose scores differ by less
        # than the models' ~1e-6 logit difference may be listed in either order
        same = ((mine["labels"][:, None] == other["labels"][None])
                & ((mine["scores"][:, None] - other["scores"][None]).abs() <= TOL)
                & ((mine["boxes"][:, None] - other["boxes"].float()[None]).abs().amax(-1) <= 0.05))  # pixels
        rows, cols = linear_sum_assignment(-same.double().numpy())
        assert same[rows, cols].all(), f"{int((~same[rows, cols]).sum())} detections without a counterpart"
        torch.testing.assert_close(mine["scores"], other["scores"], atol=TOL, rtol=0)  # both sorted by score


def test_valid_only_selection_is_our_deviation_and_the_switch_restores_theirs():
    """By design our selection never picks padded tokens (their box is the whole-image box
    (0.5, 0.5, 1, 1) in xyxy, the same for all of them); the released code lets them compete with
    the score of a zeroed feature. Weights are set so that score is the highest possible."""
    hf = make_hf_model(seed=3)
    with torch.no_grad():
        head = hf.class_embed[DEC_LAYERS]
        hf.model.enc_output_norm.weight.fill_(1.0)
        hf.model.enc_output_norm.bias.zero_()
        zeroed = torch.nn.functional.layer_norm(hf.model.enc_output.bias, (64,))
        head.weight[0] = 10 * zeroed / zeroed.norm()  # a zeroed (padded) token maximises logit 0
        head.bias[0] = 0.0
    imported = import_deta(hf.state_dict(), "hf-deta", metadata=hf.config.to_dict())
    images, mask = padded_batch()
    theirs = run_hf(hf, images, mask)
    with torch.no_grad():
        released = our_model(imported)(images, mask)
        ours = our_model(imported, select_valid_proposals_only=True, query_selection="nms")(images, mask)
    whole_image = (theirs.init_reference_points[1] == 1.0).all(-1)
    assert whole_image.sum() >= 1  # theirs selects padded tokens...
    valid = ours["enc_outputs"]["valid"]
    assert torch.gather(valid, 1, ours["proposal_indices"]).all()  # ...ours does not
    assert not torch.gather(valid, 1, released["proposal_indices"]).all()
    torch.testing.assert_close(released["proposal_boxes"], theirs.init_reference_points, atol=TOL, rtol=0)
    torch.testing.assert_close(released["pred_logits"], theirs.logits, atol=TOL, rtol=0)


def test_images_smaller_than_the_selection_topk_work_in_ours_only(hf, imported):
    """128x128 gives 16x16 + 8x8 + 4x4 + 2x2 + 1x1 = 341 tokens, fewer than the released per-level
    top-1000: the released code (and transformers') fails in torch.topk; ours clamps k."""
    images = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 128, 128, dtype=torch.bool)
    with pytest.raises(RuntimeError):
        run_hf(hf, images, mask)
    for overrides in ({}, {"query_selection": "nms", "select_valid_proposals_only": True}):
        with torch.no_grad():
            out = our_model(imported, **overrides)(images, mask)
        assert out["proposal_indices"].shape == (1, NUM_QUERIES)
        assert len(set(out["proposal_indices"][0].tolist())) == NUM_QUERIES
        assert torch.isfinite(out["pred_logits"]).all()


# ------------------------------------------------------------------- the official key layout
def _stage_block(m, part):
    return f"backbone.0.body.layer{int(m.group(1)) + 1}.{m.group(2)}.{part}"


# transformers' names -> DETA repository names (models/deformable_detr.py, deformable_transformer.py,
# backbone.py: Joiner(backbone, position) with a torchvision ResNet body)
HF_TO_OFFICIAL = [
    (r"model\.backbone\.model\.embedder\.embedder\.convolution\.", lambda m: "backbone.0.body.conv1."),
    (r"model\.backbone\.model\.embedder\.embedder\.normalization\.", lambda m: "backbone.0.body.bn1."),
    (r"model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.", lambda m: _stage_block(m, "downsample.0.")),
    (r"model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.", lambda m: _stage_block(m, "downsample.1.")),
    (r"model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.convolution\.",
     lambda m: _stage_block(m, f"conv{int(m.group(3)) + 1}.")),
    (r"model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.normalization\.",
     lambda m: _stage_block(m, f"bn{int(m.group(3)) + 1}.")),
    (r"model\.input_proj\.", lambda m: "input_proj."),
    (r"model\.decoder\.(class_embed|bbox_embed)\.", lambda m: f"transformer.decoder.{m.group(1)}."),
    (r"model\.(encoder|decoder)\.layers\.(\d+)\.", lambda m: f"transformer.{m.group(1)}.layers.{m.group(2)}."),
    (r"model\.", lambda m: "transformer."),
]
LAYER_PARTS = {
    "encoder": {"self_attn_layer_norm": "norm1", "fc1": "linear1", "fc2": "linear2", "final_layer_norm": "norm2"},
    "decoder": {"encoder_attn_layer_norm": "norm1", "encoder_attn": "cross_attn", "self_attn_layer_norm": "norm2",
                "fc1": "linear1", "fc2": "linear2", "final_layer_norm": "norm3"},
}


def official_state_dict(hf_state):
    """The DETA repository's state dict of the same weights, built from its key names."""
    official = {}
    for key, tensor in hf_state.items():
        for pattern, replace in HF_TO_OFFICIAL:
            match = re.match(pattern, key)
            if match:
                key = replace(match) + key[match.end():]
                break
        layer = re.match(r"transformer\.(encoder|decoder)\.layers\.\d+\.(\w+)\.", key)
        if layer and layer.group(2) in LAYER_PARTS[layer.group(1)]:
            key = key.replace(f".{layer.group(2)}.", f".{LAYER_PARTS[layer.group(1)][layer.group(2)]}.", 1)
        official[key] = tensor.clone()
    for prefix in {k.rsplit(".", 2)[0] for k in official if re.search(r"self_attn\.q_proj\.", k)}:
        for kind in ("weight", "bias"):
            official[f"{prefix}.in_proj_{kind}"] = torch.cat([official.pop(f"{prefix}.{p}_proj.{kind}") for p in "qkv"])
    return official


@pytest.fixture(scope="module")
def official_file(hf, tmp_path_factory):
    state = official_state_dict(hf.state_dict())
    assert any(k.startswith("transformer.decoder.class_embed.") for k in state)  # the duplicates are there
    args = argparse.Namespace(num_queries=NUM_QUERIES, nheads=8, enc_n_points=4, dec_n_points=4, backbone="resnet50",
                              two_stage=True, with_box_refine=True, assign_first_stage=True, dropout=0.0)
    path = tmp_path_factory.mktemp("official") / "deta_checkpoint.pth"
    torch.save({"model": state, "args": args, "epoch": 11}, path)
    return path


def test_official_layout_imports_to_the_same_weights_and_outputs(official_file, imported, outputs, tmp_path):
    out = tmp_path / "deta.pth"
    assert main(["import-checkpoint", "--format", "deta-official", str(official_file), "--out", str(out)]) == 0
    state = load_checkpoint(out)
    assert state["epoch"] == -1 and state["seed"] is None
    assert state["model"].keys() == imported.state_dict.keys()
    assert all(torch.equal(state["model"][k], imported.state_dict[k]) for k in state["model"])
    assert state["config"]["model"] == imported.config.to_dict()["model"] | {"dropout": 0.0}
    from assignlab.config import Config

    config = Config.from_dict(state["config"])  # same op as the `outputs` fixture
    model = build_model(config.model).eval()
    model.load_state_dict(state["model"])
    images, mask = padded_batch()
    with torch.no_grad():
        again = model(images, mask)
    ours, _ = outputs
    assert torch.equal(again["proposal_indices"], ours["proposal_indices"])
    torch.testing.assert_close(again["pred_logits"], ours["pred_logits"], atol=1e-6, rtol=0)


def test_transformers_folder_imports_and_evaluates_on_a_coco_folder(hf, tiny_coco, tmp_path, capsys):
    folder = tmp_path / "hf"
    hf.save_pretrained(folder)  # config.json + model.safetensors, as published on the hub
    out = tmp_path / "deta.pth"
    assert main(["import-checkpoint", "--format", "hf-deta", str(folder), "--out", str(out)]) == 0
    state = load_checkpoint(out)
    assert state["config"]["model"]["num_queries"] == NUM_QUERIES
    metrics_file = tmp_path / "metrics.json"
    code = main(["eval", "--checkpoint", str(out), "--data-root", str(tiny_coco), "--split", "val2017",
                 "--set", "data.train_transform=fixed", "--set", "data.image_size=160", "--set", "model.msda_impl=reference",
                 "--out", str(metrics_file)])
    assert code == 0
    metrics = json.loads(metrics_file.read_text())["metrics"]
    assert set(metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}


# ------------------------------------------------------------------------- labels on COCO ids
CATEGORY_IDS = (3, 7, 13)  # non-contiguous COCO ids (12 is one COCO never used)


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """COCO layout: val2017/*.png, annotations/instances_val2017.json with category ids 3, 7, 13."""
    root = tmp_path_factory.mktemp("coco")
    (root / "val2017").mkdir()
    (root / "annotations").mkdir()
    images, annotations = [], []
    boxes = {1: [(10, 20, 40, 30, 3), (60, 60, 50, 40, 13)], 2: [(30, 10, 60, 80, 7)]}
    for image_id, objects in boxes.items():
        Image.new("RGB", (160, 128), color=(40 * image_id, 90, 150)).save(root / "val2017" / f"{image_id:012d}.png")
        images.append({"id": image_id, "file_name": f"{image_id:012d}.png", "width": 160, "height": 128})
        for x, y, w, h, category in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": c, "name": f"thing{c}", "supercategory": "thing"} for c in CATEGORY_IDS]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


class PerfectCocoIdModel(torch.nn.Module):
    """Predicts each image's ground truth with logits indexed by COCO category id (91 of them),
    plus one confident box of label 5, a label without category in this dataset."""

    def __init__(self, dataset):
        super().__init__()
        self.per_image = []
        for index in range(len(dataset)):
            image_id = dataset.ids[index]
            anns = dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=image_id))
            info = dataset.coco.imgs[image_id]
            scale = torch.tensor([info["width"], info["height"]] * 2, dtype=torch.float32)
            boxes = torch.tensor([[a["bbox"][0] + a["bbox"][2] / 2, a["bbox"][1] + a["bbox"][3] / 2, a["bbox"][2], a["bbox"][3]]
                                  for a in anns]) / scale
            logits = torch.full((len(anns) + 1, 91), -20.0)
            for query, ann in enumerate(anns):
                logits[query, ann["category_id"]] = 20.0
            logits[-1, 5] = 20.0
            self.per_image.append((logits, torch.cat([boxes, torch.tensor([[0.5, 0.5, 0.2, 0.2]])])))
        self.calls = 0

    def forward(self, images, mask):
        batch = [self.per_image[self.calls + b] for b in range(images.shape[0])]
        self.calls += images.shape[0]
        return {"pred_logits": torch.stack([b[0] for b in batch]), "pred_boxes": torch.stack([b[1] for b in batch])}


def test_coco_id_labels_are_translated_for_evaluation(tiny_coco, imported):
    dataset = CocoDetection(tiny_coco / "val2017", tiny_coco / "annotations" / "instances_val2017.json",
                            transforms=DetectionTransform("fixed", train=False, image_size=128))
    assert dataset.category_ids == list(CATEGORY_IDS)
    table = dataset_labels_of(imported.label_to_category_id, dataset.category_ids)
    assert table[3] == 0 and table[7] == 1 and table[13] == 2
    assert table[12] == table[5] == table[0] == -1
    postprocess = remap_postprocess(build_postprocessor(imported.config.model), imported.label_to_category_id,
                                    dataset.category_ids)
    metrics = evaluate_model(PerfectCocoIdModel(dataset), postprocess, dataset, torch.device("cpu"), 1, None, progress=False)
    assert metrics["AP"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def official_state(official_file):
    with torch.serialization.safe_globals([argparse.Namespace]):  # the official files pickle their args
        return torch.load(official_file, weights_only=True)["model"]


def _cli_fails(tmp_path, capsys, *args):
    out = tmp_path / "out.pth"
    code = main(["import-checkpoint", *map(str, args), "--out", str(out)])
    assert code == 2 and not out.exists() and not list(tmp_path.glob("out.pth*"))
    return capsys.readouterr().err


def test_truncated_file_is_an_error_and_nothing_is_written(official_file, tmp_path, capsys):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(official_file.read_bytes()[: official_file.stat().st_size // 2])
    err = _cli_fails(tmp_path, capsys, "--format", "deta-official", truncated)
    assert "truncated.pth" in err and "cannot read" in err


def test_wrong_format_flag_names_the_right_one(official_file, tmp_path, capsys):
    err = _cli_fails(tmp_path, capsys, "--format", "hf-deta", official_file)
    assert "use --format deta-official" in err


def test_another_models_weights_are_rejected(tmp_path, capsys):
    import torchvision

    other = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    err = _cli_fails(tmp_path, capsys, "--format", "deta-official", other)
    assert "not part of the deta-official layout" in err and "conv1.weight" in err


def test_missing_extra_misshaped_and_unequal_duplicates_are_named(official_state):
    def fails(state):
        with pytest.raises(CheckpointImportError) as info:
            import_deta(state, "deta-official", metadata={"num_queries": NUM_QUERIES})
        return str(info.value)

    missing = dict(official_state)
    del missing["transformer.encoder.layers.1.linear2.bias"]
    assert "missing tensors: encoder.layers.1.linear2.bias" in fails(missing)

    extra = dict(official_state, **{"transformer.decoder.layers.0.mystery.weight": torch.zeros(3)})
    assert "transformer.decoder.layers.0.mystery.weight" in fails(extra)

    mis_shaped = dict(official_state)
    mis_shaped["transformer.pix_trans.weight"] = mis_shaped["transformer.pix_trans.weight"][:, :32]
    assert "pix_trans.weight (64, 32) (expected (64, 64))" in fails(mis_shaped)

    unequal = dict(official_state)
    unequal["transformer.decoder.class_embed.1.bias"] = unequal["class_embed.1.bias"] + 1
    assert "transformer.decoder.class_embed.1.bias differs from class_embed.1.bias" in fails(unequal)

    swin = {"backbone.0.body.patch_embed.proj.weight": torch.zeros(1), **{k: v for k, v in official_state.items()
                                                                          if not k.startswith("backbone.")}}
    assert "backbone.0.body.patch_embed.proj.weight" in fails(swin)
    assert "missing tensors: backbone.body.bn1.bias" in fails(swin)
