"""Training and inference speed of a preset with the compiled deformable-attention op and with
the PyTorch reference, measured in one run on the same batches.

    python benchmarks/train_step.py --preset cpu [--steps 10] [--threads 2] [--bound]

``--bound`` also times the model with the op replaced by a stand-in of almost no cost: the speed
ratio of that model to the reference is the most any kernel could gain at this preset.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image

from assignlab.data.collate import collate_detection
from assignlab.data.synthetic import render_image
from assignlab.data.transforms import DetectionTransform
from assignlab.engine.optim import build_optimizer
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model, build_postprocessor
from assignlab.presets import preset


def synthetic_batches(cfg, count: int) -> list:
    """``count`` training batches drawn from the synthetic generator (no files written)."""
    transform = DetectionTransform(cfg.data.train_transform, train=True, image_size=cfg.data.image_size)
    batches = []
    for b in range(count):
        items = []
        for i in range(cfg.train.batch_size):
            pixels, objects = render_image(seed=123, index=b * cfg.train.batch_size + i, size=cfg.data.synth_image_size)
            boxes = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]
            labels = torch.tensor([o["category_id"] - 1 for o in objects])
            image, target = transform(Image.fromarray(pixels), {"boxes": boxes, "labels": labels})
            target["orig_size"] = torch.tensor(image.shape[-2:])
            items.append((image, target))
        batches.append(collate_detection(items))
    return batches


def time_training(cfg, batches, steps: int) -> float:
    """Median seconds per training step (forward, loss, backward, clip, AdamW)."""
    torch.manual_seed(0)
    model = build_model(cfg.model)
    criterion = Criterion.from_config(cfg)
    optimizer, _ = build_optimizer(model, cfg.train)
    model.train()
    times = []
    for step in range(steps + 2):  # two warm-up steps
        images, mask, targets = batches[step % len(batches)]
        start = time.perf_counter()
        loss = criterion(model(images, mask), targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_max_norm)
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def time_inference(cfg, batches, steps: int) -> float:
    """Median seconds per batch of inference (forward + post-processing)."""
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    postprocess = build_postprocessor(cfg.model)
    times = []
    for step in range(steps + 2):
        images, mask, targets = batches[step % len(batches)]
        start = time.perf_counter()
        postprocess(model(images, mask), torch.stack([t["orig_size"] for t in targets]))
        if step >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def attention_free_op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, impl="auto"):
    """A stand-in with the op's shapes and gradients that costs almost nothing: timing a model with
    it bounds what any deformable-attention kernel can gain (Amdahl)."""
    n, q = sampling_locations.shape[:2]
    heads, channels = value.shape[2:]
    per_head = attention_weights.sum((3, 4)) + sampling_locations.sum((3, 4, 5))  # [N, Q, M]
    pooled = value.mean(1)  # [N, M, D]
    return (per_head[..., None] + pooled[:, None]).reshape(n, q, heads * channels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--bound", action="store_true",
                        help="also time the model with the attention op replaced by a free stand-in (Amdahl bound)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from assignlab.config import parse_set_arguments

    base = preset(args.preset).override(parse_set_arguments(args.set))
    base = base.override({"model.num_classes": 10})
    batches = synthetic_batches(base, 4)
    batch = base.train.batch_size
    print(f"preset {args.preset}: batch {batch}, {base.data.image_size} px, threads {torch.get_num_threads()}, median of {args.steps} steps")
    rows = {}
    for impl in ("cpp", "reference"):
        cfg = base.override({"model.msda_impl": impl})
        rows[impl] = (batch / time_training(cfg, batches, args.steps), batch / time_inference(cfg, batches, args.steps))
        print(f"  {impl:9s}  training {rows[impl][0]:7.2f} img/s   inference {rows[impl][1]:7.2f} img/s")
    print(f"  ratio compiled / reference: training {rows['cpp'][0] / rows['reference'][0]:.2f}x, inference {rows['cpp'][1] / rows['reference'][1]:.2f}x")
    if args.bound:
        import assignlab.models.ms_deform_attn as attention_module

        kernel = attention_module.ms_deform_attn
        attention_module.ms_deform_attn = attention_free_op
        try:
            free = batch / time_training(base, batches, args.steps), batch / time_inference(base, batches, args.steps)
        finally:
            attention_module.ms_deform_attn = kernel
        print(f"  no attention op training {free[0]:7.2f} img/s   inference {free[1]:7.2f} img/s")
        print(f"  bound on the ratio (op of zero cost / reference): training {free[0] / rows['reference'][0]:.2f}x, "
              f"inference {free[1] / rows['reference'][1]:.2f}x")


if __name__ == "__main__":
    main()
