"""What each worker model should do on paper, to hold the measurements against.

Slots are how many requests the server can have in flight at once. The throughput ceiling comes
from two limits: every request holds a slot for its whole duration (I/O and CPU), and only one
thread per process runs Python at a time (the GIL), on at most as many cores as the target got.
Per-request overhead of the server itself is not modelled, so the ceiling is an upper bound
that CPU-heavy and no-op workloads fall short of by that overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

from flaskbench.servers import Target
from flaskbench.workloads import Workload


@dataclass(frozen=True)
class Expectation:
    # None: unbounded (a thread or greenlet per connection, capped only by the user count).
    slots: int | None
    # None: no model (a no-op request's cost is all server overhead).
    rps: float | None
    # What caps the ceiling at this user count: "users", "slots" or "cpu".
    limit: str | None


def expected_slots(target: Target) -> int | None:
    if target.worker_class == "threaded":
        return None
    if target.worker_class == "gthread":
        assert target.threads is not None
        return target.workers * target.threads
    if target.worker_class == "gevent":
        assert target.worker_connections is not None
        return target.workers * target.worker_connections
    # single, processes, sync: one request per process at a time
    return target.workers


def parallel_processes(target: Target) -> int:
    """Processes that can run Python at the same time (threads and greenlets share one GIL)."""
    return target.workers


def expect(target: Target, workload: Workload, users: int, cores: int) -> Expectation:
    slots = expected_slots(target)
    busy = users if slots is None else min(users, slots)
    held_s = (workload.io_ms + workload.cpu_ms) / 1000
    if held_s == 0:
        return Expectation(slots, None, None)
    ceilings = [(busy / held_s, "users" if busy == users else "slots")]
    if workload.cpu_ms:
        running = min(users, parallel_processes(target), cores)
        ceilings.append(
            (running / (workload.cpu_ms / 1000), "cpu" if running < busy else ceilings[0][1])
        )
    rps, limit = min(ceilings, key=lambda c: c[0])
    return Expectation(slots, rps, limit)
