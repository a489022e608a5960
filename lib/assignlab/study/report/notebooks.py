"""Write the study's notebooks (``python -m assignlab.study.report.notebooks [FOLDER]``).

Every notebook has the same shape: a ``parameters`` cell of literals (papermill overrides them),
a cell deriving values from them, one call into the library, then the display. The sources are
written without outputs; executed copies go to ``results/notebooks/``.
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from assignlab.study.report.behaviours import BEHAVIOURS, COMPANION_BEHAVIOURS, TABLE_BEHAVIOURS
from assignlab.study.tables.beyond import GROWTH_FACTORS, GROWTH_NOTEBOOK, GROWTH_PAIRS, notebook_name
from assignlab.study.tables.catalogue import TABLES
from assignlab.study.tables.profiles import LADDER
from assignlab.study.tables.scale import SCALE_NOTEBOOK

PARAMETERS = '''# Parameters (papermill overrides these; literals only)
profile = "cpu"          # "smoke" (seconds, CI), "cpu" (the laptop study) or "paper"
seeds = None             # None: the spec's seeds for the profile; or a list such as [0, 1, 2]
workers = 2              # training runs at once
executor = "local"       # "local": worker processes here; "slurm": one job per run (README: Slurm)
data_root = None         # None: the profile's data folder
device = "cpu"
results_dir = "results"'''

RUN_COMMAND = "python -m assignlab study run --table {name} --profile cpu"
# the project's kernel, which `make venv` installs into .venv (papermill runs take "python3", the same
# interpreter when run from .venv)
KERNELSPEC = {"name": "assignlab", "display_name": "assignlab (.venv)", "language": "python"}


def language_info() -> dict:
    """What the project's kernel reports about its language (ipykernel's values, this interpreter's
    version): JupyterLab writes it into a notebook when its kernel starts, and marks the notebook
    modified if it differs from what the file holds."""
    return {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
            "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3", "version": platform.python_version()}


def _notebook(cells: list) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = KERNELSPEC
    notebook.metadata["language_info"] = language_info()
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"  # stable ids keep regenerated notebooks byte-identical
    return notebook


def _parameters_cell(source: str = PARAMETERS) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def table_notebook(name: str) -> nbformat.NotebookNode:
    return _notebook(table_cells(name))


def table_cells(name: str) -> list[nbformat.NotebookNode]:
    """A table notebook's cells: train what is missing, show the table beside the paper's and the claims."""
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
    return [
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
    ]


def released_notebook(name: str) -> nbformat.NotebookNode:
    """A released-behaviour table (``released_topk``, ``released_kcap``), how often the behaviour
    fires, and how often its companion behaviours (``COMPANION_BEHAVIOURS``) fire in the same runs."""
    behaviour = TABLE_BEHAVIOURS[name]
    base_argument = ", base=base" if TABLES[name].other_bases else ""
    rates_call = "behaviour_table(TABLE, profile, seeds=seeds, results_dir=results_dir, data_root=data_root"
    cells = table_cells(name) + [
        new_markdown_cell(f"## How often the released behaviour fires\n\n{BEHAVIOURS[behaviour]}: per "
                          "output, the fraction of a batch's images (`images`) and of the training steps (`steps`) "
                          "where it fired, as the mean over the epochs and at the last epoch, averaged over seeds "
                          "(from the curves in the runs' result files)."),
        new_code_cell("from assignlab.study.report.behaviours import behaviour_table\n\n"
                      f"rates = {rates_call}{base_argument})\n"
                      "rates.style.format(precision=3).hide(axis='index')"),
    ]
    for companion in COMPANION_BEHAVIOURS.get(name, ()):
        cells += [new_markdown_cell(f"## In the same runs: {BEHAVIOURS[companion][0].lower()}{BEHAVIOURS[companion][1:]}"
                                    "\n\nThe same rates; runs trained before the statistic existed show none."),
                  new_code_cell(f"{companion} = {rates_call}{base_argument}, behaviour={companion!r})\n"
                                f"{companion}.style.format(precision=3).hide(axis='index')")]
    return _notebook(cells)


def alignment_notebook(name: str = "alignment_evidence") -> nbformat.NotebookNode:
    """The alignment evidence table: its AP rows, then the alignment diagnostics per row and their claims."""
    return _notebook(table_cells(name) + [
        new_markdown_cell(
            "## Alignment diagnostics per row\n\n"
            "Mean ± 95% interval over seeds (seeds where the diagnostic exists) of what every run computes at its "
            "end on the first validation images: `br_recall_m{1,2,3}`, the fraction of objects whose "
            "best-regressed prediction is among the top m x N confident (Align-DETR Figure 1); `pearson_r` of "
            "confidence and IoU of the last decoder layer's matches (Figure 4); `positives_per_object_{last,enc}_"
            "{small,medium,large}`, the predictions assigned per object by object size (DETA)."),
        new_code_cell("from assignlab.study.report.evidence import alignment_study\n\n"
                      "evidence = alignment_study(TABLE, profile, seeds=seeds, results_dir=results_dir, "
                      "data_root=data_root)\nevidence.styled()"),
        new_code_cell("display(Image(filename=str(evidence.files['figure'])))"),
        new_markdown_cell("## Align-DETR's alignment claims"),
        new_code_cell("evidence.claims.style.format({c: '{:+.3f}' for c in ('mean', 'low', 'high')} | "
                      "{'ci95': '± {:.3f}'}, na_rep='').hide(axis='index')"),
    ])


def growth_notebook() -> nbformat.NotebookNode:
    """Every growth table, then the AP difference of each pair against the schedule length."""
    names = ", ".join(f"`{pair.name}`" for pair in GROWTH_PAIRS)
    return _notebook([
        new_markdown_cell(
            "# Do the papers' differences grow with the schedule?\n\n"
            f"Trains the runs of the tables {names} that are not cached yet: pairs of paper rows at "
            f"{', '.join(f'{f:g}x' for f in GROWTH_FACTORS)} the profile's schedule (the 1x rows are the paper "
            "tables' runs). Per pair and length: the AP difference (paper's better arm minus the other, paired by "
            "seed) with its 95% interval and the verdict of the claim that it is positive. The trend is the slope "
            "of the difference against log2(length), AP per doubling, where the length is the epochs trained over "
            "the profile's (epochs are whole: 0.5x of the cpu profile's 5 epochs is 2, a length of 0.4): "
            "*growing* if its 95% interval over seeds is "
            "wholly above 0, *shrinking* if wholly below, *stable* if wholly inside ±0.5, else *inconclusive*.\n\n"
            f"Batch: `papermill notebooks/{GROWTH_NOTEBOOK}.ipynb out.ipynb -p profile smoke`; command line: "
            f"`{RUN_COMMAND.format(name=GROWTH_PAIRS[0].name)}` (one table at a time)."),
        _parameters_cell(),
        new_code_cell("from IPython.display import Image, display\n\nfrom assignlab import study\n"
                      "from assignlab.study.report.growth import growth_study\nfrom assignlab.study.tables.beyond import GROWTH_PAIRS"),
        new_code_cell("tables = {pair.name: study.reproduce_table(pair.name, profile=profile, seeds=seeds, "
                      "workers=workers, executor=executor,\n"
                      "                                           data_root=data_root, device=device, "
                      "results_dir=results_dir)\n          for pair in GROWTH_PAIRS}"),
        new_markdown_cell("## Each table beside the paper's (1x) and the claim at each length"),
        new_code_cell("for result in tables.values():\n    display(result.styled())\n    display(result.styled_claims())"),
        new_markdown_cell("## The difference against the schedule length"),
        new_code_cell("growth = growth_study(profile, seeds=seeds, results_dir=results_dir, data_root=data_root)\n"
                      "display(growth.styled_summary())\ndisplay(growth.styled_trends())\n"
                      "display(Image(filename=str(growth.figure_path)))"),
        new_code_cell("for result in tables.values():\n    print(result.report.summary())"),
    ])


def scale_notebook() -> nbformat.NotebookNode:
    """The scale ladder: the ``scale`` table at every rung (and ``scale_bases`` at S and M), then each
    claim's difference against the compute per image."""
    rungs = ", ".join(f"{rung} (`{profile}`)" for rung, profile in LADDER.items())
    return _notebook([
        new_markdown_cell(
            "# Do the verdicts survive scale? The headline claims on a ladder of three model sizes\n\n"
            f"Rungs {rungs}: S is the cpu profile (its runs are the paper tables'); M and L train the same data "
            "recipe and schedule with larger models, M in fp32 like S and L in bf16, which needs a CPU with AMX or "
            "AVX512-BF16, or a GPU (`assignlab.presets.LADDER_MODELS`; sizes, costs and why in "
            "`results/README.md`, \"The scale ladder\"). Trains the runs of the table `scale` that are not cached "
            "yet at each rung (DETA Table 1's three rows, DETA Table 7's Hungarian rows with and without decoder "
            "self-attention, Align-DETR Table 5's focal baseline, IA-BCE alone and the full Align-DETR on DINO; "
            "3 seeds), and of `scale_bases` at S and M (two-stage DETR-DC5 and DAB-DETR, one seed). Per claim and "
            "rung: d with its 95% interval and the rung's two-part verdict. The trend is the slope of d against "
            "log2(GFLOP per training image, counted), AP per doubling of compute: *growing* if its 95% interval "
            "over seeds is wholly above 0, *shrinking* if wholly below, *stable* if wholly inside ±0.5, else "
            "*inconclusive*; and whether it moves d towards the paper's value.\n\n"
            "An M run takes about 60 minutes on one core, an L run about 100 with AMX (the whole ladder about 30 "
            "hours on 2 cores). One rung: `python -m assignlab study run --table scale --profile cpu-m`; some rungs: "
            f"`papermill notebooks/{SCALE_NOTEBOOK}.ipynb out.ipynb -y 'rungs: [S, M]'`. "
            f"Batch: `papermill notebooks/{SCALE_NOTEBOOK}.ipynb out.ipynb -p profile smoke` (a one-rung ladder)."),
        _parameters_cell(PARAMETERS + '\nrungs = None             # None: every rung (S, M, L at the cpu profile); or a '
                         'list such as ["S", "M"]'),
        new_code_cell("from IPython.display import Image, display\n\nfrom assignlab import study\n"
                      "from assignlab.study.report.scale import ladder_for, scale_study\n"
                      "from assignlab.study.tables.scale import BASES_RUNGS\n\n"
                      "chosen = ladder_for(profile, rungs)\n"
                      "print(\"rungs:\", \", \".join(f\"{rung} = {name}\" for rung, name in chosen.items()))"),
        new_code_cell("training = dict(seeds=seeds, workers=workers, executor=executor, data_root=data_root, device=device,\n"
                      "                results_dir=results_dir)\n"
                      "tables = {}\nfor rung, rung_profile in chosen.items():\n"
                      "    tables[rung, \"scale\"] = study.reproduce_table(\"scale\", profile=rung_profile, **training)\n"
                      "    if rung in BASES_RUNGS:\n"
                      "        tables[rung, \"scale_bases\"] = study.reproduce_table(\"scale_bases\", profile=rung_profile, "
                      "**training)"),
        new_markdown_cell("## Each rung's table and claims"),
        new_code_cell("for (rung, name), result in tables.items():\n    print(f\"rung {rung}: {name}\")\n"
                      "    display(result.styled())\n    if len(result.claims):\n        display(result.styled_claims())"),
        new_markdown_cell("## Each claim against the compute per image"),
        new_code_cell("scale = scale_study(profile, seeds=seeds, results_dir=results_dir, data_root=data_root, rungs=chosen)\n"
                      "display(scale.compute.style.format(precision=3).hide(axis='index'))\n"
                      "display(scale.styled_rungs())\ndisplay(scale.styled_trends())\n"
                      "display(Image(filename=str(scale.figure_path)))"),
        new_markdown_cell("## Do the single-scale bases leave the untrained floor?"),
        new_code_cell("scale.bases.style.format({'gflop': '{:.3g}', 'AP': '{:.2f}'}, na_rep='').hide(axis='index')"),
        new_code_cell("for result in tables.values():\n    print(result.report.summary())"),
    ])


