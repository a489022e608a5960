"""A table's runs at a profile: one per distinct (config, seed), with the rows it serves."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assignlab.config import Config
from assignlab.study.tables.catalogue import get_table
from assignlab.study.tables.spec import TableSpec


@dataclass(frozen=True)
class PlannedRun:
    """One (config, seed) of a table, with the rows it serves (several rows may share a run)."""

    table: str
    rows: tuple[str, ...]
    config: Config
    seed: int

    @property
    def run_id(self) -> str:
        return run_id(self.config, self.seed)


def run_id(config: Config, seed: int) -> str:
    return f"{config.stable_hash()}-s{seed}"


def parse_seeds(seeds: Any) -> tuple[int, ...] | None:
    """None, an int, a sequence of ints or a string like ``"0,1,2"`` -> tuple of ints (or None)."""
    if seeds is None:
        return None
    if isinstance(seeds, str):
        seeds = [s for s in seeds.replace("[", "").replace("]", "").split(",") if s.strip()]
    elif isinstance(seeds, int):
        seeds = [seeds]
    try:
        parsed = tuple(int(s) for s in seeds)
    except (TypeError, ValueError):
        raise ValueError(f"seeds must be integers, got {seeds!r}") from None
    if not parsed:
        raise ValueError("seeds is empty")
    return parsed


def plan_runs(table: str | TableSpec, profile: str, seeds: Any = None, data_root: str | None = None,
              base: str | None = None) -> list[PlannedRun]:
    """The table's runs at ``profile``: one per distinct (config, seed), in row order. ``base``
    (None: the table's own) runs the table on another base detector (``TableSpec.on_base``)."""
    spec = get_table(table).on_base(base)
    chosen = parse_seeds(seeds) or spec.seeds(profile)
    by_id: dict[str, PlannedRun] = {}
    for row, config in spec.row_configs(profile, data_root):
        for seed in chosen:
            planned = PlannedRun(spec.name, (row.label,), config, seed)
            if planned.run_id in by_id:
                earlier = by_id[planned.run_id]
                planned = PlannedRun(spec.name, earlier.rows + (row.label,), config, seed)
            by_id[planned.run_id] = planned
    return list(by_id.values())
