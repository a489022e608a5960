"""One training epoch and one evaluation pass (single process or one rank of torchrun)."""
from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from assignlab.data.collate import collate_detection
from assignlab.engine import distributed as dist
from assignlab.engine.coco_eval import detections_to_coco_results, evaluate_coco
from assignlab.engine.execution import autocast_for, in_float32


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last good checkpoint is kept."""


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of one epoch, identical for any number of processes.

    The epoch's order is a permutation drawn from (seed, epoch). Global batch ``s`` holds the
    permutation's items [s * G, (s + 1) * G) for a global batch size G; process ``r`` of ``W``
    takes the r-th of W equal slices of it. So W processes with G / W images each see exactly
    the images one process sees with G. A last global batch too small to give every process an
    image is dropped (only when W > 1).
    """

    def __init__(self, num_items: int, global_batch_size: int, seed: int, epoch: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if global_batch_size % world_size:
            raise ValueError(f"train.batch_size={global_batch_size} is not divisible by the {world_size} processes")
        self.num_items, self.global_batch_size = num_items, global_batch_size
        self.seed, self.epoch, self.rank, self.world_size, self.shuffle = seed, epoch, rank, world_size, shuffle

    def _global_batches(self) -> list[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        batches = [order[i : i + self.global_batch_size] for i in range(0, self.num_items, self.global_batch_size)]
        return [b for b in batches if len(b) >= self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            per_rank = math.ceil(len(batch) / self.world_size)
            yield batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return len(self._global_batches())


class PerImageSeededDataset(Dataset):
    """Draws each image's random augmentation from its own stream (seed, epoch, index).

    The augmentation of an image then does not depend on which process loads it, in which
    order, or with how many loader workers, so one process and several give the same batches,
    and a resumed run the same as an uninterrupted one.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
            return self.dataset[index]


def make_loader(dataset: Dataset, sampler: Sampler, num_workers: int, seed: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_detection,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def _to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()} for t in targets]


def train_one_epoch(
    model: nn.Module,
    criterion: Callable[[dict, list[dict]], dict[str, torch.Tensor]],
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    clip_max_norm: float = 0.0,
    amp: bool = False,
    precision: str = "fp32",
    log: Callable[[dict], None] | None = None,
    log_every: int = 10,
    progress: bool = True,
    max_steps: int | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean loss terms and images/s.

    ``precision`` ("fp32" or "bf16") sets the forward's autocast (``autocast_for``); the loss and
    the assignment always see float32 predictions.

    Raises ``NonFiniteLossError`` (on every process) as soon as a loss is NaN or infinite,
    before the optimiser step, so no parameter is touched by it.
    """
    model.train()
    totals: dict[str, float] = {}
    images_seen, steps, start = 0, 0, time.perf_counter()
    autocast = autocast_for(precision, device, amp)
    total_steps = len(loader) if max_steps is None else min(max_steps, len(loader))
    bar = tqdm(total=total_steps, desc=f"epoch {epoch}", unit="step", disable=not (progress and dist.is_main_process()), leave=False)
    for step, (images, mask, targets) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        images, mask, targets = images.to(device), mask.to(device), _to_device(targets, device)
        with autocast:
            # models that train with the targets as input (DINO's denoising queries) say so
            if getattr(getattr(model, "module", model), "takes_targets", False):
                outputs = model(images, mask, targets)
            else:
                outputs = model(images, mask)
        losses = criterion(in_float32(outputs), targets)
        loss = losses["loss"]
        finite = dist.all_reduce_sum(torch.tensor([float(torch.isfinite(loss))], device=device))
        if finite.item() < dist.world_size():
            raise NonFiniteLossError(
                f"loss is {loss.item()} at epoch {epoch}, step {step} "
                f"(terms: {', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())})"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_max_norm)
        optimizer.step()

        steps += 1
        images_seen += images.shape[0] * dist.world_size()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach())
        rate = images_seen / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.1f}")
        bar.update()
        if log is not None and (step % log_every == 0 or step == total_steps - 1):
            log({"event": "step", "epoch": epoch, "step": step, "loss": loss.item(), "lr": optimizer.param_groups[0]["lr"], "images_per_s": rate})
    bar.close()
    elapsed = time.perf_counter() - start
    summary = {f"train_{k}": v / max(steps, 1) for k, v in totals.items()}
    summary["train_images_per_s"] = images_seen / max(elapsed, 1e-9)
    summary["train_time_s"] = elapsed
    return summary


@torch.no_grad()
def predict_dataset(model: nn.Module, postprocess: Callable, dataset, device: torch.device, batch_size: int, progress: bool = True, indices: list[int] | None = None) -> tuple[list[dict], float]:
    """Detections (absolute xyxy pixels of the original images) for ``indices`` of ``dataset``;
    returns them with the inference rate in images/s."""
    model.eval()
    indices = list(range(len(dataset))) if indices is None else indices
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    detections, start = [], time.perf_counter()
    for batch in tqdm(batches, desc="eval", unit="batch", disable=not (progress and dist.is_main_process()), leave=False):
        images, mask, targets = collate_detection([dataset[i] for i in batch])
        outputs = model(images.to(device), mask.to(device))
        orig_sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
        for target, det in zip(targets, postprocess(outputs, orig_sizes)):
            detections.append({"image_id": int(target["image_id"]), **{k: v.cpu() for k, v in det.items()}})
    return detections, len(indices) / max(time.perf_counter() - start, 1e-9)


def evaluate_model(model: nn.Module, postprocess: Callable, dataset, device: torch.device, batch_size: int, area_image_size: int | None, progress: bool = True) -> dict[str, float]:
    """COCO metrics (percent) of ``model`` on ``dataset``; each process predicts its share,
    rank 0 evaluates, every process returns the same dict (with ``eval_images_per_s``)."""
    shard = list(range(dist.rank(), len(dataset), dist.world_size()))
    detections, rate = predict_dataset(model, postprocess, dataset, device, batch_size, progress, shard)
    gathered = dist.gather_to_main(detections)
    metrics = None
    if dist.is_main_process():
        merged = [d for part in gathered for d in part]
        results = detections_to_coco_results(merged, dataset.category_ids)
        metrics = evaluate_coco(dataset.coco, results, image_size=area_image_size)
        metrics["eval_images_per_s"] = rate * dist.world_size()
    return dist.broadcast_object(metrics)
