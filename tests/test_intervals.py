"""Bootstrap intervals against distributions whose answer is known, and their edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flaskbench.measure.stats import (
    Histogram,
    Interval,
    Replicates,
    Window,
    block_length,
    percentile_interval,
    pooled_replicates,
    ratio_interval,
    seed_for,
    window_replicates,
)

DRAWS = 400


def poisson_window(rng: np.random.Generator, rate: float, seconds: int) -> Window:
    counts = rng.poisson(rate, size=seconds)
    return Window(tuple(int(c) for c in counts), tuple(Histogram({100.0: int(c)}) for c in counts))


def exponential_window(
    rng: np.random.Generator, mean_ms: float, per_second: int, seconds: int
) -> Window:
    """Latencies from an exponential distribution, rounded to three significant digits as the
    locustfile records them; its true p99 is mean x ln(100)."""
    seconds_of = []
    for _ in range(seconds):
        histogram: dict[float, int] = {}
        for value in rng.exponential(mean_ms, size=per_second):
            key = float(f"{value:.3g}")
            histogram[key] = histogram.get(key, 0) + 1
        seconds_of.append(Histogram(histogram))
    return Window(tuple([per_second] * seconds), tuple(seconds_of))


def coverage(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


def test_throughput_interval_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    hits = []
    for trial in range(200):
        window = poisson_window(rng, rate=50, seconds=30)
        interval = percentile_interval(window_replicates(window, trial, DRAWS).rps)
        assert interval is not None
        hits.append(interval.contains(50))
    # A percentile bootstrap of 30 correlated-in-blocks seconds runs a little narrow.
    assert 0.85 <= coverage(hits) <= 0.99


def test_throughput_interval_width_follows_the_noise() -> None:
    rng = np.random.default_rng(2)
    narrow = percentile_interval(window_replicates(poisson_window(rng, 1000, 30), 1, DRAWS).rps)
    steady = Window((1000,) * 30, (Histogram({100.0: 1000}),) * 30)
    exact = percentile_interval(window_replicates(steady, 1, DRAWS).rps)
    assert narrow is not None
    assert exact is not None
    # Poisson: sd of the mean of 30 seconds is sqrt(1000/30) ~ 5.8 req/s.
    assert 10 < narrow.high - narrow.low < 40
    assert exact == Interval(1000, 1000)


def test_p99_interval_covers_the_true_percentile() -> None:
    rng = np.random.default_rng(3)
    true_p99 = 100 * math.log(100)
    hits = []
    for trial in range(100):
        window = exponential_window(rng, 100, per_second=200, seconds=10)
        interval = percentile_interval(window_replicates(window, trial, DRAWS).p99_ms)
        assert interval is not None
        assert math.isfinite(interval.high)
        hits.append(interval.contains(true_p99))
    # Resampled seconds and a drawn rank together: conservative, never narrow.
    assert coverage(hits) >= 0.93


def test_p99_of_few_requests_is_unbounded_above() -> None:
    rng = np.random.default_rng(4)
    few = percentile_interval(
        window_replicates(exponential_window(rng, 100, 10, 6), 1, DRAWS).p99_ms
    )
    many = percentile_interval(
        window_replicates(exponential_window(rng, 100, 500, 6), 1, DRAWS).p99_ms
    )
    assert few is not None
    assert many is not None
    # 60 requests cannot say where the slowest 1% begins: beyond the largest seen, perhaps.
    assert few.high == math.inf
    assert math.isfinite(many.high)


def test_same_seed_same_replicates_other_seed_other_replicates() -> None:
    window = poisson_window(np.random.default_rng(5), 50, 10)
    first = window_replicates(window, seed_for("run", "sync", "io", 4, 1), DRAWS)
    again = window_replicates(window, seed_for("run", "sync", "io", 4, 1), DRAWS)
    other = window_replicates(window, seed_for("run", "sync", "io", 4, 2), DRAWS)
    assert np.array_equal(first.rps, again.rps)
    assert np.array_equal(first.p99_ms, again.p99_ms, equal_nan=True)
    assert not np.array_equal(first.rps, other.rps)


def test_an_empty_window_has_no_interval() -> None:
    replicates = window_replicates(Window((), ()), 1, DRAWS)
    assert percentile_interval(replicates.rps) is None
    silent = window_replicates(Window((0, 0), (Histogram({}), Histogram({}))), 1, DRAWS)
    assert percentile_interval(silent.p99_ms) is None
    assert percentile_interval(silent.rps) == Interval(0, 0)


@pytest.mark.parametrize(("seconds", "length"), [(1, 1), (3, 1), (4, 2), (15, 2), (30, 3)])
def test_block_length_is_the_cube_root(seconds: int, length: int) -> None:
    assert block_length(seconds) == length


def test_ratio_interval_finds_a_ten_percent_difference() -> None:
    rng = np.random.default_rng(6)
    base = window_replicates(poisson_window(rng, 1000, 30), 1, DRAWS)
    faster = window_replicates(poisson_window(rng, 1100, 30), 2, DRAWS)
    same = window_replicates(poisson_window(rng, 1000, 30), 3, DRAWS)
    up = ratio_interval(base.rps, faster.rps)
    flat = ratio_interval(base.rps, same.rps)
    assert up is not None
    assert flat is not None
    assert up.contains(1.1)
    assert not up.contains(1.0)
    assert flat.contains(1.0)


def test_ratio_interval_is_not_the_quotient_of_the_endpoints() -> None:
    """Resample by resample: each resample of one side is divided by its partner resample of
    the other, not the widest endpoint by the narrowest."""
    base = Replicates(np.array([90.0, 100.0, 110.0] * 100), np.full(300, np.nan))
    other = Replicates(np.array([100.0, 110.0, 90.0] * 100), np.full(300, np.nan))
    interval = ratio_interval(base.rps, other.rps)
    assert interval is not None
    assert interval.low == pytest.approx(90 / 110)
    # Dividing the endpoints would give 110 / 90.
    assert interval.high == pytest.approx(100 / 90)


def test_a_ratio_of_two_unbounded_percentiles_is_unbounded_both_ways() -> None:
    unbounded = np.full(100, np.inf)
    interval = ratio_interval(unbounded, unbounded)
    assert interval == Interval(0.0, math.inf)
    bounded = ratio_interval(np.full(100, 100.0), np.full(100, 110.0))
    assert bounded == Interval(pytest.approx(1.1), pytest.approx(1.1))


def test_pooled_replicates_carry_the_spread_between_repeats() -> None:
    rng = np.random.default_rng(7)
    repeats = [
        window_replicates(poisson_window(rng, rate, 30), seed, DRAWS)
        for seed, rate in enumerate((900, 1000, 1100))
    ]
    pooled = percentile_interval(pooled_replicates(repeats, 1).rps)
    single = percentile_interval(repeats[1].rps)
    assert pooled is not None
    assert single is not None
    assert pooled.high - pooled.low > 5 * (single.high - single.low)
    assert pooled.contains(1000)
    # One repeat pools to itself.
    assert pooled_replicates(repeats[:1], 1) is repeats[0]
