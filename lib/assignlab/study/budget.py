"""Compute spent on the study so far and what its remaining runs will cost.

Every finished run has a result file under ``results/runs/<table>/`` with its wall time
(``wall_time_s``, one process with the threads the runner gave it). Tables share runs, so each
distinct run is charged once, to the first table of ``TABLES`` (or of ``--tables``) that plans it.
A run not finished yet is estimated from the finished runs of its model size (width and image
side; none finished: no estimate, NaN): the median wall time of those of the same base detector,
schedule length (epochs) and encoder and decoder depth; with none of that depth finished, of the
same base and schedule; with none of those, at the median time per epoch of that base (else of all
of that size) times its epochs. A run paused while it trained counts with its pause.

With ``--measured DIR`` (a results folder of reruns, e.g. ``study verify``'s scratch
``work-cache/verify/<table>/results``), it also scales the whole study by the median ratio of the
reruns' wall times to the committed ones of the same run ids: what the study would take on the
machine and code that made the reruns.

    python -m assignlab.study.budget results [--profile cpu] [--cores 2] [--measured DIR ...]
    python -m assignlab.study.budget results --profile cpu-m --tables scale scale_bases   # a ladder rung
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from assignlab.paths import in_project
from assignlab.study.run.plan import PlannedRun, plan_runs
from assignlab.study.tables.catalogue import TABLES

COLUMNS = ["table", "runs", "finished", "hours_spent", "hours_left_estimate"]
TIME_COLUMNS = ["run_id", "base", "epochs", "enc_layers", "dec_layers", "size", "wall_time_s"]


def model_size(hidden_dim: int, image_size: int) -> str:
    """The size key of a run's model in the estimates: its width and image side."""
    return f"d{hidden_dim}-{image_size}px"


def finished_run_times(results_dir: str | Path) -> pd.DataFrame:
    """One line per distinct finished run: run_id, base, epochs, enc_layers, dec_layers, size
    (:func:`model_size`), wall_time_s (read from its result file)."""
    lines = {}
    for path in sorted(in_project(results_dir).glob("runs/*/*.json")):
        if path.stem in lines:
            continue
        try:
            record = json.loads(path.read_text())
            config = record["config"]
            model = config["model"]
            lines[path.stem] = {"run_id": path.stem, "base": model["base"], "epochs": int(config["train"]["epochs"]),
                                "enc_layers": int(model["enc_layers"]), "dec_layers": int(model["dec_layers"]),
                                "size": model_size(int(model["hidden_dim"]), int(config["data"]["image_size"])),
                                "wall_time_s": float(record["wall_time_s"])}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a run result with config.model.base, .enc_layers, .dec_layers, "
                             f".hidden_dim, config.data.image_size, config.train.epochs and wall_time_s ({type(err).__name__}: {err})") from err
    return pd.DataFrame(list(lines.values()), columns=TIME_COLUMNS)


def estimate_seconds(times: pd.DataFrame, base: str, epochs: int, layers: tuple[int, int] | None = None) -> float:
    """Median wall time of the finished runs of ``base`` at ``epochs`` with ``layers`` = (encoder,
    decoder) layers; else of ``base`` at ``epochs`` at any depth; else ``epochs`` times the median
    time per epoch of the finished runs of ``base``, else of all finished runs; NaN when nothing
    has finished."""
    same_base = times[times["base"] == base]
    same = same_base[same_base["epochs"] == epochs]
    if layers is not None:
        same_depth = same[(same["enc_layers"] == layers[0]) & (same["dec_layers"] == layers[1])]
        if len(same_depth):
            return float(same_depth["wall_time_s"].median())
    if len(same):
        return float(same["wall_time_s"].median())
    for finished in (same_base, times):
        if len(finished):
            return float((finished["wall_time_s"] / finished["epochs"]).median() * epochs)
    return float("nan")


