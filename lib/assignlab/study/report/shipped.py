"""The study's main models at the ``cpu`` profile (seed 0), shipped with the repository in ``models/``.

Each is one weights file (``<run-id>.pth``: the model's state dict in float16, the run's config,
its recorded COCO metrics and the AP of the float16 weights themselves), readable with
``torch.load(weights_only=True)``, so that looking at what a method assigns needs no training.
``python -m assignlab.study.report.shipped export`` writes them from the runs' training folders
(``work-cache/runs/<run-id>/``, after ``study run`` or ``train --config``) with ``models/README.md``;
:func:`load_shipped` and :func:`shipped_model_for` read them back.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from assignlab.config import Config
from assignlab.diagnostics import TrainedModel
from assignlab.engine.checkpoint import load_checkpoint
from assignlab.engine.files import CHECKPOINT_NAME, RESULT_NAME
from assignlab.jsonio import read_json, write_atomically
from assignlab.losses.criterion import Criterion
from assignlab.models.build import build_model
from assignlab.paths import in_project
from assignlab.study.run.plan import PlannedRun, plan_runs
from assignlab.study.run.store import StudyPaths
from assignlab.study.tables.methods import align, b_matching, deta, hungarian, hybrid
from assignlab.study.tables.spec import RowSpec, TableSpec

MODELS_DIR = Path("models")      # under the project root (assignlab.paths)
WEIGHTS_FORMAT = "assignlab-weights-v1"
SHIPPED_PROFILE, SHIPPED_SEED = "cpu", 0
# the float16 weights are shipped when their AP is within this of the float32 run's
FLOAT16_TOLERANCE_AP = 0.1

SHIPPED_MODELS = TableSpec(
    name="shipped_models",
    title="The models shipped in models/ (cpu profile, seed 0)",
    rows=(RowSpec("Hungarian", hungarian()),
          RowSpec("DETA (K=4)", deta(4)),
          RowSpec("B-matching (4,4)", b_matching(4, 4)),
          RowSpec("Align-DETR", align()),
          RowSpec("hybrid matching", hybrid()),
          RowSpec("Align-DETR, DINO", align(), base="dino"),
          RowSpec("IA-BCE one-to-one, DINO", hungarian("ia_bce"), base="dino")),
    claims=(),
)


def shipped_runs() -> list[PlannedRun]:
    """The shipped models' runs (one per row of :data:`SHIPPED_MODELS`)."""
    return plan_runs(SHIPPED_MODELS, SHIPPED_PROFILE, [SHIPPED_SEED])


def weights_file(run_id: str, models_dir: str | Path = MODELS_DIR) -> Path:
    return in_project(models_dir) / f"{run_id}.pth"


def load_shipped(path: str | Path, name: str | None = None) -> TrainedModel:
    """The model of a shipped weights file (float32, eval mode) with the criterion of its config; a
    relative ``path`` is taken from the project root (:mod:`assignlab.paths`). The file is read
    with ``weights_only=True``; a file of another format is a ValueError naming it."""
    state = torch.load(in_project(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path}: not a shipped weights file (field 'format' is not {WEIGHTS_FORMAT!r})")
    config = Config.from_dict(state["config"])
    model = build_model(config.model)
    model.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in state["model"].items()})
    model.eval()
    return TrainedModel(name or state.get("name", config.assign.method), config, model, Criterion.from_config(config))


def shipped_model_for(run: PlannedRun, models_dir: str | Path = MODELS_DIR) -> TrainedModel | None:
    """The shipped model of ``run`` (same run id), or None when none is shipped."""
    path = weights_file(run.run_id, models_dir)
    return load_shipped(path, name=run.rows[0]) if path.exists() else None


# ------------------------------------------------------------------------------------- export
@dataclass(frozen=True)
class ShippedModel:
    """One exported model: its row, run id, the float32 run's AP, the AP of the shipped weights,
    their dtype and file size."""

    name: str
    run_id: str
    base: str
    ap_run: float
    ap_shipped: float
    dtype: str
    megabytes: float


