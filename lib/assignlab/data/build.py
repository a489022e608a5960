"""Datasets from a ``DataConfig``: generates the synthetic split on first use, then loads it
through the same COCO loader that reads COCO 2017."""
from __future__ import annotations

import fcntl
from pathlib import Path

from assignlab.config import DataConfig
from assignlab.data.coco import CocoDetection
from assignlab.data.synthetic import SynthSpec, generate_split
from assignlab.data.transforms import DetectionTransform
from assignlab.paths import in_project


def dataset_root(cfg: DataConfig) -> Path:
    """Folder holding the data. A synthetic dataset lives in a sub-folder named by its
    generation parameters, so profiles with different sizes never share files."""
    if not cfg.synthetic:
        return in_project(cfg.root)
    name = f"px{cfg.synth_image_size}-train{cfg.synth_train_images}-val{cfg.synth_val_images}-seed{cfg.synth_seed}"
    return in_project(cfg.root) / name


def split_paths(cfg: DataConfig, split: str) -> tuple[Path, Path]:
    """(image folder, annotation file) of a split.

    Synthetic splits keep all images in ``images/``; COCO 2017 uses ``root/<split>``
    (e.g. ``data/coco/val2017``) with ``root/annotations/instances_<split>.json``.
    """
    root = dataset_root(cfg)
    ann_file = root / "annotations" / f"instances_{split}.json"
    image_dir = root / "images" if cfg.synthetic else root / split
    return image_dir, ann_file


def ensure_synthetic_split(cfg: DataConfig, split: str, progress: bool = True) -> Path:
    """Generate a synthetic split under ``cfg.root`` unless its annotation file already exists."""
    _, ann_file = split_paths(cfg, split)
    if ann_file.exists():
        return ann_file
    root = dataset_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    # Several runs may start at once: one generates, the others wait for it.
    with open(root / f".{split}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ann_file.exists():
            return ann_file
        is_train = split == cfg.train_split
        spec = SynthSpec(
            images=cfg.synth_train_images if is_train else cfg.synth_val_images,
            size=cfg.synth_image_size,
            seed=cfg.synth_seed if is_train else cfg.synth_seed + 1,
        )
        generate_split(root, split, spec, progress=progress)
    return ann_file


def build_dataset(cfg: DataConfig, split: str, train: bool) -> CocoDetection:
    """The dataset of one split with the configured transforms (training augmentation if ``train``)."""
    if cfg.synthetic:
        ensure_synthetic_split(cfg, split)
    image_dir, ann_file = split_paths(cfg, split)
    transform = DetectionTransform(cfg.train_transform, train=train, image_size=cfg.image_size)
    return CocoDetection(image_dir, ann_file, transforms=transform, train=train)
