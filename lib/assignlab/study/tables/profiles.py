"""The study's profiles: the size of every run (each base detector's preset at that size, see
:mod:`assignlab.presets`), extra overrides and the seeds of each table."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from assignlab.config import Config
from assignlab.presets import PRESET_NAMES, TWO_STAGE, preset, preset_name


@dataclass(frozen=True)
class Profile:
    """A study size: the presets of the base detectors at ``size`` (``assignlab.presets.SIZES``),
    extra overrides and the default seeds."""

    name: str
    size: str
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def preset(self) -> str:
        """The two-stage base's preset."""
        return self.preset_for(TWO_STAGE)

    def preset_for(self, base: str = TWO_STAGE) -> str:
        try:
            return preset_name(self.size, base)
        except KeyError:
            bases = [b for size, b in PRESET_NAMES if size == self.size]
            raise KeyError(f"profile {self.name!r} has no preset for model.base={base!r} "
                           f"(has: {', '.join(bases)})") from None

    def base_config(self, base: str = TWO_STAGE) -> Config:
        return preset(self.preset_for(base)).override(dict(self.overrides))


# The seeds of every table at each profile. Change them here (or per table in TABLE_SEEDS).
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "smoke", seeds=(0,)),
    "cpu": Profile("cpu", "cpu", seeds=(0, 1, 2)),
    "paper": Profile("paper", "paper", seeds=(0,)),
    # the larger rungs of the scale ladder (rung S is the cpu profile); run the ``scale`` tables
    "cpu-m": Profile("cpu-m", "cpu-m", seeds=(0, 1, 2)),
    "cpu-l": Profile("cpu-l", "cpu-l", seeds=(0, 1, 2)),
}

# (table name, profile name) -> seeds, where a table needs other seeds than its profile's.
# Five seeds give a 95% interval of about +-1 AP on a difference of two rows at the cpu profile
# (seed-to-seed SD of a paired difference 0.4-0.9 AP, results/README.md "Choosing the seeds");
# the budget allows them for the headline tables, three seeds (about +-1.7 AP) elsewhere.
TABLE_SEEDS: dict[tuple[str, str], tuple[int, ...]] = {
    **{(name, "cpu"): (0, 1, 2, 3, 4) for name in ("deta_table1", "deta_table8", "align_table5")},
    # the scale ladder's look at the bases that do not learn at the cpu profile: one seed a rung
    **{("scale_bases", profile): (0,) for profile in ("cpu", "cpu-m", "cpu-l")},
}


# The scale ladder: rung -> profile, smallest first. Rung S is the cpu profile; M and L train its data
# recipe and schedule with larger models (``assignlab.presets.LADDER_MODELS``), for the ``scale`` tables.
LADDER: dict[str, str] = {"S": "cpu", "M": "cpu-m", "L": "cpu-l"}


def table_file_stem(table: str, profile: str) -> str:
    """The name of ``table``'s files (``results/tables/<stem>.csv``, a saved verification ...) at
    ``profile``: the table's own, except at the ladder's larger rungs, whose files sit beside rung
    S's (the cpu profile's): ``<table>-<profile>``."""
    return f"{table}-{profile}" if profile != LADDER["S"] and profile in LADDER.values() else table


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise KeyError(f"unknown study profile {name!r} (available: {', '.join(PROFILES)})")
    return PROFILES[name]
