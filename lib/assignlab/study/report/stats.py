"""Confidence intervals over seeds and the verdict on a claim.

With n seeds x_1..x_n, the 95% interval of the mean is mean +- t_{0.975, n-1} * s / sqrt(n),
s the sample standard deviation (ddof 1). A claim's contrast is computed per seed first, so the
interval of a difference between rows is paired by seed.

A claim's p-value (:func:`paired_p_value`) comes from the same per-seed contrasts; the claims of
one table are a family whose p-values are Holm-adjusted (:func:`holm_adjust`) before a verdict.
:func:`detectable_difference` and :func:`seeds_for_half_width` size a study from the seed-to-seed
spread: the smallest contrast its seeds detect, and the seeds an interval of a given width needs.

Test forms (``direction``): ``">"`` / ``"<"`` (d > 0, d < 0) by the two-sided paired t-test of d = 0,
its side read from the mean; ``"noninferior"`` ("no harm": d > -margin) the same test shifted to
the bound, d = -margin, so that it is reproduced when the 95% interval's lower end lies above
-margin (one-sided at 2.5%); ``"equivalent"`` (|d| < margin) by TOST, the two one-sided tests at
5% each, which matches the 90% interval lying inside the band, and not reproduced by the
two-sided test against the bound the mean lies beyond (95% interval wholly outside the band).
:func:`deciding_test` names the test whose p decides a claim's verdict; that p, Holm-adjusted,
is the one printed beside it.

A claim gets two verdicts. Its *direction* (:func:`claim_verdict`, Holm-adjusted): reproduced /
not reproduced / inconclusive for a paper's claim, holds / does not hold / inconclusive for the
study's own (:func:`worded_verdict`). Its *size* (:func:`size_verdict`): the paper's value of the
contrast against the claim's 95% interval; "size consistent" when the interval contains it,
"larger than the paper's" when the interval lies wholly beyond it in the claimed direction (for an
equivalence claim: away from zero, on the paper's side), "smaller than the paper's" when it lies
wholly on the other side (towards zero or beyond); "n/a" without a paper value or an interval.
:func:`verdict_reading` puts both in one sentence, :func:`short_verdict` in a few words.

Untrained rows: a row whose mean AP is below ``UNTRAINED_AP_FLOOR`` (5 AP) has not learned to
detect. A claim whose rows are all below the floor is "uninformative (untrained)", whatever its
p-value; a claim with some (not all) of its rows below the floor keeps its direction verdict,
qualified "against an untrained row" (e.g. "reproduced, against an untrained row"): a contrast
with a near-chance detector says little about the claim at a trained scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, stats

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
UNTRAINED = "uninformative (untrained)"
HOLDS = "holds"                   # the study's own claims (not a paper's): REPRODUCED ...
DOES_NOT_HOLD = "does not hold"   # ... and NOT_REPRODUCED in their words
AGAINST_UNTRAINED = "against an untrained row"
SIZE_CONSISTENT = "size consistent"
SIZE_LARGER = "larger than the paper's"
SIZE_SMALLER = "smaller than the paper's"
SIZE_NA = "n/a"
DIRECTIONS = (">", "<", "noninferior", "equivalent")
# Below this AP (percent) a row has not learned to detect: contrasts between rows that are all
# below it compare near-chance detectors and say nothing about the claim at a trained scale.
UNTRAINED_AP_FLOOR = 5.0


@dataclass(frozen=True)
class Interval:
    """Mean of n values with the half-width of its two-sided t-interval (NaN when n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and t-interval half-width of ``values`` (NaN values are an error, not dropped)."""
    x = np.asarray(list(values), dtype=float)
    if np.isnan(x).any():
        raise ValueError("t_interval: values contain NaN")
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1)
    quantile = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return Interval(float(x.mean()), float(quantile * x.std(ddof=1) / math.sqrt(n)), n)


def verdict(interval: Interval, direction: str, margin: float = 0.0) -> str:
    """Verdict on "contrast <direction> 0" (``">"``, ``"<"``), "contrast > -margin"
    (``"noninferior"``) or "|contrast| < margin" (``"equivalent"``).

    reproduced: the interval lies wholly on the claimed side (above -margin for non-inferiority,
    inside the margin band for equivalence); not reproduced: wholly on the other side (outside the
    band); otherwise
    inconclusive. One seed gives no interval: "inconclusive (1 seed)".
    """
    if interval.n == 0:
        return f"{INCONCLUSIVE} (no runs)"
    if interval.n == 1:
        return f"{INCONCLUSIVE} (1 seed)"
    low, high = interval.low, interval.high
    if direction == ">":
        return REPRODUCED if low > 0 else NOT_REPRODUCED if high < 0 else INCONCLUSIVE
    if direction == "<":
        return REPRODUCED if high < 0 else NOT_REPRODUCED if low > 0 else INCONCLUSIVE
    if direction == "noninferior":
        return REPRODUCED if low > -margin else NOT_REPRODUCED if high < -margin else INCONCLUSIVE
    if direction == "equivalent":
        if -margin < low and high < margin:
            return REPRODUCED
        if low >= margin or high <= -margin:
            return NOT_REPRODUCED
        return INCONCLUSIVE
    raise ValueError(f"unknown claim direction {direction!r}")


def claim_verdict(interval: Interval, p_adjusted: float, direction: str, margin: float = 0.0,
                  alpha: float = 0.05) -> str:
    """Verdict on a claim from the (multiplicity-adjusted) p-value of its :func:`deciding_test`.

    When p_adjusted < alpha the test has decided, and the mean says which way: reproduced when it
    lies on the claimed side (``">"``: above 0, ``"<"``: below 0, ``"noninferior"``: above
    -margin, ``"equivalent"``: inside the band), not reproduced otherwise. Otherwise inconclusive;
    no runs or one seed as in :func:`verdict`.
    """
    if interval.n < 2:
        return verdict(interval, direction, margin)
    if not p_adjusted < alpha:
        return INCONCLUSIVE
    return REPRODUCED if on_claimed_side(interval.mean, direction, margin) else NOT_REPRODUCED


def on_claimed_side(mean: float, direction: str, margin: float = 0.0) -> bool:
    """Whether a mean contrast lies where the claim says it is (see :func:`claim_verdict`)."""
    if direction == ">":
        return mean > 0
    if direction == "<":
        return mean < 0
    if direction == "noninferior":
        return mean > -margin
    if direction == "equivalent":
        return abs(mean) < margin
    raise ValueError(f"unknown claim direction {direction!r}")


def size_verdict(interval: Interval, paper: float, direction: str) -> tuple[str, float]:
    """(size verdict, ratio mean / paper) of a claim's interval against the paper's value ``paper``
    of the same contrast (module docstring). ``">"`` and ``"noninferior"``: "larger" when the
    interval lies wholly above the paper's value; ``"<"`` (a negative paper value): wholly below it; ``"equivalent"``: wholly
    beyond it away from zero (either side when the paper's value is 0). "smaller" when it lies
    wholly on the other side, towards zero or beyond. The ratio is NaN when the paper's value is 0
    or the verdict is n/a; a negative ratio means the opposite sign to the paper's."""
    if math.isnan(paper) or interval.n < 2 or math.isnan(interval.half_width):
        return SIZE_NA, math.nan
    ratio = interval.mean / paper if paper != 0 else math.nan
    if interval.low <= paper <= interval.high:
        return SIZE_CONSISTENT, ratio
    if direction in (">", "noninferior"):
        side = 1.0
    elif direction == "<":
        side = -1.0
    elif direction == "equivalent":
        if paper == 0:
            return SIZE_LARGER, ratio
        side = math.copysign(1.0, paper)
    else:
        raise ValueError(f"unknown claim direction {direction!r}")
    beyond = interval.low > paper if side > 0 else interval.high < paper
    return (SIZE_LARGER if beyond else SIZE_SMALLER), ratio


def worded_verdict(direction_verdict: str, own: bool = False, untrained_rows: int = 0) -> str:
    """The direction verdict in words: the study's own claims (``own``) hold / do not hold rather
    than being reproduced; with ``untrained_rows`` (> 0) of the claim's rows below
    ``UNTRAINED_AP_FLOOR`` (but not all: that is already ``UNTRAINED``) it is qualified "against an
    untrained row". Verdicts without seeds to judge ("inconclusive (1 seed)") are left as they are."""
    if direction_verdict == UNTRAINED or direction_verdict.startswith(f"{INCONCLUSIVE} ("):
        return direction_verdict
    text = {REPRODUCED: HOLDS, NOT_REPRODUCED: DOES_NOT_HOLD}.get(direction_verdict, direction_verdict) if own \
        else direction_verdict
    if untrained_rows == 1:
        return f"{text}, {AGAINST_UNTRAINED}"
    if untrained_rows > 1:
        return f"{text}, against {untrained_rows} untrained rows"
    return text


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2g}x"


def _size_words(decided: bool, size: str, ratio: float) -> str:
    """A size verdict that is not "consistent" in words: the ratio for a decided direction, the
    side for an inconclusive one (whose mean says little on its own)."""
    if not decided:
        return size
    return f"{_ratio_text(ratio)} the paper's size" if ratio > 0 else f"{size}, opposite sign" if ratio <= 0 else size


def short_verdict(direction_text: str, size: str, ratio: float, confounded: bool = False) -> str:
    """Both verdicts in a few words, e.g. "reproduced; 3.1x the paper's size", "reproduced; size
    consistent", "inconclusive; smaller than the paper's" (the interval excludes the paper's value),
    or the direction alone where the size is n/a or there is no verdict (untrained, 1 seed); a
    ``confounded`` claim (its rows differ in more than the named factor) ends "; confounded".
    ``direction_text``: from :func:`worded_verdict`; ``size``, ``ratio``: from :func:`size_verdict`."""
    text = direction_text
    if not (size == SIZE_NA or direction_text == UNTRAINED or direction_text.startswith(f"{INCONCLUSIVE} (")):
        decided = not direction_text.startswith(INCONCLUSIVE)
        text += f"; {SIZE_CONSISTENT}" if size == SIZE_CONSISTENT else f"; {_size_words(decided, size, ratio)}"
    return f"{text}; confounded" if confounded else text


def _bounds(low: float, high: float) -> str:
    return f"[{low:+.2f}, {high:+.2f}]"


def verdict_reading(direction_text: str, size: str, ratio: float, interval: Interval, paper: float,
                    own: bool = False, confounded_by: str = "", direction: str = ">", margin: float = 0.0,
                    band_interval: Interval | None = None) -> str:
    """One sentence with both verdicts, e.g. "direction reproduced; 3.1x the paper's size (paper
    +2.5 outside [+7.26, +8.12])" or "inconclusive; the interval [-0.38, +1.11] excludes the
    paper's +1.5 (smaller than the paper's)". ``direction_text``: from :func:`worded_verdict`;
    ``size``, ``ratio``: from :func:`size_verdict` on the 95% ``interval``; ``confounded_by``: a
    note on what else differs between the claim's rows, appended. A paper's decided claim reads
    "direction reproduced" (``"equivalent"``: "equivalence reproduced", ``"noninferior"``:
    "non-inferiority reproduced"). An equivalence claim also states its 90% ``band_interval``
    against the margin (TOST's interval), a non-inferiority claim the 95% interval's lower end
    against -margin."""
    decided = direction_text.startswith((REPRODUCED, NOT_REPRODUCED))
    kind = {"equivalent": "equivalence", "noninferior": "non-inferiority"}.get(direction, "direction")
    text = f"{kind} {direction_text}" if decided and not own else direction_text
    judged = direction_text != UNTRAINED and interval.n >= 2 and not math.isnan(interval.half_width)
    if judged and direction == "equivalent" and band_interval is not None:
        text += f" (90% interval {_bounds(band_interval.low, band_interval.high)}, margin ±{margin:g})"
    elif judged and direction == "noninferior":
        text += f" (the 95% interval's lower end {interval.low:+.2f} against the margin {-margin:g})"
    if direction_text != UNTRAINED and size != SIZE_NA:
        bounds = _bounds(interval.low, interval.high)
        if direction_text.startswith(INCONCLUSIVE):
            if size == SIZE_CONSISTENT:
                text += f"; the interval {bounds} includes the paper's {paper:+.1f}"
            else:
                text += f"; the interval {bounds} excludes the paper's {paper:+.1f} ({size})"
        elif size == SIZE_CONSISTENT:
            text += f"; {SIZE_CONSISTENT} (paper {paper:+.1f} inside {bounds})"
        else:
            text += f"; {_size_words(True, size, ratio)} (paper {paper:+.1f} outside {bounds})"
    elif direction_text != UNTRAINED and not own and math.isnan(paper) and interval.n >= 2:
        text += "; size n/a (no paper value)"
    if confounded_by:
        text += f"; confounded: {confounded_by}"
    return text


# ------------------------------------------------------------------------------- tests of claims
def _one_sided_p(x: np.ndarray, bound: float, alternative: str) -> float:
    """p of "mean > bound" (``alternative="greater"``) or "mean < bound" ("less") from a t-test;
    with zero spread the limit of the t-test as the spread shrinks: 0 on the claimed side of the
    bound, 1 on the other side, 0.5 exactly at it."""
    if x.std(ddof=1) == 0:
        gap = x.mean() - bound if alternative == "greater" else bound - x.mean()
        return 0.0 if gap > 0 else 1.0 if gap < 0 else 0.5
    return float(stats.ttest_1samp(x, bound, alternative=alternative).pvalue)


def _two_sided_p(x: np.ndarray, bound: float) -> float:
    """p of the two-sided one-sample t-test of "mean = bound"; with zero spread its limit: 1 at the
    bound, 0 elsewhere."""
    if x.std(ddof=1) == 0:
        return 1.0 if x.mean() == bound else 0.0
    return float(stats.ttest_1samp(x, bound).pvalue)


def _contrasts(values: Sequence[float], direction: str, what: str) -> np.ndarray:
    x = np.asarray(list(values), dtype=float)
    if np.isnan(x).any():
        raise ValueError(f"{what}: values contain NaN")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown claim direction {direction!r}")
    return x


def paired_p_value(values: Sequence[float], direction: str, margin: float = 0.0) -> float:
    """p-value of a claim's own test from its per-seed contrasts ``values`` (one per seed, paired).

    ``">"`` and ``"<"``: two-sided one-sample t-test of "contrast = 0" (so p < 0.05 exactly when
    the 95% t-interval excludes 0; which side it lies on is read from the mean). ``"noninferior"``:
    the same test of "contrast = -margin". ``"equivalent"``: TOST, the larger of the one-sided
    p-values of "contrast > -margin" and "contrast < +margin". Fewer than 2 values: NaN. Zero
    spread (every seed gives the same contrast): the limit of the test as the spread shrinks, i.e.
    two-sided 0 when the contrast is not at the bound and 1 when it is; each TOST side 0, 1 or 0.5
    as the contrast lies inside, outside or on its bound. NaN values are an error, as in
    :func:`t_interval`.
    """
    x = _contrasts(values, direction, "paired_p_value")
    if len(x) < 2:
        return math.nan
    if direction == "equivalent":
        return max(_one_sided_p(x, -margin, "greater"), _one_sided_p(x, margin, "less"))
    return _two_sided_p(x, -margin if direction == "noninferior" else 0.0)


@dataclass(frozen=True)
class DecidingTest:
    """The test whose p decides a claim's verdict: its name (as printed) and its p-value."""

    name: str
    p: float


def deciding_test(values: Sequence[float], direction: str, margin: float = 0.0) -> DecidingTest:
    """The test that decides a claim, from its per-seed contrasts ``values``.

    ``">"``, ``"<"``, ``"noninferior"``: the claim's two-sided t-test (:func:`paired_p_value`), which
    decides either way. ``"equivalent"``: TOST while the mean lies inside the band (only it can
    show equivalence), otherwise the two-sided t-test of "contrast = the bound the mean lies
    beyond" (only it can show a difference larger than the margin). Fewer than 2 values: p NaN.
    """
    x = _contrasts(values, direction, "deciding_test")
    if direction in (">", "<"):
        return DecidingTest("t-test of d = 0", paired_p_value(x, direction))
    if direction == "noninferior":
        return DecidingTest(f"t-test of d = {-margin:g}", paired_p_value(x, direction, margin))
    if len(x) < 2 or abs(x.mean()) < margin:
        return DecidingTest(f"TOST of |d| < {margin:g}", paired_p_value(x, direction, margin))
    bound = math.copysign(margin, x.mean())
    return DecidingTest(f"t-test of d = {bound:+g}", _two_sided_p(x, bound))


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    With the m finite p-values sorted p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    max_{j <= i} min(1, (m - j + 1) p_(j)); rejecting where the adjusted value is < alpha keeps
    the chance of any false rejection in the family <= alpha. NaN stays NaN and does not count in m.
    """
    p = np.asarray(list(pvalues), dtype=float)
    adjusted = np.full(len(p), math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


# --------------------------------------------------------------------------------- design
def paired_t_power(difference: float, sd_difference: float, n_seeds: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n_seeds`` seeds when the true
    mean contrast is ``difference`` and its per-seed standard deviation ``sd_difference``: the
    statistic follows a noncentral t with n - 1 degrees of freedom and noncentrality
    difference * sqrt(n) / sd; both tails count as rejections."""
    df = n_seeds - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = difference * math.sqrt(n_seeds) / sd_difference
    # the lower tail as the upper tail of the mirrored distribution: nct.cdf far in the left tail can return NaN
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality))


