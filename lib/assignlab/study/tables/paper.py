"""The papers' printed tables (``paper_tables/*.csv``, shipped as package data) and the lookup of
one row's number."""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import pandas as pd

from assignlab.study.tables.spec import PaperRef


def available_tables() -> list[str]:
    """Stems of the paper CSVs, e.g. ``["align_table2", ..., "deta_table8"]``."""
    folder = resources.files(__package__) / "paper_tables"
    return sorted(entry.name[:-4] for entry in folder.iterdir() if entry.name.endswith(".csv"))


@lru_cache(maxsize=None)
def _read(stem: str) -> pd.DataFrame:
    path = resources.files(__package__) / "paper_tables" / f"{stem}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no paper table {stem!r} (available: {', '.join(available_tables())})")
    with path.open() as f:
        return pd.read_csv(f, comment="#", dtype=str, skipinitialspace=True)


def load_paper_table(stem: str) -> pd.DataFrame:
    """The paper's table as printed (all columns as strings; numbers with :func:`paper_value`)."""
    return _read(stem).copy()


def _same(a: str, b: str) -> bool:
    a, b = "".join(str(a).split()), "".join(str(b).split())
    try:
        return math.isclose(float(a), float(b)) or (math.isinf(float(a)) and float(a) == float(b))
    except ValueError:
        return a == b


def paper_value(stem: str, ref: PaperRef) -> float:
    """The number of the one row of ``stem`` matching ``ref``; ValueError naming the file otherwise."""
    table = _read(stem)
    for column in (*ref.match, ref.column):
        if column not in table.columns:
            raise ValueError(f"paper table {stem}.csv has no column {column!r} (columns: {list(table.columns)})")
    hits = table[[all(_same(row[k], v) for k, v in ref.match.items()) for _, row in table.iterrows()]]
    if len(hits) != 1:
        raise ValueError(f"paper table {stem}.csv: {len(hits)} rows match {dict(ref.match)} (expected 1)")
    return float(hits.iloc[0][ref.column])
