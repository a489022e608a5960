"""Configuration: dotted overrides, JSON round trip, stable hash, unknown fields, presets."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from assignlab.config import Config, ModelConfig, parse_set_arguments
from assignlab.models import build_model
from assignlab.models.decoder import count_parameters
from assignlab.presets import PRESETS, preset


def test_dotted_overrides_coerce_to_field_types():
    config = Config().override({"model.dec_layers": "3", "model.dec_self_attn": "false",
                                "model.dropout": 0, "train.lr_drop_epochs": "8,11",
                                "assign.object_balance_k": "inf"})
    assert config.model.dec_layers == 3 and isinstance(config.model.dec_layers, int)
    assert config.model.dec_self_attn is False
    assert config.model.dropout == 0.0 and isinstance(config.model.dropout, float)
    assert config.train.lr_drop_epochs == (8, 11)
    assert config.assign.object_balance_k is None
    assert Config().model.dec_layers == 6  # the original is unchanged (frozen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.dec_layers = 2


def test_set_arguments_parse_into_overrides():
    overrides = parse_set_arguments(["model.num_queries=50", "model.query_selection = topk"])
    config = Config().override(overrides)
    assert config.model.num_queries == 50 and config.model.query_selection == "topk"
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set_arguments(["model.num_queries"])


def test_unknown_or_badly_typed_fields_are_errors():
    with pytest.raises(KeyError, match="model.dec_layer"):
        Config().override({"model.dec_layer": 3})
    with pytest.raises(KeyError, match="section"):
        Config().override({"model": 3})
    with pytest.raises(ValueError, match="model.dec_layers"):
        Config().override({"model.dec_layers": "three"})
    with pytest.raises(ValueError, match="model.dec_layers"):
        Config().override({"model.dec_layers": 2.5})
    with pytest.raises(ValueError, match="boolean"):
        Config().override({"model.iou_branch": "maybe"})
    data = Config().to_dict()
    data["model"]["hiden_dim"] = 3
    with pytest.raises(KeyError, match="hiden_dim"):
        Config.from_dict(data)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_is_exact(name):
    config = preset(name).override({"model.dec_layers": 4, "assign.object_balance_k": None})
    again = Config.from_json(config.to_json())
    assert again == config
    assert again.stable_hash() == config.stable_hash()
    assert json.loads(again.to_json()) == json.loads(config.to_json())


def test_hash_is_stable_across_processes_and_sensitive_to_every_change():
    config = preset("cpu")
    code = ("from assignlab.presets import preset; "
            "print(preset('cpu').stable_hash())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert other.stdout.strip() == config.stable_hash()
    assert config.override({"model.num_queries": 101}).stable_hash() != config.stable_hash()
    assert config.override({"model.dropout": 0.0}).stable_hash() == config.stable_hash()  # same value


def test_presets_are_distinct_fresh_and_named():
    hashes = {name: preset(name).stable_hash() for name in PRESETS}
    assert len(set(hashes.values())) == len(PRESETS)
    assert preset("cpu") == preset("cpu") and preset("cpu") is not preset("cpu")
    assert all(preset(name).name == name for name in PRESETS)
    with pytest.raises(KeyError, match="smoke"):
        preset("laptop")


def test_paper_preset_is_detas_released_r50_1x_setting():
    config = preset("paper-r50-1x")
    m = config.model
    assert (m.backbone, m.num_feature_levels, m.num_queries, m.dim_feedforward, m.dropout) == \
        ("resnet50", 5, 900, 2048, 0.0)
    assert (m.hidden_dim, m.enc_layers, m.dec_layers, m.nheads, m.enc_n_points, m.dec_n_points) == \
        (256, 6, 6, 8, 4, 4)
    assert (m.query_selection, m.postprocess, m.query_nms_iou, m.postprocess_nms_iou) == ("nms", "nms", 0.9, 0.7)
    assert m.pretrained_backbone and m.num_classes == 91
    assert (config.train.batch_size, config.train.epochs, config.train.lr_drop_epochs) == (16, 12, (10,))
    assert (config.data.root, config.data.train_split, config.data.val_split) == ("data/coco", "train2017", "val2017")
    assert config.data.synthetic is False and config.data.train_transform == "multiscale"


@pytest.mark.parametrize("name", ["smoke", "cpu"])
def test_cpu_presets_build_and_run(name):
    config = preset(name)
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    size = config.data.image_size
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out["pred_logits"].shape == (1, config.model.num_queries, config.model.num_classes)
    assert count_parameters(model) < 5_000_000


def test_model_config_defaults_are_deformable_detr_two_stage():
    m = ModelConfig()
    assert (m.anchor_scale, m.proposal_topk_per_level, m.query_nms_iou) == (0.05, 1000, 0.9)
    assert (m.postprocess_pre_topk, m.max_detections) == (10000, 100)


def test_a_field_added_later_leaves_the_ids_of_earlier_runs_alone():
    import hashlib

    from assignlab.config import EXECUTION_FIELDS, HASH_NEUTRAL_DEFAULTS

    config = Config()
    assert HASH_NEUTRAL_DEFAULTS["model.enc_loss_selected_only"] is False
    # the hash of the config as it was before the fields existed: its JSON without them
    before = config.to_dict()
    for dotted in (*HASH_NEUTRAL_DEFAULTS, *EXECUTION_FIELDS):
        section, key = dotted.split(".")
        del before[section][key]
    assert config.stable_hash() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    # a run that sets a field gets an id of its own
    for changed in ({"model.enc_loss_selected_only": True}, {"model.transformer_activation": "prelu"},
                    {"train.precision": "bf16"}):
        assert config.override(changed).stable_hash() != config.stable_hash()


def test_execution_settings_never_change_the_run_id():
    from assignlab.config import experiment_of

    config = Config()
    compiled = config.override({"train.compile": True})
    assert compiled.stable_hash() == config.stable_hash()
    assert experiment_of(compiled.to_dict()) == experiment_of(config.to_dict())
    assert "compile" not in experiment_of(config.to_dict())["train"]
    assert "compile" in config.to_dict()["train"]  # experiment_of returns a copy


def test_every_committed_run_keeps_its_id():
    # fails when a config field is added without its neutral value in HASH_NEUTRAL_DEFAULTS
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "results" / "runs").glob("*/*.json"))
    assert files, "no committed run results"
    for path in files[:: max(1, len(files) // 40)]:
        record = json.loads(path.read_text())
        assert f"{Config.from_dict(record['config']).stable_hash()}-s{record['seed']}" == path.stem, path


def test_configs_that_train_the_same_model_share_a_run_id():
    from assignlab.study.tables.catalogue import TABLES

    def row_hash(table, label):
        return {row.label: c.stable_hash() for row, c in TABLES[table].row_configs("cpu")}[label]

    # mixed matching with k=1 (with or without prime-sample weighting) is one-to-one IA-BCE
    one_to_one = row_hash("align_table5", "IA-BCE, one-to-one")
    assert row_hash("align_table6", "k=1") == row_hash("align_table8", "k=1") == one_to_one == "048b5d497f1d"
    assert row_hash("align_table6", "k=2") != one_to_one and row_hash("align_table8", "k=2, no PS") != one_to_one
    # the mixed-matching fields are read by nothing under another method ...
    config = preset("cpu")
    for changed in ({"loss.prime_sample_tau": 9.0}, {"loss.prime_sample_weighting": False},
                    {"assign.mixed_k": 2}, {"assign.k_cap": "per_image"}):
        assert config.override(changed).stable_hash() == config.stable_hash(), changed
    # ... and change the model under mixed matching
    mixed = config.override({"assign.method": "align", "loss.cls_loss": "ia_bce"})
    for changed in ({"loss.prime_sample_tau": 9.0}, {"loss.prime_sample_weighting": False}, {"assign.mixed_k": 2}):
        assert mixed.override(changed).stable_hash() != mixed.stable_hash(), changed
    # the config itself is not rewritten: the run trains what it was given
    assert mixed.override({"assign.mixed_k": 1}).assign.method == "align"
