"""Bad COCO input, case by case.

Each broken annotation file or image is either a ``DatasetError`` whose message names the file,
the entry (index and id) and the field, or a documented skip that ``python -m assignlab data
check`` counts. Every case edits one small valid dataset: a json and three 40x30 PNGs in tmp_path.
Boxes in the json are COCO ``[x, y, w, h]`` absolute pixels; expected targets are absolute xyxy.
"""
import copy
import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from PIL import Image

from assignlab.cli import TRACEBACK_ENV, entry_point
from assignlab.data.coco import CocoDetection, CocoReport, DatasetError, read_coco_annotations

WIDTH, HEIGHT = 40, 30
BASE = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT},
        {"id": 2, "file_name": "b.png", "width": WIDTH, "height": HEIGHT},
        {"id": 3, "file_name": "c.png", "width": WIDTH, "height": HEIGHT},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20.5, 10.25, 12.0, 9.5], "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, WIDTH, HEIGHT]},
        {"id": 4, "image_id": 3, "category_id": 2, "bbox": [5, 5, 4, 4], "area": 16, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
}
BASE_REPORT = CocoReport(images=3, annotations=4, categories=2)
BASE_TARGETS = {  # image id -> (xyxy boxes, contiguous labels) of the training targets
    1: ([[2, 3, 12, 11], [20.5, 10.25, 32.5, 19.75]], [0, 1]),
    2: ([[0, 0, WIDTH, HEIGHT]], [0]),
    3: ([[5, 5, 9, 9]], [1]),
}


def _ann(data, i, **fields):
    data["annotations"][i].update(fields)


def _img(data, i, **fields):
    data["images"][i].update(fields)


def _truncate(path):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


# --------------------------------------------------------------------------- documented skips
# name -> (edit(data, image_dir), report fields that differ from BASE_REPORT, targets that differ)
SKIP_CASES = {
    "valid data": (lambda d, f: None, {}, {}),
    "zero width box dropped": (lambda d, f: _ann(d, 0, bbox=[2, 3, 0, 8]), dict(annotations=3, degenerate_dropped=1),
                               {1: ([[20.5, 10.25, 32.5, 19.75]], [1])}),
    "negative height box dropped": (lambda d, f: _ann(d, 1, bbox=[20, 10, 12, -4]), dict(annotations=3, degenerate_dropped=1),
                                    {1: ([[2, 3, 12, 11]], [0])}),
    "degenerate box leaves an image without annotations": (
        lambda d, f: _ann(d, 3, bbox=[5, 5, -1, 0]), dict(annotations=3, degenerate_dropped=1, images_without_annotations=1),
        {3: ([], [])}),
    "box over the top-left corner clipped": (lambda d, f: _ann(d, 0, bbox=[-4, -2, 10, 8]), dict(clipped=1),
                                            {1: ([[0, 0, 6, 6], [20.5, 10.25, 32.5, 19.75]], [0, 1])}),
    "box over the bottom-right corner clipped": (lambda d, f: _ann(d, 1, bbox=[35.5, 25, 10, 10]), dict(clipped=1),
                                                {1: ([[2, 3, 12, 11], [35.5, 25, WIDTH, HEIGHT]], [0, 1])}),
    "box wholly outside dropped": (lambda d, f: _ann(d, 0, bbox=[50, 5, 10, 8]), dict(annotations=3, outside_dropped=1),
                                   {1: ([[20.5, 10.25, 32.5, 19.75]], [1])}),
    "box touching only the right edge dropped": (lambda d, f: _ann(d, 0, bbox=[WIDTH, 5, 6, 8]), dict(annotations=3, outside_dropped=1),
                                                 {1: ([[20.5, 10.25, 32.5, 19.75]], [1])}),
    "image without annotations kept": (lambda d, f: d["annotations"].pop(3), dict(annotations=3, images_without_annotations=1),
                                       {3: ([], [])}),
    "crowd box kept for evaluation only": (lambda d, f: _ann(d, 2, iscrowd=1), dict(crowd_annotations=1), {2: ([], [])}),
}


