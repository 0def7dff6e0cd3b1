"""The load generator's bookkeeping: the staircase schedule, per-second request buckets and
the writer of loadgen.json (format described in docs/raw-data.md).

Pure Python on purpose: importing locust or gevent monkey-patches the whole process, and the
orchestrator and its tests import this module.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# loadgen.json's format: flaskbench/results/contract.py's LOADGEN_FORMAT (the Locust image
# carries no flaskbench, so the number is kept here too; a test checks that they agree).
FORMAT = 2
BUCKET_S = 1


@dataclass(frozen=True)
class Step:
    index: int
    users: int
    # When the step's user count is requested; its measured window is [measure_start, measure_end).
    start: float
    measure_start: float
    measure_end: float
    # An open loop's offered requests per second (its users are then its schedulers, one per
    # load-generating process).
    rate: int | None = None

    @property
    def level(self) -> int:
        """What the staircase climbs: users, or an open loop's offered rate."""
        return self.rate if self.rate is not None else self.users

    def to_json(self) -> dict[str, Any]:
        found = {
            "index": self.index,
            "users": self.users,
            "start": self.start,
            "measure_start": self.measure_start,
            "measure_end": self.measure_end,
        }
        return found | ({"rate": self.rate} if self.rate is not None else {})


@dataclass(frozen=True)
class Schedule:
    steps: tuple[Step, ...]
    # The staircase stops here, at the end of its last window.
    end: float

    def users_at(self, t: float) -> int | None:
        """The user count in force at t: 0 before the first step, None once the run is over."""
        if t >= self.end:
            return None
        started = [step.users for step in self.steps if step.start <= t]
        return started[-1] if started else 0

    def rate_at(self, t: float) -> int | None:
        """An open loop's offered rate at t: None before its first step and once it is over."""
        if t >= self.end:
            return None
        started = [step.rate for step in self.steps if step.start <= t]
        return started[-1] if started else None

    def next_change(self, t: float) -> float | None:
        """The first moment at or after t when the user count changes or the run ends."""
        changes = [step.start for step in self.steps if step.start >= t]
        return min(changes) if changes else (self.end if self.end >= t else None)


def plan_schedule(
    users: Sequence[int],
    warmup_s: int,
    measure_s: int,
    start_time: float,
    schedulers: int | None = None,
) -> Schedule:
    """Steps back to back from start_time rounded up to a whole second.

    Whole-second edges make every measured window cover whole buckets exactly. With
    `schedulers`, an open loop: `users` are the offered rates, and every step runs that many
    schedulers.
    """
    first = float(math.ceil(start_time))
    step_s = warmup_s + measure_s
    steps = tuple(
        Step(
            index=index,
            users=count if schedulers is None else schedulers,
            start=first + index * step_s,
            measure_start=first + index * step_s + warmup_s,
            measure_end=first + (index + 1) * step_s,
            rate=None if schedulers is None else count,
        )
        for index, count in enumerate(users)
    )
    return Schedule(steps=steps, end=first + len(steps) * step_s)


def quantise_ms(response_ms: float) -> str:
    """The histogram key of a response time: three significant digits, at most 0.5% off."""
    return f"{response_ms:.3g}"


@dataclass(frozen=True)
class StopRule:
    """When a staircase stops climbing: p99 above `p99_ms` (a multiple of the goal) or, without
    a goal, above `p99_factor` times the first step's p99; failures; or throughput that fell for
    two steps in a row. Steps not run are recorded as skipped, with the reason."""

    p99_ms: float | None = None
    p99_factor: float | None = None


@dataclass(frozen=True)
class StepResult:
    users: int
    requests: int
    failures: int
    p99_ms: float | None
    # What `users` counts: users, or an open loop's offered requests per second.
    unit: str = "users"

    @property
    def at(self) -> str:
        return f"{self.users} {self.unit}"


def stop_reason(done: Sequence[StepResult], rule: StopRule) -> str | None:
    """Why the staircase should not climb past the steps done so far, or None."""
    if not done:
        return None
    last = done[-1]
    if last.failures:
        return f"{last.failures} requests failed at {last.at}"
    limit = rule.p99_ms
    if limit is None and rule.p99_factor is not None and done[0].p99_ms:
        limit = rule.p99_factor * done[0].p99_ms
    if limit is not None and last.p99_ms is not None and last.p99_ms > limit:
        return f"p99 {last.p99_ms:g} ms at {last.at} passed {limit:g} ms"
    if len(done) >= 3 and done[-1].requests < done[-2].requests < done[-3].requests:
        return f"throughput fell for two steps in a row, to {last.at}"
    return None


