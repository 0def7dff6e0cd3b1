"""Statistics on response-time histograms, repeated measurements and bootstrap intervals."""

from __future__ import annotations

import math
import statistics
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Histogram:
    """Response times in ms (already rounded to 3 significant digits) -> how many requests."""

    counts: Mapping[float, int]

    @classmethod
    def merge(cls, parts: Iterable[Mapping[float, int]]) -> Histogram:
        total: dict[float, int] = {}
        for part in parts:
            for value, count in part.items():
                total[value] = total.get(value, 0) + count
        return cls(total)

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (q in 0..100): the smallest value with q% at or below it."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return value
        return max(self.counts)

    def mean(self) -> float | None:
        total = self.count
        if total == 0:
            return None
        return sum(value * count for value, count in self.counts.items()) / total

    def maximum(self) -> float | None:
        return max(self.counts) if self.counts else None


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Sample standard deviation over the mean; None with fewer than two values or a zero mean."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if mean == 0:
        return None
    return statistics.stdev(values) / mean


def ramp_z(first: int, second: int) -> float:
    """How many standard deviations the second half's count differs from the first's.

    Counts of completions in two equal halves are compared as Poisson counts; regular traffic
    varies less than Poisson, so this errs on the side of not flagging.
    """
    if first + second == 0:
        return 0.0
    return (second - first) / math.sqrt(first + second)


# Bootstrap confidence intervals. Every interval is a 95% percentile interval over DRAWS
# resamples, drawn from a generator seeded from the measurement's identity, so rebuilding a
# report gives the very same numbers.
CONFIDENCE = 0.95
DRAWS = 2000
P99 = 99.0

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Window:
    """One measured window: requests completed in each whole second, with their latencies."""

    requests: tuple[int, ...]
    latency: tuple[Histogram, ...]


@dataclass(frozen=True)
class Replicates:
    """Bootstrap replicates of a step's throughput (req/s) and p99 latency (ms; NaN: none)."""

    rps: FloatArray
    p99_ms: FloatArray


def seed_for(*parts: object) -> int:
    """A stable seed from names (Python's hash() changes between processes)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def block_length(seconds: int) -> int:
    """Seconds per resampled block: consecutive seconds are correlated (a slow second drags on
    into the next), so whole blocks are resampled; the cube root of the window is the usual
    compromise between keeping that correlation and having enough blocks to vary."""
    return max(1, round(math.pow(seconds, 1 / 3)))


def _block_weights(seconds: int, draws: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """How often each second appears in each resample: circular blocks, cut to the window."""
    length = block_length(seconds)
    blocks = -(-seconds // length)
    starts = rng.integers(0, seconds, size=(draws, blocks))
    picked = (starts[:, :, None] + np.arange(length)).reshape(draws, -1)[:, :seconds] % seconds
    weights = np.zeros((draws, seconds), dtype=np.int64)
    np.add.at(weights, (np.arange(draws)[:, None], picked), 1)
    return weights


def _percentiles(
    weights: npt.NDArray[np.int64],
    latency: Sequence[Histogram],
    q: float,
    rng: np.random.Generator,
) -> FloatArray:
    """A percentile of each resample's merged latencies, at a random rank.

    Resampling seconds alone cannot put a tail percentile beyond the largest value seen, so a
    window with few requests would get an interval far too narrow (with 60 requests, the p99
    is the maximum). So each resample also draws the rank: the number of requests below the
    percentile is binomial (the exact distribution-free argument for a quantile), and a rank
    beyond the last request leaves the percentile unbounded above (inf). Both sources of
    uncertainty together make the interval conservative for long windows, and honest for
    short ones."""
    values = sorted({v for h in latency for v in h.counts})
    if not values:
        return np.full(weights.shape[0], np.nan)
    column = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(latency), len(values)), dtype=np.int64)
    for row, histogram in enumerate(latency):
        for value, count in histogram.counts.items():
            counts[row, column[value]] = count
    cumulative = np.cumsum(weights @ counts, axis=1)
    total = cumulative[:, -1]
    rank = rng.binomial(total, q / 100) + 1
    found = np.argmax(cumulative >= rank[:, None], axis=1)
    picked = np.where(rank > total, np.inf, np.asarray(values, dtype=np.float64)[found])
    return np.where(total > 0, picked, np.nan)


def window_replicates(window: Window, seed: int, draws: int = DRAWS) -> Replicates:
    """Resample the window's seconds (in blocks): throughput and p99 of each resample."""
    seconds = len(window.requests)
    if seconds == 0:
        empty = np.full(draws, np.nan)
        return Replicates(empty, empty)
    rng = np.random.default_rng(seed)
    weights = _block_weights(seconds, draws, rng)
    rps = (weights @ np.asarray(window.requests, dtype=np.int64)) / seconds
    return Replicates(rps.astype(np.float64), _percentiles(weights, window.latency, P99, rng))