def detectable_difference(sd_difference: float, n_seeds: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean contrast that a two-sided paired t-test at level ``alpha`` over
    ``n_seeds`` seeds detects with probability ``power``, given the standard deviation of the
    per-seed contrast ``sd_difference`` (exact: noncentral t, solved for the noncentrality).

    NaN with fewer than 2 seeds or a NaN spread; 0 with zero spread.
    """
    if not alpha < power < 1:
        raise ValueError(f"detectable_difference: need alpha < power < 1, got alpha={alpha}, power={power}")
    if n_seeds < 2 or math.isnan(sd_difference):
        return math.nan
    if sd_difference == 0:
        return 0.0
    def shortfall(effect: float) -> float:  # effect = difference / sd_difference
        return paired_t_power(effect, 1.0, n_seeds, alpha) - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12)) * sd_difference


def seeds_for_half_width(sd_difference: float, target_half_width: float, confidence: float = 0.95,
                         max_seeds: int = 50) -> int:
    """Smallest n >= 2 whose t-interval of a paired difference, t_{(1+confidence)/2, n-1} * sd / sqrt(n),
    is no wider than ``target_half_width`` on each side. ValueError when even ``max_seeds`` seeds
    do not reach it."""
    if target_half_width <= 0:
        raise ValueError("seeds_for_half_width: target_half_width must be > 0")
    for n in range(2, max_seeds + 1):
        if stats.t.ppf(0.5 + confidence / 2, df=n - 1) * sd_difference / math.sqrt(n) <= target_half_width:
            return n
    raise ValueError(f"seeds_for_half_width: more than {max_seeds} seeds needed for half-width "
                     f"{target_half_width:g} at sd {sd_difference:g}")
