"""COCO bbox evaluation with pycocotools: detections -> results json -> COCOeval metrics."""
from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from assignlab.data.areas import scaled_area_ranges

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def detections_to_coco_results(detections: Iterable[dict], category_ids: Sequence[int]) -> list[dict]:
    """Per-image detections -> COCO results entries.

    Args:
        detections: dicts with ``image_id`` (int), ``boxes`` [n, 4] absolute xyxy pixels of the
            original image, ``scores`` [n], ``labels`` [n] contiguous class ids.
        category_ids: COCO category id of each contiguous label.
    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``
    """
    results = []
    for det in detections:
        boxes = torch.as_tensor(det["boxes"], dtype=torch.float64).reshape(-1, 4)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        scores = torch.as_tensor(det["scores"]).reshape(-1).tolist()
        labels = torch.as_tensor(det["labels"]).reshape(-1).tolist()
        for box, score, label in zip(xywh, scores, labels):
            results.append({"image_id": int(det["image_id"]), "category_id": int(category_ids[label]), "bbox": [round(v, 3) for v in box], "score": float(score)})
    return results


def evaluate_coco(
    coco_gt: COCO,
    results: list[dict],
    image_size: int | None = None,
    image_ids: Sequence[int] | None = None,
    max_detections: int = 100,
) -> dict[str, float]:
    """COCO bbox metrics in percent: AP, AP50, AP75, APs, APm, APl.

    Args:
        coco_gt: ground truth index (``CocoDetection.coco``).
        results: COCO results entries (``detections_to_coco_results``).
        image_size: scale the small/medium/large area ranges to this image side (synthetic data,
            see ``assignlab.data.areas``); None keeps COCO's ranges.
        image_ids: evaluate on these images only (default: every image of ``coco_gt``).
        max_detections: detections per image considered (COCO: 100).
    A size range without ground truth gives NaN; no detections at all gives 0.
    """
    image_ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(image_ids)
    if not results:
        has_gt = [bool(coco_gt.getAnnIds(imgIds=image_ids, areaRng=r)) for r in _ranges(image_size)]
        return {name: (0.0 if gt else math.nan) for name, gt in zip(METRIC_NAMES, [has_gt[0]] * 3 + has_gt[1:])}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = list(image_ids)
        evaluator.params.areaRng = _ranges(image_size)
        evaluator.params.areaRngLbl = ["all", "small", "medium", "large"]
        evaluator.params.maxDets = [1, 10, max_detections]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats[:6], dtype=np.float64)
    return {name: (float(100.0 * v) if v >= 0 else math.nan) for name, v in zip(METRIC_NAMES, stats)}


def _ranges(image_size: int | None) -> list[list[float]]:
    ranges = scaled_area_ranges(image_size)
    return [ranges[k] for k in ("all", "small", "medium", "large")]
