"""Execution settings of a training step: bf16 autocast (train.precision) and torch.compile
(train.compile) with its eager fallback."""
import warnings

import pytest
import torch
from torch import nn

from assignlab.data.build import build_dataset
from assignlab.data.collate import collate_detection
from assignlab.engine import execution
from assignlab.engine.execution import CompiledForward, autocast_for, in_float32
from assignlab.engine.optim import build_optimizer
from assignlab.engine.run import train_run
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model
from assignlab.presets import preset


def smoke_config(tmp_path, **overrides):
    return preset("smoke").override({"data.root": str(tmp_path / "data"), **overrides})


def test_autocast_for_each_precision():
    cpu = torch.device("cpu")
    with autocast_for("bf16", cpu):
        assert torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3)).dtype == torch.bfloat16
    with autocast_for("fp32", cpu, amp=True):  # the older switch is CUDA-only
        assert torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3)).dtype == torch.float32
    with pytest.raises(ValueError, match="train.precision must be one of"):
        autocast_for("fp8", cpu)


def test_in_float32_casts_nested_low_precision_tensors_only():
    outputs = {"a": torch.ones(2, dtype=torch.bfloat16), "b": [{"c": torch.ones(1, dtype=torch.float16)}],
               "d": torch.ones(1, dtype=torch.long), "e": torch.ones(1, dtype=torch.float64), "f": None}
    cast = in_float32(outputs)
    assert cast["a"].dtype == cast["b"][0]["c"].dtype == torch.float32
    assert cast["d"].dtype == torch.long and cast["e"].dtype == torch.float64 and cast["f"] is None


def test_bf16_training_runs_the_model_in_bf16_and_learns(tmp_path):
    """The smoke model fitted to one batch for 30 steps under bf16 autocast: its raw outputs are
    bf16 (the path is real), the loss is computed in float32 and falls to under 75 % of its start."""
    cfg = smoke_config(tmp_path, **{"train.precision": "bf16", "train.lr": 1e-3, "train.lr_backbone": 1e-3})
    dataset = build_dataset(cfg.data, cfg.data.train_split, train=False)
    images, mask, targets = collate_detection([dataset[i] for i in range(4)])
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    criterion = Criterion.from_config(cfg)
    optimizer, _ = build_optimizer(model, cfg.train)
    losses = []
    for _ in range(30):
        with autocast_for(cfg.train.precision, images.device):
            outputs = model(images, mask)
        assert outputs["pred_logits"].dtype == torch.bfloat16
        loss = criterion(in_float32(outputs), targets)["loss"]
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_max_norm)
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.75 * sum(losses[:3]) / 3, losses  # about 0.55 here


def test_a_bf16_run_trains_end_to_end_under_its_own_id(tmp_path):
    cfg = smoke_config(tmp_path, **{"train.precision": "bf16", "train.alignment_images": 0})
    result = train_run(cfg, seed=0, out_dir=tmp_path / "run", progress=False, max_steps_per_epoch=3)
    assert result["config"]["train"]["precision"] == "bf16"
    assert result["config_hash"] != cfg.override({"train.precision": "fp32"}).stable_hash()
    assert all(torch.isfinite(torch.tensor(p["train_loss"])) for p in result["curve"])


def test_an_unknown_precision_fails_before_the_run_makes_anything(tmp_path):
    with pytest.raises(ValueError, match="train.precision must be one of"):
        train_run(smoke_config(tmp_path, **{"train.precision": "fp16"}), 0, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, machine, precision, device, warns", [
    ({"avx2", "fma", "avx512f"}, "x86_64", "bf16", "cpu", True),   # AVX-512 without its bf16 extension
    ({"avx2", "fma"}, "x86_64", "bf16", "cpu", True),
    ({"avx2", "avx512_bf16"}, "x86_64", "bf16", "cpu", False),
    ({"avx2", "amx_bf16", "amx_tile"}, "x86_64", "bf16", "cpu", False),
    ({"avx2", "fma"}, "x86_64", "fp32", "cpu", False),
    ({"avx2", "fma"}, "x86_64", "bf16", "cuda", False),
    (set(), "x86_64", "bf16", "cpu", False),                        # flags unreadable: no claim made
    ({"fp", "asimd"}, "aarch64", "bf16", "cpu", False),
])
def test_bf16_on_a_cpu_without_native_bf16_is_called_slow(monkeypatch, flags, machine, precision, device, warns):
    monkeypatch.setattr(execution, "all_cpu_flags", lambda: flags)
    monkeypatch.setattr(execution.platform, "machine", lambda: machine)
    reason = execution.emulated_precision_reason(precision, device)
    assert (reason is not None) == warns
    if warns:
        assert "avx512_bf16 or amx_bf16" in reason and "slower than fp32" in reason


