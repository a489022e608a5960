"""``python -m assignlab train``: one training run.

    python -m assignlab train --preset cpu --set assign.method=deta --set model.dec_layers=3 --seed 0 --out runs/deta
    torchrun --nproc_per_node=2 -m assignlab train --preset smoke --out runs/ddp   # several processes
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from assignlab.config import Config, parse_set_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", help="named configuration (smoke, cpu, paper-r50-1x, ...)")
    parser.add_argument("--config", default=None, help="a config JSON (e.g. from a result file) instead of --preset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for this process")
    parser.add_argument("--stop-after-epochs", type=int, default=None, help="leave after N epochs (resumable)")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap steps per epoch (quick checks)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_config(preset_name: str, config_file: str | None, overrides: list[str]) -> Config:
    if config_file:
        data = json.loads(Path(config_file).read_text())
        cfg = Config.from_dict(data.get("config", data))
    else:
        from assignlab.presets import preset

        cfg = preset(preset_name)
    return cfg.override(parse_set_arguments(overrides))


def run(args: argparse.Namespace) -> int:
    from assignlab.engine.loop import NonFiniteLossError
    from assignlab.engine.run import train_run

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.preset, args.config, args.set)
    try:
        result = train_run(cfg, args.seed, args.out, device=args.device, progress=not args.no_progress,
                           stop_after_epochs=args.stop_after_epochs, max_steps_per_epoch=args.max_steps_per_epoch)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    if result is None:
        print(f"stopped early; resume with the same command (run folder {args.out})")
        return 0
    metrics = "  ".join(f"{k} {v:.1f}" for k, v in result["metrics"].items())
    print(f"{args.out}: {metrics}  ({result['wall_time_s']:.0f} s, {result['train_images_per_s']:.1f} train img/s)")
    return 0
