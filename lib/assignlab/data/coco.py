"""COCO-format detection dataset on pycocotools: COCO 2017 and the synthetic splits alike.

The annotation file is checked when it is loaded; a problem raises ``DatasetError`` naming the
file and the offending field (e.g. ``annotations[12].category_id``). Boxes with non-positive
width or height are dropped with one warning that counts them. Crowd annotations stay in the
evaluation ground truth (COCOeval treats them as "ignore") but are left out of training targets.
Images without annotations stay: they are negatives.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and the field."""


def load_coco_annotations(ann_file: str | Path) -> COCO:
    """Read and validate a COCO instances json; return a pycocotools ``COCO`` index.

    Degenerate boxes (w <= 0 or h <= 0) are removed from the index with a warning.
    """
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    try:
        data = json.loads(ann_file.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{ann_file}: malformed json ({err})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{ann_file}: top level must be an object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{ann_file}: field '{key}' missing or not a list")

    category_ids = set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            raise DatasetError(f"{ann_file}: categories[{i}].id missing or not an integer")
        category_ids.add(cat["id"])
    image_ids = set()
    for i, img in enumerate(data["images"]):
        for field, kind in (("id", int), ("file_name", str), ("width", int), ("height", int)):
            if not isinstance(img, dict) or not isinstance(img.get(field), kind):
                raise DatasetError(f"{ann_file}: images[{i}].{field} missing or not {kind.__name__}")
        image_ids.add(img["id"])

    kept, degenerate = [], 0
    for i, ann in enumerate(data["annotations"]):
        where = f"{ann_file}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise DatasetError(f"{where} is not an object")
        if ann.get("image_id") not in image_ids:
            raise DatasetError(f"{where}.image_id={ann.get('image_id')!r} is not in images")
        if ann.get("category_id") not in category_ids:
            raise DatasetError(f"{where}.category_id={ann.get('category_id')!r} is not in categories")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DatasetError(f"{where}.bbox={bbox!r} is not [x, y, width, height]")
        if bbox[2] <= 0 or bbox[3] <= 0:
            degenerate += 1
            continue
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(bbox[2] * bbox[3]))
        kept.append(ann)
    if degenerate:
        warnings.warn(f"{ann_file}: dropped {degenerate} annotation(s) whose bbox has non-positive width or height", stacklevel=2)
    data["annotations"] = kept

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """Images and detection targets from a COCO json and an image folder.

    Each item is ``(image, target)`` after ``transforms``; without transforms the image is a PIL
    RGB image and target boxes are absolute xyxy pixels. Target keys: ``boxes`` [n, 4] float,
    ``labels`` [n] long (contiguous ids 0..C-1, see ``category_ids``), ``image_id`` int,
    ``orig_size`` [2] long (h, w), ``size`` [2] long (h, w after transforms).
    """

    def __init__(self, image_dir: str | Path, ann_file: str | Path, transforms: Callable | None = None, train: bool = False):
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.coco = load_coco_annotations(self.ann_file)
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

    def raw_target(self, image_id: int) -> dict[str, torch.Tensor]:
        """Boxes (absolute xyxy) and contiguous labels of an image; crowd boxes left out."""
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([self.label_of_category[a["category_id"]] for a in anns], dtype=torch.int64)
        return {"boxes": boxes, "labels": labels}

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        try:
            image = Image.open(path).convert("RGB")
        except OSError as err:
            raise DatasetError(f"{self.ann_file}: images[id={image_id}].file_name={info['file_name']!r}: cannot read {path} ({err})") from None
        target = self.raw_target(image_id)
        target["image_id"] = image_id
        target["orig_size"] = torch.tensor([image.height, image.width])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        target["size"] = torch.tensor(list(image.shape[-2:]) if isinstance(image, torch.Tensor) else [image.height, image.width])
        return image, target
