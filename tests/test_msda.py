"""Multi-scale deformable attention: compiled kernels against hand-worked cases, the grid_sample
reference, gradcheck, determinism, input validation, the build, and (when present) CUDA."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from assignlab.ops import build, msda, msda_library
from assignlab.ops.msda import ms_deform_attn
from assignlab.ops.msda_reference import ms_deform_attn_reference


def make_inputs(shapes, batch=2, heads=2, channels=3, queries=5, points=2, dtype=torch.float64,
                low=-0.2, high=1.2, seed=0, device="cpu"):
    """Random inputs; locations in [low, high] so some sampling points fall outside the map."""
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    sizes = spatial_shapes.prod(1)
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    levels = len(shapes)
    value = torch.randn(batch, int(sizes.sum()), heads, channels, generator=g, dtype=dtype)
    locations = low + (high - low) * torch.rand(batch, queries, heads, levels, points, 2, generator=g, dtype=dtype)
    weights = torch.rand(batch, queries, heads, levels, points, generator=g, dtype=dtype)
    return tuple(t.to(device) for t in (value, spatial_shapes, level_start_index, locations, weights))


# --- hand-worked values ---------------------------------------------------------------------

def _one_map(height, width, values, x, y, weight=1.0):
    """A single 1-head, 1-channel map holding `values` (row-major), sampled at one normalised (x, y)."""
    value = torch.tensor(values, dtype=torch.float64).view(1, height * width, 1, 1)
    shapes = torch.tensor([[height, width]])
    start = torch.tensor([0])
    loc = torch.tensor([x, y], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    attn = torch.tensor([weight], dtype=torch.float64).view(1, 1, 1, 1, 1)
    return value, shapes, start, loc, attn


@pytest.mark.parametrize("x, y, expected", [
    (0.5 / 3, 0.5 / 2, 1.0),                 # centre of pixel (0, 0)
    (2.5 / 3, 1.5 / 2, 6.0),                 # centre of pixel (row 1, col 2)
    (1.0 / 3, 0.5 / 2, 1.5),                 # midway between (0, 0) and (0, 1)
    (1.0 / 3, 1.0 / 2, (1 + 2 + 4 + 5) / 4),  # centre of the four top-left pixels
    (0.0, 0.5 / 2, 0.5),                     # left edge: half of pixel (0, 0), half zero padding
    (0.0, 0.0, 0.25),                        # top-left corner: a quarter of pixel (0, 0)
    (1.5, 0.5, 0.0),                         # far outside
    (-1e30, 0.5, 0.0),                       # absurdly far outside: no integer overflow
    (0.5, float("inf"), float("nan")),       # non-finite locations give NaN, as grid_sample does
    (float("nan"), 0.5, float("nan")),
])
def test_forward_hand_worked_2x3(x, y, expected):
    # map [[1, 2, 3], [4, 5, 6]] (H=2, W=3); pixel centre (i, j) sits at ((j + .5) / 3, (i + .5) / 2)
    inputs = _one_map(2, 3, [1, 2, 3, 4, 5, 6], x, y, weight=2.0)
    out = ms_deform_attn(*inputs, impl="cpp")
    assert out.shape == (1, 1, 1)
    assert out.item() == pytest.approx(2.0 * expected, abs=1e-12, nan_ok=True)
    assert out.item() == pytest.approx(ms_deform_attn_reference(*inputs).item(), abs=1e-12, nan_ok=True)


def test_forward_hand_worked_1x1_map():
    # a 1x1 map: the pixel centre is (0.5, 0.5); a quarter cell away the weight is 1 - 0.25 = 0.75
    inputs = _one_map(1, 1, [8.0], 0.5 + 0.25, 0.5)
    assert ms_deform_attn(*inputs, impl="cpp").item() == pytest.approx(6.0, abs=1e-12)


def test_forward_sums_heads_levels_points_with_weights():
    # two levels of constant maps, weights per point: output is the weighted sum of the constants
    value = torch.cat([torch.full((1, 4, 1, 2), 3.0), torch.full((1, 1, 1, 2), -1.0)], dim=1).double()
    shapes = torch.tensor([[2, 2], [1, 1]])
    start = torch.tensor([0, 4])
    loc = torch.full((1, 1, 1, 2, 2, 2), 0.5, dtype=torch.float64)  # map centres: fully inside
    attn = torch.tensor([[0.25, 0.5], [1.0, 2.0]], dtype=torch.float64).view(1, 1, 1, 2, 2)
    out = ms_deform_attn(value, shapes, start, loc, attn, impl="cpp")
    assert torch.allclose(out, torch.full((1, 1, 2), 0.75 * 3.0 + 3.0 * -1.0, dtype=torch.float64))


# --- parity with the reference ----------------------------------------------------------------

PARITY_CASES = [
    # (spatial shapes, batch, heads, channels, queries, points)
    ([[1, 1]], 1, 1, 1, 1, 1),
    ([[2, 3]], 2, 3, 5, 7, 4),
    ([[5, 7]], 1, 1, 32, 9, 1),
    ([[6, 5], [3, 3], [1, 1], [2, 3]], 2, 3, 7, 11, 3),
    ([[8, 8], [4, 4], [2, 2], [1, 1]], 3, 2, 16, 13, 4),
    ([[9, 4], [1, 6]], 1, 4, 33, 6, 2),
    ([[3, 3], [2, 2]], 2, 2, 64, 5, 2),
    ([[5, 4], [3, 2], [2, 2]], 1, 2, 16, 6, 7),  # 21 points per head: more than one block of 16
]


@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: f"L{len(c[0])}-D{c[3]}")
def test_forward_matches_reference_float64(case):
    shapes, batch, heads, channels, queries, points = case
    inputs = make_inputs(shapes, batch, heads, channels, queries, points)
    out = ms_deform_attn(*inputs, impl="cpp")
    expected = ms_deform_attn_reference(*inputs)
    assert out.shape == (batch, queries, heads * channels)
    assert (out - expected).abs().max().item() < 1e-10


def test_forward_matches_reference_float32():
    inputs = make_inputs([[16, 16], [8, 8], [4, 4]], 2, 4, 32, 50, 4, dtype=torch.float32)
    torch.testing.assert_close(ms_deform_attn(*inputs, impl="cpp"), ms_deform_attn_reference(*inputs),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", PARITY_CASES[1::2], ids=lambda c: f"L{len(c[0])}-D{c[3]}")
def test_backward_matches_reference_float64(case):
    shapes, batch, heads, channels, queries, points = case
    inputs = make_inputs(shapes, batch, heads, channels, queries, points)
    grad = torch.randn(batch, queries, heads * channels, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(1))
    grads = []
    for fn in (lambda *a: ms_deform_attn(*a, impl="cpp"), ms_deform_attn_reference):
        value, shapes_t, start, loc, attn = (t.clone() for t in inputs)
        for t in (value, loc, attn):
            t.requires_grad_(True)
        fn(value, shapes_t, start, loc, attn).backward(grad)
        grads.append((value.grad, loc.grad, attn.grad))
    for ours, theirs in zip(*grads):
        assert (ours - theirs).abs().max().item() < 1e-10


def test_gradcheck_value_locations_weights():
    value, shapes, start, loc, attn = make_inputs([[3, 4], [2, 1], [1, 1]], 2, 2, 3, 4, 2, low=-0.1, high=1.1)
    for t in (value, loc, attn):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, l, a: ms_deform_attn(v, shapes, start, l, a, impl="cpp"), (value, loc, attn))


def test_backward_is_bitwise_deterministic_across_runs_and_threads():
    """On one machine and one kernel build (AVX2 or portable): the op's backward accumulates in a
    fixed order whatever the thread count. Not a promise across CPUs."""
    inputs = make_inputs([[32, 32], [16, 16], [8, 8]], 2, 4, 32, 400, 4, dtype=torch.float32)
    grad = torch.randn(2, 400, 4 * 32, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    results = []
    try:
        for num_threads in (2, 2, 1):
            torch.set_num_threads(num_threads)
            results.append(torch.ops.assignlab_msda.ms_deform_attn_backward(grad, *inputs))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_portable_kernels_match_reference():
    # The kernels pick an AVX2 build at run time; the portable one (any x86-64 or other CPU) is
    # forced by an environment variable read once per process, hence the child process.
    script = """
