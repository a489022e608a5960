"""The two verdicts on a claim, direction and size, in words: hand-built intervals against the
paper's value, claims against untrained rows, the study's own claims and confounds."""
import math

import pandas as pd
import pytest

from assignlab.study.report import aggregate
from assignlab.study.report.aggregate import verdict_colour
from assignlab.study.report.index import _verdict_lines
from assignlab.study.report.stats import (
    SIZE_CONSISTENT,
    SIZE_LARGER,
    SIZE_NA,
    SIZE_SMALLER,
    UNTRAINED,
    UNTRAINED_AP_FLOOR,
    Interval,
    size_verdict,
    verdict_reading,
    worded_verdict,
)
from assignlab.study.tables.catalogue import TABLES, get_table
from assignlab.study.tables.spec import Hypothesis, RowSpec, TableSpec, difference, paper_ref


def _interval(low, high, n=5):
    return Interval((low + high) / 2, (high - low) / 2, n)


# --------------------------------------------------------------------------- size verdicts
def test_size_inside_above_and_below_the_paper_value():
    # d > 0, paper +2.5: [+2, +3] contains it; [+7.26, +8.12] lies wholly above; [+0.5, +1.5] below
    assert size_verdict(_interval(2.0, 3.0), 2.5, ">") == (SIZE_CONSISTENT, pytest.approx(1.0))
    size, ratio = size_verdict(_interval(7.26, 8.12), 2.5, ">")
    assert size == SIZE_LARGER and ratio == pytest.approx(7.69 / 2.5)
    size, ratio = size_verdict(_interval(0.5, 1.5), 2.5, ">")
    assert size == SIZE_SMALLER and ratio == pytest.approx(0.4)
    # beyond zero is smaller too, with a negative ratio
    size, ratio = size_verdict(_interval(-3.0, -1.0), 2.5, ">")
    assert size == SIZE_SMALLER and ratio == pytest.approx(-0.8)
    # the paper's value on an interval's edge is inside
    assert size_verdict(_interval(2.5, 3.5), 2.5, ">")[0] == SIZE_CONSISTENT


def test_size_of_a_claim_that_d_is_negative():
    # d < 0, paper -12.4 (a larger fall): larger means more negative than the paper's value
    assert size_verdict(_interval(-14.0, -11.0), -12.4, "<")[0] == SIZE_CONSISTENT
    size, ratio = size_verdict(_interval(-31.7, -30.0), -12.4, "<")
    assert size == SIZE_LARGER and ratio == pytest.approx(30.85 / 12.4)
    size, ratio = size_verdict(_interval(-8.0, -2.0), -12.4, "<")
    assert size == SIZE_SMALLER and ratio == pytest.approx(5 / 12.4)
    assert size_verdict(_interval(1.0, 2.0), -12.4, "<")[0] == SIZE_SMALLER  # the other sign: beyond zero


def test_size_of_an_equivalence_claim_is_relative_to_the_papers_side():
    # paper -0.5: larger means further below it (away from zero), smaller towards zero or beyond
    assert size_verdict(_interval(-6.69, -4.56), -0.5, "equivalent")[0] == SIZE_LARGER
    assert size_verdict(_interval(-0.3, 0.4), -0.5, "equivalent")[0] == SIZE_SMALLER
    assert size_verdict(_interval(-1.0, 0.4), -0.5, "equivalent")[0] == SIZE_CONSISTENT
    # paper 0: any interval excluding it is larger, and there is no ratio
    size, ratio = size_verdict(_interval(0.1, 0.4), 0.0, "equivalent")
    assert size == SIZE_LARGER and math.isnan(ratio)
    assert size_verdict(_interval(-0.4, -0.1), 0.0, "equivalent")[0] == SIZE_LARGER


def test_no_paper_value_or_no_interval_gives_no_size():
    for interval, paper in ((_interval(1.0, 2.0), math.nan), (Interval(1.5, math.nan, 1), 1.0),
                            (Interval(math.nan, math.nan, 0), 1.0)):
        size, ratio = size_verdict(interval, paper, ">")
        assert size == SIZE_NA and math.isnan(ratio)


# ----------------------------------------------------------------------------- wording
def test_worded_direction_verdicts():
    assert worded_verdict("reproduced") == "reproduced"
    assert worded_verdict("reproduced", own=True) == "holds"
    assert worded_verdict("not reproduced", own=True) == "does not hold"
    assert worded_verdict("inconclusive", own=True) == "inconclusive"
    assert worded_verdict("reproduced", untrained_rows=1) == "reproduced, against an untrained row"
    assert worded_verdict("reproduced", own=True, untrained_rows=1) == \
        "holds, against an untrained row"
    assert worded_verdict("not reproduced", untrained_rows=2) == "not reproduced, against 2 untrained rows"
    assert worded_verdict(UNTRAINED, untrained_rows=2) == UNTRAINED
    assert worded_verdict("inconclusive (1 seed)", own=True, untrained_rows=1) == "inconclusive (1 seed)"


