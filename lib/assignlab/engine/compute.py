"""What one training step costs in arithmetic: the matmul and convolution FLOP of a forward and
backward pass (``torch.utils.flop_counter``) and the parameter count, measured on synthetic
batches drawn straight from the generator (no files written)."""
from __future__ import annotations

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from assignlab.config import Config
from assignlab.data.collate import collate_detection
from assignlab.data.synthetic import render_image
from assignlab.data.transforms import DetectionTransform
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model

Batch = tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]


def synthetic_batches(cfg: Config, count: int, seed: int = 123) -> list[Batch]:
    """``count`` training batches of ``cfg.train.batch_size`` synthetic images at
    ``cfg.data.synth_image_size``, through the training transform: (images [B, 3, H, W], pixel
    mask [B, H, W], targets with ``boxes`` [N, 4] normalised cxcywh, ``labels`` [N], ``orig_size``)."""
    transform = DetectionTransform(cfg.data.train_transform, train=True, image_size=cfg.data.image_size)
    batches = []
    for b in range(count):
        items = []
        for i in range(cfg.train.batch_size):
            pixels, objects = render_image(seed=seed, index=b * cfg.train.batch_size + i, size=cfg.data.synth_image_size)
            boxes = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy pixels, as the COCO loader gives them
            labels = torch.tensor([o["category_id"] - 1 for o in objects])
            image, target = transform(Image.fromarray(pixels), {"boxes": boxes, "labels": labels})
            target["orig_size"] = torch.tensor(image.shape[-2:])
            items.append((image, target))
        batches.append(collate_detection(items))
    return batches


def training_gflop_per_image(cfg: Config, batch: Batch | None = None) -> float:
    """Matmul and convolution GFLOP of one forward + backward pass (loss included), per image, of
    ``cfg``'s model on ``batch`` (default: the first of :func:`synthetic_batches`). Counted in
    float32 whatever ``cfg.train.precision``: the count of a matmul does not depend on its dtype."""
    images, mask, targets = batch if batch is not None else synthetic_batches(cfg, 1)[0]
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    criterion = Criterion.from_config(cfg)
    with FlopCounterMode(display=False) as counter:
        criterion(model(images, mask), targets)["loss"].backward()
    return counter.get_total_flops() / 1e9 / images.shape[0]


def parameter_count(cfg: Config) -> int:
    """Parameters of ``cfg``'s model."""
    return sum(p.numel() for p in build_model(cfg.model).parameters())
