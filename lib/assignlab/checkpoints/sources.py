"""Reading released weight files: DETA's ``.pth`` and transformers' model folders or files.

Nothing here knows the key layouts; a reader returns the raw state dict and whatever
configuration the file carries (the official training ``args``, transformers' ``config.json``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch


class CheckpointImportError(ValueError):
    """A released checkpoint that cannot be imported; the message names the file and the problem."""


def _torch_load(path: Path) -> Any:
    # weights_only keeps arbitrary pickled code out; DETA's files also pickle their argparse args.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated files and foreign formats fail in many ways inside torch.load
        if "Weights only load failed" in str(err):
            raise CheckpointImportError(f"{path}: holds pickled Python objects other than tensors and argparse "
                                        "arguments; refusing to unpickle them (re-save its state dict alone)") from None
        raise CheckpointImportError(f"{path}: cannot read it as a PyTorch checkpoint (truncated or not a "
                                    f"checkpoint? {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def _safetensors_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointImportError(f"{path}: reading .safetensors files needs the 'safetensors' package "
                                    "(pip install safetensors)") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:
        raise CheckpointImportError(f"{path}: cannot read it as a safetensors file (truncated? "
                                    f"{type(err).__name__}: {err})") from None


def _as_state_dict(payload: Any, path: Path, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(payload, dict) or not payload:
        raise CheckpointImportError(f"{path}: {where} is not a state dict (found {type(payload).__name__})")
    not_tensors = [k for k, v in payload.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointImportError(f"{path}: {where} holds non-tensor entries ({', '.join(map(str, not_tensors[:5]))}); "
                                    "not a model state dict")
    return dict(payload)


def read_official(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """DETA's checkpoint: ``{"model": state dict, "args": Namespace, ...}`` (or a bare state dict).

    Returns (state dict, the training arguments as a dict, empty when absent).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"{path}: file not found")
    payload = _torch_load(path)
    if isinstance(payload, dict) and "model" in payload:
        args = payload.get("args")
        metadata = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}
        return _as_state_dict(payload["model"], path, "its 'model' entry"), metadata
    return _as_state_dict(payload, path, "the file"), {}


HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_hf(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """transformers' DETA: a folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
    as ``save_pretrained`` writes it) or one weights file. Returns (state dict, config.json or {})."""
    path = Path(path)
    metadata: dict[str, Any] = {}
    if path.is_dir():
        config_file = path / "config.json"
        if config_file.is_file():
            try:
                metadata = json.loads(config_file.read_text())
            except json.JSONDecodeError as err:
                raise CheckpointImportError(f"{config_file}: not valid JSON ({err})") from None
        weights = [path / name for name in HF_WEIGHT_FILES if (path / name).is_file()]
        if not weights:
            raise CheckpointImportError(f"{path}: folder has none of {', '.join(HF_WEIGHT_FILES)}")
        path = weights[0]
    elif not path.is_file():
        raise CheckpointImportError(f"{path}: file or folder not found")
    if path.suffix == ".safetensors":
        return _as_state_dict(_safetensors_load(path), path, "the file"), metadata
    payload = _torch_load(path)
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and "format" not in payload:
        payload = payload["model"]
    return _as_state_dict(payload, path, "the file"), metadata


READERS = {"deta-official": read_official, "hf-deta": read_hf}
