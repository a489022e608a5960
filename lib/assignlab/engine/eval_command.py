"""``python -m assignlab eval --checkpoint FILE [--data-root DIR --split val2017]``: COCO metrics
of a checkpoint, with the inference (post-processing) its config names."""
from __future__ import annotations

import argparse
import json

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.pth of a run, or an imported one")
    parser.add_argument("--data-root", default=None, help="COCO-layout folder (annotations/instances_<split>.json, <split>/); default: the run's data")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the config's val split)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.postprocess=topk")
    parser.add_argument("--out", default=None, help="write the metrics as JSON here")


def run(args: argparse.Namespace) -> int:
    from assignlab.config import Config, parse_set_arguments
    from assignlab.data.build import build_dataset
    from assignlab.engine.checkpoint import load_checkpoint
    from assignlab.engine.loop import evaluate_model
    from assignlab.engine.run import area_image_size, write_json_atomic
    from assignlab.models.build import build_model, build_postprocessor
    from assignlab.models.postprocess import remap_postprocess

    state = load_checkpoint(args.checkpoint)
    cfg = Config.from_dict(state["config"])
    overrides = parse_set_arguments(args.set)
    if args.data_root:
        overrides.update({"data.root": args.data_root, "data.synthetic": False})
    if args.split:
        overrides["data.val_split"] = args.split
    cfg = cfg.override(overrides)
    dataset = build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    device = torch.device(args.device)
    postprocess = build_postprocessor(cfg.model)
    if state.get("label_to_category_id") is not None:  # imported model: its labels are category ids
        postprocess = remap_postprocess(postprocess, state["label_to_category_id"], dataset.category_ids)
    metrics = evaluate_model(model.to(device), postprocess, dataset, device, args.batch_size, area_image_size(cfg))
    print("  ".join(f"{k} {v:.1f}" for k, v in metrics.items()))
    if args.out:
        from pathlib import Path

        write_json_atomic(Path(args.out), {"checkpoint": str(args.checkpoint), "config": cfg.to_dict(), "metrics": metrics})
    return 0