def inspect_notebook() -> nbformat.NotebookNode:
    return _notebook([
        new_markdown_cell(
            "# Which predictions does each method assign to which object?\n\n"
            "Loads the study's shipped models (`models/`, the `cpu` profile, seed 0; at another profile it trains "
            "them, or reuses them from the study cache) and shows, for any validation image, which predictions "
            "each method's own assignment gives to which object, at every output (encoder proposals, each decoder "
            "layer, the final detections).\n\n"
            "- **The match explorer** (run the notebook in JupyterLab): pick the image, one or two methods, the "
            "output, the score threshold and an object; the table under the picture lists that object's candidate "
            "predictions with the method's own quantities (DETA: the reference box's IoU against the stage's "
            "threshold and the top-K cut; Align-DETR: quality t, rank and prime-sample weight; every method: the "
            "terms of the match cost). Beside each picture, Align-DETR's Figures 1 and 4 for the shown image.\n"
            "- **The same as figures** for the most crowded validation image and every method, so that a saved "
            "copy shows them too; then DETA Figure 3 and Align-DETR Figures 1 and 4 over the validation set."),
        _parameters_cell(PARAMETERS + "\nimage_index = None     # None: the most crowded validation image"
                         "\nscore_threshold = 0.3\nmax_images = 200       # images of the validation-set figures (None: all)"),
        new_code_cell("from IPython.display import Image, display\n\n"
                      "from assignlab.analysis.draw import figure_png\n"
                      "from assignlab.analysis.explorer_widget import MatchExplorer\n"
                      "from assignlab.data.build import build_dataset\n"
                      "from assignlab.study.report.inspect import inspect_matches, trained_models\n\n"
                      "seed = 0 if seeds is None else int(seeds[0] if isinstance(seeds, (list, tuple)) else seeds)"),
        new_code_cell("models = trained_models(profile, seed=seed, workers=workers, executor=executor, data_root=data_root,\n"
                      "                        device=device, results_dir=results_dir)\n"
                      "config = next(iter(models.values())).config\n"
                      "dataset = build_dataset(config.data, config.data.val_split, train=False)\n"
                      "print(f\"{len(models)} models: {', '.join(models)}; {len(dataset)} validation images\")"),
        new_markdown_cell("## The match explorer"),
        new_code_cell("explorer = MatchExplorer(models, dataset, image_index=image_index, score_threshold=score_threshold)\n"
                      "explorer"),
        new_markdown_cell("## Every method on the most crowded validation image (last decoder layer)"),
        new_code_cell("still = MatchExplorer(models, dataset, image_index=explorer.image_index)  # the live one keeps its state\n"
                      "names = list(models)\n"
                      "for pair in [names[i:i + 2] for i in range(0, len(names), 2)]:\n"
                      "    display(Image(data=figure_png(still.figure(methods=pair))))"),
        new_markdown_cell("## DETA Figure 3, Align-DETR Figures 1 and 4 over the validation set"),
        new_code_cell("inspection = inspect_matches(models, dataset, image_index=explorer.image_index, "
                      "score_threshold=score_threshold,\n                            max_images=max_images)\n"
                      "files = inspection.save(results_dir)"),
        new_markdown_cell("### DETA Figure 3: matched (green) and confident background (red) predictions"),
        new_code_cell("display(Image(filename=str(files['deta_figure3'])))"),
        new_markdown_cell("### Align-DETR Figure 1: recall of best-regressed predictions among the top-k confident"),
        new_code_cell("display(Image(filename=str(files['align_figure1'])))\n"
                      "inspection.recall.pivot(index='multiplier', columns='method', values='recall')"),
        new_markdown_cell("### Align-DETR Figure 4: confidence against IoU of the matched predictions"),
        new_code_cell("display(Image(filename=str(files['align_figure4'])))\ninspection.pearson"),
    ])


