"""``python -m assignlab import-checkpoint --format {deta-official,hf-deta} SRC --out CKPT``:
released DETA weights -> an assignlab checkpoint for ``eval`` and ``predict``."""
from __future__ import annotations

import argparse
import sys

from assignlab.checkpoints.deta_layouts import FORMATS
from assignlab.checkpoints.labels import LABEL_MAPS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="DETA's .pth, or transformers' model folder / weights file")
    parser.add_argument("--format", required=True, choices=FORMATS, help="key layout of SRC")
    parser.add_argument("--out", required=True, help="checkpoint to write (nothing is written on error)")
    parser.add_argument("--label-map", default="auto", choices=LABEL_MAPS,
                        help="label -> category id: 'coco' (label is the COCO id; 91 logits), 'contiguous', or 'auto'")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override what the file cannot tell, e.g. model.num_queries=300 or model.nheads=8")


def run(args: argparse.Namespace) -> int:
    from assignlab.checkpoints.import_deta import import_deta_file, save_imported
    from assignlab.checkpoints.sources import CheckpointImportError
    from assignlab.config import parse_set_arguments

    try:
        imported = import_deta_file(args.source, args.format, parse_set_arguments(args.set), args.label_map)
    except (CheckpointImportError, ValueError) as err:
        print(f"import-checkpoint: {err}", file=sys.stderr)
        return 2
    path = save_imported(imported, args.out)
    model = imported.config.model
    print(f"wrote {path}: {len(imported.state_dict)} tensors, {model.num_feature_levels} levels, "
          f"{model.enc_layers}/{model.dec_layers} encoder/decoder layers, {model.num_queries} queries, "
          f"{model.num_classes} classes; dropped {len(imported.dropped)} duplicate or counter tensors")
    return 0
