"""Training speed of the detector against the outside world, measured in one run.

    python benchmarks/train_step.py [--shape cpu|paper-width|both|cpu-m|cpu-l] [--steps 8] [--threads 1] [--op-bound]

For each shape it trains on the same synthetic batches, with the engine's own step (forward
under the precision's autocast, loss in float32, backward, gradient clipping, fused AdamW):

- ours in four execution settings: eager fp32 (``python -m assignlab train``'s default), compiled
  fp32 (``train.compile``), bf16 (``train.precision=bf16``) and compiled bf16;
- the anchor: transformers' DETA (``DetaForObjectDetection``, in the test extras) at the same shape
  (same widths, depths, heads, points, queries, feature levels, image size and batch; its ResNet of
  basic blocks with the same stage widths), trained with its own loss in eager fp32.

It prints images/s, the ratio to the anchor and to our eager fp32, the matmul/convolution work per
training image counted by ``torch.utils.flop_counter`` (forward and backward), and the fraction of
this machine's fp32 and bf16 matmul peaks (a 2048² ``torch.mm`` timed in the same run; 512² for
bf16 on a CPU that only emulates it, where 2048² takes minutes) that the step reaches. Compiled variants report their compilation time (the first steps) separately; a
run's wall time includes it once.

``--op-bound`` adds two rows: eager fp32 with the deformable-attention op replaced by its PyTorch
reference (``grid_sample``), and by a stand-in of almost no cost; the ratio of the latter to the
former bounds what any kernel for the op can gain at that shape (Amdahl).

Shapes: ``cpu`` is the study's preset (160 px, d 64, 3+3 layers, 100 queries, batch 4);
``paper-width`` has DETA's transformer width (d 256, FFN 1024, 6+6 layers, 300 queries) at 256 px
with a backbone of width 64, batch 4. ``cpu-m`` and ``cpu-l`` are the scale ladder's rungs M and L
(``assignlab.presets.LADDER_MODELS``; the study trains M in fp32 and L in bf16).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings

import torch

from assignlab.engine.compute import parameter_count, synthetic_batches, training_gflop_per_image
from assignlab.engine.execution import autocast_for, in_float32, maybe_compile, emulated_precision_reason
from assignlab.engine.optim import build_optimizer
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model
from assignlab.presets import LADDER_MODELS, preset

SHAPES = {
    "cpu": {},
    "paper-width": {"model.hidden_dim": 256, "model.dim_feedforward": 1024, "model.enc_layers": 6,
                    "model.dec_layers": 6, "model.num_queries": 300, "model.backbone_width": 64,
                    "data.image_size": 256, "data.synth_image_size": 256},
}
# the scale ladder's larger rungs (assignlab.presets.LADDER), each variant at its own precision
LADDER_SHAPES = {size: {k: v for k, v in overrides.items() if k != "train.precision"}
                 for size, overrides in LADDER_MODELS.items()}
ALL_SHAPES = {**SHAPES, **LADDER_SHAPES}
VARIANTS = {"eager fp32": ("fp32", False), "compiled fp32": ("fp32", True),
            "bf16": ("bf16", False), "compiled bf16": ("bf16", True)}


def timed_steps(step, batches, steps: int, warmup: int = 2) -> tuple[float, float]:
    """(seconds of the ``warmup`` first steps, median seconds of the next ``steps``)."""
    start = time.perf_counter()
    for index in range(warmup):
        step(*batches[index % len(batches)])
    first = time.perf_counter() - start
    times = []
    for index in range(steps):
        start = time.perf_counter()
        step(*batches[(warmup + index) % len(batches)])
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def our_step(cfg, precision: str, compiled: bool):
    """One training step as ``engine.loop.train_one_epoch`` takes it."""
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    forward = maybe_compile(model, compiled)
    criterion = Criterion.from_config(cfg)
    optimizer, _ = build_optimizer(model, cfg.train)
    device = torch.device("cpu")

    def step(images, mask, targets):
        with autocast_for(precision, device):
            outputs = forward(images, mask)
        loss = criterion(in_float32(outputs), targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_max_norm)
        optimizer.step()
        return loss

    return step


@contextlib.contextmanager
def topk_within_size():
    """transformers' DETA asks for the top 1000 proposals per level whatever the image size; at 160
    px a level has fewer tokens. Clamping k to the size gives it the same work as ours."""
    original = torch.topk

    def clamped(x, k, *args, **kwargs):
        return original(x, min(k, x.shape[-1]), *args, **kwargs)

    torch.topk = clamped
    try:
        yield
    finally:
        torch.topk = original


def hf_deta_step(cfg):
    """A training step of transformers' DETA at ``cfg``'s shape, or None when it is not installed."""
    try:
        import transformers
        from transformers.models.deprecated import deta
    except ImportError:
        return None
    m, w = cfg.model, cfg.model.backbone_width
    backbone = transformers.ResNetConfig(embedding_size=w, hidden_sizes=[w, 2 * w, 4 * w, 8 * w], depths=[1, 1, 1, 1],
                                         layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = deta.DetaConfig(
        backbone_config=backbone, d_model=m.hidden_dim, encoder_layers=m.enc_layers, decoder_layers=m.dec_layers,
        encoder_ffn_dim=m.dim_feedforward, decoder_ffn_dim=m.dim_feedforward, encoder_attention_heads=m.nheads,
        decoder_attention_heads=m.nheads, encoder_n_points=m.enc_n_points, decoder_n_points=m.dec_n_points,
        num_feature_levels=m.num_feature_levels, two_stage_num_proposals=m.num_queries, num_queries=m.num_queries,
        num_labels=m.num_classes, dropout=0.0)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = deta.DetaForObjectDetection(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)

    def step(images, mask, targets):
        labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]  # normalised cxcywh
        with topk_within_size(), contextlib.redirect_stdout(None):  # it prints when NMS leaves too few
            loss = model(pixel_values=images, pixel_mask=(~mask).long(), labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_max_norm)
        optimizer.step()
        return loss

    return step, sum(p.numel() for p in model.parameters())


def attention_free_op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, impl="auto"):
    """A stand-in with the op's shapes and gradients that costs almost nothing."""
    n, q = sampling_locations.shape[:2]
    heads, channels = value.shape[2:]
    per_head = attention_weights.sum((3, 4)) + sampling_locations.sum((3, 4, 5))  # [N, Q, M]
    pooled = value.mean(1)  # [N, M, D]
    return (per_head[..., None] + pooled[:, None]).reshape(n, q, heads * channels)


