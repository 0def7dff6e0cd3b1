"""What each worker model should do on paper, to hold the measurements against.

Slots are how many requests the server can have in flight at once. The throughput ceiling comes
from two limits: every request holds a slot for its whole duration (I/O and CPU), and only one
thread per process runs Python at a time (the GIL), on at most as many cores as the target got.
What a request costs is known in advance for the built-in app's workloads (their io_ms and
cpu_ms); for any other app it is measured at the lowest user step (see analyze.measure_work)
and the ceilings are derived from that. Per-request overhead of the server itself is not
modelled for the built-in app, so its ceiling is an upper bound that CPU-heavy and no-op
workloads fall short of by that overhead.

Slow clients (transfer_times): a client spends body / send_rate sending its request and
response / receive_rate reading the answer, so a user's request takes that much longer end to
end; but a slot is held only for the part of that transfer it waits for itself, which depends
on the model (the server's module says: Server.transfer_hold) and on what buffers in between.
The kernel buffers a body while its connection waits to be accepted (the server's receive
buffer and the slow client's small send buffer) and a response once it is written (the
server's send buffer, autotuned up to megabytes), so a slot that reads the body as it comes is
held for (body - what the kernel took) / send_rate, and one that waits until the client has read
its response and hung up (a closing worker that drains the connection) for all of
response / receive_rate, at most its wait.
Behind a proxy, the server's client is the proxy: it reads the whole body before passing a
request on (request buffering on), or streams it through its own socket buffers, which take
megabytes; and it reads the whole response at once (buffering on) or into its socket buffers:
either way, for bodies and responses of a few megabytes, the server is held only for the fast
hop. The buffer sizes are Linux's defaults (KERNEL_*).

Open loop (open_loop_expectation): requests arrive at a rate whatever the server does, so what
it completes is min(rate, ceiling), where the ceiling is the model's throughput with as many
requests offered as it can take; utilisation is rate / ceiling, and the time a request waits
for a free slot grows as it nears 1 and without bound beyond: evenly spaced arrivals do not
wait below 1 (D/D/c), Poisson arrivals wait as an M/D/c queue (Erlang's C formula for M/M/c,
halved: a deterministic service time has no variance).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from flaskbench.config.workloads import Workload
from flaskbench.servers.registry import server_of
from flaskbench.servers.server import Target, TransferHold

# What Linux buffers of a connection by default: the receive buffer a connection starts with
# (tcp_rmem's default) and the send buffer autotuning grows to (tcp_wmem's maximum), and a
# paced client's own small buffers (locustfiles/paced.py, as the kernel doubles them).
KERNEL_RECEIVE_BUFFER = 131072
KERNEL_SEND_BUFFER = 4194304
PACED_SEND_BUFFER = 2 * 16384
PACED_RECEIVE_BUFFER = 2 * 32768
# A response of the built-in app's /bytes?n=N.
_BYTES_PATH = re.compile(r"^/bytes\?n=0*(\d+)$")


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
class Transfer:
    """What a slow client moves per request, and how fast (bytes, bytes per second; 0: none,
    or at full speed)."""

    body_bytes: int
    response_bytes: int
    send_rate: int
    receive_rate: int

    @property
    def upload_s(self) -> float:
        return self.body_bytes / self.send_rate if self.send_rate else 0.0

    @property
    def download_s(self) -> float:
        return self.response_bytes / self.receive_rate if self.receive_rate else 0.0


def transfer_of(workload: Workload) -> Transfer | None:
    """A slow-client workload's transfer, where its sizes are known: its body (the built-in
    app's upload, or a request's body_size) and its response (the built-in app's download, or
    /bytes?n=). None: fast clients, or several requests."""
    client = workload.client
    if client is None or len(workload.traffic) != 1:
        return None
    request = workload.traffic[0]
    found = _BYTES_PATH.match(request.path)
    response = workload.download_bytes or (int(found.group(1)) if found else 0)
    return Transfer(
        request.body_size or 0, response, client.send_rate or 0, client.receive_rate or 0
    )


def transfer_times(
    target: Target, transfer: Transfer | None, queued: bool = True
) -> tuple[float, float]:
    """(seconds a slot is held by a slow client's transfer, seconds the client spends on it).
    `queued`: connections wait for a slot (more users than slots), so the kernel buffered what
    it could of a body before a slot reads it; else a slot reads it from its first byte.
    Behind a proxy the server's client is the proxy (see the module's docstring)."""
    if transfer is None:
        return 0.0, 0.0
    client_s = transfer.upload_s + transfer.download_s
    if target.proxy is not None:
        # The proxy takes the body whole, or into its socket buffers (megabytes); the same for
        # the response: the server is held only beyond those.
        held_up = _beyond(transfer.body_bytes, KERNEL_SEND_BUFFER, transfer.send_rate)
        held_down = _beyond(transfer.response_bytes, KERNEL_SEND_BUFFER, transfer.receive_rate)
        if target.proxy.request_buffering:
            held_up = 0.0
        if target.proxy.buffering:
            held_down = 0.0
        return held_up + held_down, client_s
    hold = server_of(target).transfer_hold(target)
    return _direct_hold(hold, transfer, queued), client_s


def _direct_hold(hold: TransferHold, transfer: Transfer, queued: bool) -> float:
    """Seconds a slot waits for a slow client that talks to the server directly: for a body,
    what the kernel could not buffer while its connection waited (all of it, if it did not)."""
    held = 0.0
    if hold.upload:
        ahead = KERNEL_RECEIVE_BUFFER + PACED_SEND_BUFFER if queued else 0
        held += _beyond(transfer.body_bytes, ahead, transfer.send_rate)
    if hold.download == "client":
        held += min(transfer.download_s, hold.close_wait_s)
    else:
        held += _beyond(
            transfer.response_bytes,
            KERNEL_SEND_BUFFER + PACED_RECEIVE_BUFFER,
            transfer.receive_rate,
        )
    return held


def _beyond(size: int, buffered: int, rate: int) -> float:
    """Seconds to move what does not fit in `buffered` at `rate` (0: at full speed)."""
    return max(size - buffered, 0) / rate if rate else 0.0


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


def expect(
    target: Target, work: Work | None, users: int, cores: int, transfer: Transfer | None = None
) -> Expectation:
    """The ceiling with `users` back to back: each user's request takes its work and its
    client's transfer; each busy slot its work and the part of the transfer it waits for."""
    slots = expected_slots(target)
    busy = users if slots is None else min(users, slots)
    queued = slots is not None and users > slots
    held_transfer_s, client_transfer_s = transfer_times(target, transfer, queued)
    work_s = work.held_ms / 1000 if work else 0.0
    held_s, client_s = work_s + held_transfer_s, work_s + client_transfer_s
    if work is None or client_s == 0:
        return Expectation(slots, None, None)
    ceilings = [(users / client_s, "users")]
    if slots is not None and held_s > 0:
        ceilings.append((slots / held_s, "slots"))
    if work.cpu_ms:
        running = min(users, parallel_processes(target), cores)
        ceilings.append(
            (running / (work.cpu_ms / 1000), "cpu" if running < busy else ceilings[0][1])
        )
    rps, limit = min(ceilings, key=lambda c: c[0])
    return Expectation(slots, rps, limit)


