"""``python -m assignlab study``: list the tables, run one, or show the state of its runs.

    python -m assignlab study list
    python -m assignlab study run --table deta_table1 --profile smoke --workers 2
    python -m assignlab study run --table deta_table6 --table deta_table5 --workers 1   # in turn
    python -m assignlab study run --table deta_table1 --profile paper --executor slurm --slurm-config slurm.yaml
    python -m assignlab study status --table deta_table5 --profile cpu
    python -m assignlab study aggregate --table deta_table1 --profile cpu   # tables only, no training
    python -m assignlab study verify --table deta_table1 --rows all --seeds 0 --save   # rerun, compare
"""
from __future__ import annotations

import argparse
import sys

PROFILE_HELP = "smoke, cpu, paper, or the scale ladder's larger rungs cpu-m and cpu-l (tables scale, scale_bases)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="the tables, their rows and runs per profile")
    for name, help_text in (("run", "train the missing runs of a table, then write its table and figure"),
                            ("status", "each run of a table: finished / damaged / running / failed / interrupted / "
                                       "missing"),
                            ("aggregate", "write a table and figure from the result files there are (trains "
                                          "nothing; a damaged result file is an error naming it)")):
        action = sub.add_parser(name, help=help_text)
        action.add_argument("--table", required=True, action="append", dest="tables", metavar="TABLE",
                            help="table name (see `study list`); repeat it for several tables, taken in turn "
                                 "(one whose last runs another runner trains comes back after the others)")
        action.add_argument("--profile", default="cpu", help=PROFILE_HELP)
        action.add_argument("--seeds", default=None, help="comma-separated seeds (default: the spec's)")
        action.add_argument("--results-dir", default="results")
        action.add_argument("--cache-dir", default=None, help="training folders (default: work-cache/runs)")
        action.add_argument("--data-root", default=None, help="replaces data.root of every run")
        action.add_argument("--base", default=None, help="model.base to run the table on, where it allows "
                                                         "another (default: the table's own)")
        action.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                            help="a claim without heartbeat for this long is stale (default: "
                                 "$ASSIGNLAB_STALE_CLAIM_S or 600)")
        if name == "run":
            action.add_argument("--workers", type=int, default=2, help="parallel runs (executor local)")
            action.add_argument("--threads", type=int, default=None, help="torch threads per worker")
            action.add_argument("--executor", default="local", choices=("local", "slurm"),
                                help="local worker processes, or one Slurm job per run (submitit)")
            action.add_argument("--slurm-config", default=None, metavar="FILE",
                                help="JSON/YAML slurm settings (default: $ASSIGNLAB_SLURM_CONFIG and "
                                     "ASSIGNLAB_SLURM_* variables; see the README, 'Running the study on a Slurm cluster')")
            action.add_argument("--device", default="cpu")
    verify = sub.add_parser("verify", help="retrain committed runs of a table in a scratch folder and compare "
                                           "them with the committed results (tolerance: 2 SD of the row's seeds; "
                                           "exit status 1 when a run is outside it)")
    verify.add_argument("--table", required=True, help="table name (see `study list`)")
    verify.add_argument("--rows", default="all", help="all, first, a row label, or labels separated by ';' "
                                                    "(default: all)")
    verify.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    verify.add_argument("--profile", default="cpu", help=PROFILE_HELP)
    verify.add_argument("--workers", type=int, default=2, help="parallel runs")
    verify.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    verify.add_argument("--results-dir", default="results", help="the committed results")
    verify.add_argument("--scratch", default=None, help="where the reruns go (default: work-cache/verify/<table>)")
    verify.add_argument("--save", action="store_true", help="write results/verify/<table>-<machine>.csv")


def run(args: argparse.Namespace) -> int:
    from assignlab.study.run.plan import plan_runs
    from assignlab.study.tables.catalogue import TABLES
    from assignlab.study.tables.profiles import PROFILES

    if args.action == "list":
        width = max(len(name) for name in TABLES)
        for spec in TABLES.values():
            counts = ", ".join(f"{p}: {len(plan_runs(spec, p))}" for p in PROFILES)
            print(f"{spec.name:{width}s} {len(spec.rows):2d} rows, runs ({counts})  {spec.title}")
        unique = ", ".join(f"{p}: {len({r.run_id for spec in TABLES.values() for r in plan_runs(spec, p)})}"
                           for p in PROFILES)
        print(f"distinct runs over all tables ({unique})")
        return 0
    names = [args.table] if args.action == "verify" else args.tables
    unknown = [name for name in names if name not in TABLES]
    if unknown:  # before any training
        print(f"error: unknown table(s) {', '.join(unknown)} (see `python -m assignlab study list`)", file=sys.stderr)
        return 2
    if args.action == "verify":
        return verify(args)
    if args.action == "status":
        for table in args.tables:
            print_status(table, args)
        return 0
    if args.action == "aggregate":
        from assignlab.study.report.aggregate import aggregate_table
        from assignlab.study.tables.catalogue import get_table

        for table in args.tables:
            result = aggregate_table(get_table(table).on_base(args.base), args.profile, args.seeds,
                                     args.results_dir, args.data_root)
            print(result.files["markdown"].read_text(), flush=True)
        return 0
    from assignlab.study.report.table import reproduce_tables

    failed = []
    results = reproduce_tables(args.tables, profile=args.profile, seeds=args.seeds, results_dir=args.results_dir,
                               data_root=args.data_root, base=args.base, workers=args.workers,
                               executor=args.executor, device=args.device, cache_dir=args.cache_dir,
                               threads_per_worker=args.threads, slurm=args.slurm_config,
                               stale_after_s=args.stale_after)
    for result in results:
        print(result.files["markdown"].read_text(), flush=True)
        if result.report is not None and result.report.failed:
            failed.append(result.spec.name)
    if failed:
        print(f"tables with failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def verify(args: argparse.Namespace) -> int:
    """``study verify``: 0 when no rerun is outside its tolerance (a row without two committed seeds
    has none and does not count against it), 1 otherwise."""
    from assignlab.study.report.verification import print_report
    from assignlab.study.verify import verify_table

    comparison, saved = verify_table(args.table, rows=args.rows, seeds=args.seeds, profile=args.profile,
                                     workers=args.workers, threads_per_worker=args.threads,
                                     results_dir=args.results_dir, scratch=args.scratch, save=args.save)
    print_report(comparison, saved)
    return 1 if (comparison["verdict"] == "outside").any() else 0


def print_status(table: str, args: argparse.Namespace) -> None:
    """Each run of ``table``: its state, id, seed, rows and detail; then the count per state."""
    from assignlab.study.run.status import table_status

    states = table_status(table, args.profile, args.seeds, args.results_dir, args.cache_dir, args.data_root,
                          args.stale_after, args.base)
    if len(args.tables) > 1:
        print(f"== {table}")
    for item in states:
        print(f"{item['state']:11s} {item['run_id']}  seed {item['seed']}  {item['rows']}  {item['detail']}")
    counts: dict[str, int] = {}
    for item in states:
        counts[item["state"]] = counts.get(item["state"], 0) + 1
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
