"""The study: the table catalogue (:mod:`~assignlab.study.tables`), running its tables with cached
runs (:mod:`~assignlab.study.run`), and aggregation with intervals and verdicts
(:mod:`~assignlab.study.report`).

    from assignlab import study
    result = study.reproduce_table("deta_table1", profile="smoke")
    result.styled(); result.claims
"""
from assignlab.study.report.aggregate import TableResult, aggregate_table, collect_results
from assignlab.study.report.table import reproduce_table
from assignlab.study.run.plan import plan_runs
from assignlab.study.run.runner import run_table
from assignlab.study.run.status import table_status
from assignlab.study.tables.catalogue import TABLES, get_table
from assignlab.study.tables.profiles import PROFILES
from assignlab.study.tables.spec import Hypothesis, RowSpec, TableSpec

__all__ = ["PROFILES", "TABLES", "Hypothesis", "RowSpec", "TableResult", "TableSpec", "aggregate_table",
           "collect_results", "get_table", "plan_runs", "reproduce_table", "run_table", "table_status"]
