"""Confidence intervals for the gate and the benches: Student's t computed here, checked against
published tables; paired differences and Wilson intervals checked against hand computations."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from workers.engine.contract.intervals import (
    normal_quantile,
    paired_difference_interval,
    proportion_interval,
    student_t_quantile,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("p", "df", "expected"), [
    (0.975, 1, 12.706),
    (0.975, 2, 4.303),
    (0.975, 9, 2.262),
    (0.975, 19, 2.093),
    (0.975, 29, 2.045),
    (0.975, 120, 1.980),
    (0.975, 1000, 1.962),
    (0.95, 10, 1.812),
    (0.995, 5, 4.032),
    (0.9995, 1, 636.619),
])
def test_the_t_quantile_matches_the_published_table(p, df, expected):
    assert round(student_t_quantile(p, df), 3) == expected


def test_the_t_quantile_is_symmetric_and_approaches_the_normal():
    assert student_t_quantile(0.025, 9) == pytest.approx(-student_t_quantile(0.975, 9))
    assert student_t_quantile(0.5, 4) == 0.0
    assert round(normal_quantile(0.975), 3) == 1.960
    # decreasing in df, and above z for every df up to 1000
    quantiles = [student_t_quantile(0.975, df) for df in range(1, 1001)]
    assert all(a > b for a, b in zip(quantiles, quantiles[1:], strict=False))
    assert quantiles[-1] > normal_quantile(0.975)


def test_a_paired_example_computed_by_hand():
    # given ten cases: one flipped fail→pass, two pass→fail, seven unchanged
    before = [1, 1, 1, 0, 1, 0, 1, 1, 0, 1]
    after = [1, 0, 1, 1, 1, 0, 1, 0, 0, 1]
    # when
    interval = paired_difference_interval(before, after)
    # then: differences 0,-1,0,1,0,0,0,-1,0,0 → mean -0.1; Σ(d-mean)² = 7·0.01 + 2·0.81 + 1.21 = 2.9,
    # s = √(2.9/9) = 0.56765, se = s/√10 = 0.17951, half-width = 2.26216 · 0.17951 = 0.40607
    assert interval.n == 10 and interval.mean == pytest.approx(-0.1)
    assert (interval.low, interval.high) == (pytest.approx(-0.50607, abs=1e-5), pytest.approx(0.30607, abs=1e-5))
    assert interval.defined


def test_fractional_scores_are_paired_the_same_way():
    # differences 0.1, 0.2, 0 → mean 0.1, s = 0.1, se = 0.1/√3, t(0.975, 2) = 4.30265
    interval = paired_difference_interval([0.5, 0.7, 0.9], [0.6, 0.9, 0.9])
    assert interval.mean == pytest.approx(0.1)
    assert (interval.low, interval.high) == (pytest.approx(-0.14841, abs=1e-5), pytest.approx(0.34841, abs=1e-5))


def test_equal_differences_give_a_zero_width_interval():
    assert paired_difference_interval([1, 1, 0, 1], [1, 1, 0, 1]) == (0.0, 0.0, 0.0, 4)
    assert paired_difference_interval([1, 1, 1], [0, 0, 0]) == (-1.0, -1.0, -1.0, 3)


def test_fewer_than_two_pairs_leave_the_interval_undefined():
    one = paired_difference_interval([1], [0])
    none = paired_difference_interval([], [])
    assert (one.mean, one.n, one.defined) == (-1.0, 1, False)
    assert math.isinf(one.low) and math.isinf(one.high)
    assert none.n == 0 and math.isnan(none.mean) and not none.defined


def test_unpaired_lengths_and_a_bad_confidence_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="got 3 before and 2 after; pair them by case first"):
        paired_difference_interval([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match=r"confidence=95 must be in \(0, 1\)"):
        paired_difference_interval([1, 0], [1, 1], confidence=95)


def test_the_wilson_interval_of_a_single_score():
    eight_of_ten = proportion_interval(8, 10)
    assert eight_of_ten.mean == 0.8
    assert (round(eight_of_ten.low, 4), round(eight_of_ten.high, 4)) == (0.4902, 0.9433)
    # it stays inside [0, 1] and keeps a width at the extremes
    assert proportion_interval(0, 10)[1:3] == (0.0, pytest.approx(0.27753, abs=1e-5))
    assert proportion_interval(10, 10)[1:3] == (pytest.approx(0.72247, abs=1e-5), 1.0)
    assert not proportion_interval(0, 0).defined
    with pytest.raises(ValueError, match="need 0 ≤ successes ≤ n"):
        proportion_interval(11, 10)


def test_the_module_is_pure_python():
    code = ("import sys; sys.path.insert(0, '.'); import workers.engine.contract.intervals;"
            "heavy = [m for m in ('torch', 'numpy', 'django', 'scipy') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_pass_fail_difference_is_never_reported_beyond_100_points():
    # given 19 of 20 cases flipped fail→pass: the t interval alone would run past +100 points
    before, after = [0.0] * 20, [1.0] * 19 + [0.0]
    raw = paired_difference_interval(before, after)
    clipped = paired_difference_interval(before, after, bounds=(-1.0, 1.0))
    assert raw.high > 1.0
    assert clipped.high == 1.0 and clipped.low == raw.low and clipped.mean == raw.mean
