"""CPU benchmark of multi-scale deformable attention: the grid_sample reference against the compiled kernel.

For each shape it prints the median time of forward and of forward+backward for both implementations,
their ratio, the peak memory of one call, and how far the compiled forward is from this machine's floor.

Timing: implementations are interleaved within every repeat (the cores are shared, so load from other
processes hits both alike) and the median is reported. Peak memory: each call runs in a fresh child
process with glibc's mmap threshold pinned at 64 KiB (so freed buffers return to the OS and cannot be
silently reused); the kernel's resident-set high-water mark is reset just before the call
(/proc/self/clear_refs) and read just after it. The number is the call's peak resident growth: outputs,
temporaries, tensors saved for backward and gradients, not the inputs.

Floor: max(FLOPs / measured matmul FLOP rate, compulsory bytes / measured copy bandwidth) for the same
thread count, where FLOPs = 2 * 4 corners * D per sampling point and compulsory bytes = value,
locations, weights read once and the output written once.

    python benchmarks/msda.py                     # the four standard shapes
    python benchmarks/msda.py --levels 64x64,32x32 --heads 8 --channels 32 --points 4 --queries 1000
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from assignlab.ops.msda import ms_deform_attn


@dataclass(frozen=True)
class Shape:
    """One benchmark shape. queries = 0 means one query per token (the encoder)."""

    name: str
    batch: int
    levels: tuple[tuple[int, int], ...]
    heads: int
    channels: int
    points: int
    queries: int

    @property
    def tokens(self) -> int:
        return sum(h * w for h, w in self.levels)

    @property
    def num_queries(self) -> int:
        return self.queries or self.tokens

    def forward_flops(self) -> int:
        return 2 * 4 * self.channels * self.batch * self.num_queries * self.heads * len(self.levels) * self.points

    def compulsory_bytes(self, element: int = 4) -> int:
        value = self.batch * self.tokens * self.heads * self.channels
        samples = self.batch * self.num_queries * self.heads * len(self.levels) * self.points
        output = self.batch * self.num_queries * self.heads * self.channels
        return element * (value + 3 * samples + output)


CPU_LEVELS = ((32, 32), (16, 16), (8, 8), (4, 4))
IMAGE_512_LEVELS = ((64, 64), (32, 32), (16, 16), (8, 8))
STANDARD_SHAPES = (
    Shape("cpu profile, encoder", 2, CPU_LEVELS, 8, 16, 4, 0),
    Shape("cpu profile, decoder", 2, CPU_LEVELS, 8, 16, 4, 100),
    Shape("512x512 image, encoder", 1, IMAGE_512_LEVELS, 8, 32, 4, 5440),
    Shape("512x512 image, decoder", 1, IMAGE_512_LEVELS, 8, 32, 4, 300),
)
IMPLS = ("reference", "cpp")


def make_inputs(shape: Shape, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs shaped like a trained Deformable-DETR layer: each query samples around its reference
    point (a token centre for the encoder, a random point for the decoder) with offsets of about two
    pixels per level; a few points land outside the map."""
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shape.levels, dtype=torch.long)
    sizes = spatial_shapes.prod(1)
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    n, q, m, lv, p = shape.batch, shape.num_queries, shape.heads, len(shape.levels), shape.points
    value = torch.randn(n, shape.tokens, m, shape.channels, generator=g)
    if shape.queries:
        reference = torch.rand(n, q, 1, 1, 1, 2, generator=g)
    else:
        centres = [torch.stack(torch.meshgrid((torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h,
                                              indexing="xy"), -1).reshape(-1, 2) for h, w in shape.levels]
        reference = torch.cat(centres).view(1, q, 1, 1, 1, 2).expand(n, q, 1, 1, 1, 2)
    wh = spatial_shapes.flip(1).to(torch.float32).view(1, 1, 1, lv, 1, 2)
    offsets = 2.0 * torch.randn(n, q, m, lv, p, 2, generator=g) / wh
    locations = (reference + offsets).contiguous()
    weights = torch.rand(n, q, m, lv * p, generator=g).softmax(-1).view(n, q, m, lv, p)
    return value, spatial_shapes, level_start_index, locations, weights


def run_once(inputs: tuple[torch.Tensor, ...], impl: str, backward: bool, grad: torch.Tensor | None) -> None:
    value, spatial_shapes, level_start_index, locations, weights = inputs
    if not backward:
        with torch.no_grad():
            ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, impl=impl)
        return
    leaves = [t.detach().requires_grad_(True) for t in (value, locations, weights)]
    out = ms_deform_attn(leaves[0], spatial_shapes, level_start_index, leaves[1], leaves[2], impl=impl)
    out.backward(grad)


def time_shape(shape: Shape, repeats: int, inner: int) -> dict[tuple[str, bool], float]:
    """Median seconds per call for every (impl, backward) pair, interleaved repeat by repeat."""
    inputs = make_inputs(shape)
    grad = torch.randn(shape.batch, shape.num_queries, shape.heads * shape.channels)
    samples: dict[tuple[str, bool], list[float]] = {(i, b): [] for i in IMPLS for b in (False, True)}
    for key in samples:  # warm-up: library load, thread pool, allocator
        run_once(inputs, key[0], key[1], grad)
    for _ in range(repeats):
        for impl, backward in samples:
            for _ in range(1 if impl == "reference" else inner):
                start = time.perf_counter()
                run_once(inputs, impl, backward, grad)
                samples[(impl, backward)].append(time.perf_counter() - start)
    return {key: statistics.median(times) for key, times in samples.items()}


