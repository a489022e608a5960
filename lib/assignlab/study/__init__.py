"""The study: table specs, cached parallel runs, aggregation with intervals and verdicts.

    from assignlab import study
    result = study.reproduce_table("deta_table1", profile="smoke")
    result.styled(); result.claims
"""
from assignlab.study.aggregate import TableResult, aggregate_table, collect_results
from assignlab.study.runner import plan_runs, run_table, table_status
from assignlab.study.specs import PROFILES, TABLES, Claim, RowSpec, TableSpec, get_table
from assignlab.study.table import reproduce_table

__all__ = ["PROFILES", "TABLES", "Claim", "RowSpec", "TableResult", "TableSpec", "aggregate_table",
           "collect_results", "get_table", "plan_runs", "reproduce_table", "run_table", "table_status"]
