"""Claim p-values, Holm's correction, the detectable difference and seed planning, and the
verdicts that aggregation draws from them."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assignlab.study.report import aggregate
from assignlab.study.report.stats import detectable_difference, holm_adjust, paired_p_value, seeds_for_half_width
from assignlab.study.tables.spec import Hypothesis, RowSpec, TableSpec, difference

# Student t quantiles t_{0.975, df} from a printed table
T_975 = {2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 15: 2.1314, 16: 2.1199, 17: 2.1098}


# ---------------------------------------------------------------------------------- Holm
def test_holm_on_a_hand_worked_family():
    # p = 0.01, 0.04, 0.03, 0.005 (m = 4). Sorted: 0.005, 0.01, 0.03, 0.04, multiplied by 4, 3, 2, 1:
    # 0.02, 0.03, 0.06, 0.04; running maximum: 0.02, 0.03, 0.06, 0.06. Back in input order:
    # 0.01 -> 0.03, 0.04 -> 0.06, 0.03 -> 0.06, 0.005 -> 0.02. The NaN is left out of m.
    adjusted = holm_adjust([0.01, math.nan, 0.04, 0.03, 0.005])
    assert adjusted[:1] + adjusted[2:] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[1])
    # 0.6 x 2 = 1.2 is capped at 1, and the running maximum keeps 0.7 x 1 at 1
    assert holm_adjust([0.7, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([0.02]) == [0.02] and holm_adjust([]) == [] and math.isnan(holm_adjust([math.nan])[0])


# ------------------------------------------------------------------------------ p-values
CONTRASTS = [1.3, 0.2, 2.1, 0.8, 1.7]


def _t_statistic(values, bound):
    x = np.asarray(values)
    return (x.mean() - bound) / (x.std(ddof=1) / math.sqrt(len(x)))


@pytest.mark.parametrize("direction", [">", "<"])
def test_p_value_of_a_direction_claim_is_the_two_sided_one_sample_t_test(direction):
    t = _t_statistic(CONTRASTS, 0.0)
    by_formula = 2 * stats.t.sf(abs(t), df=len(CONTRASTS) - 1)
    assert paired_p_value(CONTRASTS, direction) == pytest.approx(by_formula, rel=1e-9)
    assert paired_p_value(CONTRASTS, direction) == pytest.approx(stats.ttest_1samp(CONTRASTS, 0.0).pvalue, rel=1e-9)


@pytest.mark.parametrize("margin", [1.5, 2.5, 4.0])
def test_p_value_of_an_equivalence_claim_is_tost(margin):
    df = len(CONTRASTS) - 1
    above_lower = stats.t.sf(_t_statistic(CONTRASTS, -margin), df)   # H0: mean <= -margin
    below_upper = stats.t.cdf(_t_statistic(CONTRASTS, margin), df)   # H0: mean >= +margin
    assert paired_p_value(CONTRASTS, "equivalent", margin) == pytest.approx(max(above_lower, below_upper), rel=1e-9)
    scipy_tost = max(stats.ttest_1samp(CONTRASTS, -margin, alternative="greater").pvalue,
                     stats.ttest_1samp(CONTRASTS, margin, alternative="less").pvalue)
    assert paired_p_value(CONTRASTS, "equivalent", margin) == pytest.approx(scipy_tost, rel=1e-9)


def test_p_value_edge_cases():
    assert math.isnan(paired_p_value([2.0], ">")) and math.isnan(paired_p_value([], "equivalent", 1.0))
    # zero spread: the limit of the t-test as the spread shrinks
    assert paired_p_value([2.0, 2.0, 2.0], ">") == 0.0
    assert paired_p_value([0.0, 0.0], "<") == 1.0
    assert paired_p_value([0.5, 0.5], "equivalent", 1.0) == 0.0
    assert paired_p_value([1.0, 1.0], "equivalent", 1.0) == 0.5
    assert paired_p_value([3.0, 3.0], "equivalent", 1.0) == 1.0
    with pytest.raises(ValueError, match="NaN"):
        paired_p_value([1.0, math.nan], ">")
    with pytest.raises(ValueError, match="direction"):
        paired_p_value([1.0, 2.0], ">=")


# ----------------------------------------------------------------------- study design
def _rejection_rate(difference_, sd, n, alpha, experiments=20_000, seed=0):
    """Fraction of simulated experiments (n seeds, contrast ~ Normal(difference_, sd)) in which the
    two-sided paired t-test at alpha rejects "contrast = 0"."""
    x = np.random.default_rng(seed).normal(difference_, sd, size=(experiments, n))
    t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(n))
    return float((np.abs(t) > stats.t.ppf(1 - alpha / 2, n - 1)).mean())


@pytest.mark.parametrize("sd, n, alpha", [(1.5, 4, 0.05), (0.4, 8, 0.0125)])
def test_detectable_difference_has_the_stated_power_in_simulation(sd, n, alpha):
    found = detectable_difference(sd, n, alpha=alpha, power=0.8)
    # 20000 experiments: the rejection rate's standard error is sqrt(0.8 * 0.2 / 20000) = 0.0028; 0.012 is over
    # 4 standard errors, while the normal approximation's answer falls well short of 80% (checked below)
    assert _rejection_rate(found, sd, n, alpha) == pytest.approx(0.80, abs=0.012)
    normal = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)) * sd / math.sqrt(n)
    assert _rejection_rate(normal, sd, n, alpha, seed=1) < 0.75


def test_detectable_difference_edge_cases():
    assert math.isnan(detectable_difference(1.0, 1)) and math.isnan(detectable_difference(math.nan, 3))
    assert detectable_difference(0.0, 3) == 0.0
    assert detectable_difference(2.0, 5) == pytest.approx(2 * detectable_difference(1.0, 5))
    with pytest.raises(ValueError, match="power"):
        detectable_difference(1.0, 3, alpha=0.05, power=0.04)


def test_seeds_for_half_width_by_hand():
    # sd 1, target 1: t_{0.975, n-1} / sqrt(n) is 4.30 / 1.73 = 2.48 (n = 3), 3.18 / 2 = 1.59, 2.78 / 2.24 = 1.24,
    # 2.57 / 2.45 = 1.05 (n = 6), 2.45 / 2.65 = 0.92 (n = 7): 7 seeds
    assert T_975[5] / math.sqrt(6) > 1 >= T_975[6] / math.sqrt(7)
    assert seeds_for_half_width(1.0, 1.0) == 7
    # sd 2, target 1: 2 * 2.12 / sqrt(17) = 1.03, 2 * 2.11 / sqrt(18) = 0.99: 18 seeds
    assert 2 * T_975[16] / math.sqrt(17) > 1 >= 2 * T_975[17] / math.sqrt(18)
    assert seeds_for_half_width(2.0, 1.0) == 18
    assert seeds_for_half_width(0.0, 0.1) == 2
    with pytest.raises(ValueError, match="more than 50 seeds"):
        seeds_for_half_width(10.0, 0.1)


# ------------------------------------------------------------------------ verdicts in tables
BASE = [10.0, 10.0, 10.0]
ROWS = {"B": BASE,
        "A": [b + d for b, d in zip(BASE, [2.0, 3.0, 4.0])],     # A - B: 2, 3, 4 -> t = 3 / (1 / sqrt 3) = 5.196
        "D": [b + d for b, d in zip(BASE, [2.0, 4.0, 3.0])],     # D - B: the same contrasts in another order
        "C": [b + d for b, d in zip(BASE, [1.0, -1.0, 0.0])],    # C - B: mean 0, sd 1
        "E": [b + d for b, d in zip(BASE, [5.0, 5.1, 4.9])]}     # E - B: mean 5, sd 0.1
P_3_SEEDS = 2 * stats.t.sf(5.196152422706632, df=2)              # two-sided p of A - B and D - B: 0.0351


def _spec(*claims):
    return TableSpec("holm", "holm", rows=tuple(RowSpec(label, {}) for label in ROWS), claims=claims)


def _results(rows=ROWS, seeds=(0, 1, 2)):
    return pd.DataFrame([{"row": row, "seed": seed, "run_id": f"{row}-{seed}", "AP": values[seed]}
                         for row, values in rows.items() for seed in seeds])


def _claims(*claims):
    return aggregate.evaluate_claims(_spec(*claims), _results()).set_index("claim")


A_BEATS_B = Hypothesis("A beats B", difference("A", "B"), ">")
B_BEATS_A = Hypothesis("B beats A", difference("B", "A"), ">")
D_BEATS_B = Hypothesis("D beats B", difference("D", "B"), ">")
C_BEATS_B = Hypothesis("C beats B", difference("C", "B"), ">")
E_BEATS_B = Hypothesis("E beats B", difference("E", "B"), ">")
C_EQUALS_B = Hypothesis("C equals B within 3", difference("C", "B"), "equivalent", margin=3.0)


def test_a_claim_that_passes_alone_is_inconclusive_after_holm():
    assert P_3_SEEDS == pytest.approx(0.0351, abs=1e-4)
    alone = _claims(A_BEATS_B)
    assert alone.loc["A beats B", "p"] == pytest.approx(P_3_SEEDS)
    assert alone.loc["A beats B", "p_holm"] == pytest.approx(P_3_SEEDS)
    assert alone.loc["A beats B", "outcome"] == "reproduced"
    assert _claims(B_BEATS_A).loc["B beats A", "outcome"] == "not reproduced"
    # three claims: p = 0.0351, 0.0351, 1 -> Holm 3 x 0.0351 = 0.105, max(0.105, 2 x 0.0351) = 0.105, 1
    family = _claims(A_BEATS_B, D_BEATS_B, C_BEATS_B)
    assert family["p"].tolist() == pytest.approx([P_3_SEEDS, P_3_SEEDS, 1.0])
    assert family["p_holm"].tolist() == pytest.approx([3 * P_3_SEEDS, 3 * P_3_SEEDS, 1.0])
    assert (family["outcome"] == "inconclusive").all()
    assert _claims(B_BEATS_A, D_BEATS_B, C_BEATS_B).loc["B beats A", "outcome"] == "inconclusive"
    # the interval columns are still there: A - B = 3 +- t_{0.975,2} / sqrt 3
    assert family.loc["A beats B", "ci95"] == pytest.approx(T_975[2] / math.sqrt(3), abs=1e-3)
    assert family.loc["A beats B", "low"] == pytest.approx(3 - T_975[2] / math.sqrt(3), abs=1e-3)


def test_holm_steps_down_and_equivalence_uses_tost():
    p_e = 2 * stats.t.sf(5.0 / (0.1 / math.sqrt(3)), df=2)
    p_equal = stats.t.sf(3.0 / (1.0 / math.sqrt(3)), df=2)       # both TOST sides: |0 -+ 3| / (1 / sqrt 3)
    assert _claims(C_EQUALS_B).loc["C equals B within 3", "p"] == pytest.approx(p_equal)
    assert _claims(C_EQUALS_B).loc["C equals B within 3", "outcome"] == "reproduced"
    claims = _claims(E_BEATS_B, A_BEATS_B, C_EQUALS_B)
    # sorted: p_e (x3), p_equal = 0.018 (x2 = 0.035), P_3_SEEDS = 0.035 (x1, but the running maximum)
    assert claims["p_holm"].tolist() == pytest.approx([3 * p_e, max(2 * p_equal, P_3_SEEDS), 2 * p_equal])
    assert claims["outcome"].tolist() == ["reproduced", "reproduced", "reproduced"]
    claims = _claims(E_BEATS_B, A_BEATS_B, D_BEATS_B, C_EQUALS_B)
    assert claims["outcome"].tolist() == ["reproduced", "inconclusive", "inconclusive", "inconclusive"]


def test_equivalence_is_not_reproduced_when_the_interval_lies_outside_the_margin():
    claim = Hypothesis("E equals B within 1", difference("E", "B"), "equivalent", margin=1.0)
    assert _claims(claim).loc["E equals B within 1", "outcome"] == "not reproduced"


def test_one_seed_and_missing_runs_keep_their_verdicts():
    spec = _spec(A_BEATS_B, B_BEATS_A)
    one_seed = aggregate.evaluate_claims(spec, _results(seeds=(0,)))
    assert (one_seed["outcome"] == "inconclusive (1 seed)").all() and one_seed["p_holm"].isna().all()
    no_a = aggregate.evaluate_claims(spec, _results({"B": BASE}))
    assert (no_a["outcome"] == "inconclusive (no runs)").all()


def test_a_claim_between_untrained_rows_is_uninformative():
    # the same contrasts as A - B (p = 0.0351 alone, reproduced at 10 AP) shifted to near-chance AP
    low = {"A": [a - 9.0 for a in ROWS["A"]], "B": [b - 9.0 for b in ROWS["B"]],
           "C": [c - 9.0 for c in ROWS["C"]]}
    claims = aggregate.evaluate_claims(_spec(A_BEATS_B), _results(low)).set_index("claim")
    assert claims.loc["A beats B", "p"] == pytest.approx(P_3_SEEDS)
    assert claims.loc["A beats B", "outcome"] == "uninformative (untrained)"
    one_seed = aggregate.evaluate_claims(_spec(A_BEATS_B), _results(low, seeds=(0,)))
    assert one_seed.loc[0, "outcome"] == "inconclusive (1 seed)"
    # one trained row is enough for a verdict: a collapse below the floor is a finding
    mixed = {"A": ROWS["A"], "C": low["C"], "B": low["B"]}
    assert _verdict(Hypothesis("A beats B", difference("A", "B"), ">"), mixed) == "reproduced"
    assert _verdict(Hypothesis("C beats A", difference("C", "A"), ">"), mixed) == "not reproduced"


def _verdict(claim, rows):
    return aggregate.evaluate_claims(_spec(claim), _results(rows)).loc[0, "outcome"]


# --------------------------------------------------------------------- detectable difference
def test_table_detectable_difference_from_the_pooled_seed_spread():
    rows = {"A": [10.0, 12.0, 14.0], "B": [9.0, 10.0, 11.0], "C": [5.0, 6.0, 7.0]}
    results = _results(rows)
    # a row sharing A's runs counts once: squared deviations 8 + 2 + 2 over 2 + 2 + 2 degrees of freedom
    shared = results[results["row"] == "A"].assign(row="A too")
    assert aggregate.pooled_row_sd(pd.concat([results, shared])) == pytest.approx(math.sqrt(12 / 6))
    spec = TableSpec("d", "d", rows=tuple(RowSpec(r, {}) for r in rows),
                     claims=(Hypothesis("A beats B", difference("A", "B"), ">"),
                             Hypothesis("A beats C", difference("A", "C"), ">")))
    found = aggregate.table_detectable_difference(spec, aggregate.summarize_rows(spec, results), results)
    assert (found.n_seeds, found.alpha, found.n_claims, found.power) == (3, 0.025, 2, 0.8)
    assert found.sd_difference == pytest.approx(math.sqrt(2) * math.sqrt(2))
    assert found.difference == pytest.approx(detectable_difference(2.0, 3, alpha=0.025))
    assert f"at least {found.difference:.2f} AP" in found.sentence() and "0.05 / 2 claims" in found.sentence()
    rows_frame = aggregate.summarize_rows(spec, results)
    report = aggregate.markdown_report(spec, "cpu", rows_frame, aggregate.evaluate_claims(spec, results), found)
    assert found.sentence() in report and "| p | p_holm | verdict |" in report
    one_seed = _results(rows, seeds=(0,))
    missing = aggregate.table_detectable_difference(spec, aggregate.summarize_rows(spec, one_seed), one_seed)
    assert math.isnan(missing.difference) and "not measurable" in missing.sentence()
