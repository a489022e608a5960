"""``python -m assignlab predict`` on a synthetic image with a trained smoke checkpoint."""
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from assignlab.cli import main
from assignlab.config import Config
from assignlab.data.build import build_dataset
from assignlab.engine.checkpoint import load_checkpoint
from assignlab.models.build import build_model, build_postprocessor


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(checkpoint, config, one validation image of the synthetic set)."""
    root = tmp_path_factory.mktemp("predict")
    code = main(["train", "--preset", "smoke", "--set", f"data.root={root / 'data'}", "--out", str(root / "run"),
                 "--set", "train.epochs=1", "--max-steps-per-epoch", "2"])
    assert code == 0
    checkpoint = root / "run" / "checkpoint.pth"
    cfg = Config.from_dict(load_checkpoint(checkpoint)["config"])
    dataset = build_dataset(cfg.data, cfg.data.val_split, train=False)
    image = dataset.image_dir / dataset.coco.imgs[dataset.ids[0]]["file_name"]
    return checkpoint, cfg, dataset, image


def test_predict_writes_json_and_png(smoke_run, tmp_path):
    checkpoint, cfg, dataset, image = smoke_run
    png = tmp_path / "drawn" / "prediction.png"
    result = subprocess.run([sys.executable, "-m", "assignlab", "predict", "--checkpoint", str(checkpoint),
                             "--image", str(image), "--out", str(png), "--score-threshold", "0.0"],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["width"] == report["height"] == cfg.data.synth_image_size
    detections = report["detections"]
    assert 0 < len(detections) <= cfg.model.max_detections
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True)
    names = {c["id"]: c["name"] for c in dataset.coco.cats.values()}
    for detection in detections:
        assert len(detection["box"]) == 4 and detection["box"][0] <= detection["box"][2]
        assert detection["category_id"] == dataset.category_ids[detection["label"]]
        assert detection["name"] == names[detection["category_id"]]
    with Image.open(png) as drawn:
        assert drawn.format == "PNG" and drawn.width >= report["width"]


def test_predict_equals_the_evaluation_pipeline(smoke_run, capsys):
    """Same detections as the evaluation path (dataset transform, boxes in original pixels)."""
    checkpoint, cfg, dataset, image = smoke_run
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(image), "--score-threshold", "0.0"]) == 0
    report = json.loads(capsys.readouterr().out)
    model = build_model(cfg.model).eval()
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    tensor, target = dataset[0]
    with torch.no_grad():
        expected = build_postprocessor(cfg.model)(model(tensor[None]), target["orig_size"][None])[0]
    assert [d["label"] for d in report["detections"]] == expected["labels"].tolist()
    torch.testing.assert_close(torch.tensor([d["box"] for d in report["detections"]]), expected["boxes"], atol=0.01, rtol=0)
    torch.testing.assert_close(torch.tensor([d["score"] for d in report["detections"]]), expected["scores"], atol=1e-4, rtol=0)


def test_threshold_filters_and_bad_image_is_an_error(smoke_run, tmp_path, capsys):
    checkpoint, _, _, image = smoke_run
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(image), "--score-threshold", "1.01"]) == 0
    assert json.loads(capsys.readouterr().out)["detections"] == []
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    png = tmp_path / "out.png"
    assert main(["predict", "--checkpoint", str(checkpoint), "--image", str(broken), "--out", str(png)]) == 2
    assert "broken.png" in capsys.readouterr().err and not png.exists()