def runtime_notebook() -> nbformat.NotebookNode:
    return _notebook([
        new_markdown_cell(
            "# DETA Table 2: inference time per module on this machine\n\n"
            "DETA (per-level NMS in query selection, class-wise NMS at the end) against the end-to-end "
            "baseline (top-k), same architecture, at the profile's model and image size; beside the "
            "paper's V100 numbers."),
        _parameters_cell(PARAMETERS + "\nrepeats = 20\nthreads = 1"),
        new_code_cell("from IPython.display import Image, display\n\nfrom assignlab.study.report.runtime import runtime_study\n\n"
                      "repeats = 3 if profile == \"smoke\" else repeats"),
        new_code_cell("runtime = runtime_study(profile, repeats=repeats, threads=threads, results_dir=results_dir)"),
        new_code_cell("display(runtime.table.style.format(precision=1).hide(axis='index'))\n"
                      "display(Image(filename=str(runtime.files['figure'])))"),
    ])


NOTEBOOK_MAKERS = {"released_topk": released_notebook, "released_kcap": released_notebook,
                   "alignment_evidence": alignment_notebook}


def all_notebooks() -> dict[str, nbformat.NotebookNode]:
    notebooks = {name: NOTEBOOK_MAKERS.get(name, table_notebook)(name) for name in TABLES
                 if notebook_name(name) == name}
    notebooks[GROWTH_NOTEBOOK] = growth_notebook()
    notebooks[SCALE_NOTEBOOK] = scale_notebook()
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
