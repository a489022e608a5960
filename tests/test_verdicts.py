"""The two verdicts on a claim, direction and size, in words: hand-built intervals against the
paper's value, claims against untrained rows, the study's own claims and confounds."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

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
    claim_verdict,
    deciding_test,
    short_verdict,
    size_verdict,
    t_interval,
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
    assert list(claims.reset_index().columns[:16]) == ["claim", "contrast", "test", "mean", "ci95", "low", "high",
                                                       "ci90_low", "ci90_high", "n_seeds", "paper", "p_test", "p",
                                                       "p_holm", "outcome", "verdict"]
    paper = claims.loc["A beats B"]
    assert paper["outcome"] == "reproduced" and paper["direction_verdict"] == "reproduced"
    # the verdict column never says a bare "reproduced" where the interval excludes the paper's value
    assert paper["verdict"] == "reproduced; 3.2x the paper's size"
    assert paper["size_verdict"] == SIZE_LARGER and paper["size_ratio"] == pytest.approx(8 / 2.5)
    assert paper["reading"].startswith("direction reproduced; 3.2x the paper's size (paper +2.5 outside [")
    own = claims.loc["A beats B (ours)"]
    assert own["outcome"] == "reproduced" and own["direction_verdict"] == "holds" and bool(own["own_claim"])
    assert own["verdict"] == "holds; 3.2x the paper's size"
    assert own["reading"].startswith("holds; 3.2x the paper's size")
    # one row below the floor: the same verdict, qualified
    floor = claims.loc["A beats L"]
    assert PAPER["L"] < UNTRAINED_AP_FLOOR and floor["untrained_rows"] == 1
    assert floor["outcome"] == "reproduced" and floor["direction_verdict"] == "reproduced, against an untrained row"
    assert floor["verdict"].startswith("reproduced, against an untrained row; ")
    assert floor["reading"].startswith("direction reproduced, against an untrained row; ")


def test_all_rows_untrained_stay_uninformative_without_a_size(monkeypatch):
    low = {"A": [a - 15.0 for a in ROWS["A"]], "B": [b - 9.0 for b in ROWS["B"]]}
    claim = _evaluate(monkeypatch, Hypothesis("A beats B", difference("A", "B"), ">"), rows=low).loc["A beats B"]
    assert claim["outcome"] == claim["verdict"] == claim["direction_verdict"] == claim["reading"] == UNTRAINED
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


# ------------------------------------------------------------------------------ test forms
def _two_sided_t_p(values, bound):
    """p of the two-sided one-sample t-test of mean = bound, from the formula."""
    x = np.asarray(values, dtype=float)
    t = (x.mean() - bound) / (x.std(ddof=1) / math.sqrt(len(x)))
    return 2 * stats.t.sf(abs(t), df=len(x) - 1)


def test_a_no_harm_claim_is_a_non_inferiority_test_against_its_margin():
    # d = 0.2, 0.5, 0.8: mean 0.5, se 0.3 / sqrt 3; against -1: t = 8.66 on 2 df
    harmless = [0.2, 0.5, 0.8]
    test = deciding_test(harmless, "noninferior", 1.0)
    assert test.name == "t-test of d = -1" and test.p == pytest.approx(_two_sided_t_p(harmless, -1.0), rel=1e-9)
    assert test.p < 0.05
    interval = t_interval(harmless)
    assert interval.low > -1.0 and claim_verdict(interval, test.p, "noninferior", 1.0) == "reproduced"
    # a small loss inside the margin is still no harm; a test of d > 0 would call it not reproduced
    slight_loss = [-0.3, -0.2, -0.4]
    assert claim_verdict(t_interval(slight_loss), deciding_test(slight_loss, "noninferior", 1.0).p,
                         "noninferior", 1.0) == "reproduced"
    assert claim_verdict(t_interval(slight_loss), deciding_test(slight_loss, ">").p, ">") == "not reproduced"
    # harm beyond the margin: not reproduced; an interval across -1: inconclusive
    harmful = [-2.5, -2.2, -2.0]
    assert claim_verdict(t_interval(harmful), deciding_test(harmful, "noninferior", 1.0).p,
                         "noninferior", 1.0) == "not reproduced"
    unclear = [-1.61 + 0.3, 0.5, 2.0]
    assert claim_verdict(t_interval(unclear), deciding_test(unclear, "noninferior", 1.0).p,
                         "noninferior", 1.0) == "inconclusive"
    # the 95% interval's lower end above -m is the same decision as p < 0.05
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.normal(rng.uniform(-3, 2), rng.uniform(0.2, 2), size=3)
        assert (t_interval(x).low > -1.0) == (deciding_test(x, "noninferior", 1.0).p < 0.05 and x.mean() > -1.0)


def test_equivalence_is_decided_by_the_p_printed_beside_it():
    # inside the band: TOST, which matches the 90% interval lying inside the band
    rng = np.random.default_rng(1)
    for _ in range(200):
        x = rng.normal(rng.uniform(-1.5, 1.5), rng.uniform(0.1, 1.0), size=3)
        test = deciding_test(x, "equivalent", 1.0)
        band = t_interval(x, 0.90)
        if abs(x.mean()) < 1.0:
            assert test.name == "TOST of |d| < 1"
            assert (test.p < 0.05) == (-1.0 < band.low and band.high < 1.0)
        else:  # beyond a bound: the two-sided test against it, i.e. the 95% interval wholly beyond it
            bound = math.copysign(1.0, x.mean())
            assert test.name == f"t-test of d = {bound:+g}"
            assert test.p == pytest.approx(_two_sided_t_p(x, bound), rel=1e-9)
            interval = t_interval(x)
            assert (test.p < 0.05) == (interval.low > 1.0 or interval.high < -1.0)
    # DETA-like numbers far outside the margin: not reproduced, decided by a small p (not TOST's 1.0)
    far = [-5.1, -5.6, -6.2]
    test = deciding_test(far, "equivalent", 1.0)
    assert test.p < 0.05 and claim_verdict(t_interval(far), test.p, "equivalent", 1.0) == "not reproduced"
    # the same interval with a Holm-adjusted p above 0.05 is inconclusive, not "not reproduced"
    assert claim_verdict(t_interval(far), 0.2, "equivalent", 1.0) == "inconclusive"


def test_equivalence_claims_show_the_90_percent_interval(monkeypatch):
    claims = _evaluate(monkeypatch, Hypothesis("A equals B", difference("A", "B"), "equivalent", margin=10.0),
                       Hypothesis("A beats B", difference("A", "B"), ">"))
    equal, beats = claims.loc["A equals B"], claims.loc["A beats B"]
    # A - B = 7, 8, 9: 8 +- t_{0.95, 2} * 1 / sqrt 3 = 8 +- 2.92 / 1.73
    assert equal["ci90_low"] == pytest.approx(8 - 2.9200 / math.sqrt(3), abs=1e-3)
    assert equal["ci90_high"] == pytest.approx(8 + 2.9200 / math.sqrt(3), abs=1e-3)
    assert equal["p_test"] == "TOST of |d| < 10" and equal["outcome"] == "reproduced"
    assert "(90% interval [+6.31, +9.69], margin ±10)" in equal["reading"]
    assert math.isnan(beats["ci90_low"]) and beats["p_test"] == "t-test of d = 0"


def test_short_verdicts():
    assert short_verdict("reproduced", SIZE_LARGER, 3.08) == "reproduced; 3.1x the paper's size"
    assert short_verdict("reproduced", SIZE_SMALLER, 0.83) == "reproduced; 0.83x the paper's size"
    assert short_verdict("not reproduced", SIZE_SMALLER, -0.7) == \
        "not reproduced; smaller than the paper's, opposite sign"
    assert short_verdict("reproduced", SIZE_CONSISTENT, 1.2) == "reproduced; size consistent"
    assert short_verdict("inconclusive", SIZE_SMALLER, 0.2) == "inconclusive; smaller than the paper's"
    assert short_verdict("inconclusive", SIZE_CONSISTENT, 0.2) == "inconclusive; size consistent"
    assert short_verdict("holds", SIZE_NA, math.nan) == "holds"
    assert short_verdict(UNTRAINED, SIZE_NA, math.nan) == UNTRAINED
    assert short_verdict("inconclusive (1 seed)", SIZE_NA, math.nan) == "inconclusive (1 seed)"
    assert short_verdict("reproduced", SIZE_LARGER, 7.5, confounded=True) == \
        "reproduced; 7.5x the paper's size; confounded"


def test_the_catalogue_tests_detas_no_harm_claim_as_non_inferiority():
    (claim,) = [c for c in get_table("deta_table7").claims if "does not need decoder self-attention" in c.statement]
    assert claim.direction == "noninferior" and claim.margin == 1.0
    with pytest.raises(ValueError, match="margin"):
        Hypothesis("no harm", difference("A", "B"), "noninferior")


# ------------------------------------------------------------------------ the committed tables
def test_no_committed_paper_claim_excluding_the_papers_value_reads_a_bare_reproduced():
    from pathlib import Path

    tables = Path(__file__).resolve().parents[1] / "results" / "tables"
    claims = pd.concat([pd.read_csv(path, keep_default_na=False, na_values=[""]).assign(table=path.name)
                        for path in sorted(tables.glob("*_claims.csv")) if "size_verdict" in pd.read_csv(path).columns])
    paper = claims[~claims["own_claim"].astype(bool)]
    assert len(paper) >= 25
    excluded = paper[paper["size_verdict"].isin([SIZE_LARGER, SIZE_SMALLER])]
    assert len(excluded) >= 15
    for line in excluded.itertuples():
        assert ";" in line.verdict and "paper" in line.reading, (line.table, line.claim, line.verdict)
    by_claim = paper.set_index("claim")
    assert "against an untrained row" in by_claim.loc["alpha=0.25 beats alpha=0.75", "verdict"]
    assert by_claim.loc["Align-DETR beats H-Deformable-DETR", "verdict"].endswith("; confounded")


def test_a_non_inferiority_reading_states_the_lower_end_against_the_margin():
    interval = _interval(-1.61, 2.61, n=3)
    assert verdict_reading("inconclusive", *size_verdict(interval, 0.1, "noninferior"), interval, 0.1,
                           direction="noninferior", margin=1.0) == (
        "inconclusive (the 95% interval's lower end -1.61 against the margin -1); the interval [-1.61, +2.61] "
        "includes the paper's +0.1")
    harmless = _interval(-0.5, 1.5, n=3)
    assert verdict_reading("reproduced", *size_verdict(harmless, 0.1, "noninferior"), harmless, 0.1,
                           direction="noninferior", margin=1.0).startswith(
        "non-inferiority reproduced (the 95% interval's lower end -0.50 against the margin -1); size consistent")
