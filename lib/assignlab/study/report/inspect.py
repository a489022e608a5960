"""Match inspection: one trained model per method (through the study's run cache), then DETA
Figure 3 on one validation image and Align-DETR Figures 1 and 4 on the validation set."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from assignlab.analysis.matches import (
    AlignmentAnalysis,
    TrainedModel,
    analyse_alignment,
    draw_match_picture,
    forward_with_assignment,
    last_output_name,
    load_trained,
    match_picture,
    plot_confidence_iou,
    plot_recall,
)
from assignlab.engine.files import CHECKPOINT_NAME
from assignlab.engine.run import train_run
from assignlab.paths import in_project
from assignlab.study.report.shipped import SHIPPED_MODELS, shipped_model_for
from assignlab.study.run.plan import plan_runs
from assignlab.study.run.runner import run_table
from assignlab.study.run.store import StudyPaths

INSPECTED_METHODS = SHIPPED_MODELS


def trained_models(profile: str = "cpu", seed: int = 0, workers: int = 2, executor: str = "local",
                   data_root: str | None = None,
                   device: str = "cpu", results_dir: str | Path = "results", cache_dir: str | Path | None = None,
                   progress: bool = True) -> dict[str, TrainedModel]:
    """Method name -> its trained model at ``profile``, in the order of ``INSPECTED_METHODS``: the
    shipped model where ``models/`` holds the run (no training), otherwise trained through the study's
    run cache when not cached (a run whose result is known but whose checkpoint is gone is
    retrained into the cache)."""
    runs = plan_runs(INSPECTED_METHODS, profile, [seed], data_root)
    shipped = {run.run_id: shipped_model_for(run) for run in runs}
    missing = [run for run in runs if shipped[run.run_id] is None]
    paths = StudyPaths.make(results_dir, cache_dir)
    if missing:
        labels = {label for run in missing for label in run.rows}
        to_train = replace(INSPECTED_METHODS, rows=tuple(r for r in INSPECTED_METHODS.rows if r.label in labels))
        run_table(to_train, profile, seeds=[seed], workers=workers, executor=executor, results_dir=results_dir,
                  cache_dir=cache_dir, data_root=data_root, device=device, progress=progress)
    models = {}
    for run in runs:
        trained = shipped[run.run_id]
        if trained is None:
            checkpoint = paths.run_dir(run.run_id) / CHECKPOINT_NAME
            if not checkpoint.exists():
                train_run(run.config, run.seed, paths.run_dir(run.run_id), device=device, progress=False)
            trained = load_trained(checkpoint, name=run.rows[0])
        for row in run.rows:
            models[row] = replace(trained, name=row)
    return models


@dataclass
class Inspection:
    """Figure 3 drawn for one image, and Figures 1 and 4 per method."""

    figure3: Any
    figure1: Any
    figure4: Any
    recall: pd.DataFrame            # method, multiplier, recall, objects
    pearson: pd.DataFrame           # method, pearson_r, matches
    analyses: dict[str, AlignmentAnalysis]

    def save(self, results_dir: str | Path = "results") -> dict[str, Path]:
        """Write the figures to ``results/figures/`` and the numbers to ``results/tables/``."""
        out = in_project(results_dir)
        files = {"deta_figure3": out / "figures" / "deta_figure3.png",
                 "align_figure1": out / "figures" / "align_figure1.png",
                 "align_figure4": out / "figures" / "align_figure4.png",
                 "align_figure1_csv": out / "tables" / "align_figure1.csv",
                 "align_figure4_csv": out / "tables" / "align_figure4.csv"}
        for path in files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        for key, figure in (("deta_figure3", self.figure3), ("align_figure1", self.figure1),
                            ("align_figure4", self.figure4)):
            figure.savefig(files[key], dpi=110, bbox_inches="tight")
        self.recall.to_csv(files["align_figure1_csv"], index=False, float_format="%.4f")
        self.pearson.to_csv(files["align_figure4_csv"], index=False, float_format="%.4f")
        return files


def inspect_matches(models: dict[str, TrainedModel], dataset, image_index: int = 0, score_threshold: float = 0.3,
                    max_images: int | None = None) -> Inspection:
    """Draw each method's assignment on ``dataset[image_index]`` and measure the alignment
    of confidence and box quality on the first ``max_images`` images (all when None)."""
    from matplotlib.figure import Figure  # not pyplot: the caller decides where figures are shown

    from assignlab.data.collate import collate_detection

    image, target = dataset[image_index]
    images, mask, targets = collate_detection([(image, target)])
    columns = min(4, len(models))
    rows = -(-len(models) // columns)
    fig3 = Figure(figsize=(4.2 * columns, 4.6 * rows))
    axes = fig3.subplots(rows, columns, squeeze=False).flatten()
    for ax in axes[len(models):]:
        ax.set_axis_off()
    for ax, (name, trained) in zip(axes, models.items()):
        outputs, assignment = forward_with_assignment(trained, images, mask, targets)
        result = assignment[last_output_name(trained)][0]
        picture = match_picture(outputs["pred_logits"][0], outputs["pred_boxes"][0], target, result, score_threshold)
        draw_match_picture(ax, image, picture, title=name)
    fig3.tight_layout()

    indices = range(len(dataset) if max_images is None else min(max_images, len(dataset)))
    analyses = {name: analyse_alignment(trained, dataset, indices) for name, trained in models.items()}
    fig1 = Figure(figsize=(5, 3.5))
    ax1 = fig1.subplots()
    plot_recall(list(analyses.values()), ax1)
    fig1.tight_layout()
    fig4 = Figure(figsize=(3.8 * columns, 3.6 * rows))
    axes4 = fig4.subplots(rows, columns, squeeze=False).flatten()
    for ax in axes4[len(analyses):]:
        ax.set_axis_off()
    for ax, analysis in zip(axes4, analyses.values()):
        plot_confidence_iou(analysis, ax)
    fig4.tight_layout()
    recall = pd.concat([a.recall.assign(method=n) for n, a in analyses.items()], ignore_index=True)
    pearson = pd.DataFrame([{"method": n, "pearson_r": a.pearson, "matches": len(a.pairs)} for n, a in analyses.items()])
    return Inspection(fig3, fig1, fig4, recall[["method", "multiplier", "recall", "objects"]], pearson, analyses)