def _evaluate(config: Config, state_dict: dict) -> dict[str, float]:
    from assignlab.data.build import build_dataset
    from assignlab.engine.loop import evaluate_model
    from assignlab.engine.run import area_image_size
    from assignlab.models.build import build_postprocessor

    model = build_model(config.model)
    model.load_state_dict(state_dict)
    dataset = build_dataset(config.data, config.data.val_split, train=False)
    return evaluate_model(model.eval(), build_postprocessor(config.model), dataset, torch.device("cpu"), 2,
                          area_image_size(config), progress=False)


def export_model(run: PlannedRun, paths: StudyPaths, models_dir: str | Path = MODELS_DIR) -> ShippedModel:
    """Write ``run``'s trained model (its training folder's checkpoint and result) as shipped weights:
    float16 when their AP is within ``FLOAT16_TOLERANCE_AP`` of the run's, float32 otherwise."""
    folder = paths.run_dir(run.run_id)
    result, state = read_json(folder / RESULT_NAME), load_checkpoint(folder / CHECKPOINT_NAME)
    config = Config.from_dict(result["config"])
    half = {key: value.half() if value.is_floating_point() else value for key, value in state["model"].items()}
    ap_half = _evaluate(config, {key: value.float() if value.is_floating_point() else value
                                 for key, value in half.items()})["AP"]
    ap_run = float(result["metrics"]["AP"])
    use_half = abs(ap_half - ap_run) <= FLOAT16_TOLERANCE_AP
    payload = {"format": WEIGHTS_FORMAT, "name": run.rows[0], "run_id": run.run_id, "seed": run.seed,
               "config": result["config"], "metrics": result["metrics"], "ap_shipped": ap_half if use_half else ap_run,
               "dtype": "float16" if use_half else "float32", "model": half if use_half else state["model"]}
    path = write_atomically(weights_file(run.run_id, models_dir), lambda tmp: torch.save(payload, tmp))
    return ShippedModel(run.rows[0], run.run_id, config.model.base, ap_run, payload["ap_shipped"], payload["dtype"],
                        path.stat().st_size / 2**20)


def models_readme(models: list[ShippedModel]) -> str:
    lines = ["# Shipped models", "",
             f"The study's main models at the `{SHIPPED_PROFILE}` profile, seed {SHIPPED_SEED}, so that "
             "`notebooks/inspect_matches.ipynb` and the match explorer need no training. Each file is "
             "`<run-id>.pth`: the model's weights, the run's config and its recorded COCO metrics; "
             "load it with `assignlab.study.report.shipped.load_shipped(path)` (it reads the file with "
             "`torch.load(weights_only=True)`). The weights are float16 where their AP is within "
             f"{FLOAT16_TOLERANCE_AP} of the float32 run's (measured on the synthetic validation set, below). "
             "Rebuilt by `python -m assignlab.study.report.shipped export` from the runs' training folders "
             "(`python -m assignlab train --config results/runs/<table>/<run-id>.json --seed 0 --out "
             "work-cache/runs/<run-id>`).", "",
             "| model | base | run id | AP of the run | AP of the shipped weights | dtype | MB |",
             "|---|---|---|---|---|---|---|"]
    for m in models:
        lines.append(f"| {m.name} | {m.base} | `{m.run_id}` | {m.ap_run:.2f} | {m.ap_shipped:.2f} | {m.dtype} | "
                     f"{m.megabytes:.1f} |")
    return "\n".join(lines) + "\n"


def export_all(results_dir: str | Path = "results", models_dir: str | Path = MODELS_DIR) -> list[ShippedModel]:
    """Export every shipped model whose run has finished in its training folder; write ``models/README.md``."""
    paths = StudyPaths.make(results_dir)
    exported = [export_model(run, paths, models_dir) for run in shipped_runs()
                if (paths.run_dir(run.run_id) / RESULT_NAME).exists()]  # finished runs only
    readme = in_project(models_dir) / "README.md"
    write_atomically(readme, lambda tmp: tmp.write_text(models_readme(exported)))
    return exported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assignlab.study.report.shipped", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("export",))
    parser.parse_args(argv)
    for model in export_all():
        print(f"{model.name}: {model.run_id} AP {model.ap_run:.2f} -> {model.ap_shipped:.2f} ({model.dtype}, "
              f"{model.megabytes:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
