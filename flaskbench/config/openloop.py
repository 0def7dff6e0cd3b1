"""Open-loop load: requests offered at a rate, whatever the server does.

`[load] rates = [10, 20, 40, 80]` (or a workload's own `rates`) walks a staircase of offered
rates instead of users: each step sends requests at its rate, on a fixed schedule or as Poisson
arrivals (`arrival`), whether or not earlier ones have returned, and measures each request's
latency from the moment it was due. A closed loop of users cannot show queueing: when the server
slows down, users send less (coordinated omission). Requests the load generator could not send
on time are counted; a step that fell behind by more than LATE_SHARE is invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ARRIVALS = ("poisson", "fixed")
# A send that starts this long after it was due is late: gevent's timers lag by 5-9 ms at p99 on
# a busy machine even when the generator is idle, so a tighter threshold would flag noise.
LATE_MS = 10.0
# A step with more late sends than this share of its arrivals measured the load generator.
LATE_SHARE = 0.01
MAX_RATE = 100_000


@dataclass(frozen=True)
class OpenLoop:
    """The offered rates of an open-loop staircase (requests per second) and how requests
    arrive: "poisson" (independent clients: exponential gaps) or "fixed" (evenly spaced)."""

    rates: tuple[int, ...]
    arrival: str = "poisson"

    def describe(self) -> str:
        spacing = "Poisson arrivals" if self.arrival == "poisson" else "evenly spaced"
        return f"open loop, {spacing} at {', '.join(map(str, self.rates))} req/s"


# (key, message) -> None
Report = Callable[[str, str], None]


def parse_rates(value: object, report: Report) -> tuple[int, ...] | None:
    if isinstance(value, list) and any(
        isinstance(v, int) and not isinstance(v, bool) and v == 0 for v in value
    ):
        report("rates", "a rate of 0 offers no load; every rate must be 1 or more requests/s")
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_RATE for v in value
        )
    ):
        report(
            "rates",
            f"must be a non-empty list of whole requests per second, 1 to {MAX_RATE}, like "
            f"[10, 20, 40]; got {value!r}",
        )
        return None
    if sorted(set(value)) != list(value):
        report("rates", f"rates must be distinct and increasing, got {value!r}")
        return None
    return tuple(value)


def parse_arrival(value: object, report: Report) -> str | None:
    if value not in ARRIVALS:
        report("arrival", f"must be one of {', '.join(map(repr, ARRIVALS))}, got {value!r}")
        return None
    return str(value)


def read_open_loop(
    table: Mapping[str, Any], report: Report, default: OpenLoop | None = None
) -> tuple[OpenLoop | None, bool]:
    """The open loop a table asks for with `rates` (and `arrival`), else `default`; and whether
    it could be read (a problem was reported otherwise)."""
    if "rates" not in table:
        if "arrival" in table and default is None:
            report("arrival", "applies to an open loop only; set rates as well, or remove it")
            return None, False
        if "arrival" in table and default is not None:
            arrival = parse_arrival(table["arrival"], report)
            if arrival is None:
                return None, False
            return OpenLoop(default.rates, arrival), True
        return default, True
    rates = parse_rates(table["rates"], report)
    arrival = parse_arrival(
        table.get("arrival", default.arrival if default else ARRIVALS[0]), report
    )
    if rates is None or arrival is None:
        return None, False
    return OpenLoop(rates, arrival), True


def open_loop_from_meta(record: object) -> OpenLoop | None:
    """A workload's open loop as meta.json recorded it (dataclasses.asdict), or None."""
    if not isinstance(record, Mapping):
        return None
    return OpenLoop(tuple(int(r) for r in record["rates"]), str(record.get("arrival", "poisson")))
