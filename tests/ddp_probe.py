"""Runs ``python -m assignlab train`` with probes, for tests/test_engine.py's data-parallel test.

    python tests/ddp_probe.py PROBE_DIR TRAIN_ARGS...            # one process
    torchrun --nproc_per_node=2 tests/ddp_probe.py PROBE_DIR ...  # two processes

Each process writes ``PROBE_DIR/rank<r>.json`` (per step: the image ids it trained on and its
loss) and ``PROBE_DIR/rank<r>_grads.pt`` (the gradient of every parameter at the first optimiser
step, after DistributedDataParallel's all-reduce, in parameter order).
"""
import json
import os
import sys
from pathlib import Path

import torch

from assignlab.cli import entry_point
from assignlab.losses.criterion import Criterion

probe_dir = Path(sys.argv[1])
rank = int(os.environ.get("RANK", 0))
steps: list[dict] = []
first_grads: list[torch.Tensor | None] = []

criterion_forward = Criterion.forward
optimizer_step = torch.optim.AdamW.step


def recording_forward(self, outputs, targets, *args, **kwargs):
    losses = criterion_forward(self, outputs, targets, *args, **kwargs)
    if torch.is_grad_enabled():  # training steps, not the diagnostics after training
        steps.append({"image_ids": [int(t["image_id"]) for t in targets], "loss": float(losses["loss"])})
    return losses


def recording_step(self, *args, **kwargs):
    if not first_grads:
        first_grads.extend(p.grad.detach().clone() if p.grad is not None else None
                           for group in self.param_groups for p in group["params"])
    return optimizer_step(self, *args, **kwargs)


Criterion.forward = recording_forward
torch.optim.AdamW.step = recording_step
code = entry_point(["train", *sys.argv[2:]])
probe_dir.mkdir(parents=True, exist_ok=True)
(probe_dir / f"rank{rank}.json").write_text(json.dumps(steps))
torch.save([g if g is not None else torch.empty(0) for g in first_grads], probe_dir / f"rank{rank}_grads.pt")
sys.exit(code)
