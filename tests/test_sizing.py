"""Sizing records read from training logs."""
import json

import pytest

from assignlab.presets import preset
from assignlab.study.report.sizing import epoch_records, sizing_table


def write_log(folder, events):
    folder.mkdir(parents=True)
    (folder / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_epoch_records_accumulate_time_and_images(tmp_path):
    config = preset("cpu").to_dict()
    epoch = {"event": "epoch", "train_images_per_s": 20.0}
    write_log(tmp_path / "a", [
        {"event": "start", "config": config, "seed": 3},
        {"event": "step", "epoch": 0, "step": 0, "loss": 1.0},
        {**epoch, "epoch": 0, "train_time_s": 60.0},
        {**epoch, "epoch": 1, "train_time_s": 90.0, "AP": 31.0, "AP50": 56.0},
    ])
    frame = epoch_records(tmp_path / "a" / "log.jsonl")
    images = config["data"]["synth_train_images"]
    assert frame["images_seen"].tolist() == [images, 2 * images]
    assert frame["train_minutes"].tolist() == pytest.approx([1.0, 2.5])
    assert frame["AP"].isna().tolist() == [True, False] and frame["AP50"].iloc[1] == 56.0
    assert set(frame["seed"]) == {3} and "160 px" in frame["candidate"].iloc[0]


def test_restarted_log_counts_from_its_last_start_and_bad_logs_fail(tmp_path):
    config = preset("cpu").to_dict()
    epoch = {"event": "epoch", "epoch": 0, "train_time_s": 60.0, "train_images_per_s": 20.0}
    write_log(tmp_path / "b", [{"event": "start", "config": config, "seed": 0}, epoch,
                               {"event": "start", "config": config, "seed": 1}, epoch])
    frame = sizing_table(tmp_path)
    assert len(frame) == 1 and frame["seed"].tolist() == [1]
    write_log(tmp_path / "c", [epoch])
    with pytest.raises(ValueError, match="no 'start' event"):
        sizing_table(tmp_path)