def _read_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure_peak_in_child(shape: Shape, impl: str, backward: bool, threads: int) -> int | None:
    """Peak resident growth (bytes) of one call, measured in a fresh process; None where unsupported."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    request = json.dumps({"shape": asdict(shape), "impl": impl, "backward": backward, "threads": threads})
    result = subprocess.run([sys.executable, __file__, "--child", request], capture_output=True, text=True, env=env,
                            timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {result.stderr[-2000:]}")
    return int(result.stdout.strip().splitlines()[-1])


def _child(request: str) -> None:
    spec = json.loads(request)
    shape_fields = spec["shape"]
    shape_fields["levels"] = tuple(tuple(level) for level in shape_fields["levels"])
    shape = Shape(**shape_fields)
    torch.set_num_threads(spec["threads"])
    tiny = Shape("warm-up", 1, ((2, 2),), shape.heads, shape.channels, shape.points, 3)
    run_once(make_inputs(tiny), spec["impl"], spec["backward"], torch.randn(1, 3, shape.heads * shape.channels))
    inputs = make_inputs(shape)
    grad = torch.randn(shape.batch, shape.num_queries, shape.heads * shape.channels)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark to the current resident size
    before = _read_status("VmRSS")
    run_once(inputs, spec["impl"], spec["backward"], grad)
    print(_read_status("VmHWM") - before)


def machine_floor_rates(threads: int) -> tuple[float, float]:
    """(float32 matmul FLOP/s, copy bandwidth in bytes/s) measured here with the current thread count."""
    a = torch.randn(1024, 1024)
    flops = []
    for _ in range(7):
        start = time.perf_counter()
        a @ a
        flops.append(2 * 1024**3 / (time.perf_counter() - start))
    src, dst = torch.randn(32 * 2**20), torch.empty(32 * 2**20)
    bandwidth = []
    for _ in range(7):
        start = time.perf_counter()
        dst.copy_(src)
        bandwidth.append(2 * src.numel() * 4 / (time.perf_counter() - start))
    return statistics.median(flops), statistics.median(bandwidth)


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:8.1f} MiB"


def report(shape: Shape, times: dict[tuple[str, bool], float], peaks: dict[tuple[str, bool], int | None],
           rates: tuple[float, float]) -> None:
    print(f"\n== {shape.name}: batch {shape.batch}, levels {'+'.join(f'{h}x{w}' for h, w in shape.levels)}, "
          f"{shape.heads} heads x {shape.channels} channels, {shape.points} points, {shape.num_queries} queries")
    print(f"  {'':18s}{'reference':>14s}{'compiled':>14s}{'speed-up':>10s}   peak memory (reference / compiled)")
    for backward, label in ((False, "forward"), (True, "forward+backward")):
        ref, ours = times[("reference", backward)], times[("cpp", backward)]
        print(f"  {label:18s}{ref * 1e3:11.2f} ms{ours * 1e3:11.2f} ms{ref / ours:9.1f}x   "
              f"{_mib(peaks[('reference', backward)])} / {_mib(peaks[('cpp', backward)])}")
    flop_rate, bandwidth = rates
    compute, memory = shape.forward_flops() / flop_rate, shape.compulsory_bytes() / bandwidth
    floor = max(compute, memory)
    print(f"  floor of the forward: {floor * 1e3:.2f} ms (compute {shape.forward_flops() / 1e6:.0f} MFLOP -> "
          f"{compute * 1e3:.2f} ms, memory {shape.compulsory_bytes() / 1e6:.1f} MB -> {memory * 1e3:.2f} ms); "
          f"compiled forward = {times[('cpp', False)] / floor:.1f}x the floor")


def parse_levels(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(v) for v in level.lower().split("x")) for level in text.split(","))  # type: ignore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats (median reported)")
    parser.add_argument("--inner", type=int, default=5, help="compiled calls per repeat")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    custom = parser.add_argument_group("a custom shape (replaces the standard ones when any is given)")
    custom.add_argument("--levels", type=parse_levels, help="e.g. 64x64,32x32,16x16,8x8")
    custom.add_argument("--batch", type=int)
    custom.add_argument("--heads", type=int)
    custom.add_argument("--channels", type=int, help="channels per head")
    custom.add_argument("--points", type=int)
    custom.add_argument("--queries", type=int, help="0 = one per token (encoder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0

    shapes = STANDARD_SHAPES
    overrides = {k: getattr(args, k) for k in ("levels", "batch", "heads", "channels", "points", "queries")}
    if any(v is not None for v in overrides.values()):
        base = STANDARD_SHAPES[2]
        fields = {k: (v if v is not None else getattr(base, k)) for k, v in overrides.items()}
        shapes = (Shape("custom", **fields),)

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads: {torch.get_num_threads()} (torch.set_num_threads({args.threads})), "
          f"float32, median of {args.repeats} interleaved repeats ({args.inner} compiled calls each)")
    rates = machine_floor_rates(args.threads)
    print(f"machine: matmul {rates[0] / 1e9:.0f} GFLOP/s, copy bandwidth {rates[1] / 1e9:.1f} GB/s "
          f"(measured now, {args.threads} threads)")
    print("peak memory = growth of the resident set during one call, in a fresh process (outputs, temporaries, "
          "tensors saved for backward, gradients; inputs excluded)")
    for shape in shapes:
        times = time_shape(shape, args.repeats, args.inner)
        peaks = {(impl, backward): None if args.no_memory else measure_peak_in_child(shape, impl, backward,
                                                                                      args.threads)
                 for impl in IMPLS for backward in (False, True)}
        report(shape, times, peaks, rates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