def pooled_replicates(repeats: Sequence[Replicates], seed: int) -> Replicates:
    """The median over repeats, resampled in two stages: which repeats (with replacement), then
    each chosen repeat's own resample of its seconds. This carries the spread between repeats
    (between runs of a cell) as well as the noise within each window."""
    if len(repeats) == 1:
        return repeats[0]
    draws = len(repeats[0].rps)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(repeats), size=(draws, len(repeats)))
    # A different inner resample per position, so a repeat drawn twice is not counted twice.
    inner = np.stack([rng.permutation(draws) for _ in repeats], axis=1)
    rps = np.stack([r.rps for r in repeats])[chosen, inner]
    p99 = np.stack([r.p99_ms for r in repeats])[chosen, inner]
    return Replicates(np.median(rps, axis=1), np.median(p99, axis=1))


def percentile_interval(values: FloatArray, confidence: float = CONFIDENCE) -> Interval | None:
    """The central interval of the replicates (inf where they are unbounded); None when most
    replicates have no value (no requests)."""
    present = values[~np.isnan(values)]
    if len(present) == 0 or len(present) < len(values) / 2:
        return None
    tail = (1 - confidence) / 2
    # No interpolation: between an unbounded replicate and a finite one there is no value.
    low, high = np.quantile(present, [tail, 1 - tail], method="inverted_cdf")
    return Interval(float(low), float(high))


def ratio_interval(
    baseline: FloatArray, other: FloatArray, confidence: float = CONFIDENCE
) -> Interval | None:
    """Interval of other / baseline, from independent resamples of both sides, resample by
    resample. A resample where both are unbounded has no ratio: it counts as one extreme on
    each side (half at 0, half at inf), so it widens the interval instead of vanishing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = other / baseline
    undefined = np.isinf(other) & np.isinf(baseline)
    ratios[undefined] = np.where(np.arange(len(ratios))[undefined] % 2 == 0, 0.0, np.inf)
    return percentile_interval(ratios, confidence)


# Two-sided 97.5% points of Student's t by degrees of freedom (beyond the table: the normal's).
_T_975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    22: 2.074,
    24: 2.064,
    26: 2.056,
    28: 2.048,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t_975(freedom: float) -> float:
    """Student's t for a two-sided 95% interval (freedom rounded down to the table's rows)."""
    rows = [f for f in _T_975 if f <= freedom]
    return _T_975[max(rows)] if rows else _T_975[1]


def _logs(values: Sequence[float]) -> list[float] | None:
    """Natural logs, or None when a value has none (zero, negative, unbounded, missing)."""
    if any(not math.isfinite(v) or v <= 0 for v in values):
        return None
    return [math.log(v) for v in values]


def trials_interval(values: Sequence[float]) -> Interval | None:
    """95% interval of a step's value from its trials, one value each: Student's t on the
    logs (values that multiply, such as throughput, are spread on a log scale), back on the
    value's own scale. None with fewer than two trials or a value without a log."""
    logs = _logs(values)
    if logs is None or len(logs) < 2:
        return None
    mean, spread = statistics.fmean(logs), statistics.stdev(logs)
    half = t_975(len(logs) - 1) * spread / math.sqrt(len(logs))
    return Interval(math.exp(mean - half), math.exp(mean + half))


def paired_ratio(
    baseline: Mapping[int, float], other: Mapping[int, float]
) -> tuple[float | None, Interval | None, int]:
    """other / baseline trial by trial, over the trials both ran in: (the geometric mean of the
    ratios, its 95% interval (Student's t on their logs), how many trials). Pairing takes out
    what a trial did to both sides alike (the machine's state then)."""
    trials = sorted(set(baseline) & set(other))
    ratios = [other[t] / baseline[t] for t in trials if baseline[t] > 0]
    logs = _logs(ratios) if len(ratios) == len(trials) else None
    if not logs:
        return None, None, len(trials)
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), None, 1
    half = t_975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), Interval(math.exp(mean - half), math.exp(mean + half)), len(logs)


def unpaired_ratio(
    baseline: Sequence[float], other: Sequence[float]
) -> tuple[float | None, Interval | None]:
    """other / baseline from trials of two runs, not paired: the ratio of their geometric means
    and its 95% interval (Welch's t on the logs)."""
    base, theirs = _logs(baseline), _logs(other)
    if not base or not theirs:
        return None, None
    difference = statistics.fmean(theirs) - statistics.fmean(base)
    if len(base) < 2 or len(theirs) < 2:
        return math.exp(difference), None
    a, b = statistics.variance(base) / len(base), statistics.variance(theirs) / len(theirs)
    if a + b == 0:
        return math.exp(difference), Interval(math.exp(difference), math.exp(difference))
    freedom = (a + b) ** 2 / (a**2 / (len(base) - 1) + b**2 / (len(theirs) - 1))
    half = t_975(freedom) * math.sqrt(a + b)
    return math.exp(difference), Interval(math.exp(difference - half), math.exp(difference + half))