def test_a_bf16_run_warns_once_before_training_on_a_cpu_without_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(execution, "all_cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(execution.platform, "machine", lambda: "x86_64")
    cfg = smoke_config(tmp_path, **{"train.precision": "bf16", "train.alignment_images": 0})
    with pytest.warns(UserWarning, match="without native bf16") as caught:
        train_run(cfg, seed=0, out_dir=tmp_path / "run", progress=False, max_steps_per_epoch=1, stop_after_epochs=1)
    assert sum("native bf16" in str(w.message) for w in caught) == 1


class _Raising(nn.Module):
    def forward(self, x):
        raise ValueError("bad input")


def _failing_compile(self, *args, **kwargs):
    """Stands in for nn.Module.compile where no compiler works: the first call fails in dynamo."""
    def compiled(*args, **kwargs):
        raise torch._dynamo.exc.Unsupported("no compiler here")
    self._compiled_call_impl = compiled


def test_compile_failure_warns_once_and_runs_eagerly(monkeypatch):
    monkeypatch.setattr(nn.Module, "compile", _failing_compile)
    linear = nn.Linear(3, 2)
    wrapped = CompiledForward(linear)
    x = torch.randn(4, 3)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*without compilation"):
        assert torch.equal(wrapped(x), x @ linear.weight.T + linear.bias)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(wrapped(x), x @ linear.weight.T + linear.bias)  # eager now, no second warning
    assert list(wrapped.state_dict()) == ["weight", "bias"]  # checkpoints keep the model's keys
    wrapped.load_state_dict(linear.state_dict())
    assert wrapped.in_features == 3  # the model's own attributes show through


def test_a_model_error_under_compile_is_not_mistaken_for_a_compiler_failure(monkeypatch):
    monkeypatch.setattr(nn.Module, "compile", lambda self: None)
    wrapped = CompiledForward(_Raising())
    with pytest.raises(ValueError, match="bad input"):
        wrapped(torch.zeros(1))
    assert not wrapped._eager


def test_the_detector_compiles_its_backbone_and_transformer_layers(tmp_path):
    model = build_model(smoke_config(tmp_path).model)
    regions = execution.compile_regions(model)
    expected = [model.backbone, *model.encoder.layers, *model.decoder.layers]
    assert len(regions) == len(expected) and all(any(r is e for r in regions) for e in expected)
    assert execution.compile_regions(nn.Linear(2, 2))[0].in_features == 2  # no regions: the whole model


@pytest.mark.slow
def test_compiled_smoke_model_matches_eager(tmp_path):
    """torch.compile of the whole detector (the deformable-attention op included) gives the eager
    outputs and gradients to float tolerance."""
    cfg = smoke_config(tmp_path)
    dataset = build_dataset(cfg.data, cfg.data.train_split, train=False)
    images, mask, targets = collate_detection([dataset[i] for i in range(2)])
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    criterion = Criterion.from_config(cfg)
    eager_loss = criterion(model(images, mask), targets)["loss"]  # before the regions are compiled in place
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()), allow_unused=True)
    compiled = CompiledForward(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        compiled_loss = criterion(compiled(images, mask), targets)["loss"]
    compiled_grads = torch.autograd.grad(compiled_loss, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager_grads, compiled_grads):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)