@contextlib.contextmanager
def attention_op(kind: str):
    """The model's deformable-attention op as "reference" (grid_sample) or "free" (``attention_free_op``)."""
    import assignlab.models.ms_deform_attn as attention_module
    from assignlab.ops.msda_reference import ms_deform_attn_reference

    kernel = attention_module.ms_deform_attn
    attention_module.ms_deform_attn = (
        (lambda *inputs, impl="auto": ms_deform_attn_reference(*inputs)) if kind == "reference" else attention_free_op)
    try:
        yield
    finally:
        attention_module.ms_deform_attn = kernel


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a square ``torch.mm`` in ``dtype`` on this machine, with the current thread count."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def benchmark_shape(name: str, steps: int, variants: list[str], with_anchor: bool, peaks: dict,
                    op_bound: bool = False) -> None:
    cfg = preset("cpu").override({**ALL_SHAPES[name], "model.num_classes": 10})
    batches = synthetic_batches(cfg, 4)
    batch = cfg.train.batch_size
    params = parameter_count(cfg)
    gflop = training_gflop_per_image(cfg, batches[0])
    print(f"\n{name}: {cfg.data.image_size} px, d {cfg.model.hidden_dim}, FFN {cfg.model.dim_feedforward}, "
          f"{cfg.model.enc_layers}+{cfg.model.dec_layers} layers, {cfg.model.num_queries} queries, batch {batch}, "
          f"{params / 1e6:.2f}M parameters, {gflop:.2f} GFLOP per training image (counted), median of {steps} steps")
    rates = {}
    anchor = hf_deta_step(cfg) if with_anchor else None
    if with_anchor and anchor is None:
        print("  transformers is not installed (pip install -e '.[test]'): no anchor")
    if anchor is not None:
        step, hf_params = anchor
        _, seconds = timed_steps(step, batches, steps)
        rates["HF DETA"] = batch / seconds
        print(f"  {'HF transformers DETA (eager fp32)':36s} {rates['HF DETA']:7.2f} img/s   ({hf_params / 1e6:.2f}M parameters)")
    for variant in variants:
        precision, compiled = VARIANTS[variant]
        first, seconds = timed_steps(our_step(cfg, precision, compiled), batches, steps)
        rates[variant] = batch / seconds
        achieved = gflop * rates[variant]
        peak = peaks["bf16" if precision == "bf16" else "fp32"]
        parts = [f"  {'ours, ' + variant:36s} {rates[variant]:7.2f} img/s",
                 f"{achieved:6.1f} GFLOP/s = {100 * achieved / peak:4.1f} % of the {precision} matmul peak"]
        if "HF DETA" in rates:
            parts.append(f"{rates[variant] / rates['HF DETA']:.2f}x HF")
        if variant != "eager fp32" and "eager fp32" in rates:
            parts.append(f"{rates[variant] / rates['eager fp32']:.2f}x eager fp32")
        if compiled:
            parts.append(f"first 2 steps {first:.1f} s (compilation)")
        print("   ".join(parts))
        sys.stdout.flush()
    if op_bound:
        for kind, label in (("reference", "eager fp32, reference op"), ("free", "eager fp32, op of zero cost")):
            with attention_op(kind):
                _, seconds = timed_steps(our_step(cfg, "fp32", False), batches, steps)
            rates[label] = batch / seconds
            print(f"  {'ours, ' + label:36s} {rates[label]:7.2f} img/s")
        print(f"  compiled op / reference op: {rates['eager fp32'] / rates['eager fp32, reference op']:.2f}x; "
              f"bound (op of zero cost / reference op): "
              f"{rates['eager fp32, op of zero cost'] / rates['eager fp32, reference op']:.2f}x"
              if "eager fp32" in rates else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=[*ALL_SHAPES, "both"], default="both",
                        help="both: cpu and paper-width; cpu-m, cpu-l: the scale ladder's rungs")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--no-anchor", action="store_true", help="skip transformers' DETA")
    parser.add_argument("--op-bound", action="store_true",
                        help="also time the model with the reference op and with an op of zero cost")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    torch.set_num_threads(args.threads)
    emulated = emulated_precision_reason("bf16")
    bf16_side = 512 if emulated else 2048  # an emulated 2048^2 bf16 mm takes about a minute
    peaks = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16, bf16_side)}
    print(f"threads {torch.get_num_threads()}; matmul peaks (square torch.mm): fp32 {peaks['fp32']:.0f} GFLOP/s "
          f"(2048^2), bf16 {peaks['bf16']:.3g} GFLOP/s ({bf16_side}^2)")
    if emulated:
        print(f"  note: {emulated}")
    for name in (list(SHAPES) if args.shape == "both" else [args.shape]):
        benchmark_shape(name, args.steps, variants, not args.no_anchor, peaks, args.op_bound)


if __name__ == "__main__":
    main()
