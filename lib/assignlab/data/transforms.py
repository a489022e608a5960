"""Input pipelines on torchvision.transforms.v2 (boxes are transformed with the image).

- ``fixed`` (small profiles): horizontal flip when training, resize the shorter side to
  ``image_size`` (longer side capped at ``image_size * 1333 / 800``, as DETR caps 800 at 1333).
- ``multiscale`` (paper profile): DETR's augmentation. Training: flip, then either a resize of the
  shorter side to one of 480..800 (step 32, longer side <= 1333), or a resize to one of
  400/500/600, a random crop of 384..600 pixels and again the multi-scale resize. Evaluation:
  shorter side 800, longer side <= 1333.

Every pipeline ends with ImageNet normalisation and converts the target boxes from absolute xyxy
to cxcywh normalised by the transformed image size; boxes that a crop reduced to nothing are
removed with their labels.
"""
from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.ops import box_convert
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MULTISCALE_SIZES = tuple(range(480, 801, 32))
MULTISCALE_MAX_SIZE = 1333


class RandomSizeCrop(v2.Transform):
    """Crop a random window whose sides are drawn uniformly in [min_size, max_size] (clamped to the image)."""

    def __init__(self, min_size: int, max_size: int):
        super().__init__()
        self.min_size, self.max_size = min_size, max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        crop_w = int(torch.randint(min(self.min_size, width), min(width, self.max_size) + 1, ()).item())
        crop_h = int(torch.randint(min(self.min_size, height), min(height, self.max_size) + 1, ()).item())
        top = int(torch.randint(0, height - crop_h + 1, ()).item())
        left = int(torch.randint(0, width - crop_w + 1, ()).item())
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


def _geometry(kind: str, train: bool, image_size: int) -> list[v2.Transform]:
    if kind == "fixed":
        resize = v2.Resize(image_size, max_size=max(image_size + 1, image_size * MULTISCALE_MAX_SIZE // 800))
        return [v2.RandomHorizontalFlip(), resize] if train else [resize]
    if kind == "multiscale":
        if not train:
            return [v2.Resize(800, max_size=MULTISCALE_MAX_SIZE)]
        multiscale = v2.RandomShortestSize(list(MULTISCALE_SIZES), max_size=MULTISCALE_MAX_SIZE)
        crop_then_resize = v2.Compose([v2.RandomShortestSize([400, 500, 600]), RandomSizeCrop(384, 600), multiscale])
        return [v2.RandomHorizontalFlip(), v2.RandomChoice([multiscale, crop_then_resize])]
    raise ValueError(f"data.train_transform must be 'fixed' or 'multiscale', got {kind!r}")


class DetectionTransform:
    """Callable ``(PIL image, target) -> (normalised image [3, H, W], target with cxcywh boxes)``."""

    def __init__(self, kind: str, train: bool, image_size: int = 256):
        self.pipeline = v2.Compose(
            [
                v2.ToImage(),
                *_geometry(kind, train, image_size),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=lambda inputs: inputs[1]["labels"]),
            ]
        )

    def __call__(self, image, target: dict) -> tuple[torch.Tensor, dict]:
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(image.height, image.width))
        image, out = self.pipeline(image, {**target, "boxes": boxes})
        height, width = image.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        out["boxes"] = box_convert(out["boxes"].as_subclass(torch.Tensor), "xyxy", "cxcywh") / scale
        return image.as_subclass(torch.Tensor), out
