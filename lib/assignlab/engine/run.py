"""A training run: (config, seed) -> checkpoints, a JSONL log and a final result JSON.

Files in the run's folder:
    checkpoint.pth   written after every epoch (model, optimiser, schedule, RNG, curve)
    log.jsonl        one line per logged step and per epoch
    result.json      written once at the end: config, seed, metrics, curve, timings, versions
    source.diff      only when the source tree differs from its git commit: ``git diff HEAD --binary``

A run started again on the same folder resumes from ``checkpoint.pth`` and ends with the same
metrics as an uninterrupted run (same RNG states, same data order per epoch).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from assignlab.config import Config, experiment_of
from assignlab.data.build import build_dataset
from assignlab.diagnostics import TrainedModel, analyse_alignment
from assignlab.engine import distributed as dist
from assignlab.engine.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from assignlab.engine.loop import (
    GlobalBatchSampler,
    NonFiniteLossError,
    PerImageSeededDataset,
    evaluate_model,
    make_loader,
    train_one_epoch,
)
from assignlab.engine.execution import check_precision, maybe_compile, emulated_precision_reason
from assignlab.engine.files import CHECKPOINT_NAME, LOG_NAME, RESULT_NAME
from assignlab.engine.machine import machine_info
from assignlab.engine.optim import build_optimizer
from assignlab.jsonio import read_json, write_atomically, write_json_atomic
from assignlab.losses.criterion import Criterion, check_objective
from assignlab.models.build import build_model, build_postprocessor



def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("assignlab", "torch", "torchvision", "numpy", "scipy", "pycocotools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


SOURCE_DIFF_NAME = "source.diff"
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SourceDiff:
    """How a repository's tracked files differ from HEAD."""

    diff: bytes               # the output of ``git diff HEAD --binary`` (``git apply`` re-applies it)
    sha256: str               # hex sha256 of ``diff``
    files: tuple[str, ...]    # the modified tracked paths, relative to the repository root, sorted

    def record(self) -> dict[str, Any]:
        """The ``git_diff`` field of a run's result: ``{"sha256": ..., "files": [...]}``."""
        return {"sha256": self.sha256, "files": list(self.files)}


def _git(args: list[str], cwd: Path, timeout: float = 10) -> bytes | None:
    """The stdout of ``git <args>`` run in ``cwd``; None when git is missing, fails or times out."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, cwd=cwd, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def source_diff(repo: str | Path = PACKAGE_DIR) -> SourceDiff | None:
    """The modification of the git repository holding ``repo`` (a folder in it): a :class:`SourceDiff`
    of ``git diff HEAD --binary`` run in the repository root; None when the tracked files equal HEAD,
    or ``repo`` is not in a git repository, or git is missing."""
    top = _git(["rev-parse", "--show-toplevel"], Path(repo))
    if top is None:
        return None
    root = Path(top.decode().strip())
    # --no-color/--no-ext-diff: a user's git config must not turn the file into something `git apply` rejects
    diff = _git(["diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"], root, timeout=60)
    names = _git(["diff", "HEAD", "--name-only", "--no-renames", "-z"], root)
    if not diff or names is None:
        return None
    files = sorted(name for name in names.decode(errors="surrogateescape").split("\0") if name)
    return SourceDiff(diff=diff, sha256=hashlib.sha256(diff).hexdigest(), files=tuple(files))


_pinned_source: tuple[str | None, SourceDiff | None] | None = None


def pin_source() -> None:
    """Take this process's source (commit and modification) now, for every run it trains later. A
    study worker imports the code when it starts and trains several runs: an edit or a commit made
    meanwhile is not what it runs, so its runs must not record it."""
    global _pinned_source
    _pinned_source = (git_commit(), source_diff())


def process_source() -> tuple[str | None, SourceDiff | None]:
    """(commit, modification) of the code this process runs: the pinned one (:func:`pin_source`),
    else the tree's now."""
    return _pinned_source if _pinned_source is not None else (git_commit(), source_diff())


def write_source_diff(out: Path, source: SourceDiff | None) -> None:
    """Write ``source.diff`` into the run folder ``out`` (atomically), or remove one left by an
    earlier session of the run when ``source`` is None, so that the folder's file is always the one
    the result's ``git_diff`` describes."""
    path = out / SOURCE_DIFF_NAME
    if source is None:
        path.unlink(missing_ok=True)
        return
    write_atomically(path, lambda tmp: tmp.write_bytes(source.diff))


def resolve_config(cfg: Config, dataset) -> Config:
    """The config as trained: ``model.num_classes`` set from the dataset's categories."""
    return cfg.override({"model.num_classes": len(dataset.category_ids)})


def area_image_size(cfg: Config) -> int | None:
    """Image side for the scaled area ranges (synthetic data) or None (COCO's ranges)."""
    return cfg.data.synth_image_size if cfg.data.synthetic else None


def alignment_diagnostics(cfg: Config, model: torch.nn.Module, criterion: Criterion, val_set,
                          image_size: int | None) -> dict[str, float]:
    """The trained model's alignment evidence on the first ``train.alignment_images`` validation
    images: Align-DETR's best-regressed recall (Figure 1) and confidence-IoU Pearson r (Figure 4),
    and DETA's positives per object by size (see :mod:`assignlab.diagnostics`)."""
    model.eval()
    indices = list(range(min(cfg.train.alignment_images, len(val_set))))
    trained = TrainedModel(cfg.assign.method, cfg, model, criterion)
    return analyse_alignment(trained, val_set, indices, multipliers=(1, 2, 3), batch_size=cfg.train.batch_size,
                             area_image_size=image_size).summary()


