"""Running a table: plan its runs, reuse finished ones, train the rest in parallel worker processes
or as Slurm jobs.

- :mod:`~assignlab.study.run.plan`: a table's runs at a profile (one per distinct config and seed);
- :mod:`~assignlab.study.run.store`: where runs live (:class:`~assignlab.study.run.store.StudyPaths`)
  and their result files (read, checked, moved aside when damaged, written, reused);
- :mod:`~assignlab.study.run.runner`: :func:`~assignlab.study.run.runner.run_table`;
- :mod:`~assignlab.study.run.pool`: training in local worker processes;
- :mod:`~assignlab.study.run.executors`: the task that claims and trains one run, and Slurm jobs
  through submitit;
- :mod:`~assignlab.study.run.locks`: the claim file that makes one owner train a run;
- :mod:`~assignlab.study.run.owners`: runs that another runner trains (wait for them, or defer);
- :mod:`~assignlab.study.run.outcomes`: what became of each run of a table (the report);
- :mod:`~assignlab.study.run.status`: the state of each run of a table (``study status``).

A run id is ``<config hash>-s<seed>``: the same config and seed in two tables is one run,
trained once; the second table copies the first table's result file. A run killed midway resumes
from its last checkpoint (``train_run`` does that from its folder); a run that raises is reported
with its log path and the others go on.

Executors: "local" trains in worker processes here; "slurm" submits one submitit job per run.
Many runners may share one results store: each run is trained by whoever claims its folder first;
the others wait for it and copy its result.

Workers are spawned processes: a script that calls ``run_table`` must guard its top level with
``if __name__ == "__main__":`` (notebooks and ``python -m assignlab study`` need nothing).
"""
