"""The synthetic benchmark: deterministic bytes, credible content, the CLI's report."""
import hashlib
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from assignlab.data.areas import scaled_area_ranges, size_proportions
from assignlab.data.synthetic import CATEGORIES, SynthSpec, generate_split, render_image


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    """On one machine (numpy may pick other SIMD maths on another CPU): one worker or two."""
    spec = SynthSpec(images=6, size=96, seed=11)
    generate_split(tmp_path / "a", "train", spec, workers=1, progress=False)
    generate_split(tmp_path / "b", "train", spec, workers=2, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    generate_split(tmp_path / "c", "train", SynthSpec(images=6, size=96, seed=12), workers=1, progress=False)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_boxes_lie_in_the_image_and_enclose_their_area(synth_val):
    root, ann = synth_val
    data = json.loads(ann.read_text())
    assert len(data["categories"]) >= 8
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        assert w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
        assert 0 < a["area"] <= w * h
    first = data["images"][0]
    image = np.asarray(Image.open(root / "images" / first["file_name"]))
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8


def test_scene_statistics_resemble_a_detection_benchmark():
    counts, areas, categories, crowded_same_class_overlaps = [], [], set(), 0
    for index in range(150):
        _, objects = render_image(seed=0, index=index, size=256)
        counts.append(len(objects))
        areas += [o["area"] for o in objects]
        categories |= {o["category_id"] for o in objects}
        boxes = [(o["category_id"], o["bbox"]) for o in objects]
        for i, (ci, (x, y, w, h)) in enumerate(boxes):
            for cj, (x2, y2, w2, h2) in boxes[i + 1 :]:
                if ci == cj and min(x + w, x2 + w2) > max(x, x2) and min(y + h, y2 + h2) > max(y, y2):
                    crowded_same_class_overlaps += 1
    assert min(counts) >= 1 and max(counts) <= 20 and max(counts) >= 15
    assert categories == set(range(1, len(CATEGORIES) + 1))
    assert crowded_same_class_overlaps > 50  # crowded scenes with overlapping objects of one class
    props = size_proportions(areas, 256)
    for name, coco in (("small", 0.41), ("medium", 0.34), ("large", 0.24)):
        assert abs(props[name] - coco) < 0.07, props


def test_area_ranges_scale_with_image_size():
    assert scaled_area_ranges(None)["small"][1] == 32**2
    assert scaled_area_ranges(640)["medium"][1] == 96**2
    assert scaled_area_ranges(320)["small"][1] == 16**2


def test_cli_reports_where_how_many_and_proportions(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "assignlab", "data", "synth", "--out", str(tmp_path / "d"), "--split", "val", "--images", "10", "--size", "96", "--workers", "1"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert str(tmp_path / "d") in out and "objects:" in out
    assert "small" in out and "medium" in out and "large" in out
    assert (tmp_path / "d" / "annotations" / "instances_val.json").is_file()