# --------------------------------------------------------------------------- errors
# name -> (edit(data, image_dir), stage, pattern of the message after "<file>: ")
# stage: "load" (CocoDetection raises), "item" (dataset[i] raises), "check" (only data check looks)
ERROR_CASES = {
    "category_id not in categories": (lambda d, f: _ann(d, 1, category_id=7), "load",
                                      r"annotations\[1\]\.category_id=7 is not in categories \(annotation id 2, image id 1\)"),
    "category_id as a float": (lambda d, f: _ann(d, 1, category_id=1.0), "load",
                               r"annotations\[1\]\.category_id=1\.0 is not an integer \(annotation id 2, image id 1\)"),
    "image_id not in images": (lambda d, f: _ann(d, 0, image_id=9), "load",
                               r"annotations\[0\]\.image_id=9 is not in images \(annotation id 1\)"),
    "image_id as a string": (lambda d, f: _ann(d, 0, image_id="1"), "load",
                             r"annotations\[0\]\.image_id='1' is not an integer \(annotation id 1\)"),
    "duplicate image id": (lambda d, f: _img(d, 2, id=1), "load", r"images\[2\]\.id=1 duplicates images\[0\]\.id"),
    "duplicate annotation id": (lambda d, f: _ann(d, 2, id=1), "load",
                                r"annotations\[2\]\.id=1 duplicates annotations\[0\]\.id \(annotation id 1, image id 2\)"),
    "duplicate category id": (lambda d, f: d["categories"][1].update(id=1), "load", r"categories\[1\]\.id=1 duplicates categories\[0\]\.id"),
    "bbox with a string": (lambda d, f: _ann(d, 0, bbox=[2, "3", 10, 8]), "load",
                           r"annotations\[0\]\.bbox=\[2, '3', 10, 8\] is not \[x, y, width, height\].*\(annotation id 1, image id 1\)"),
    "bbox with three numbers": (lambda d, f: _ann(d, 3, bbox=[5, 5, 4]), "load",
                                r"annotations\[3\]\.bbox=\[5, 5, 4\] is not \[x, y, width, height\].*\(annotation id 4, image id 3\)"),
    "bbox with NaN": (lambda d, f: _ann(d, 3, bbox=[5, float("nan"), 4, 4]), "load",
                      r"annotations\[3\]\.bbox=\[5, nan, 4, 4\] is not .*\(annotation id 4, image id 3\)"),
    "bbox missing": (lambda d, f: d["annotations"][3].pop("bbox"), "load", r"annotations\[3\]\.bbox missing \(annotation id 4, image id 3\)"),
    "width as a string": (lambda d, f: _img(d, 1, width="40"), "load", r"images\[1\]\.width='40' is not a positive integer \(image id 2\)"),
    "height zero": (lambda d, f: _img(d, 0, height=0), "load", r"images\[0\]\.height=0 is not a positive integer \(image id 1\)"),
    "image id as a float": (lambda d, f: _img(d, 0, id=1.0), "load", r"images\[0\]\.id=1\.0 is not an integer"),
    "image id as a string": (lambda d, f: _img(d, 1, id="2"), "load", r"images\[1\]\.id='2' is not an integer"),
    "annotation id as a float": (lambda d, f: _ann(d, 1, id=2.0), "load", r"annotations\[1\]\.id=2\.0 is not an integer"),
    "annotation id as a string": (lambda d, f: _ann(d, 1, id="2"), "load", r"annotations\[1\]\.id='2' is not an integer"),
    "annotation id missing": (lambda d, f: d["annotations"][1].pop("id"), "load", r"annotations\[1\]\.id missing"),
    "iscrowd 2": (lambda d, f: _ann(d, 0, iscrowd=2), "load", r"annotations\[0\]\.iscrowd=2 is not 0 or 1 \(annotation id 1, image id 1\)"),
    "iscrowd as a string": (lambda d, f: _ann(d, 0, iscrowd="1"), "load", r"annotations\[0\]\.iscrowd='1' is not 0 or 1 \(annotation id 1"),
    "iscrowd as a boolean": (lambda d, f: _ann(d, 0, iscrowd=True), "load", r"annotations\[0\]\.iscrowd=True is not 0 or 1 \(annotation id 1"),
    "area as a string": (lambda d, f: _ann(d, 0, area="80"), "load", r"annotations\[0\]\.area='80' is not a non-negative number \(annotation id 1"),
    "image file missing": (lambda d, f: (f / "c.png").unlink(), "load", r"images\[id=3\]\.file_name='c\.png' not found in "),
    "image file not an image": (lambda d, f: (f / "b.png").write_bytes(b"not a png"), "item",
                                r"images\[id=2\]\.file_name='b\.png': cannot read .*b\.png \(cannot identify image file"),
    "image file truncated": (lambda d, f: _truncate(f / "b.png"), "item",
                             r"images\[id=2\]\.file_name='b\.png': cannot read .*b\.png \(.*runcated"),
    "image size differs from width/height": (lambda d, f: _img(d, 0, width=WIDTH + 8), "check",
                                             r"images\[id=1\]\.width/height=48x30 but .*a\.png is 40x30"),
}


