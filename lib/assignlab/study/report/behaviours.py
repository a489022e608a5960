"""How often the papers' released-code behaviours fire in training, read from the runs' curves.

Each epoch of a run's curve holds, per output (``enc``, ``dec0``, ``dec1``, ...),
``train_stat_<behaviour>_images_<output>`` (the epoch's mean fraction of a batch's images where
the behaviour fired) and ``train_stat_<behaviour>_steps_<output>`` (the fraction of the epoch's
steps where it fired for some image of the batch). Behaviours:

- ``shared``: DETA's released top-K gave one prediction to two objects (``assign.topk_behaviour``);
- ``carried_cap``: Align-DETR's released k cap was lowered by an earlier image of the batch
  (``assign.k_cap``);
- ``zero_iou``: an object had zero IoU with every reference box of DETA's IoU assignment. The
  released matcher (detectron2's) would then make every box a low-quality positive; ours adds none
  for that object, so this rate bounds how often the two can differ.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from assignlab.paths import in_project
from assignlab.study.report.evidence import finished_records
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.spec import TableSpec

BEHAVIOURS = {"shared": "A prediction given to two objects by DETA's released top-K",
              "carried_cap": "An image's k lowered by an earlier image of the batch (Align-DETR's released k cap)",
              "zero_iou": "An object with zero IoU to every reference box of DETA's IoU assignment"}
TABLE_BEHAVIOURS = {"released_topk": "shared", "released_kcap": "carried_cap"}
# measured beside a table's own behaviour (the guard is the same in both rows of the table)
COMPANION_BEHAVIOURS = {"released_topk": ("zero_iou",)}
RATE_COLUMNS = ("images_mean", "images_last", "steps_mean", "steps_last")


def _check_behaviour(behaviour: str) -> None:
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r} (available: {', '.join(BEHAVIOURS)})")


def output_order(output: str) -> tuple[int, int, str]:
    """Sort key: ``enc`` first, then ``dec0``, ``dec1``, ... by number, then any other name."""
    if output == "enc":
        return (0, 0, output)
    match = re.fullmatch(r"dec(\d+)", output)
    return (1, int(match.group(1)), output) if match else (2, 0, output)


def behaviour_outputs(curve: Sequence[Mapping[str, Any]], behaviour: str) -> list[str]:
    """The outputs that report ``behaviour`` in some epoch of ``curve``, in :func:`output_order`."""
    _check_behaviour(behaviour)
    prefixes = [f"train_stat_{behaviour}_{unit}_" for unit in ("images", "steps")]
    outputs = {key[len(prefix):] for point in curve for key in point for prefix in prefixes if key.startswith(prefix)}
    return sorted(outputs, key=output_order)


def _epoch_values(curve: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(point.get(key, math.nan)) for point in curve], dtype=float)


def behaviour_rates(curve: Sequence[Mapping[str, Any]], behaviour: str) -> pd.DataFrame:
    """One line per output of a run's ``curve``: output and the fraction of images and of steps
    where ``behaviour`` fired, as the mean over the epochs that report it (``*_mean``) and at the
    last epoch (``*_last``); NaN where no epoch (or not the last) reports it."""
    lines = []
    for output in behaviour_outputs(curve, behaviour):
        line: dict[str, Any] = {"output": output}
        for unit in ("images", "steps"):
            values = _epoch_values(curve, f"train_stat_{behaviour}_{unit}_{output}")
            reported = values[~np.isnan(values)]
            line[f"{unit}_mean"] = float(reported.mean()) if len(reported) else math.nan
            line[f"{unit}_last"] = float(values[-1])
        lines.append(line)
    return pd.DataFrame(lines, columns=["output", *RATE_COLUMNS])


def collect_behaviour_rates(table: str | TableSpec, profile: str, behaviour: str | None = None, seeds: Any = None,
                            results_dir: str | Path = "results", data_root: str | None = None,
                            base: str | None = None) -> pd.DataFrame:
    """One line per (row, seed, output) of the table's finished runs (on ``base``): row, seed,
    run_id, output and :data:`RATE_COLUMNS`. ``behaviour`` None: the table's (``TABLE_BEHAVIOURS``)."""
    name = table if isinstance(table, str) else table.name
    behaviour = behaviour or TABLE_BEHAVIOURS.get(name)
    if behaviour is None:
        raise ValueError(f"table {name!r} has no behaviour of its own; pass one of {', '.join(BEHAVIOURS)}")
    frames = []
    for run, record in finished_records(table, profile, seeds, results_dir, data_root, base):
        rates = behaviour_rates(record.get("curve", []), behaviour)
        for row in run.rows:
            frames.append(rates.assign(row=row, seed=run.seed, run_id=run.run_id))
    columns = ["row", "seed", "run_id", "output", *RATE_COLUMNS]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def summarize_behaviour_rates(rates: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (row, output) of :data:`RATE_COLUMNS`, with n_seeds; rows in their
    order of appearance, outputs in :func:`output_order`."""
    if rates.empty:
        return pd.DataFrame(columns=["row", "output", *RATE_COLUMNS, "n_seeds"])
    grouped = rates.groupby(["row", "output"], sort=False)
    summary = grouped[list(RATE_COLUMNS)].mean().join(grouped["seed"].nunique().rename("n_seeds")).reset_index()
    row_rank = {row: i for i, row in enumerate(dict.fromkeys(rates["row"]))}
    order = sorted(range(len(summary)), key=lambda i: (row_rank[summary["row"][i]], output_order(summary["output"][i])))
    return summary.iloc[order].reset_index(drop=True)


def behaviour_table(table: str | TableSpec, profile: str, seeds: Any = None, results_dir: str | Path = "results",
                    data_root: str | None = None, base: str | None = None,
                    behaviour: str | None = None) -> pd.DataFrame:
    """The table's behaviour rates (:func:`summarize_behaviour_rates` of ``behaviour``, None: its
    own), also written to ``results/tables/<table>_behaviour.csv`` (``<table>_on_<base>_...`` on
    another base; ``..._behaviour_<behaviour>.csv`` for a behaviour other than the table's own)."""
    spec = get_table(table)
    summary = summarize_behaviour_rates(collect_behaviour_rates(spec, profile, behaviour, seeds, results_dir,
                                                                data_root, base))
    own = behaviour is None or behaviour == TABLE_BEHAVIOURS.get(spec.name)
    suffix = "" if own else f"_{behaviour}"
    path = in_project(results_dir) / "tables" / f"{spec.on_base(base).name}_behaviour{suffix}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(path, index=False, float_format="%.4f")
    return summary
