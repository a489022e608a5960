"""What a table is: a list of rows, the hypotheses it tests and where the paper's numbers are.

A row is a set of dotted config overrides (:mod:`~assignlab.study.tables.overrides`) applied to
the profile's preset of the table's base detector (``model.base``: DETA's two-stage
Deformable-DETR, DINO, DETR-DC5 or DAB-DETR), so the same row means the same thing at every
profile. A run is (resolved config, seed); rows of different tables that resolve to the same
config share their runs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from assignlab.config import BASES, Config
from assignlab.presets import TWO_STAGE
from assignlab.study.tables.overrides import resolve_overrides
from assignlab.study.tables.profiles import TABLE_SEEDS, get_profile


@dataclass(frozen=True)
class PaperRef:
    """Where a row's number is in the paper's table: the CSV row whose columns equal ``match``
    (compared as numbers where both parse), and the column holding the number. ``table``: the
    paper CSV's stem, where it is not the study table's own (a table of rows from several)."""

    match: Mapping[str, str]
    column: str = "AP"
    table: str | None = None


def paper_ref(column: str = "AP", **match: Any) -> PaperRef:
    """The :class:`PaperRef` of the CSV row whose columns equal ``match`` (values as text)."""
    return PaperRef({k: str(v) for k, v in match.items()}, column)


@dataclass(frozen=True)
class RowSpec:
    """A row: overrides of its base's preset. ``base`` None: the table's base; a name: that base
    whatever the table's (a row that compares base detectors)."""

    label: str
    overrides: Mapping[str, Any]
    paper: PaperRef | None = None
    note: str = ""
    base: str | None = None


@dataclass(frozen=True)
class PaperOnlyRow:
    """A row of the paper's table that the study does not train (shown with the paper's number)."""

    label: str
    paper: PaperRef
    note: str


@dataclass(frozen=True)
class Hypothesis:
    """A testable statement (a table's "claim"): sum_r weights[r] * metric(r) <direction> 0
    (``">"`` or ``"<"``); for ``"noninferior"`` (a "no harm" claim) sum > -margin; for
    ``"equivalent"`` |sum| < margin. Evaluated per seed (rows share seeds, so it is paired); the
    tests are in :mod:`assignlab.study.report.stats`.

    ``own``: the study's own claim, not a paper's (tables beyond the papers, a paper table's rows
    asked something the paper does not claim): its verdict reads holds / does not hold instead of
    reproduced / not reproduced. ``confounded_by``: what else differs between the claim's rows
    (shown with its verdict). Neither enters a run's config (runs are keyed by the rows' configs)."""

    statement: str
    weights: Mapping[str, float]
    direction: str
    margin: float = 0.0
    metric: str = "AP"
    own: bool = False
    confounded_by: str = ""

    def __post_init__(self) -> None:
        if self.direction not in (">", "<", "noninferior", "equivalent"):
            raise ValueError(f"claim {self.statement!r}: direction must be '>', '<', 'noninferior' or 'equivalent'")
        if self.direction in ("noninferior", "equivalent") and self.margin <= 0:
            raise ValueError(f"claim {self.statement!r}: a {self.direction} claim needs a margin > 0")


def difference(better: str, worse: str) -> dict[str, float]:
    """Weights of the contrast metric(better) - metric(worse)."""
    return {better: 1.0, worse: -1.0}


def difference_of_differences(a_high: str, a_low: str, b_high: str, b_low: str) -> dict[str, float]:
    """Weights of (a_high - a_low) - (b_high - b_low)."""
    return {a_high: 1.0, a_low: -1.0, b_high: -1.0, b_low: 1.0}


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    rows: tuple[RowSpec, ...]
    claims: tuple[Hypothesis, ...]
    paper_only: tuple[PaperOnlyRow, ...] = ()
    notes: str = ""
    paper_file: str | None = None        # paper CSV stem; defaults to ``name``
    base: str = TWO_STAGE                # ``model.base`` of the rows that do not name theirs
    other_bases: tuple[str, ...] = ()    # bases the table may also run on (see ``on_base``)

    def __post_init__(self) -> None:
        labels = [row.label for row in self.rows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"table {self.name}: duplicate row labels")
        for base in (self.base, *self.other_bases, *(row.base for row in self.rows if row.base)):
            if base not in BASES:
                raise ValueError(f"table {self.name}: unknown base {base!r} (available: {', '.join(BASES)})")
        for claim in self.claims:
            unknown = set(claim.weights) - set(labels)
            if unknown:
                raise ValueError(f"table {self.name}: claim {claim.statement!r} names unknown rows {sorted(unknown)}")

    @property
    def paper_stem(self) -> str:
        return self.paper_file or self.name

    def paper_stem_of(self, ref: PaperRef) -> str:
        """The paper CSV holding ``ref``'s number."""
        return ref.table or self.paper_stem

    def row(self, label: str) -> RowSpec:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"table {self.name} has no row {label!r}")

    def seeds(self, profile: str) -> tuple[int, ...]:
        return TABLE_SEEDS.get((self.name, profile), get_profile(profile).seeds)

    def on_base(self, base: str | None) -> "TableSpec":
        """The table run on ``base`` instead of its own: a copy named ``<name>_on_<base>`` (its own
        result files; its runs differ, the configs do), compared with the same paper rows; its claims
        are the study's own (the paper made them on its base). ``None`` or the table's base returns
        the table itself."""
        if base is None or base == self.base:
            return self
        if base not in self.other_bases:
            allowed = ", ".join((self.base, *self.other_bases))
            raise ValueError(f"table {self.name} runs on model.base in ({allowed}), not {base!r}")
        return replace(self, name=f"{self.name}_on_{base}", title=f"{self.title} [on the {base} base]",
                       paper_file=self.paper_stem, base=base, other_bases=(),
                       claims=tuple(replace(claim, own=True) for claim in self.claims))

    def row_configs(self, profile: str, data_root: str | None = None) -> list[tuple[RowSpec, Config]]:
        """Each row with its resolved config at ``profile`` (``data_root`` replaces ``data.root``)."""
        out = []
        for row in self.rows:
            try:
                base = get_profile(profile).base_config(row.base or self.base)
                if data_root is not None:
                    base = base.override({"data.root": str(data_root)})
                out.append((row, resolve_overrides(base, row.overrides, profile)))
            except (KeyError, ValueError) as err:
                raise ValueError(f"table {self.name}, row {row.label!r}: {err}") from None
        return out