def budget_table(results_dir: str | Path = "results", profile: str = "cpu",
                 tables: Sequence[str] | None = None) -> pd.DataFrame:
    """Per table (``tables``, default every table, in ``TABLES`` order; each run charged to the first
    table that plans it): distinct runs charged, how many finished, one-core hours spent and the
    estimated one-core hours left; a last line ``total``."""
    times = finished_run_times(results_dir)
    by_id = times.set_index("run_id")
    charged: set[str] = set()
    lines = []
    for name in tables or TABLES:
        runs = [run for run in plan_runs(name, profile) if run.run_id not in charged]
        charged.update(run.run_id for run in runs)
        done = [run for run in runs if run.run_id in by_id.index]
        left = [run for run in runs if run.run_id not in by_id.index]
        lines.append({"table": name, "runs": len(runs), "finished": len(done),
                      "hours_spent": by_id.loc[[run.run_id for run in done], "wall_time_s"].sum() / 3600,
                      "hours_left_estimate": sum(_estimate_run_seconds(times, run) for run in left) / 3600})
    table = pd.DataFrame(lines, columns=COLUMNS)
    # a run that cannot be estimated leaves the total unknown, not smaller
    total = {"table": "total", **{column: table[column].sum(skipna=column != "hours_left_estimate")
                                  for column in COLUMNS[1:]}}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True).astype({"runs": int, "finished": int})


def measured_speed(results_dir: str | Path, measured_dirs: list[str | Path]) -> tuple[float, int]:
    """(median over the reruns in ``measured_dirs`` of rerun wall time / committed wall time of the
    same run id, number of such reruns); (NaN, 0) when no rerun matches a committed run."""
    committed = finished_run_times(results_dir).set_index("run_id")["wall_time_s"]
    reruns = pd.concat([finished_run_times(folder) for folder in measured_dirs], ignore_index=True)
    reruns = reruns[reruns["run_id"].isin(committed.index)]
    if reruns.empty:
        return float("nan"), 0
    ratios = reruns["wall_time_s"].to_numpy() / committed.loc[reruns["run_id"]].to_numpy()
    return float(pd.Series(ratios).median()), len(ratios)


def _estimate_run_seconds(times: pd.DataFrame, run: PlannedRun) -> float:
    model = run.config.model
    same_size = times[times["size"] == model_size(model.hidden_dim, run.config.data.image_size)]
    return estimate_seconds(same_size, model.base, run.config.train.epochs, (model.enc_layers, model.dec_layers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", default="results")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--tables", nargs="+", default=None, metavar="TABLE",
                        help="these tables only (default: every table), e.g. the ladder's: scale scale_bases")
    parser.add_argument("--cores", type=int, default=2, help="runs in parallel, for the wall-clock lines")
    parser.add_argument("--measured", action="append", default=[], metavar="DIR",
                        help="a results folder of reruns of committed runs (repeatable): scale the study by "
                             "their wall times")
    args = parser.parse_args(argv)
    table = budget_table(args.results_dir, args.profile, args.tables)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    total = table.iloc[-1]
    if pd.isna(total.hours_left_estimate):
        print(f"one-core hours: {total.hours_spent:.2f} spent ({total.hours_spent / args.cores:.2f} h on {args.cores} "
              "cores); what is left cannot be estimated before a run of each model size has finished")
    else:
        print(f"one-core hours: {total.hours_spent:.2f} spent, about {total.hours_left_estimate:.2f} left; "
              f"on {args.cores} cores: {total.hours_spent / args.cores:.2f} h spent, "
              f"about {total.hours_left_estimate / args.cores:.2f} h left")
    if args.measured:
        ratio, count = measured_speed(args.results_dir, args.measured)
        if count == 0:
            print(f"no run in {', '.join(args.measured)} is a rerun of a committed run: nothing to scale by")
            return 0
        whole = (total.hours_spent + total.hours_left_estimate) * ratio
        print(f"{count} rerun(s) took {ratio:.2f}x the committed wall time (median): the whole study at that speed "
              f"is about {whole:.1f} one-core hours, {whole / args.cores:.1f} h on {args.cores} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