def train_run(
    cfg: Config,
    seed: int,
    out_dir: str | Path,
    device: str = "cpu",
    progress: bool = True,
    stop_after_epochs: int | None = None,
    max_steps_per_epoch: int | None = None,
) -> dict[str, Any] | None:
    """Train (or resume) the run in ``out_dir``; returns the result dict when it finishes.

    Args:
        stop_after_epochs: leave after this many epochs in total (the run stays resumable),
            returning None; used to split a run over several sessions and by tests.
        max_steps_per_epoch: cap the steps of each epoch (quick checks; recorded in the result).
    """
    check_objective(cfg.assign, cfg.loss)  # unknown method or loss names fail before anything is made
    check_precision(cfg.train.precision)
    out = Path(out_dir)
    distributed = dist.init_distributed(device)
    torch_device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if device == "cuda" else device)
    slow = emulated_precision_reason(cfg.train.precision, torch_device.type)
    if slow and dist.is_main_process():
        warnings.warn(slow, stacklevel=2)
    if dist.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    result_path = out / RESULT_NAME
    if result_path.exists():
        return read_json(result_path)
    # the source this process imported, not the one found at the end after possible edits
    commit, source = process_source()
    if dist.is_main_process():
        write_source_diff(out, source)

    seed_everything(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True) if dist.is_main_process() else None
    dist.barrier()  # rank 0 generates a missing synthetic split; the others wait for it
    train_set = train_set or build_dataset(cfg.data, cfg.data.train_split, train=True)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    cfg = resolve_config(cfg, train_set)

    model = build_model(cfg.model).to(torch_device)
    criterion = Criterion.from_config(cfg)
    postprocess = build_postprocessor(cfg.model)
    optimizer, scheduler = build_optimizer(model, cfg.train)

    start_epoch, curve, wall_before = 0, [], 0.0
    checkpoint_path = out / CHECKPOINT_NAME
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        # through Config, so that a checkpoint written before a field existed gets its default
        if experiment_of(Config.from_dict(state["config"]).to_dict()) != experiment_of(cfg.to_dict()) \
                or state["seed"] != seed:
            raise ValueError(f"{checkpoint_path} belongs to another config or seed; use a new --out folder")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_states(state["rng"])
        start_epoch, curve, wall_before = state["epoch"] + 1, state["curve"], state["wall_time_s"]

    train_model = maybe_compile(model, cfg.train.compile)
    if distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(train_model, find_unused_parameters=True)

    def log(record: dict) -> None:
        if dist.is_main_process():
            with open(out / LOG_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")

    run_start = time.time()
    if start_epoch == 0:
        log({"event": "start", "config": cfg.to_dict(), "seed": seed, "world_size": dist.world_size()})
    else:
        log({"event": "resume", "epoch": start_epoch})
    per_process_batch = cfg.train.batch_size // dist.world_size()
    for epoch in range(start_epoch, cfg.train.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            return None
        sampler = GlobalBatchSampler(len(train_set), cfg.train.batch_size, seed, epoch, dist.rank(), dist.world_size())
        loader = make_loader(PerImageSeededDataset(train_set, seed, epoch), sampler, cfg.data.num_workers, seed * 1000 + epoch)
        try:
            summary = train_one_epoch(
                train_model, criterion, loader, optimizer, torch_device, epoch,
                clip_max_norm=cfg.train.clip_max_norm, amp=cfg.train.amp, precision=cfg.train.precision, log=log, progress=progress,
                max_steps=max_steps_per_epoch,
            )
        except NonFiniteLossError as err:
            kept = f"the last good checkpoint {checkpoint_path} (after epoch {epoch - 1}) is kept" if epoch > 0 else "no checkpoint was written yet"
            log({"event": "non_finite_loss", "epoch": epoch, "message": str(err)})
            raise NonFiniteLossError(f"run {out}: {err}; stopping, {kept}") from None
        scheduler.step()
        point = {"epoch": epoch, **summary}
        last = epoch == cfg.train.epochs - 1
        if last or (epoch + 1) % cfg.train.eval_every == 0:
            point.update(evaluate_model(model, postprocess, val_set, torch_device, per_process_batch, area_image_size(cfg), progress))
        curve.append(point)
        log({"event": "epoch", **point})
        if progress and dist.is_main_process():
            metrics = f", AP {point['AP']:.1f}, AP50 {point['AP50']:.1f}" if "AP" in point else ""
            tqdm.write(f"epoch {epoch}: loss {point.get('train_loss', float('nan')):.3f}, {point['train_images_per_s']:.1f} img/s{metrics}")
        if dist.is_main_process():
            save_checkpoint(
                checkpoint_path, model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                rng=rng_states(), epoch=epoch, curve=curve, config=cfg.to_dict(), seed=seed,
                wall_time_s=wall_before + time.time() - run_start,
            )
        dist.barrier()

    final = curve[-1]
    alignment = None
    if dist.is_main_process() and cfg.train.alignment_images > 0:
        alignment = alignment_diagnostics(cfg, model, criterion, val_set, area_image_size(cfg))
    result = {
        "config": cfg.to_dict(),
        "config_hash": cfg.stable_hash(),
        "seed": seed,
        "metrics": {k: final[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")},
        "alignment": alignment,
        "curve": curve,
        "wall_time_s": wall_before + time.time() - run_start,
        "train_images_per_s": float(np.mean([p["train_images_per_s"] for p in curve])),
        "eval_images_per_s": final["eval_images_per_s"],
        "max_steps_per_epoch": max_steps_per_epoch,
        "world_size": dist.world_size(),
        "device": device,
        "threads": torch.get_num_threads(),
        "versions": software_versions(),
        "machine": machine_info(device),
        "git_commit": commit,
        "git_diff": source.record() if source is not None else None,
    }
    if dist.is_main_process():
        write_json_atomic(result_path, result)
    dist.barrier()
    return result
