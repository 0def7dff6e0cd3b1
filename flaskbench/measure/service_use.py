"""What the services beside the target did in each step's window: the connections in use
(Postgres: sessions running a statement or inside a transaction, "busy"; every service: the
connections open), and their CPU and memory, from the sampler's service-NAME.csv (format:
docs/raw-data.md); and the columns summary.csv gives them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict, TypeVar

# CPU and memory rows cover the second before their time stamp, as resources.csv's do.
_SECOND_SLACK_S = 0.5
# A step's database connections count as all busy when, on average over its window, this share
# of the most it held at once were in use.
ALL_BUSY = 0.8


def connections_capped(
    inflight: int | None, busy_peak: int | None, busy_mean: float | None
) -> bool:
    """Whether requests waited inside the app for a database connection in a step: more in
    flight than connections ever busy at once, and those busy nearly all the time."""
    if inflight is None or not busy_peak or busy_mean is None:
        return False
    return inflight > busy_peak and busy_mean >= ALL_BUSY * busy_peak


@dataclass(frozen=True)
class ServiceSample:
    t: float
    open: int | None
    busy: int | None
    cpu_pct: float | None
    pss_mb: float | None


@dataclass(frozen=True)
class ServiceUse:
    """One service over one step's window."""

    name: str
    kind: str
    # Connections in use (busy: Postgres only), the highest sample and the mean of the samples.
    busy_peak: int | None
    busy_mean: float | None
    connections_peak: int | None
    # Percent of one core, the window's mean; memory (summed PSS of its processes), its peak.
    cpu_pct: float | None
    pss_mb: float | None


def parse_samples(rows: Iterable[Mapping[str, str]]) -> list[ServiceSample]:
    """Rows of service-NAME.csv; ValueError (with the row's line) for a damaged one."""
    samples = []
    for line, row in enumerate(rows, start=2):
        try:
            samples.append(
                ServiceSample(
                    float(row["t"]),
                    _count(row["open"]),
                    _count(row["busy"]),
                    _number(row["cpu_pct"]),
                    _number(row["pss_mb"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"line {line}: {exc}") from None
    return samples


def _count(text: str | None) -> int | None:
    """An empty cell: not sampled then (no answer, or not this kind's)."""
    return int(text) if text else None


def _number(text: str | None) -> float | None:
    return float(text) if text else None


def service_use(
    name: str, kind: str, samples: Sequence[ServiceSample], start: float, end: float
) -> ServiceUse:
    """Connection samples inside [start, end); CPU and memory rows covering it."""
    inside = [s for s in samples if start <= s.t < end]
    seconds = [s for s in samples if start + _SECOND_SLACK_S <= s.t <= end + _SECOND_SLACK_S]
    busy = [s.busy for s in inside if s.busy is not None]
    opened = [s.open for s in inside if s.open is not None]
    cpu = [s.cpu_pct for s in seconds if s.cpu_pct is not None]
    memory = [s.pss_mb for s in seconds if s.pss_mb is not None]
    return ServiceUse(
        name=name,
        kind=kind,
        busy_peak=max(busy, default=None),
        busy_mean=statistics.fmean(busy) if busy else None,
        connections_peak=max(opened, default=None),
        cpu_pct=statistics.fmean(cpu) if cpu else None,
        pss_mb=max(memory, default=None),
    )


class ServiceColumns(TypedDict):
    """summary.csv's columns for the services (see SUMMARY_COLUMNS), in order."""

    db_busy_peak: int | None
    db_busy_mean: float | None
    db_connections_peak: int | None
    cache_connections_peak: int | None
    services_cpu_pct: float | None
    services_pss_mb: float | None


SERVICE_COLUMNS = tuple(ServiceColumns.__annotations__)


def service_columns(uses: Sequence[ServiceUse]) -> ServiceColumns:
    """A step's service columns: the Postgres services' connections (summed over them, when
    there are several), the Redis services', and every service's CPU and memory together."""
    databases = [u for u in uses if u.kind == "postgres"]
    caches = [u for u in uses if u.kind == "redis"]
    return {
        "db_busy_peak": _total(u.busy_peak for u in databases),
        "db_busy_mean": _total(u.busy_mean for u in databases),
        "db_connections_peak": _total(u.connections_peak for u in databases),
        "cache_connections_peak": _total(u.connections_peak for u in caches),
        "services_cpu_pct": _total(u.cpu_pct for u in uses),
        "services_pss_mb": _total(u.pss_mb for u in uses),
    }


_N = TypeVar("_N", int, float)


def _total(values: Iterable[_N | None]) -> _N | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None
