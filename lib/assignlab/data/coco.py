"""COCO-format detection dataset on pycocotools: COCO 2017 and the synthetic splits alike.

Boxes: a COCO ``bbox`` is ``[x, y, w, h]`` in absolute pixels of the image (``x, y`` its top-left
corner); training targets are absolute ``[x0, y0, x1, y1]`` pixels (before transforms).

The annotation file is checked when it is loaded. Each problem is either an error or a counted,
documented skip; the counts are a :class:`CocoReport` (``CocoDetection.report``, printed by
``python -m assignlab data check``).

Errors (``DatasetError``, whose message names the file, the entry's index and id, and the field):

- malformed json, a missing ``images``/``annotations``/``categories`` list;
- a field of the wrong type: ids, ``image_id``, ``category_id``, ``width`` and ``height`` must be
  integers (not floats, strings or booleans), ``bbox`` four finite numbers, ``iscrowd`` 0 or 1,
  ``area`` a non-negative finite number, ``file_name`` a string; ``width`` and ``height`` must
  be positive;
- duplicate image, annotation or category ids;
- an annotation whose ``image_id`` is not in ``images`` or whose ``category_id`` is not in
  ``categories``;
- an image file that is missing (when the dataset is built) or unreadable (when an item is read,
  and for every image by ``data check``, which opens each header and compares its size).

Skips, counted in the report:

- a box with ``w <= 0`` or ``h <= 0`` is dropped (``degenerate_dropped``);
- a box reaching outside its image is clipped to ``[0, width] x [0, height]`` in the training
  targets, as Deformable-DETR's loader does (``clipped``); the evaluation ground truth keeps it as
  written, so COCOeval scores against the official annotations. A box with nothing inside its
  image is dropped from both (``outside_dropped``). Boxes inside their image are kept exactly as
  written;
- crowd annotations (``iscrowd`` 1) stay in the evaluation ground truth (COCOeval treats them as
  "ignore") but are left out of training targets (``crowd_annotations``);
- images without annotations stay: they are negatives (``images_without_annotations``).

Loading warns once per kind of dropped or clipped box.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset

UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, ValueError)  # what PIL raises for a broken file


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and the field."""


@dataclass
class CocoReport:
    """What loading a COCO annotation file kept, clipped and dropped (counts)."""

    images: int = 0
    annotations: int = 0  # kept, crowd included
    categories: int = 0
    images_without_annotations: int = 0
    crowd_annotations: int = 0
    degenerate_dropped: int = 0
    clipped: int = 0
    outside_dropped: int = 0

    def lines(self) -> list[str]:
        """The counts as ``name  value  (meaning)`` lines, for ``data check``."""
        rows = [
            ("images", self.images, ""),
            ("annotations", self.annotations, "kept, crowd included"),
            ("categories", self.categories, ""),
            ("images without annotations", self.images_without_annotations, "kept as negatives"),
            ("crowd annotations", self.crowd_annotations, "evaluation only, not training targets"),
            ("degenerate boxes dropped", self.degenerate_dropped, "width or height <= 0"),
            ("boxes clipped", self.clipped, "to the image in training targets"),
            ("boxes outside dropped", self.outside_dropped, "nothing inside the image"),
        ]
        return [f"  {name:<28}{value:>8}" + (f"  ({note})" if note else "") for name, value, note in rows]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)


