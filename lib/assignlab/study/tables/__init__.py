"""The table catalogue: which runs make which table, their seeds and the hypotheses they test.

- :mod:`~assignlab.study.tables.overrides`: the override language of a row (values derived from
  the base config, per profile, at one profile only) and the order it is resolved in;
- :mod:`~assignlab.study.tables.profiles`: the study's sizes (``smoke``, ``cpu``, ``paper``) and seeds;
- :mod:`~assignlab.study.tables.spec`: what a table is (rows, hypotheses, paper references);
- :mod:`~assignlab.study.tables.methods`: each method's overrides, written out in full;
- :mod:`~assignlab.study.tables.deta_tables`, :mod:`~assignlab.study.tables.align_tables`: the
  papers' tables; :mod:`~assignlab.study.tables.beyond`: the tables beyond the papers;
- :mod:`~assignlab.study.tables.catalogue`: every table by name (``TABLES``, ``get_table``);
- :mod:`~assignlab.study.tables.paper`: the papers' printed numbers (``paper_tables/*.csv``).
"""
