"""Training engine: determinism, resume, non-finite loss, multi-process parity, batching."""
import json
import os
import subprocess
import sys

import pytest
import torch

from assignlab.engine.checkpoint import CheckpointError, load_checkpoint
from assignlab.engine.loop import GlobalBatchSampler, NonFiniteLossError
from assignlab.engine.run import train_run
from assignlab.presets import preset


def smoke_config(tmp_path, **overrides):
    base = {"data.root": str(tmp_path / "data"), "train.epochs": 2, "train.batch_size": 2}
    return preset("smoke").override({**base, **overrides})


def test_global_batches_are_the_same_for_any_process_count():
    one = list(GlobalBatchSampler(10, 4, seed=3, epoch=1))
    two = [list(GlobalBatchSampler(10, 4, seed=3, epoch=1, rank=r, world_size=2)) for r in range(2)]
    assert [a + b for a, b in zip(*two)] == one[: len(two[0])]
    assert sorted(i for batch in one for i in batch) == list(range(10))
    assert list(GlobalBatchSampler(10, 4, seed=3, epoch=2)) != one
    with pytest.raises(ValueError, match="not divisible"):
        GlobalBatchSampler(10, 3, seed=0, world_size=2)


def test_same_seed_same_metrics_and_resume_equals_uninterrupted(tmp_path):
    cfg = smoke_config(tmp_path)
    a = train_run(cfg, seed=1, out_dir=tmp_path / "a", progress=False)
    b = train_run(cfg, seed=1, out_dir=tmp_path / "b", progress=False)
    assert a["metrics"] == b["metrics"]
    assert [p["train_loss"] for p in a["curve"]] == [p["train_loss"] for p in b["curve"]]
    # interrupted after its first epoch, then resumed from the checkpoint
    assert train_run(cfg, seed=1, out_dir=tmp_path / "c", progress=False, stop_after_epochs=1) is None
    assert load_checkpoint(tmp_path / "c" / "checkpoint.pth")["epoch"] == 0
    c = train_run(cfg, seed=1, out_dir=tmp_path / "c", progress=False)
    assert c["metrics"] == a["metrics"]
    assert [p["train_loss"] for p in c["curve"]] == [p["train_loss"] for p in a["curve"]]
    saved = json.loads((tmp_path / "a" / "result.json").read_text())
    assert saved["seed"] == 1 and saved["config"]["name"] == "smoke" and set(saved["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}


def test_non_finite_loss_stops_the_run_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from assignlab.losses.criterion import Criterion

    cfg = smoke_config(tmp_path)
    original = Criterion.forward
    calls = {"n": 0}
    steps_per_epoch = cfg.data.synth_train_images // cfg.train.batch_size

    def poisoned(self, outputs, targets, *args, **kwargs):
        losses = original(self, outputs, targets, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > steps_per_epoch:  # the second epoch's first step
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(Criterion, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, step 0.*last good checkpoint"):
        train_run(cfg, seed=0, out_dir=tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pth")
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "result.json").exists()


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match="not an assignlab checkpoint"):
        load_checkpoint(path)


def _final_parameters(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pth")["model"]


def test_torchrun_two_processes_match_one_process(tmp_path):
    common = ["--preset", "smoke", "--set", f"data.root={tmp_path / 'data'}", "--set", "train.epochs=1",
              "--set", "train.batch_size=4", "--max-steps-per-epoch", "3", "--seed", "0", "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "assignlab", "train", *common, "--out", str(tmp_path / "one")], check=True, env=env, capture_output=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*launch, "-m", "assignlab", "train", *common, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = _final_parameters(tmp_path / "one"), _final_parameters(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    assert json.loads((tmp_path / "two" / "result.json").read_text())["world_size"] == 2
