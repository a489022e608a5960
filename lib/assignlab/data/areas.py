"""COCO's object-size area ranges, scaled to an image size.

COCO calls an object small below 32**2 pixels of area, large above 96**2, on images whose longer
side is about 640 pixels. For images of side ``S`` we keep the same *fraction of the image* by
scaling both thresholds by (S / 640)**2: on 256-pixel synthetic images, small means area below
(32 * 256 / 640)**2 = 12.8**2 ~ 164 pixels, large above 38.4**2 ~ 1475 pixels. With
``image_size=None`` the ranges are COCO's own (use them for real COCO).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

COCO_REFERENCE_SIDE = 640
COCO_SMALL_MAX = 32**2
COCO_MEDIUM_MAX = 96**2
AREA_INFINITY = 1e10


def scaled_area_ranges(image_size: int | None = None) -> dict[str, list[float]]:
    """{"all", "small", "medium", "large"} -> [min_area, max_area] in pixels**2."""
    scale = 1.0 if image_size is None else (image_size / COCO_REFERENCE_SIDE) ** 2
    small, medium = COCO_SMALL_MAX * scale, COCO_MEDIUM_MAX * scale
    return {"all": [0.0, AREA_INFINITY], "small": [0.0, small], "medium": [small, medium], "large": [medium, AREA_INFINITY]}


def size_proportions(areas: Iterable[float], image_size: int | None = None) -> dict[str, float]:
    """Fraction of objects in each of the small/medium/large ranges."""
    areas = np.asarray(list(areas), dtype=np.float64)
    ranges = scaled_area_ranges(image_size)
    total = max(len(areas), 1)
    return {
        name: float(((areas >= ranges[name][0]) & (areas < ranges[name][1])).sum()) / total
        for name in ("small", "medium", "large")
    }