def test_readings_put_both_verdicts_in_one_sentence():
    larger = _interval(7.26, 8.12)
    assert verdict_reading("reproduced", *size_verdict(larger, 2.5, ">"), larger, 2.5) == \
        "direction reproduced; 3.1x the paper's size (paper +2.5 outside [+7.26, +8.12])"
    inside = _interval(2.0, 3.0)
    assert verdict_reading("reproduced", *size_verdict(inside, 2.5, ">"), inside, 2.5) == \
        "direction reproduced; size consistent (paper +2.5 inside [+2.00, +3.00])"
    smaller = _interval(-0.38, 1.11)
    assert verdict_reading("inconclusive", *size_verdict(smaller, 1.5, ">"), smaller, 1.5) == \
        "inconclusive; the interval [-0.38, +1.11] excludes the paper's +1.5 (smaller than the paper's)"
    wide = _interval(-2.0, 3.0)
    assert verdict_reading("inconclusive", *size_verdict(wide, 1.5, ">"), wide, 1.5) == \
        "inconclusive; the interval [-2.00, +3.00] includes the paper's +1.5"
    opposite = _interval(-5.38, 1.50 - 3.0)
    assert verdict_reading("not reproduced", *size_verdict(opposite, 2.6, ">"), opposite, 2.6) == \
        "direction not reproduced; smaller than the paper's, opposite sign (paper +2.6 outside [-5.38, -1.50])"
    # no paper value: a paper's claim says so, the study's own claim needs no size
    assert verdict_reading("reproduced", SIZE_NA, math.nan, inside, math.nan) == \
        "direction reproduced; size n/a (no paper value)"
    assert verdict_reading("holds", SIZE_NA, math.nan, inside, math.nan, own=True) == "holds"
    assert verdict_reading(UNTRAINED, SIZE_NA, math.nan, inside, 2.5) == UNTRAINED
    assert verdict_reading("inconclusive (1 seed)", SIZE_NA, math.nan, Interval(1.0, math.nan, 1), 2.5) == \
        "inconclusive (1 seed)"
    assert verdict_reading("reproduced", SIZE_NA, math.nan, inside, math.nan, confounded_by="the bases differ") \
        == "direction reproduced; size n/a (no paper value); confounded: the bases differ"


def test_verdict_colours():
    green, red = "background-color: #c8e6c9", "background-color: #ffcdd2"
    for text in ("reproduced", "holds", "direction reproduced; 3.1x the paper's size (paper +2.5 outside [+7.26, +8.12])"):
        assert verdict_colour(text) == green
    for text in ("not reproduced", "does not hold", "direction not reproduced; smaller than the paper's"):
        assert verdict_colour(text) == red
    assert verdict_colour("reproduced, against an untrained row") not in ("", green, red)
    assert verdict_colour("holds, against 2 untrained rows") not in ("", green, red)
    assert verdict_colour(UNTRAINED) not in ("", green, red)
    assert verdict_colour("inconclusive; the interval [-0.38, +1.11] excludes the paper's +1.5") == ""
    assert verdict_colour(math.nan) == ""


# ------------------------------------------------------------------------- in the tables
PAPER = {"A": 12.5, "B": 10.0, "L": 3.0}
ROWS = {"A": [17.0, 18.0, 19.0], "B": [10.0, 10.0, 10.0],          # A - B: 8 +- 2.48, paper +2.5
        "L": [2.0, 2.5, 3.0]}                                        # L: below the floor


def _evaluate(monkeypatch, *claims, rows=ROWS, with_paper=True):
    monkeypatch.setattr(aggregate, "paper_value", lambda stem, ref: PAPER[ref.match["row"]])
    spec = TableSpec("verdicts", "verdicts", claims=claims,
                     rows=tuple(RowSpec(r, {}, paper_ref(row=r) if with_paper else None) for r in rows))
    results = pd.DataFrame([{"row": r, "seed": s, "run_id": f"{r}-{s}", "AP": v[s]}
                            for r, v in rows.items() for s in range(3)])
    return aggregate.evaluate_claims(spec, results).set_index("claim")


