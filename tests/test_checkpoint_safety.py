"""Checkpoints are loaded without running code: a file whose pickle calls ``os.system`` is refused
by every command and loader (exit status 2, one error line naming the file), and the marker file
the pickle would create never appears. Checkpoints of the older v1 format still load."""
import errno
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from assignlab.analysis.matches import load_trained
from assignlab.cli import entry_point
from assignlab.engine import checkpoint as checkpoint_module
from assignlab.engine.checkpoint import (CHECKPOINT_FORMAT, FORMAT_V1, CheckpointError, load_checkpoint,
                                         restore_rng_states, rng_states, save_checkpoint)
from assignlab.presets import preset


class RunsCode:
    """Pickles as a call to ``os.system``: unpickling it with ``weights_only=False`` runs the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture
def evil_checkpoint(tmp_path):
    """(a checkpoint with the format tag whose config hides a code-running object, the marker path)."""
    marker = tmp_path / "marker"
    path = tmp_path / "evil" / "checkpoint.pth"
    path.parent.mkdir()
    config = preset("smoke").override({"data.root": str(tmp_path / "data")}).to_dict()
    config["payload"] = RunsCode(f"touch {marker}")
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}, "config": config, "seed": 0, "epoch": 0}, path)
    return path, marker


def test_the_fixture_really_runs_code_when_unpickled_unsafely(evil_checkpoint):
    path, marker = evil_checkpoint
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_code_and_names_the_file(evil_checkpoint):
    path, marker = evil_checkpoint
    with pytest.raises(CheckpointError, match=rf"{path}: refused: .*system"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_trained(path)  # the notebooks' loader (inspect_matches, study.inspect)
    assert not marker.exists()


def test_a_bare_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "bare.pth"
    path.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT, "payload": RunsCode(f"touch {marker}")}))
    with pytest.raises(CheckpointError, match=rf"{path}: not a readable checkpoint .*nothing in it was run"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["eval", "predict", "train"])
def test_every_command_refuses_a_code_running_checkpoint(evil_checkpoint, tmp_path, command):
    path, marker = evil_checkpoint
    args = {
        "eval": ["eval", "--checkpoint", str(path)],
        "predict": ["predict", "--checkpoint", str(path), "--image", str(tmp_path / "any.png")],
        # resuming: the run folder holds the checkpoint
        "train": ["train", "--preset", "smoke", "--set", f"data.root={tmp_path / 'data'}", "--out", str(path.parent),
                  "--no-progress"],
    }[command]
    done = subprocess.run([sys.executable, "-m", "assignlab", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "refused" in line]
    assert len(errors) == 1 and str(path) in errors[0]
    assert not marker.exists()


def _v1_payload() -> dict:
    """What the v1 writer stored: numpy's RNG state as numpy's own tuple with a uint32 array."""
    return {"format": FORMAT_V1, "model": {"w": torch.ones(2)}, "epoch": 3,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}


def test_v1_checkpoints_still_load_and_restore_their_rng_states(tmp_path):
    np.random.seed(11)
    random.seed(11)
    torch.manual_seed(11)
    path = tmp_path / "v1.pth"
    torch.save(_v1_payload(), path)
    expected = (np.random.rand(3), random.random(), torch.rand(3))
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))
    restore_rng_states(state["rng"])
    again = (np.random.rand(3), random.random(), torch.rand(3))
    np.testing.assert_array_equal(again[0], expected[0])
    assert again[1] == expected[1] and torch.equal(again[2], expected[2])


def test_v2_rng_states_are_plain_data_and_round_trip(tmp_path):
    np.random.seed(5)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    path = save_checkpoint(tmp_path / "c.pth", rng=rng_states())
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    expected = (np.random.randn(4), random.random(), torch.rand(2))
    restore_rng_states(load_checkpoint(path)["rng"])
    again = (np.random.randn(4), random.random(), torch.rand(2))
    np.testing.assert_array_equal(again[0], expected[0])
    assert again[1] == expected[1] and torch.equal(again[2], expected[2])


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "checkpoint.pth", model={"w": torch.zeros(3)}, epoch=0)
    before = path.read_bytes()

    def write_half_then_fail(obj, target):
        with open(target, "wb") as f:
            f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", write_half_then_fail)
    with pytest.raises(OSError, match=rf"could not write {path}: No space left on device \(the previous file") as caught:
        save_checkpoint(path, model={"w": torch.ones(3)}, epoch=1)
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 0


def test_a_full_disk_during_training_is_one_error_line(tmp_path, monkeypatch, capsys):
    def full_disk(obj, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    monkeypatch.delenv("ASSIGNLAB_TRACEBACK", raising=False)
    out = tmp_path / "run"
    code = entry_point(["train", "--preset", "smoke", "--set", f"data.root={tmp_path / 'data'}", "--set", "train.epochs=1",
                        "--max-steps-per-epoch", "1", "--out", str(out), "--no-progress"])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: [Errno {errno.ENOSPC}] could not write {out / 'checkpoint.pth'}: No space left on "
                      "device (the previous file, if any, is unchanged)"]
    assert not (out / "checkpoint.pth").exists() and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
