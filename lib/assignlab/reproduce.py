"""``python -m assignlab reproduce``: execute every notebook with papermill into ``results/``.

Executed copies (with their outputs) go to ``results/notebooks/``; the sources under
``notebooks/`` stay clean. Notebooks whose name starts with ``_`` are skipped, and those of
``OPT_IN_NOTEBOOKS`` (the scale ladder) run only when ``--only`` names them. At the end
``results/README.md`` is regenerated: an index of every table, figure and verdict.

``--executor slurm`` trains each run as a Slurm job (settings: ``--slurm-config FILE`` or the
``ASSIGNLAB_SLURM_*`` variables; see the README, "Running the study on a Slurm cluster").
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from assignlab.paths import ROOT_ENV, in_project, project_root

NOTEBOOK_DIR = Path("notebooks")              # both under the project root (assignlab.paths)
OUTPUT_DIR = Path("results") / "notebooks"
# notebooks that run only when named (--only): what they train does not fit a night
OPT_IN_NOTEBOOKS = {"scale": "the scale ladder's larger models train about 30 hours on 2 cores"}


def notebooks_in_order(notebook_dir: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The quickstart first, then the rest alphabetically."""
    found = sorted(p for p in in_project(notebook_dir).glob("*.ipynb") if not p.name.startswith("_"))
    return sorted(found, key=lambda p: (p.stem != "quickstart", p.name))


def execute_notebook(source: Path, output: Path, parameters: dict, kernel: str = "python3") -> None:
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=kernel,
                               cwd=str(project_root()), progress_bar=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="cpu", help="smoke (seconds), cpu (the laptop study) or a paper profile")
    parser.add_argument("--executor", default="local", choices=("local", "slurm"),
                        help="where runs train: local worker processes, or one Slurm job per run")
    parser.add_argument("--workers", type=int, default=2, help="parallel training runs (local executor)")
    parser.add_argument("--slurm-config", default=None, metavar="FILE",
                        help="JSON/YAML slurm settings for --executor slurm (passed to the notebooks as "
                             "$ASSIGNLAB_SLURM_CONFIG; see the README, 'Running the study on a Slurm cluster')")
    parser.add_argument("--only", nargs="+", action="extend", default=None, metavar="NAME",
                        help="notebook names (stems) to run, repeatable; default all but the scale ladder's")
    parser.add_argument("--out", default=str(OUTPUT_DIR), help="folder for the executed notebooks")


def select_notebooks(notebooks: list[Path], names: list[str] | None) -> list[Path]:
    """The notebooks whose stems are in ``names`` (when None: all but ``OPT_IN_NOTEBOOKS``), in their
    run order.

    Raises ValueError naming any unknown name, before anything runs."""
    if names is None:
        return [path for path in notebooks if path.stem not in OPT_IN_NOTEBOOKS]
    wanted = set(names)
    unknown = sorted(wanted - {path.stem for path in notebooks})
    if unknown:
        raise ValueError(f"--only: no notebook named {', '.join(unknown)} "
                         f"(available: {', '.join(path.stem for path in notebooks)})")
    return [path for path in notebooks if path.stem in wanted]


def run(args: argparse.Namespace) -> int:
    notebooks = select_notebooks(notebooks_in_order(), args.only)
    if args.only is None:
        for name, why in OPT_IN_NOTEBOOKS.items():
            print(f"[reproduce] not running {name} ({why}); run it with --only {name} (make reproduce ONLY={name})",
                  flush=True)
    parameters = {"profile": args.profile, "executor": args.executor, "workers": args.workers}
    if args.slurm_config:  # the notebooks' kernels inherit the environment
        from assignlab.study.run.executors import SLURM_CONFIG_ENV, load_slurm_settings

        load_slurm_settings(args.slurm_config)  # a bad file fails here, before any notebook runs
        os.environ[SLURM_CONFIG_ENV] = str(Path(args.slurm_config).resolve())
    # the kernels start in the project root: a relative $ASSIGNLAB_ROOT would name another folder there
    os.environ[ROOT_ENV] = str(project_root())
    failed = []
    for source in notebooks:
        output = in_project(args.out) / source.name
        start = time.time()
        print(f"[reproduce] {source} -> {output}", flush=True)
        try:
            execute_notebook(source, output, parameters)
        except Exception as err:  # one failing notebook must not stop the others
            failed.append(source.name)
            print(f"[reproduce] FAILED {source.name}: {type(err).__name__}: {str(err)[:500]}", file=sys.stderr)
            continue
        print(f"[reproduce] done {source.name} in {time.time() - start:.0f} s", flush=True)
    from assignlab.study.report.index import write_results_index

    print(f"[reproduce] index: {write_results_index(in_project(OUTPUT_DIR.parent), args.profile)}", flush=True)
    if failed:
        print(f"[reproduce] {len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