def percentile(latency_ms: Mapping[str, int], q: float) -> float | None:
    """Nearest-rank percentile of a latency histogram (as flaskbench.measure.stats.Histogram)."""
    total = sum(latency_ms.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for value in sorted(latency_ms, key=float):
        seen += latency_ms[value]
        if seen >= rank:
            return float(value)
    return None


@dataclass
class _Bucket:
    requests: int = 0
    failures: int = 0
    latency_ms: Counter[str] = field(default_factory=Counter)


class Buckets:
    """Requests counted per whole second of their completion time.

    The same class serves a worker (add, then take_delta for each report) and the master
    (merge the deltas); deltas and the loadgen.json bucket list share one JSON shape.
    """

    def __init__(self) -> None:
        self._by_second: dict[int, _Bucket] = {}

    def add(self, completed_at: float, response_ms: float, failed: bool) -> None:
        bucket = self._by_second.setdefault(math.floor(completed_at), _Bucket())
        bucket.requests += 1
        bucket.failures += int(failed)
        bucket.latency_ms[quantise_ms(response_ms)] += 1

    def merge(self, delta: Iterable[Mapping[str, Any]]) -> None:
        for row in delta:
            bucket = self._by_second.setdefault(int(row["t"]), _Bucket())
            bucket.requests += int(row["requests"])
            bucket.failures += int(row["failures"])
            bucket.latency_ms.update({str(k): int(v) for k, v in row["latency_ms"].items()})

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "t": t,
                "requests": bucket.requests,
                "failures": bucket.failures,
                "latency_ms": dict(sorted(bucket.latency_ms.items(), key=lambda kv: float(kv[0]))),
            }
            for t, bucket in sorted(self._by_second.items())
        ]

    def window(self, users: int, start: float, end: float, unit: str = "users") -> StepResult:
        """The requests completed in [start, end), as the orchestrator will count them."""
        inside = [b for t, b in self._by_second.items() if start <= t and t + 1 <= end]
        latency: Counter[str] = Counter()
        for bucket in inside:
            latency.update(bucket.latency_ms)
        return StepResult(
            users=users,
            requests=sum(b.requests for b in inside),
            failures=sum(b.failures for b in inside),
            p99_ms=percentile(latency, 99),
            unit=unit,
        )

    def take_delta(self) -> list[dict[str, Any]]:
        """Everything added since the previous call, which is forgotten here."""
        delta = self.to_json()
        self._by_second = {}
        return delta


@dataclass
class _Arrivals:
    scheduled: int = 0
    late: int = 0
    dropped: int = 0
    max_lag_ms: float = 0.0


class Arrivals:
    """An open loop's arrivals, counted per whole second of when they were due: how many were
    scheduled, how many were sent late (`late_ms` or more after they were due) or not at all
    (every in-flight slot of the load generator taken), and the worst lag; and per step, the
    requests still unfinished when its window ended. A worker's deltas merge on the master as
    Buckets' do."""

    def __init__(self) -> None:
        self._by_second: dict[int, _Arrivals] = {}
        # Step index -> (requests unfinished at its window's end, the oldest one's age in ms).
        self._unfinished: dict[int, tuple[int, float]] = {}

    def add(self, due: float, lag_ms: float, late: bool, dropped: bool = False) -> None:
        second = self._by_second.setdefault(math.floor(due), _Arrivals())
        second.scheduled += 1
        second.late += int(late)
        second.dropped += int(dropped)
        second.max_lag_ms = max(second.max_lag_ms, lag_ms)

    def add_unfinished(self, step: int, count: int, oldest_ms: float) -> None:
        had, age = self._unfinished.get(step, (0, 0.0))
        self._unfinished[step] = (had + count, max(age, oldest_ms))

    def merge(self, delta: Mapping[str, Any]) -> None:
        for row in delta.get("seconds", ()):
            second = self._by_second.setdefault(int(row["t"]), _Arrivals())
            second.scheduled += int(row["scheduled"])
            second.late += int(row["late"])
            second.dropped += int(row["dropped"])
            second.max_lag_ms = max(second.max_lag_ms, float(row["max_lag_ms"]))
        for row in delta.get("unfinished", ()):
            self.add_unfinished(int(row["step"]), int(row["count"]), float(row["oldest_ms"]))

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "seconds": [
                {
                    "t": t,
                    "scheduled": a.scheduled,
                    "late": a.late,
                    "dropped": a.dropped,
                    "max_lag_ms": round(a.max_lag_ms, 1),
                }
                for t, a in sorted(self._by_second.items())
            ],
            "unfinished": [
                {"step": step, "count": count, "oldest_ms": round(oldest, 1)}
                for step, (count, oldest) in sorted(self._unfinished.items())
            ],
        }

    def take_delta(self) -> dict[str, list[dict[str, Any]]]:
        delta = self.to_json()
        self._by_second = {}
        self._unfinished = {}
        return delta