import torch
from assignlab.ops.msda import ms_deform_attn
from assignlab.ops.msda_reference import ms_deform_attn_reference
worst = 0.0
for shapes, channels in (([[6, 5], [3, 3], [1, 1]], 7), ([[8, 8], [4, 4]], 32)):
    s = torch.tensor(shapes)
    start = torch.cat([s.new_zeros(1), s.prod(1).cumsum(0)[:-1]])
    value = torch.randn(2, int(s.prod(1).sum()), 3, channels, dtype=torch.float64, requires_grad=True)
    loc = (torch.rand(2, 5, 3, len(shapes), 2, 2, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    attn = torch.rand(2, 5, 3, len(shapes), 2, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 5, 3 * channels, dtype=torch.float64)
    results = []
    for fn in (lambda *a: ms_deform_attn(*a, impl="cpp"), ms_deform_attn_reference):
        out = fn(value, s, start, loc, attn)
        results.append((out, *torch.autograd.grad(out, (value, loc, attn), grad)))
    worst = max(worst, *((a - b).abs().max().item() for a, b in zip(*results)))
print(worst)
"""
    env = {**os.environ, "ASSIGNLAB_MSDA_PORTABLE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-10


def test_empty_batch_and_queries():
    value, shapes, start, loc, attn = make_inputs([[2, 3]], 2, 2, 4, 3, 2)
    out = ms_deform_attn(value, shapes, start, loc[:, :0], attn[:, :0], impl="cpp")
    assert out.shape == (2, 0, 8)
    out = ms_deform_attn(value[:0], shapes, start, loc[:0], attn[:0], impl="cpp")
    assert out.shape == (0, 3, 8)


def test_non_contiguous_inputs_give_the_same_result():
    value, shapes, start, loc, attn = make_inputs([[4, 5], [2, 2]], 2, 3, 6, 7, 2)
    value_t = value.transpose(0, 1).contiguous().transpose(0, 1)
    loc_t = loc.transpose(1, 2).contiguous().transpose(1, 2)
    assert not value_t.is_contiguous() and not loc_t.is_contiguous()
    assert torch.equal(ms_deform_attn(value_t, shapes, start, loc_t, attn, impl="cpp"),
                       ms_deform_attn(value, shapes, start, loc, attn, impl="cpp"))


# --- torch.library registrations ----------------------------------------------------------------

def test_opcheck_schema_fake_and_autograd_registrations():
    inputs = make_inputs([[3, 4], [2, 2]], 2, 2, 5, 3, 2)
    msda_library.load("cpu")
    value, shapes, start, loc, attn = inputs
    for t in (value, loc, attn):
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.assignlab_msda.ms_deform_attn.default, (value, shapes, start, loc, attn))


def test_torch_compile_fullgraph_matches_eager():
    value, shapes, start, loc, attn = make_inputs([[4, 4], [2, 2]], 1, 2, 4, 3, 2)
    for t in (value, loc, attn):
        t.requires_grad_(True)
    msda_library.load("cpu")

    def fn(v, l, a):
        return (ms_deform_attn(v, shapes, start, l, a, impl="cpp") ** 2).sum()

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    eager_grads = torch.autograd.grad(fn(value, loc, attn), (value, loc, attn))
    compiled_grads = torch.autograd.grad(compiled(value, loc, attn), (value, loc, attn))
    for a, b in zip(eager_grads, compiled_grads):
        torch.testing.assert_close(a, b)


# --- input validation ---------------------------------------------------------------------------

def _replace(inputs, index, tensor):
    return tuple(tensor if i == index else t for i, t in enumerate(inputs))


BAD_INPUTS = [
    ("value int", lambda x: _replace(x, 0, x[0].long()), TypeError, "value must be floating point"),
    ("locations float32", lambda x: _replace(x, 3, x[3].float()), TypeError, "sampling_locations has dtype"),
    ("weights float32", lambda x: _replace(x, 4, x[4].float()), TypeError, "attention_weights has dtype"),
    ("shapes float", lambda x: _replace(x, 1, x[1].double()), TypeError, "spatial_shapes must be an integer"),
    ("not a tensor", lambda x: _replace(x, 0, x[0].tolist()), TypeError, "value must be a torch.Tensor"),
    ("value 3d", lambda x: _replace(x, 0, x[0][0]), ValueError, "value must be [N, S, M, D]"),
    ("S mismatch", lambda x: _replace(x, 0, x[0][:, 1:]), ValueError, "sum to"),
    ("bad starts", lambda x: _replace(x, 2, x[2] + 1), ValueError, "level_start_index must be [0, 12]"),
    ("starts length", lambda x: _replace(x, 2, x[2][:1]), ValueError, "level_start_index must be [L]"),
    ("levels mismatch", lambda x: _replace(x, 3, x[3][:, :, :, :1]), ValueError, "L=2"),
    ("heads mismatch", lambda x: _replace(x, 3, x[3][:, :, :1]), ValueError, "M=2"),
    ("weights points", lambda x: _replace(x, 4, x[4][..., :1]), ValueError, "attention_weights must be"),
    ("locations last dim", lambda x: _replace(x, 3, x[3][..., :1]), ValueError, "sampling_locations must be"),
    ("zero-size level", lambda x: _replace(_replace(x, 1, torch.tensor([[3, 4], [0, 2]])), 0, x[0][:, :12]),
     ValueError, "spatial_shapes must be positive"),
    ("no levels", lambda x: _replace(x, 1, x[1][:0]), ValueError, "at least one level"),
    ("meta device", lambda x: _replace(x, 3, x[3].to("meta")), ValueError, "sampling_locations on meta"),
]


@pytest.mark.parametrize("name, mutate, error, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("impl", ["cpp", "auto", "reference"])
def test_bad_input_raises_clear_python_error(name, mutate, error, message, impl):
    inputs = mutate(make_inputs([[3, 4], [2, 2]], 2, 2, 5, 3, 2))
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        ms_deform_attn(*inputs, impl=impl)


def test_unknown_impl_and_wrong_device_for_impl():
    inputs = make_inputs([[2, 2]], 1, 1, 2, 1, 1)
    with pytest.raises(ValueError, match="impl must be one of"):
        ms_deform_attn(*inputs, impl="triton")
    with pytest.raises(ValueError, match="impl='cuda' needs cuda tensors"):
        ms_deform_attn(*inputs, impl="cuda")


# --- mixed precision ----------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["cpp", "auto", "reference"])
def test_bfloat16_inputs_are_computed_in_float32_with_bf16_sized_errors(impl):
    """Under autocast the op gets a bf16 value with float32 locations (and bf16 or float32 weights):
    it computes in float32 and answers in value's dtype; output and gradients agree with float32
    within bf16 rounding of the inputs (relative error ~2^-8)."""
    value, shapes, start, loc, attn = make_inputs([[6, 5], [3, 3]], 2, 2, 8, 7, 3, dtype=torch.float32)
    exact_inputs = [t.clone().requires_grad_() for t in (value, loc, attn)]
    exact = ms_deform_attn(exact_inputs[0], shapes, start, exact_inputs[1], exact_inputs[2], impl=impl)
    grad = torch.randn_like(exact)
    exact.backward(grad)
    half = [value.bfloat16().requires_grad_(), loc.clone().requires_grad_(), attn.bfloat16().requires_grad_()]
    mixed = ms_deform_attn(half[0], shapes, start, half[1], half[2], impl=impl)
    assert mixed.dtype == torch.bfloat16
    mixed.backward(grad.bfloat16())
    torch.testing.assert_close(mixed.float(), exact.detach(), atol=0.05, rtol=0.02)
    for low, high in zip(half, exact_inputs):
        assert low.grad.dtype == low.dtype
        torch.testing.assert_close(low.grad.float(), high.grad, atol=0.1, rtol=0.05)


def test_op_runs_under_cpu_bf16_autocast():
    from assignlab.models.ms_deform_attn import MSDeformAttn

    torch.manual_seed(0)
    layer = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    value, shapes, start, _, _ = make_inputs([[6, 5], [3, 3]], 2, 2, 8, 1, 1, dtype=torch.float32)
    query, memory = torch.randn(2, 7, 16), torch.randn(2, 39, 16)
    reference = torch.rand(2, 7, 2, 2)
    exact = layer(query, reference, memory, shapes, start)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = layer(query, reference, memory, shapes, start)
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), exact, atol=0.05, rtol=0.05)


def test_cpp_kernel_rejects_inconsistent_levels_without_crashing():
    # Bypass the Python checks: the kernel itself must refuse, not read out of bounds.
    value, shapes, start, loc, attn = make_inputs([[3, 4], [2, 2]], 1, 2, 5, 3, 2)
    msda_library.load("cpu")
    with pytest.raises(RuntimeError, match="does not fit"):
        torch.ops.assignlab_msda.ms_deform_attn(value[:, :10].contiguous(), shapes, start, loc, attn)


# --- dispatch and build -------------------------------------------------------------------------

def test_auto_uses_compiled_op_on_cpu():
    inputs = make_inputs([[2, 3]], 1, 1, 2, 2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ms_deform_attn(*inputs)
    assert "cpu" in build.loaded_variants()
    assert (out - ms_deform_attn_reference(*inputs)).abs().max().item() < 1e-12


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    def broken_load(device_type):
        raise RuntimeError("CalledProcessError: compiler not found")

    monkeypatch.setattr(msda_library, "load", broken_load)
    monkeypatch.setattr(msda, "_warned_fallback", False)
    inputs = make_inputs([[2, 3]], 1, 1, 2, 2, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ms_deform_attn(*inputs)
        ms_deform_attn(*inputs)
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "compiler not found" in text and "python -m assignlab.ops.build" in text
    assert torch.equal(first, ms_deform_attn_reference(*inputs))
    with pytest.raises(RuntimeError, match="compiler not found"):
        ms_deform_attn(*inputs, impl="cpp")


def test_failed_build_falls_back_with_one_warning_naming_the_cause(tmp_path):
    # A real failed build (the C++ compiler is /bin/false) in a fresh process and an empty cache.
    script = """
import warnings, torch
from assignlab.ops.msda import ms_deform_attn
from assignlab.ops.msda_reference import ms_deform_attn_reference
inputs = (torch.randn(1, 6, 1, 2), torch.tensor([[2, 3]]), torch.tensor([0]), torch.rand(1, 2, 1, 1, 1, 2),
          torch.rand(1, 2, 1, 1, 1))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    outs = [ms_deform_attn(*inputs) for _ in range(3)]
assert all(torch.equal(out, ms_deform_attn_reference(*inputs)) for out in outs)
print(len(caught))
print(caught[0].message)
"""
    env = {**os.environ, "CXX": "/bin/false", "ASSIGNLAB_EXT_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    count, message = result.stdout.strip().split("\n", 1)
    assert count == "1"
    assert "could not be built" in message and "/bin/false" in message and "assignlab.ops.build" in message


def test_cuda_toolkit_detection_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSIGNLAB_WITH_CUDA", "0")
    assert not build.cuda_toolkit_found()
    monkeypatch.setenv("ASSIGNLAB_WITH_CUDA", "1")
    assert build.cuda_toolkit_found()
    monkeypatch.delenv("ASSIGNLAB_WITH_CUDA")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    assert not build.cuda_toolkit_found()


def test_cache_directory_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSIGNLAB_EXT_DIR", str(tmp_path / "a"))
    assert build.cache_root() == tmp_path / "a"
    monkeypatch.delenv("ASSIGNLAB_EXT_DIR")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "b"))
    assert build.cache_root() == tmp_path / "b" / "assignlab"


def test_prebuild_command_reuses_the_cache():
    msda_library.load("cpu")
    path = build.loaded_variants()["cpu"]
    env = {**os.environ, "ASSIGNLAB_WITH_CUDA": "0"}
    result = subprocess.run([sys.executable, "-m", "assignlab.ops.build"], capture_output=True, text=True,
                            env=env, timeout=120, check=True)
    assert f"cpu  library: {path}" in result.stdout
    assert "cuda library: skipped" in result.stdout


# --- CUDA -----------------------------------------------------------------------------------------

@pytest.mark.skipif(build.find_nvcc() is None or torch.version.cuda is None, reason="needs nvcc and a CUDA torch")
def test_cuda_sources_compile_for_sm90(tmp_path):
    script = (
        "from pathlib import Path; import sys; from assignlab.ops import build; "
        "print(build.build('cuda', build_root=Path(sys.argv[1]), cuda_arch_list='9.0'))"
    )
    env = {**os.environ, "ASSIGNLAB_WITH_CUDA": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert os.path.isfile(result.stdout.strip().splitlines()[-1])


requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@requires_gpu
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cuda_matches_reference(dtype, tol):
    inputs = make_inputs([[6, 5], [3, 3], [1, 1], [2, 3]], 2, 3, 37, 11, 3, dtype=dtype, device="cuda")
    grad = torch.randn(2, 11, 3 * 37, dtype=dtype, device="cuda")
    results = []
    for impl in ("cuda", "reference"):
        value, shapes, start, loc, attn = (t.clone() for t in inputs)
        for t in (value, loc, attn):
            t.requires_grad_(True)
        out = ms_deform_attn(value, shapes, start, loc, attn, impl=impl)
        out.backward(grad)
        results.append((out, value.grad, loc.grad, attn.grad))
    for ours, theirs in zip(*results):
        assert (ours - theirs).abs().max().item() < tol * max(1.0, theirs.abs().max().item())


@requires_gpu
def test_cuda_gradcheck():
    value, shapes, start, loc, attn = make_inputs([[3, 4], [1, 1]], 2, 2, 3, 4, 2, device="cuda")
    for t in (value, loc, attn):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, l, a: ms_deform_attn(v, shapes, start, l, a, impl="cuda"), (value, loc, attn),
        nondet_tol=1e-12)
