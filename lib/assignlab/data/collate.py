"""Batching images of different sizes: zero padding at the bottom/right plus a padding mask."""
from __future__ import annotations

import torch


def pad_images(images: list[torch.Tensor], size_divisibility: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [3, H_i, W_i] images into [B, 3, H, W] and a mask [B, H, W] that is True on padding."""
    if not images:
        raise ValueError("cannot batch an empty list of images")
    height = max(img.shape[-2] for img in images)
    width = max(img.shape[-1] for img in images)
    if size_divisibility > 1:
        height = -(-height // size_divisibility) * size_divisibility
        width = -(-width // size_divisibility) * size_divisibility
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    mask = torch.ones((len(images), height, width), dtype=torch.bool, device=images[0].device)
    for i, img in enumerate(images):
        batch[i, :, : img.shape[-2], : img.shape[-1]] = img
        mask[i, : img.shape[-2], : img.shape[-1]] = False
    return batch, mask


def collate_detection(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """DataLoader ``collate_fn``: -> (images [B, 3, H, W], mask [B, H, W] bool, targets list)."""
    images, targets = zip(*batch)
    padded, mask = pad_images(list(images))
    return padded, mask, list(targets)
