"""What each worker model should do on paper, to hold the measurements against.

Slots are how many requests the server can have in flight at once. The throughput ceiling comes
from two limits: every request holds a slot for its whole duration (I/O and CPU), and only one
thread per process runs Python at a time (the GIL), on at most as many cores as the target got.
What a request costs is known in advance for the built-in app's workloads (their io_ms and
cpu_ms); for any other app it is measured at the lowest user step (see analyze.measure_work)
and the ceilings are derived from that. Per-request overhead of the server itself is not
modelled for the built-in app, so its ceiling is an upper bound that CPU-heavy and no-op
workloads fall short of by that overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

from flaskbench.config.workloads import Workload
from flaskbench.servers.base import Target
from flaskbench.servers.registry import server_of


@dataclass(frozen=True)
class Work:
    """What one request costs: time waiting (I/O) and CPU time, in milliseconds."""

    io_ms: float
    cpu_ms: float
    # "model": the built-in app's parameters; "measured": at the lowest user step.
    basis: str = "model"
    # For measured work: the user count it was measured at, and the time a request spent inside
    # the app there (the CPU time may exceed it: it includes the server's own work).
    measured_at: int | None = None
    service_ms: float | None = None

    @property
    def held_ms(self) -> float:
        return self.io_ms + self.cpu_ms


def modelled_work(workload: Workload) -> Work | None:
    return Work(workload.io_ms, workload.cpu_ms) if workload.modelled else None


@dataclass(frozen=True)
class Expectation:
    # None: unbounded (a thread or greenlet per connection, capped only by the user count).
    slots: int | None
    # None: no model (a no-op request's cost is all server overhead).
    rps: float | None
    # What caps the ceiling at this user count: "users", "slots" or "cpu".
    limit: str | None


def expected_slots(target: Target) -> int | None:
    """Requests the target's server can have in flight at once (None: one per connection)."""
    return server_of(target).slots(target)


def parallel_processes(target: Target) -> int:
    """Processes that can run Python at the same time (threads and greenlets share one GIL)."""
    return server_of(target).parallel_processes(target)


def expect(target: Target, work: Work | None, users: int, cores: int) -> Expectation:
    slots = expected_slots(target)
    busy = users if slots is None else min(users, slots)
    held_s = work.held_ms / 1000 if work else 0.0
    if work is None or held_s == 0:
        return Expectation(slots, None, None)
    ceilings = [(busy / held_s, "users" if busy == users else "slots")]
    if work.cpu_ms:
        running = min(users, parallel_processes(target), cores)
        ceilings.append(
            (running / (work.cpu_ms / 1000), "cpu" if running < busy else ceilings[0][1])
        )
    rps, limit = min(ceilings, key=lambda c: c[0])
    return Expectation(slots, rps, limit)