def test_claims_get_both_verdicts_and_keep_the_plain_one(monkeypatch):
    claims = _evaluate(monkeypatch, Hypothesis("A beats B", difference("A", "B"), ">"),
                       Hypothesis("A beats B (ours)", difference("A", "B"), ">", own=True),
                       Hypothesis("A beats L", difference("A", "L"), ">"))
    assert list(claims.reset_index().columns[:12]) == ["claim", "contrast", "test", "mean", "ci95", "low", "high",
                                                       "n_seeds", "paper", "p", "p_holm", "verdict"]
    paper = claims.loc["A beats B"]
    assert paper["verdict"] == "reproduced" and paper["direction_verdict"] == "reproduced"
    assert paper["size_verdict"] == SIZE_LARGER and paper["size_ratio"] == pytest.approx(8 / 2.5)
    assert paper["reading"].startswith("direction reproduced; 3.2x the paper's size (paper +2.5 outside [")
    own = claims.loc["A beats B (ours)"]
    assert own["verdict"] == "reproduced" and own["direction_verdict"] == "holds" and bool(own["own_claim"])
    assert own["reading"].startswith("holds; 3.2x the paper's size")
    # one row below the floor: the same verdict, qualified
    floor = claims.loc["A beats L"]
    assert PAPER["L"] < UNTRAINED_AP_FLOOR and floor["untrained_rows"] == 1
    assert floor["verdict"] == "reproduced" and floor["direction_verdict"] == "reproduced, against an untrained row"
    assert floor["reading"].startswith("direction reproduced, against an untrained row; ")


def test_all_rows_untrained_stay_uninformative_without_a_size(monkeypatch):
    low = {"A": [a - 15.0 for a in ROWS["A"]], "B": [b - 9.0 for b in ROWS["B"]]}
    claim = _evaluate(monkeypatch, Hypothesis("A beats B", difference("A", "B"), ">"), rows=low).loc["A beats B"]
    assert claim["verdict"] == claim["direction_verdict"] == claim["reading"] == UNTRAINED
    assert claim["size_verdict"] == SIZE_NA and claim["untrained_rows"] == 0


def test_markdown_and_index_show_both_verdicts(monkeypatch, tmp_path):
    spec_claims = (Hypothesis("A beats B", difference("A", "B"), ">", confounded_by="the bases differ"),)
    claims = _evaluate(monkeypatch, *spec_claims).reset_index()
    assert claims.loc[0, "confounded_by"] == "the bases differ"
    assert claims.loc[0, "reading"].endswith("; confounded: the bases differ")
    spec = TableSpec("verdicts", "verdicts", rows=tuple(RowSpec(r, {}) for r in ROWS), claims=spec_claims)
    rows = pd.DataFrame(columns=["row", "ours", "ci95", "n_seeds", "paper", "note"])
    report = aggregate.markdown_report(spec, "cpu", rows, claims)
    assert claims.loc[0, "reading"] in report and "against an untrained row" in report
    claims.to_csv(tmp_path / "c.csv", index=False)
    (line,) = _verdict_lines(tmp_path / "c.csv")
    assert f"**{claims.loc[0, 'reading']}**" in line and "3 seeds" in line


# ---------------------------------------------------------------------------- the catalogue
def test_the_study_marks_its_own_claims():
    paper_tables = [name for name, spec in TABLES.items() if "not in either paper" not in spec.title]
    beyond = [name for name in TABLES if name not in paper_tables]
    assert beyond and all(claim.own for name in beyond for claim in TABLES[name].claims)
    own_in_paper_tables = [claim.statement for name in paper_tables for claim in TABLES[name].claims if claim.own]
    assert own_in_paper_tables == ["DETA's IoU assignment beats Hungarian matching on DINO (the study's claim, "
                                   "not the paper's)"]
    # a paper table run on another base makes the study's claims
    assert not any(claim.own for claim in get_table("align_table4").claims)
    assert all(claim.own for claim in get_table("align_table4").on_base("two_stage_deformable").claims)
    confounded = {claim.statement for spec in TABLES.values() for claim in spec.claims if claim.confounded_by}
    assert confounded == {"Align-DETR beats H-Deformable-DETR"}


def test_an_equivalence_claims_reading_names_it():
    far = _interval(-6.69, -4.56)
    assert verdict_reading("not reproduced", *size_verdict(far, -0.5, "equivalent"), far, -0.5,
                           direction="equivalent") == \
        "equivalence not reproduced; 11.2x the paper's size (paper -0.5 outside [-6.69, -4.56])"
    assert verdict_colour("equivalence not reproduced; 11.3x the paper's size") == "background-color: #ffcdd2"