@pytest.fixture
def make_dataset(tmp_path):
    """``edit(data, image_dir)`` applied to the valid dataset -> (annotation file, image folder)."""

    def make(edit):
        image_dir = tmp_path / "images"
        image_dir.mkdir()
        for k, info in enumerate(BASE["images"]):
            Image.new("RGB", (WIDTH, HEIGHT), color=(60 * k, 120, 200)).save(image_dir / info["file_name"])
        data = copy.deepcopy(BASE)
        edit(data, image_dir)
        ann_file = tmp_path / "instances_bad.json"
        ann_file.write_text(json.dumps(data))
        return ann_file, image_dir

    return make


def _dataset(ann_file, image_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CocoDetection(image_dir, ann_file)


def _data_check(ann_file, image_dir, capsys, monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    code = entry_point(["data", "check", "--ann", str(ann_file), "--images", str(image_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", list(SKIP_CASES))
def test_documented_skips_are_counted_and_targets_keep_valid_boxes(case, make_dataset, capsys, monkeypatch):
    edit, counts, changed_targets = SKIP_CASES[case]
    ann_file, image_dir = make_dataset(edit)
    dataset = _dataset(ann_file, image_dir)
    expected = dataclasses.replace(BASE_REPORT, **counts)
    assert dataset.report == expected
    for image_id, (boxes, labels) in {**BASE_TARGETS, **changed_targets}.items():
        target = dataset.raw_target(image_id)
        assert torch.equal(target["boxes"], torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)), image_id
        assert target["labels"].tolist() == labels
    assert len(dataset) == 3 and [dataset[i][1]["image_id"] for i in range(3)] == [1, 2, 3]

    code, out, err = _data_check(ann_file, image_dir, capsys, monkeypatch)
    assert code == 0 and err == ""
    assert out.startswith(f"{ann_file}: 3 images, {expected.annotations} annotations, 2 categories: OK\n")
    for label, value in [("images without annotations", expected.images_without_annotations),
                         ("crowd annotations", expected.crowd_annotations),
                         ("degenerate boxes dropped", expected.degenerate_dropped),
                         ("boxes clipped", expected.clipped),
                         ("boxes outside dropped", expected.outside_dropped)]:
        assert re.search(rf"^  {label}\s+{value}\b", out, re.MULTILINE), (label, out)


def test_crowd_boxes_stay_in_the_evaluation_ground_truth(make_dataset):
    dataset = _dataset(*make_dataset(SKIP_CASES["crowd box kept for evaluation only"][0]))
    assert dataset.coco.anns[3]["iscrowd"] == 1 and dataset.coco.getAnnIds(imgIds=2) == [3]


def test_a_box_reaching_outside_is_clipped_for_training_but_scored_as_written(make_dataset):
    def edit(data, folder):
        _ann(data, 0, bbox=[-4, -2, 10, 8])
        _ann(data, 1, bbox=[35.5, 25, 10, 10])

    ann_file, image_dir = make_dataset(edit)
    dataset = _dataset(ann_file, image_dir)
    assert dataset.report.clipped == 2
    assert dataset.coco.anns[1]["bbox"] == [-4, -2, 10, 8] and dataset.coco.anns[2]["bbox"] == [35.5, 25, 10, 10]
    assert dataset.raw_target(1)["boxes"].tolist() == [[0, 0, 6, 6], [35.5, 25, WIDTH, HEIGHT]]


def test_loading_warns_with_the_counts(make_dataset):
    def edit(data, folder):
        _ann(data, 0, bbox=[-4, -2, 10, 8])
        _ann(data, 1, bbox=[50, 5, 10, 8])
        _ann(data, 2, bbox=[0, 0, 0, 8])

    with pytest.warns(UserWarning) as record:
        CocoDetection(*reversed(make_dataset(edit)))
    messages = [str(w.message) for w in record]
    assert any("dropped 1 annotation(s) whose bbox has non-positive width or height" in m for m in messages)
    assert any("clipped 1 bbox(es) to their image and dropped 1 wholly outside it" in m for m in messages)


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_name_the_file_the_entry_and_the_field(case, make_dataset, capsys, monkeypatch):
    edit, stage, pattern = ERROR_CASES[case]
    ann_file, image_dir = make_dataset(edit)
    message = rf"{re.escape(str(ann_file))}: {pattern}"
    if stage == "load":
        with pytest.raises(DatasetError, match=f"^{message}"):
            CocoDetection(image_dir, ann_file)
    else:
        dataset = _dataset(ann_file, image_dir)
        if stage == "item":
            with pytest.raises(DatasetError, match=f"^{message}"):
                dataset[1]
        else:
            dataset[0]

    code, out, err = _data_check(ann_file, image_dir, capsys, monkeypatch)
    assert code == 2 and out == "" and "Traceback" not in err
    first, *rest = err.splitlines()
    assert re.match(f"error: {message}", first), first
    assert rest == [f"(set {TRACEBACK_ENV}=1 for the traceback)"]


def test_valid_synthetic_annotations_load_unchanged(synth_val):
    root, ann_file = synth_val
    written = {a["id"]: a for a in json.loads(ann_file.read_text())["annotations"]}
    dataset = CocoDetection(root / "images", ann_file)
    annotated = {a["image_id"] for a in written.values()}
    assert dataset.report == CocoReport(images=12, annotations=len(written), categories=len(dataset.category_ids),
                                        images_without_annotations=12 - len(annotated))
    assert {i: a["bbox"] for i, a in dataset.coco.anns.items()} == {i: a["bbox"] for i, a in written.items()}
    for image_id in dataset.ids:
        mine = [written[i]["bbox"] for i in sorted(written) if written[i]["image_id"] == image_id]
        expected = torch.tensor(mine, dtype=torch.float32).reshape(-1, 4)
        expected[:, 2:] += expected[:, :2]
        assert torch.equal(dataset.raw_target(image_id)["boxes"], expected)


@pytest.mark.parametrize("case, code", [("box over the top-left corner clipped", 0), ("duplicate annotation id", 2),
                                        ("image file not an image", 2)])
def test_the_command_in_a_subprocess(case, code, make_dataset):
    edit = {**SKIP_CASES, **ERROR_CASES}[case][0]
    ann_file, image_dir = make_dataset(edit)
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    done = subprocess.run([sys.executable, "-m", "assignlab", "data", "check", "--ann", str(ann_file), "--images", str(image_dir)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == code and "Traceback" not in done.stderr
    if code == 0:
        assert done.stderr == "" and re.search(r"^  boxes clipped\s+1\b", done.stdout, re.MULTILINE)
    else:
        assert done.stdout == "" and done.stderr.startswith(f"error: {ann_file}: ")
        assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1