class ClockSync:
    """A worker's estimate of the master's clock, which alone defines the step windows.

    The worker asks the master for its time and notes when it asked and when the answer came
    (NTP's way): the master's reading lies inside that round trip, so its midpoint is off by at
    most half of it. The reading with the shortest round trip so far is kept. Workers stamp
    every request with their own clock plus `correction()`, so their buckets land in the
    master's seconds even on a host whose clock is seconds off.
    """

    def __init__(self) -> None:
        # Master's clock minus this worker's; None until the first answer.
        self.offset_s: float | None = None
        self.round_trip_s = math.inf
        self.answers = 0

    def add(self, sent: float, master: float, received: float) -> None:
        round_trip = received - sent
        if round_trip < 0:
            return
        self.answers += 1
        if round_trip < self.round_trip_s:
            self.round_trip_s = round_trip
            self.offset_s = master - (sent + received) / 2

    def correction(self) -> float:
        """Seconds to add to this worker's clock to read the master's: 0.0 before any answer,
        and when the offset is within the estimate's own uncertainty (same machine)."""
        if self.offset_s is None or abs(self.offset_s) <= self.round_trip_s / 2:
            return 0.0
        return self.offset_s

    def to_json(self) -> dict[str, Any]:
        measured = self.offset_s is not None
        return {
            "offset_s": round(self.offset_s, 4) if self.offset_s is not None else None,
            "round_trip_s": round(self.round_trip_s, 4) if measured else None,
            "answers": self.answers,
            "applied_s": round(self.correction(), 4),
        }


def worker_report(
    delta: list[dict[str, Any]],
    t: float,
    cpu_pct: float,
    cpu_warning: bool,
    clock: Mapping[str, Any] | None = None,
    arrivals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What one worker adds to each of its periodic reports to the master; `t` and the buckets
    are on the master's clock, `clock` says how far the worker's own was off, `arrivals` are an
    open loop's (Arrivals.take_delta)."""
    return {
        "buckets": delta,
        "t": t,
        "cpu_pct": cpu_pct,
        "cpu_warning": cpu_warning,
        "clock": dict(clock or {}),
        **({"arrivals": dict(arrivals)} if arrivals else {}),
    }


class Record:
    """Everything loadgen.json holds apart from the schedule, as gathered on the master."""

    def __init__(self) -> None:
        self.buckets = Buckets()
        self.arrivals = Arrivals()
        # An open loop's settings (None: a closed loop of users).
        self.open_loop: dict[str, Any] | None = None
        # What the master found when it checked the workload before any load (see verify()).
        self.verification: dict[str, Any] | None = None
        # Steps not run because the target was saturated: {"index", "users", "reason"}.
        self.skipped: list[dict[str, Any]] = []
        self._cpu: list[dict[str, Any]] = []
        self._cpu_warnings: set[str] = set()
        self._workers: set[str] = set()
        self._clocks: dict[str, dict[str, Any]] = {}

    def add_cpu(self, node: str, t: float, cpu_pct: float) -> None:
        self._cpu.append({"t": round(t, 3), "node": node, "cpu_pct": round(cpu_pct, 1)})

    def add_cpu_warning(self, node: str) -> None:
        self._cpu_warnings.add(node)

    def add_report(self, node: str, report: Mapping[str, Any]) -> None:
        self._workers.add(node)
        self.buckets.merge(report["buckets"])
        if report.get("arrivals"):
            self.arrivals.merge(report["arrivals"])
        if report.get("clock"):
            self._clocks[node] = dict(report["clock"])
        self.add_cpu(node, float(report["t"]), float(report["cpu_pct"]))
        if report["cpu_warning"]:
            self.add_cpu_warning(node)

    def document(self, workload: Mapping[str, Any], steps: Sequence[Step]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "bucket_s": BUCKET_S,
            "workload": dict(workload),
            "verification": self.verification,
            "steps": [step.to_json() for step in steps],
            "skipped": self.skipped,
            "buckets": self.buckets.to_json(),
            "loadgen_cpu": sorted(self._cpu, key=lambda sample: (sample["t"], sample["node"])),
            "cpu_warnings": sorted(self._cpu_warnings),
            "workers": len(self._workers),
            "clocks": dict(sorted(self._clocks.items())),
            **(
                {"open_loop": self.open_loop, "arrivals": self.arrivals.to_json()}
                if self.open_loop
                else {}
            ),
        }


def write_json_atomic(path: str | os.PathLike[str], document: Mapping[str, Any]) -> None:
    """Write via a temporary file in the same directory, so readers see all or nothing."""
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        # The orchestrator may read results as another user than the load generator's.
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