def random_spread_busy(requests: int, workers: int, per_worker: int) -> float:
    """Requests running on average when each of `requests` in flight went to one of `workers`
    at random and each worker runs at most `per_worker` at once (the rest wait in its queue):
    the sum over workers of E[min(X, per_worker)], X ~ Binomial(requests, 1 / workers). What a
    server whose workers take connections while full (Server.takes_connections_while_full)
    keeps busy when every request comes on a connection of its own."""
    chance = 1 / workers
    running = sum(
        math.comb(requests, k) * chance**k * (1 - chance) ** (requests - k) * min(k, per_worker)
        for k in range(requests + 1)
    )
    return workers * running


# As many users as a target can take: its ceiling under an open loop.
UNBOUNDED_USERS = 1_000_000


@dataclass(frozen=True)
class OpenExpectation:
    # What the server completes: min(rate, ceiling); None: no model.
    rps: float | None
    ceiling: float | None
    # rate / ceiling.
    utilisation: float | None
    # Mean latency from when a request was due: its work, its client's transfer and the wait
    # for a slot (None: no model, or above the ceiling, where the wait grows without bound).
    mean_ms: float | None


def open_loop_expectation(
    target: Target,
    work: Work | None,
    rate: float,
    cores: int,
    arrival: str,
    transfer: Transfer | None = None,
) -> OpenExpectation:
    """What an open loop offering `rate` requests per second should see (module docstring)."""
    ceiling = expect(target, work, UNBOUNDED_USERS, cores, transfer)
    if work is None or ceiling.rps is None:
        return OpenExpectation(None, None, None, None)
    utilisation = rate / ceiling.rps
    held_transfer_s, client_transfer_s = transfer_times(target, transfer)
    service_s = (work.cpu_ms / 1000) if ceiling.limit == "cpu" else work.held_ms / 1000
    service_s += 0.0 if ceiling.limit == "cpu" else held_transfer_s
    servers = ceiling.rps * service_s
    wait_s = _queue_wait_s(rate, servers, service_s, arrival)
    end_to_end_s = work.held_ms / 1000 + client_transfer_s
    mean = None if wait_s is None else 1000 * (end_to_end_s + wait_s)
    return OpenExpectation(min(float(rate), ceiling.rps), ceiling.rps, utilisation, mean)


def _queue_wait_s(rate: float, servers: float, service_s: float, arrival: str) -> float | None:
    """Mean wait for one of `servers` slots, each busy `service_s` per request (None: the
    queue grows without bound). Slots without a limit (a greenlet per connection) never wait."""
    if service_s <= 0 or servers >= UNBOUNDED_USERS / 2:
        return 0.0
    load = rate * service_s
    count = max(round(servers), 1)
    if load >= count:
        return None
    if arrival != "poisson":
        return 0.0
    return erlang_c(count, load) * service_s / (count - load) / 2


def erlang_c(servers: int, load: float) -> float:
    """The probability that an arrival waits in an M/M/c queue with `servers` and offered
    `load` (Erlangs, below `servers`), from Erlang's B by its recurrence, which stays finite for
    a thousand servers."""
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking / (1 - load / servers * (1 - blocking))
