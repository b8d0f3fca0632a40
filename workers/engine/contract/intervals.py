"""Confidence intervals for eval scores, in pure Python (no numpy, scipy, torch or Django): the gate (web
and worker processes) and the benches share one implementation.

Two intervals:
- `paired_difference_interval`: candidate − parent on the same cases. Pairing removes the case-to-case
  difficulty that dominates a small suite, so it is much narrower than two independent intervals. It uses
  Student's t on the per-case differences (the paired t interval); with 0/1 scores that is the usual
  large-sample approximation, honest enough to say "this suite cannot tell a 5-point drop from noise".
- `proportion_interval`: Wilson's score interval for one score (successes of n), which unlike the
  textbook p ± z·se stays inside [0, 1] and does not collapse to zero width at 0 % or 100 %.

The t quantile is computed here (bisection on the regularised incomplete beta function) rather than
taken from a table, so it is right for any df; tests/engine/test_intervals.py checks it against published
values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Interval(NamedTuple):
    """A point estimate and its confidence interval over `n` cases. An interval that the data cannot
    determine (fewer than two pairs; no cases) has infinite bounds: check `defined` before showing it."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def defined(self) -> bool:
        return math.isfinite(self.mean) and math.isfinite(self.low) and math.isfinite(self.high)


def _undefined(mean: float, n: int) -> Interval:
    return Interval(mean, -math.inf, math.inf, n)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must be in (0, 1), e.g. 0.95 for a 95 % interval")


# --- distributions ---------------------------------------------------------------------------------

def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # Lentz's method for the continued fraction of I_x(a, b) (Numerical Recipes, betacf); it converges
    # fast for x < (a + 1) / (a + b + 2), which the caller guarantees by symmetry.
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF of a Beta(a, b) variable at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom, t ≥ 0."""
    return 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def _bisect(tail, target: float, low: float, high: float) -> float:
    """The x in [low, high] where the decreasing function `tail` equals `target`."""
    while tail(high) > target:  # widen until the root is bracketed (df = 1 needs t ≈ 637 at 99.9 %)
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if tail(middle) > target:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T ≤ t) = p, e.g. student_t_quantile(0.975, 9) ≈ 2.262."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r} must be in (0, 1)")
    if not df > 0:
        raise ValueError(f"df={df!r} must be > 0")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    return _bisect(lambda t: student_t_upper_tail(t, df), 1.0 - p, 0.0, 1.0)


def normal_quantile(p: float) -> float:
    """The z with Φ(z) = p, e.g. normal_quantile(0.975) ≈ 1.960."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r} must be in (0, 1)")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -normal_quantile(1.0 - p)
    return _bisect(lambda z: 0.5 * math.erfc(z / math.sqrt(2.0)), 1.0 - p, 0.0, 1.0)


# --- intervals --------------------------------------------------------------------------------------

def paired_difference_interval(before: Sequence[float], after: Sequence[float],
                               confidence: float = 0.95, bounds: tuple[float, float] | None = None) -> Interval:
    """Mean of after[i] − before[i] over cases paired by position, with its t interval.

    `bounds` clips the interval to what the difference can be (−1..1 for pass/fail scores): the t interval
    is symmetric and runs past ±100 points when nearly every case flipped one way.

    All differences equal (e.g. nothing flipped): a zero-width interval at that difference — the data
    show no variation, not infinite certainty, but there is nothing wider to report. Fewer than two
    pairs: the interval is undefined (infinite bounds, `defined` is False)."""
    _check_confidence(confidence)
    if len(before) != len(after):
        raise ValueError(f"paired scores need one 'after' per 'before' case: got {len(before)} before and "
                         f"{len(after)} after; pair them by case first")
    differences = [float(a) - float(b) for b, a in zip(before, after, strict=True)]
    n = len(differences)
    if n == 0:
        return _undefined(math.nan, 0)
    mean = math.fsum(differences) / n
    if n < 2:
        return _undefined(mean, n)
    if all(d == differences[0] for d in differences):
        return Interval(mean, mean, mean, n)
    variance = math.fsum((d - mean) ** 2 for d in differences) / (n - 1)
    half = student_t_quantile((1.0 + confidence) / 2.0, n - 1) * math.sqrt(variance / n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return Interval(mean, low, high, n)


def proportion_interval(successes: float, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for successes out of n (a single score, e.g. 8 of 10 passed)."""
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"successes={successes!r} of n={n!r}: need 0 ≤ successes ≤ n")
    if n == 0:
        return _undefined(math.nan, 0)
    z = normal_quantile((1.0 + confidence) / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)
