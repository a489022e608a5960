"""Command line: ``python -m assignlab <command> ...``.

Each command lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command is used, so
``python -m assignlab --help`` stays fast. Adding a command is one line in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("assignlab.data.cli", "generate or inspect datasets (e.g. `data synth`)"),
    "train": ("assignlab.engine.train_command", "train one run (config + seed) into a run folder"),
    "eval": ("assignlab.engine.eval_command", "COCO metrics of a checkpoint"),
    "reproduce": ("assignlab.reproduce", "run every notebook with papermill into results/"),
    "study": ("assignlab.study.cli", "run a paper table of the study, list the tables, show run states"),
    "describe": ("assignlab.models.describe", "print a preset's module tree and parameter count"),
    "import-checkpoint": ("assignlab.checkpoints.cli", "import released DETA weights (official or transformers layout)"),
    "predict": ("assignlab.predict", "detections on one image as JSON, optionally drawn to a PNG"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m assignlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)


TRACEBACK_ENV = "ASSIGNLAB_TRACEBACK"  # set to 1 for the full traceback of a bad-input error
INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError)  # what bad configs, names and paths raise
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: one error line, exit status 1


def entry_point(argv: list[str] | None = None) -> int:
    """``python -m assignlab`` and the ``assignlab`` script: :func:`main`, with a bad-input error
    (unknown preset, config field or table, missing file, invalid value) printed as one line
    ``error: ...`` and exit status 2 instead of a traceback; a full disk while a file is written as
    one ``error:`` line naming the file and exit status 1 (the previous file is kept)."""
    try:
        return main(argv)
    except INPUT_ERRORS as err:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}\n(set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in OUT_OF_SPACE or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
