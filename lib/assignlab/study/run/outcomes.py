"""What a table's run ended with: one outcome per run, and the report of the table."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from assignlab.study.run.plan import PlannedRun


@dataclass
class RunOutcome:
    run: PlannedRun
    state: str                       # "finished" (already there), "reused" (also: trained by another
                                     # runner meanwhile), "trained", "failed"
    result_file: Path | None = None
    log_file: Path | None = None
    error: str | None = None


@dataclass
class TableRunReport:
    table: str
    profile: str
    outcomes: list[RunOutcome] = field(default_factory=list)
    wall_time_s: float = 0.0
    deferred: list[PlannedRun] = field(default_factory=list)  # held by another runner, not waited for

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for outcome in self.outcomes:
            out[outcome.state] = out.get(outcome.state, 0) + 1
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts().items()))
        lines = [f"{self.table} ({self.profile}): {len(self.outcomes)} runs: {counts} in {self.wall_time_s:.0f} s"]
        if self.deferred:
            lines.append(f"  {len(self.deferred)} run(s) still being trained by another runner")
        lines += [f"  FAILED {o.run.run_id} ({', '.join(o.run.rows)}, seed {o.run.seed}): {o.error}; log: {o.log_file}"
                  for o in self.failed]
        return "\n".join(lines)
