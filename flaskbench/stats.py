"""Statistics on response-time histograms and on repeated measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


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
