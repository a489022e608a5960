"""Write the study's notebooks (``python -m assignlab.study.notebooks [FOLDER]``).

Every notebook has the same shape: a ``parameters`` cell of literals (papermill overrides them),
a cell deriving values from them, one call into the library, then the display. The sources are
written without outputs; executed copies go to ``results/notebooks/``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from assignlab.study.specs import TABLES

PARAMETERS = '''# Parameters (papermill overrides these; literals only)
profile = "cpu"          # "smoke" (seconds, CI), "cpu" (the laptop study) or "paper"
seeds = None             # None: the spec's seeds for the profile; or a list such as [0, 1, 2]
workers = 2              # training runs at once
executor = "local"       # "local": worker processes here; "slurm": one job per run (README: Slurm)
data_root = None         # None: the profile's data folder
device = "cpu"
results_dir = "results"'''

RUN_COMMAND = "python -m assignlab study run --table {name} --profile cpu"


def _notebook(cells: list) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"  # stable ids keep regenerated notebooks byte-identical
    return notebook


def _parameters_cell(source: str = PARAMETERS) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def table_notebook(name: str) -> nbformat.NotebookNode:
    spec = TABLES[name]
    intro = (f"# {spec.title}\n\n"
             "Trains the runs of this table that are not cached yet (one JSON per run in "
             "`results/runs/`), then shows our numbers beside the paper's and the verdict on each claim "
             "(95% t-interval over seeds, paired by seed).\n\n"
             f"Batch: `papermill notebooks/{name}.ipynb out.ipynb -p profile smoke`; "
             f"command line: `{RUN_COMMAND.format(name=name)}`.")
    if spec.notes:
        intro += f"\n\nNote: {spec.notes}"
    parameters, base_argument = PARAMETERS, ""
    if spec.other_bases:
        choices = " or ".join(f'"{b}"' for b in (spec.base, *spec.other_bases))
        parameters += "\n" + f'base = "{spec.base}"'.ljust(25) + f"# model.base of the runs: {choices}"
        base_argument = ", base=base"
        intro += (f"\n\nRuns on the `{spec.base}` base (the paper's); the parameter `base` runs it on "
                  f"{' or '.join(f'`{b}`' for b in spec.other_bases)} instead (files `{name}_on_<base>`).")
    return _notebook([
        new_markdown_cell(intro),
        _parameters_cell(parameters),
        new_code_cell(f'from IPython.display import Image, display\n\nfrom assignlab import study\n\n'
                      f'TABLE = "{name}"\nprint(study.get_table(TABLE).title, "| profile:", profile)'),
        new_code_cell("result = study.reproduce_table(TABLE, profile=profile, seeds=seeds, workers=workers, "
                      "executor=executor,\n                              data_root=data_root, device=device, "
                      f"results_dir=results_dir{base_argument})"),
        new_markdown_cell("## Our table beside the paper's"),
        new_code_cell("result.styled()"),
        new_code_cell("display(Image(filename=str(result.figure_path)))"),
        new_markdown_cell("## Claims and verdicts"),
        new_code_cell("result.styled_claims()"),
        new_code_cell("print(result.report.summary())"),
    ])


def inspect_notebook() -> nbformat.NotebookNode:
    return _notebook([
        new_markdown_cell(
            "# Which predictions does each method assign to which object?\n\n"
            "Trains (or reuses from the study cache) one model per method, then draws, on one validation "
            "image, the objects (white), the predictions the method's assignment matches to them (green) and "
            "the confident predictions matched to nothing (red), as in DETA Figure 3; and measures on the "
            "validation set the recall of the best-regressed predictions among the top-k confident "
            "(Align-DETR Figure 1) and the confidence-IoU density of the matched predictions with "
            "Pearson's r (Align-DETR Figure 4)."),
        _parameters_cell(PARAMETERS + '\nimage_index = 0\nscore_threshold = 0.3\nmax_images = None'),
        new_code_cell("from IPython.display import display\n\nfrom assignlab.data.build import build_dataset\n"
                      "from assignlab.study.inspect import inspect_matches, trained_models\n\n"
                      "seed = 0 if seeds is None else int(seeds[0] if isinstance(seeds, (list, tuple)) else seeds)"),
        new_code_cell("models = trained_models(profile, seed=seed, workers=workers, executor=executor, data_root=data_root,\n"
                      "                        device=device, results_dir=results_dir)\n"
                      "config = next(iter(models.values())).config\n"
                      "dataset = build_dataset(config.data, config.data.val_split, train=False)\n"
                      "inspection = inspect_matches(models, dataset, image_index=image_index, "
                      "score_threshold=score_threshold, max_images=max_images)\n"
                      "files = inspection.save(results_dir)"),
        new_markdown_cell("## DETA Figure 3: matched (green) and confident background (red) predictions"),
        new_code_cell("display(inspection.figure3)"),
        new_markdown_cell("## Align-DETR Figure 1: recall of best-regressed predictions among the top-k confident"),
        new_code_cell("display(inspection.figure1)\ninspection.recall.pivot(index='multiplier', columns='method', "
                      "values='recall')"),
        new_markdown_cell("## Align-DETR Figure 4: confidence against IoU of the matched predictions"),
        new_code_cell("display(inspection.figure4)\ninspection.pearson"),
    ])


def runtime_notebook() -> nbformat.NotebookNode:
    return _notebook([
        new_markdown_cell(
            "# DETA Table 2: inference time per module on this machine\n\n"
            "DETA (per-level NMS in query selection, class-wise NMS at the end) against the end-to-end "
            "baseline (top-k), same architecture, at the profile's model and image size; beside the "
            "paper's V100 numbers."),
        _parameters_cell(PARAMETERS + "\nrepeats = 20\nthreads = 1"),
        new_code_cell("from IPython.display import Image, display\n\nfrom assignlab.study.runtime import runtime_study\n\n"
                      "repeats = 3 if profile == \"smoke\" else repeats"),
        new_code_cell("runtime = runtime_study(profile, repeats=repeats, threads=threads, results_dir=results_dir)"),
        new_code_cell("display(runtime.table.style.format(precision=1).hide(axis='index'))\n"
                      "display(Image(filename=str(runtime.files['figure'])))"),
    ])


def all_notebooks() -> dict[str, nbformat.NotebookNode]:
    notebooks = {name: table_notebook(name) for name in TABLES}
    notebooks["inspect_matches"] = inspect_notebook()
    notebooks["runtime"] = runtime_notebook()
    return notebooks


def write_notebooks(folder: str | Path = "notebooks") -> list[Path]:
    """Write every study notebook into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, notebook in all_notebooks().items():
        path = folder / f"{name}.ipynb"
        nbformat.validate(notebook)
        path.write_text(nbformat.writes(notebook) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_notebooks(sys.argv[1] if len(sys.argv) > 1 else "notebooks"):
        print(path)
