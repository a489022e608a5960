"""Checkpoints: model, optimiser, schedule, RNG states and the position in training.

A checkpoint holds tensors and plain Python data only (dicts, lists, tuples, numbers, strings;
the config as a plain dict), so it is read with ``torch.load(weights_only=True)``: loading a file
someone handed you never runs code from it. A file that asks the unpickler for anything else is
refused with a :class:`CheckpointError` naming the file and what it asked for.

Checkpoints of format v1 (written before v2) stored numpy's RNG state as a numpy array; they
still load, with only numpy's array-rebuilding functions allowed for that file.

Written atomically (temporary file, then rename), so an interruption or a full disk never leaves
a torn file and keeps the previous one.
"""
from __future__ import annotations

import importlib
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assignlab.jsonio import write_atomically

CHECKPOINT_FORMAT = "assignlab-checkpoint-v2"
FORMAT_V1 = "assignlab-checkpoint-v1"  # numpy RNG state as a numpy array
READABLE_FORMATS = (CHECKPOINT_FORMAT, FORMAT_V1)

# What a v1 checkpoint's numpy RNG state asks the unpickler for: rebuilding a uint32 array (the
# dtype class is not listed by get_unsafe_globals_in_checkpoint but is needed all the same).
_V1_NUMPY_GLOBALS = {
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    "numpy.dtypes.UInt32DType",
}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and says why."""


def rng_states() -> dict[str, Any]:
    """The torch, numpy, Python (and CUDA) generator states as tensors and plain types."""
    kind, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`; also takes v1 checkpoints' numpy state (a tuple)."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state["kind"], numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                       numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, **payload: Any) -> Path:
    """Save ``payload`` (plus the format tag) atomically to ``path``
    (:func:`~assignlab.jsonio.write_atomically`: on failure, e.g. a full disk, the previous
    checkpoint is left as it was and an ``OSError`` naming ``path`` is raised)."""
    return write_atomically(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp))


def _unsafe_globals(path: Path) -> set[str]:
    try:
        return set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the caller
        return set()


def _unpickler_detail(message: str) -> str:
    """The reason in torch's long "Weights only load failed" message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error:"):
            return line.removeprefix("WeightsUnpickler error:").strip() or "".join(lines[index + 1:index + 2])
    return lines[0] if lines else ""


def _torch_load(path: Path) -> Any:
    with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_weights_only(path: Path) -> Any:
    try:
        return _torch_load(path)
    except Exception as err:  # noqa: BLE001 - truncated or foreign files fail in many ways inside torch.load
        if not isinstance(err, torch.serialization.pickle.UnpicklingError) or "Weights only load failed" not in str(err):
            first_line = str(err).splitlines()[0] if str(err) else ""
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {first_line})") from None
        detail = _unpickler_detail(str(err))
    asked = _unsafe_globals(path)
    if not asked:  # not a zip checkpoint (a bare pickle, a torn file): its globals cannot be listed
        raise CheckpointError(f"{path}: not a readable checkpoint (not a file of tensors and plain data written by "
                              f"torch.save: {detail}); nothing in it was run") from None
    if not asked <= _V1_NUMPY_GLOBALS:
        raise CheckpointError(f"{path}: refused: it holds pickled Python objects ({', '.join(sorted(asked))}), not "
                              "only tensors and plain data; loading it could run code from the file") from None
    allowed = [found for name in sorted(_V1_NUMPY_GLOBALS) if (found := _numpy_global(name)) is not None]
    with torch.serialization.safe_globals(allowed):
        try:
            return _torch_load(path)
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None


def _numpy_global(name: str) -> Any:
    """The object of one of ``_V1_NUMPY_GLOBALS`` (None where this numpy lacks it)."""
    module_name, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (on the CPU), never running code from it.

    Raises :class:`CheckpointError` for a missing, unreadable, foreign or code-carrying file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    payload = _load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: not an assignlab checkpoint (format tag {CHECKPOINT_FORMAT!r} missing)")
    return payload
