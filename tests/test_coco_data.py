"""COCO loader, transforms, collate and evaluation on generated data."""
import json
import math
import shutil

import pytest
import torch

from assignlab.data.coco import CocoDetection, DatasetError, load_coco_annotations
from assignlab.data.collate import collate_detection
from assignlab.data.transforms import DetectionTransform
from assignlab.engine.coco_eval import detections_to_coco_results, evaluate_coco


def _gt_detections(dataset, shift=0.0):
    dets = []
    for image_id in dataset.ids:
        t = dataset.raw_target(image_id)
        boxes = t["boxes"].clone()
        boxes[:, [0, 2]] += shift * (boxes[:, 2] - boxes[:, 0]).unsqueeze(1)
        dets.append({"image_id": image_id, "boxes": boxes, "scores": torch.ones(len(boxes)), "labels": t["labels"]})
    return dets


def test_ground_truth_scores_100_and_a_perturbed_copy_strictly_less(synth_val):
    root, ann = synth_val
    dataset = CocoDetection(root / "images", ann)
    perfect = evaluate_coco(dataset.coco, detections_to_coco_results(_gt_detections(dataset), dataset.category_ids), image_size=128)
    assert all(v == pytest.approx(100.0) for v in perfect.values() if not math.isnan(v)), perfect
    shifted = evaluate_coco(dataset.coco, detections_to_coco_results(_gt_detections(dataset, 0.15), dataset.category_ids), image_size=128)
    assert shifted["AP"] < perfect["AP"] and shifted["AP75"] < perfect["AP75"]
    # wrong class: nothing matches
    wrong = _gt_detections(dataset)
    for d in wrong:
        d["labels"] = (d["labels"] + 1) % len(dataset.category_ids)
    assert evaluate_coco(dataset.coco, detections_to_coco_results(wrong, dataset.category_ids), image_size=128)["AP"] == 0.0
    assert evaluate_coco(dataset.coco, [], image_size=128)["AP"] == 0.0


def test_targets_are_normalised_cxcywh_and_batches_carry_padding_masks(synth_val):
    root, ann = synth_val
    dataset = CocoDetection(root / "images", ann, transforms=DetectionTransform("fixed", train=False, image_size=64))
    image, target = dataset[0]
    assert image.shape == (3, 64, 64)
    raw = dataset.raw_target(dataset.ids[0])["boxes"] / 128  # xyxy normalised
    expected = torch.stack([(raw[:, 0] + raw[:, 2]) / 2, (raw[:, 1] + raw[:, 3]) / 2, raw[:, 2] - raw[:, 0], raw[:, 3] - raw[:, 1]], 1)
    torch.testing.assert_close(target["boxes"], expected, atol=1e-5, rtol=0)
    small = (torch.zeros(3, 40, 50), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)})
    images, mask, targets = collate_detection([(image, target), small])
    assert images.shape == (2, 3, 64, 64) and mask.shape == (2, 64, 64)
    assert not mask[0].any() and mask[1, 40:].all() and mask[1, :, 50:].all() and not mask[1, :40, :50].any()


def test_training_transforms_keep_boxes_on_the_objects(synth_val):
    root, ann = synth_val
    torch.manual_seed(0)
    for kind in ("fixed", "multiscale"):
        dataset = CocoDetection(root / "images", ann, transforms=DetectionTransform(kind, train=True, image_size=96), train=True)
        for i in range(4):
            image, target = dataset[i]
            boxes = target["boxes"]
            assert boxes.shape[0] == target["labels"].shape[0]
            assert (boxes >= 0).all() and (boxes[:, :2] <= 1).all() and (boxes[:, 2:] > 0).all()


def test_horizontal_flip_mirrors_boxes(synth_val):
    root, ann = synth_val
    plain = CocoDetection(root / "images", ann, transforms=DetectionTransform("fixed", train=False, image_size=128))
    flipping = CocoDetection(root / "images", ann, transforms=DetectionTransform("fixed", train=True, image_size=128))
    image, target = plain[0]
    for seed in range(10):  # p = 0.5 per draw: some seed flips
        torch.manual_seed(seed)
        flipped_image, flipped = flipping[0]
        if not torch.equal(flipped_image, image):
            break
    torch.testing.assert_close(flipped_image, image.flip(-1))
    torch.testing.assert_close(flipped["boxes"][:, 0], 1 - target["boxes"][:, 0], atol=1e-5, rtol=0)


def test_images_without_annotations_stay_and_crowd_boxes_leave_training_targets(synth_val, tmp_path):
    root, ann = synth_val
    data = json.loads(ann.read_text())
    first = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != first]
    data["annotations"][0]["iscrowd"] = 1
    crowd_image = data["annotations"][0]["image_id"]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    dataset = CocoDetection(root / "images", path)
    assert len(dataset) == len(data["images"])
    assert dataset.raw_target(first)["boxes"].shape == (0, 4)
    n_crowd_image = sum(1 for a in data["annotations"] if a["image_id"] == crowd_image)
    assert dataset.raw_target(crowd_image)["boxes"].shape[0] == n_crowd_image - 1


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_bad_input_names_the_file_and_field(synth_val, tmp_path):
    root, ann = synth_val
    data = json.loads(ann.read_text())
    with pytest.raises(DatasetError, match=r"bad\.json: malformed json"):
        load_coco_annotations(_write(tmp_path, "{not json"))
    broken = json.loads(json.dumps(data))
    broken["annotations"][3]["category_id"] = 999
    with pytest.raises(DatasetError, match=r"bad\.json: annotations\[3\]\.category_id=999 is not in categories"):
        load_coco_annotations(_write(tmp_path, broken))
    broken = json.loads(json.dumps(data))
    del broken["images"][1]["file_name"]
    with pytest.raises(DatasetError, match=r"images\[1\]\.file_name"):
        load_coco_annotations(_write(tmp_path, broken))
    missing = tmp_path / "images"
    shutil.copytree(root / "images", missing)
    (missing / data["images"][2]["file_name"]).unlink()
    with pytest.raises(DatasetError, match=rf"file_name='{data['images'][2]['file_name']}' not found"):
        CocoDetection(missing, ann)


def test_degenerate_boxes_are_dropped_with_a_counting_warning(synth_val, tmp_path):
    root, ann = synth_val
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"][2] = 0
    data["annotations"][1]["bbox"][3] = -4
    with pytest.warns(UserWarning, match="dropped 2 annotation"):
        coco = load_coco_annotations(_write(tmp_path, data))
    assert len(coco.anns) == len(data["annotations"]) - 2
