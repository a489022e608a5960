"""Reporting on the study's runs: what a table notebook shows and the files under ``results/``.

- :mod:`~assignlab.study.report.table`: ``reproduce_table`` (run what is missing, then aggregate);
- :mod:`~assignlab.study.report.aggregate`: a table's rows and claims beside the paper's numbers;
  :mod:`~assignlab.study.report.stats`: intervals, p-values, Holm's correction and verdicts;
- :mod:`~assignlab.study.report.evidence`, :mod:`~assignlab.study.report.growth`,
  :mod:`~assignlab.study.report.behaviours`: the alignment diagnostics, the schedule trends and the
  released behaviours' rates of the tables beyond the papers;
- :mod:`~assignlab.study.report.inspect` (DETA Figure 3, Align-DETR Figures 1 and 4),
  :mod:`~assignlab.study.report.runtime` (DETA Table 2) and :mod:`~assignlab.study.report.sizing`
  (how the cpu profile was sized), which build on :mod:`assignlab.analysis`;
- :mod:`~assignlab.study.report.notebooks`: the generator of ``notebooks/``;
  :mod:`~assignlab.study.report.index`: ``results/README.md``.
"""
