"""The models shipped in models/: safe to load, small, one per row of SHIPPED_MODELS, with their
run's id, config and AP; they give their recorded AP again (slow)."""
import os
from pathlib import Path

import pytest
import torch

from assignlab.config import Config
from assignlab.study.report.shipped import SHIPPED_MODELS, WEIGHTS_FORMAT, load_shipped, shipped_runs

MODELS = Path(__file__).resolve().parents[1] / "models"


def _files():
    return sorted(MODELS.glob("*.pth"))


def test_every_shipped_model_is_there_small_and_described():
    runs = shipped_runs()
    assert [p.stem for p in _files()] == sorted(run.run_id for run in runs)
    assert sum(p.stat().st_size for p in _files()) < 30 * 2**20
    readme = (MODELS / "README.md").read_text()
    for run in runs:
        state = torch.load(MODELS / f"{run.run_id}.pth", map_location="cpu", weights_only=True)
        assert state["format"] == WEIGHTS_FORMAT and state["name"] == run.rows[0]
        config = Config.from_dict(state["config"])
        assert f"{config.stable_hash()}-s{state['seed']}" == run.run_id      # the run the weights come from
        assert state["metrics"]["AP"] > 5 and abs(state["ap_shipped"] - state["metrics"]["AP"]) <= 0.1
        assert f"`{run.run_id}`" in readme and f"{state['ap_shipped']:.2f}" in readme
    assert {row.label for row in SHIPPED_MODELS.rows} == {run.rows[0] for run in runs}


def test_a_weights_file_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"format": WEIGHTS_FORMAT, "model": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        load_shipped(tmp_path / "evil.pth")
    assert not marker.exists()
    torch.save({"format": "something else"}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth: not a shipped weights file"):
        load_shipped(tmp_path / "other.pth")


@pytest.mark.slow
@pytest.mark.parametrize("run", shipped_runs(), ids=lambda run: run.rows[0])
def test_a_shipped_model_gives_its_recorded_ap(run):
    from assignlab.data.build import build_dataset
    from assignlab.engine.loop import evaluate_model
    from assignlab.engine.run import area_image_size
    from assignlab.models.build import build_postprocessor

    path = MODELS / f"{run.run_id}.pth"
    recorded = torch.load(path, map_location="cpu", weights_only=True)["ap_shipped"]
    trained = load_shipped(path)
    dataset = build_dataset(trained.config.data, trained.config.data.val_split, train=False)
    metrics = evaluate_model(trained.model, build_postprocessor(trained.config.model), dataset, torch.device("cpu"), 2,
                             area_image_size(trained.config))
    assert metrics["AP"] == pytest.approx(recorded, abs=0.2)   # other CPUs sum in another order