def _read_json(ann_file: Path) -> dict:
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    try:
        data = json.loads(ann_file.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{ann_file}: malformed json ({err})") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"{ann_file}: not a text file ({err})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{ann_file}: top level must be an object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{ann_file}: field '{key}' missing or not a list")
    return data


def _require(where: str, entry: dict, field: str, valid: Callable[[Any], bool], kind: str, suffix: str = "") -> Any:
    """``entry[field]`` if ``valid`` accepts it; else a DatasetError naming ``where.field``."""
    if field not in entry:
        raise DatasetError(f"{where}.{field} missing{suffix}")
    value = entry[field]
    if not valid(value):
        raise DatasetError(f"{where}.{field}={value!r} is not {kind}{suffix}")
    return value


def _unique_id(where: str, section: str, entry_id: int, seen: dict[int, int], suffix: str = "") -> None:
    if entry_id in seen:
        raise DatasetError(f"{where}.id={entry_id!r} duplicates {section}[{seen[entry_id]}].id{suffix}")


def _check_categories(ann_file: Path, categories: list) -> set[int]:
    seen: dict[int, int] = {}
    for i, cat in enumerate(categories):
        where = f"{ann_file}: categories[{i}]"
        if not isinstance(cat, dict):
            raise DatasetError(f"{where} is not an object")
        cat_id = _require(where, cat, "id", _is_int, "an integer")
        _unique_id(where, "categories", cat_id, seen)
        seen[cat_id] = i
    return set(seen)


def _check_image(where: str, img: Any) -> int:
    if not isinstance(img, dict):
        raise DatasetError(f"{where} is not an object")
    image_id = _require(where, img, "id", _is_int, "an integer")
    suffix = f" (image id {image_id})"
    _require(where, img, "file_name", lambda v: isinstance(v, str) and v != "", "a file name", suffix)
    for field in ("width", "height"):
        _require(where, img, field, lambda v: _is_int(v) and v > 0, "a positive integer", suffix)
    return image_id


def _check_images(ann_file: Path, images: list) -> dict[int, dict]:
    """Image entries by id, each checked."""
    seen: dict[int, int] = {}
    for i, img in enumerate(images):
        where = f"{ann_file}: images[{i}]"
        image_id = _check_image(where, img)
        _unique_id(where, "images", image_id, seen)
        seen[image_id] = i
    return {image_id: images[i] for image_id, i in seen.items()}


def _check_annotation(where: str, ann: Any, images: dict[int, dict], category_ids: set[int]) -> str:
    """Check one annotation's fields; return the suffix naming its ids for later messages."""
    if not isinstance(ann, dict):
        raise DatasetError(f"{where} is not an object")
    ann_id = _require(where, ann, "id", _is_int, "an integer")
    suffix = f" (annotation id {ann_id})"
    image_id = _require(where, ann, "image_id", _is_int, "an integer", suffix)
    if image_id not in images:
        raise DatasetError(f"{where}.image_id={image_id!r} is not in images{suffix}")
    suffix = f" (annotation id {ann_id}, image id {image_id})"
    category_id = _require(where, ann, "category_id", _is_int, "an integer", suffix)
    if category_id not in category_ids:
        raise DatasetError(f"{where}.category_id={category_id!r} is not in categories{suffix}")
    _require(where, ann, "bbox", _is_box, "[x, y, width, height] of 4 finite numbers", suffix)
    if "iscrowd" in ann:
        _require(where, ann, "iscrowd", lambda v: _is_int(v) and v in (0, 1), "0 or 1", suffix)
    if "area" in ann:
        _require(where, ann, "area", lambda v: _is_number(v) and v >= 0, "a non-negative number", suffix)
    return suffix


def _inside(bbox: list, width: int, height: int) -> bool:
    """Whether a COCO box ``[x, y, w, h]`` (absolute pixels) lies within ``[0, width] x [0, height]``."""
    x, y, w, h = bbox
    return x >= 0 and y >= 0 and x + w <= width and y + h <= height


def _clip_box(bbox: list, width: int, height: int) -> list[float]:
    """A COCO box ``[x, y, w, h]`` (absolute pixels) clipped to ``[0, width] x [0, height]``; the
    clipped ``w`` or ``h`` is ``<= 0`` when nothing of the box is inside."""
    x, y, w, h = bbox
    x0, y0 = max(float(x), 0.0), max(float(y), 0.0)
    x1, y1 = min(float(x + w), float(width)), min(float(y + h), float(height))
    return [x0, y0, x1 - x0, y1 - y0]


def _filter_boxes(annotations: list[dict], images: dict[int, dict], report: CocoReport) -> list[dict]:
    """Drop degenerate and wholly outside boxes; count them and the boxes that reach outside their
    image (clipped in :meth:`CocoDetection.raw_target`). Kept boxes are unchanged."""
    kept = []
    for ann in annotations:
        bbox = ann["bbox"]
        if bbox[2] <= 0 or bbox[3] <= 0:
            report.degenerate_dropped += 1
            continue
        image = images[ann["image_id"]]
        if not _inside(bbox, image["width"], image["height"]):
            clipped = _clip_box(bbox, image["width"], image["height"])
            if clipped[2] <= 0 or clipped[3] <= 0:
                report.outside_dropped += 1
                continue
            report.clipped += 1
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        kept.append(ann)
    return kept


def read_coco_annotations(ann_file: str | Path) -> tuple[COCO, CocoReport]:
    """Read and validate a COCO instances json: (pycocotools ``COCO`` index, counts of what was kept,
    clipped and dropped). Boxes stay COCO ``[x, y, w, h]`` absolute pixels. See the module docstring."""
    ann_file = Path(ann_file)
    data = _read_json(ann_file)
    category_ids = _check_categories(ann_file, data["categories"])
    images = _check_images(ann_file, data["images"])
    seen: dict[int, int] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"{ann_file}: annotations[{i}]"
        suffix = _check_annotation(where, ann, images, category_ids)
        _unique_id(where, "annotations", ann["id"], seen, suffix)
        seen[ann["id"]] = i

    report = CocoReport(images=len(images), categories=len(category_ids))
    data["annotations"] = _filter_boxes(data["annotations"], images, report)
    report.annotations = len(data["annotations"])
    report.crowd_annotations = sum(1 for ann in data["annotations"] if ann["iscrowd"])
    report.images_without_annotations = len(images) - len({ann["image_id"] for ann in data["annotations"]})

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco, report


def _warn_about(ann_file: Path, report: CocoReport, stacklevel: int) -> None:
    if report.degenerate_dropped:
        warnings.warn(
            f"{ann_file}: dropped {report.degenerate_dropped} annotation(s) whose bbox has non-positive width or height",
            stacklevel=stacklevel + 1,
        )
    if report.clipped or report.outside_dropped:
        warnings.warn(
            f"{ann_file}: clipped {report.clipped} bbox(es) to their image and dropped "
            f"{report.outside_dropped} wholly outside it",
            stacklevel=stacklevel + 1,
        )


def load_coco_annotations(ann_file: str | Path) -> COCO:
    """Read and validate a COCO instances json; return a pycocotools ``COCO`` index.

    Degenerate and wholly outside boxes are removed from the index, with a warning that counts
    them and the boxes reaching outside their image (:func:`read_coco_annotations` returns
    the counts).
    """
    coco, report = read_coco_annotations(ann_file)
    _warn_about(Path(ann_file), report, stacklevel=2)
    return coco


class CocoDetection(Dataset):
    """Images and detection targets from a COCO json and an image folder.

    Each item is ``(image, target)`` after ``transforms``; without transforms the image is a PIL
    RGB image and target boxes are absolute xyxy pixels. Target keys: ``boxes`` [n, 4] float,
    ``labels`` [n] long (contiguous ids 0..C-1, see ``category_ids``), ``image_id`` int,
    ``orig_size`` [2] long (h, w), ``size`` [2] long (h, w after transforms). ``report`` counts
    what loading the annotation file kept, clipped and dropped.
    """

    def __init__(self, image_dir: str | Path, ann_file: str | Path, transforms: Callable | None = None, train: bool = False):
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.coco, self.report = read_coco_annotations(self.ann_file)
        _warn_about(self.ann_file, self.report, stacklevel=2)
        self.ids = sorted(self.coco.imgs)
        self.category_ids = sorted(self.coco.cats)  # contiguous label i <-> category_ids[i]
        self.label_of_category = {cat: i for i, cat in enumerate(self.category_ids)}
        self.transforms = transforms
        self.train = train
        if not self.image_dir.is_dir():
            raise DatasetError(f"{self.ann_file}: image folder {self.image_dir} not found")
        for image_id in self.ids:
            info = self.coco.imgs[image_id]
            if not (self.image_dir / info["file_name"]).is_file():
                raise DatasetError(
                    f"{self.ann_file}: images[id={image_id}].file_name={info['file_name']!r} not found in {self.image_dir}"
                )

    @property
    def category_names(self) -> list[str]:
        return [self.coco.cats[c]["name"] for c in self.category_ids]

    def __len__(self) -> int:
        return len(self.ids)

    def _unreadable(self, image_id: int, path: Path, reason: str) -> DatasetError:
        file_name = self.coco.imgs[image_id]["file_name"]
        return DatasetError(f"{self.ann_file}: images[id={image_id}].file_name={file_name!r}: cannot read {path} ({reason})")

    def verify_images(self) -> None:
        """Open every image's header (PIL open + verify) and compare its size with the entry's
        ``width`` and ``height``; DatasetError for the first image that fails."""
        for image_id in self.ids:
            info = self.coco.imgs[image_id]
            path = self.image_dir / info["file_name"]
            try:
                with Image.open(path) as image:
                    size = image.size
                    image.verify()
            except UNREADABLE_IMAGE_ERRORS as err:
                raise self._unreadable(image_id, path, str(err)) from None
            if size != (info["width"], info["height"]):
                raise DatasetError(
                    f"{self.ann_file}: images[id={image_id}].width/height={info['width']}x{info['height']} "
                    f"but {path} is {size[0]}x{size[1]}"
                )

    def raw_target(self, image_id: int) -> dict[str, torch.Tensor]:
        """Boxes (absolute xyxy, clipped to the image) and contiguous labels of an image; crowd
        boxes left out."""
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        info = self.coco.imgs[image_id]
        boxes[:, 0::2].clamp_(0, info["width"])
        boxes[:, 1::2].clamp_(0, info["height"])
        labels = torch.tensor([self.label_of_category[a["category_id"]] for a in anns], dtype=torch.int64)
        return {"boxes": boxes, "labels": labels}

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        path = self.image_dir / self.coco.imgs[image_id]["file_name"]
        try:
            image = Image.open(path).convert("RGB")
        except UNREADABLE_IMAGE_ERRORS as err:
            raise self._unreadable(image_id, path, str(err)) from None
        target = self.raw_target(image_id)
        target["image_id"] = image_id
        target["orig_size"] = torch.tensor([image.height, image.width])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        target["size"] = torch.tensor(list(image.shape[-2:]) if isinstance(image, torch.Tensor) else [image.height, image.width])
        return image, target
