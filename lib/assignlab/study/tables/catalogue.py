"""Every table of the study by name: the papers' tables, then the tables beyond the papers and the
scale ladder's (built from the paper tables' rows). The order of ``TABLES`` is the order of ``study list``, of the
results index and of the compute budget (a run shared by tables is charged to the first)."""
from __future__ import annotations

from assignlab.study.tables.align_tables import (
    align_table2,
    align_table3,
    align_table4,
    align_table5,
    align_table6,
    align_table7,
    align_table8,
    align_tableB,
)
from assignlab.study.tables.beyond import beyond_tables
from assignlab.study.tables.deta_tables import (
    deta_table1,
    deta_table1_detr,
    deta_table5,
    deta_table6,
    deta_table7,
    deta_table8,
)
from assignlab.study.tables.scale import scale_bases_table, scale_table
from assignlab.study.tables.spec import TableSpec


def _all_tables() -> tuple[TableSpec, ...]:
    """The paper tables, then the tables beyond the papers and the scale ladder's (built from the
    paper tables' rows)."""
    paper_tables = (
        deta_table1(), deta_table5(), deta_table6(), deta_table7(), deta_table8(),
        align_table4(), align_table5(), align_table6(), align_table8(), align_tableB(),
        deta_table1_detr(), align_table2(), align_table3(), align_table7(),
    )
    by_name = {spec.name: spec for spec in paper_tables}
    return paper_tables + beyond_tables(by_name) + (scale_table(by_name), scale_bases_table(by_name))


TABLES: dict[str, TableSpec] = {spec.name: spec for spec in _all_tables()}


def get_table(name: str | TableSpec) -> TableSpec:
    """The spec named ``name`` (a ``TableSpec`` is returned as is)."""
    if isinstance(name, TableSpec):
        return name
    if name not in TABLES:
        raise KeyError(f"unknown study table {name!r} (available: {', '.join(TABLES)})")
    return TABLES[name]
