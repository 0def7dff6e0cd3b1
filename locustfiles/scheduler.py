"""The open loop: requests offered at a rate, whatever the server does (--fb-open-loop).

One OpenLoopUser per load-generating process is a scheduler, not a user: it works out when each
request is due on an absolute clock (the master's, which also defines the steps: `due` grows by
1/rate, or by exponential gaps for Poisson arrivals, never by what the last request took),
sleeps until then and starts the request in a greenlet of its own, so a request goes out at its
time whether or not earlier ones have returned. Each request's latency runs from when it was due
(queueing in the load generator and in the server both count; no coordinated omission).

What the load generator itself could not do is counted, never hidden (stepstats.Arrivals):
requests sent LATE_MS or more after they were due (the generator fell behind), requests not sent
at all because its cap of requests in flight was reached, and per step the requests still
unfinished when its window ended (with the oldest one's age).

The master sets each cell's schedule start and the number of schedulers (its workers) in the
cell's options, so every worker, which gets the master's options with the cell's first spawn
message, works out the same schedule and offers its share of each step's rate.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import gevent
import gevent.pool
from locust import User, constant, task
from locust.env import Environment
from paced import Answer, Pace, http_client
from stepstats import Arrivals, Schedule, plan_schedule

ARRIVALS = ("poisson", "fixed")
# Where the per-process context lives on the Locust environment.
_ATTRIBUTE = "flaskbench_open_loop"


@dataclass
class OpenLoopContext:
    """What a process's schedulers share with its reports: the master's clock, as this process
    reads it, and the arrivals counted so far."""

    clock: Callable[[], float]
    arrivals: Arrivals = field(default_factory=Arrivals)


def attach(environment: Environment, context: OpenLoopContext) -> None:
    setattr(environment, _ATTRIBUTE, context)


def context_of(environment: Environment) -> OpenLoopContext:
    return cast(OpenLoopContext, getattr(environment, _ATTRIBUTE))


def open_schedule(options: argparse.Namespace) -> Schedule:
    """The schedule the master set out (its start and its schedulers are in its options)."""
    return plan_schedule(
        options.fb_steps,
        options.fb_warmup,
        options.fb_measure,
        start_time=float(options.fb_open_start),
        schedulers=int(options.fb_open_schedulers),
    )


class Offered(Protocol):
    """One of the workload's requests, as the scheduler sends it."""

    method: str
    path: str

    def send(self, client: Any, pace: Pace) -> Answer: ...

    def judge(self, answer: Answer) -> BaseException | None: ...


class OpenLoopScheduler(User):
    """The scheduler of one process (see the module's docstring). Its requests, their pace and
    connections are the workload's, given by the locustfile (`pick`, `judge`, `pace`)."""

    abstract = True
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        assert options is not None
        self.options = options
        self.shared = context_of(environment)
        self.schedule = open_schedule(options)
        self.late_s = float(options.fb_open_late_ms) / 1000
        schedulers = self.schedule.steps[0].users if self.schedule.steps else 1
        self.cap = default_cap(tuple(options.fb_steps), float(options.fb_timeout), schedulers)
        self.poisson = options.fb_open_loop == "poisson"
        self.random = random.Random()
        # Requests out now: their greenlet -> when they were due.
        self.inflight: dict[int, float] = {}
        self.pool = gevent.pool.Pool(self.cap)

    def pace(self) -> Pace:
        raise NotImplementedError

    def pick(self) -> Offered:
        """The next request to send."""
        raise NotImplementedError

    @task
    def offer(self) -> None:
        """Every arrival of the whole staircase, then nothing: the shape ends the run."""
        pace = self.pace()
        timeout = float(self.options.fb_timeout)
        client = http_client(str(self.environment.host), pace, self.cap, timeout)
        watcher = gevent.spawn(self._unfinished_at_window_ends)
        try:
            self._arrivals(lambda due: self._start(client, pace, due))
        finally:
            watcher.kill(block=False)
        gevent.sleep(max(self.schedule.end - self.shared.clock(), 0.0) + timeout)

    def _arrivals(self, start: Callable[[float], None]) -> None:
        clock = self.shared.clock
        schedulers = self.schedule.steps[0].users if self.schedule.steps else 1
        due = self.schedule.steps[0].start if self.schedule.steps else self.schedule.end
        while (rate := self.schedule.rate_at(due)) is not None:
            share = rate / schedulers
            due += self.random.expovariate(share) if self.poisson else 1 / share
            if (wait := due - clock()) > 0:
                gevent.sleep(wait)
            if self.schedule.rate_at(due) is not None:
                start(due)

    def _start(self, client: Any, pace: Pace, due: float) -> None:
        if self.pool.full():
            lag_ms = (self.shared.clock() - due) * 1000
            self.shared.arrivals.add(due, lag_ms, late=False, dropped=True)
            return
        self.pool.spawn(self._one, client, pace, due)

    def _one(self, client: Any, pace: Pace, due: float) -> None:
        clock = self.shared.clock
        began = clock()
        lag = began - due
        self.shared.arrivals.add(due, lag * 1000, late=lag >= self.late_s)
        key = id(gevent.getcurrent())
        self.inflight[key] = due
        request = self.pick()
        try:
            answer = request.send(client, pace)
        finally:
            del self.inflight[key]
        self.environment.events.request.fire(
            request_type=request.method,
            name=request.path,
            response_time=(clock() - due) * 1000,
            response_length=answer.length,
            response=None,
            context={},
            exception=request.judge(answer),
        )

    def _unfinished_at_window_ends(self) -> None:
        """At the end of each step's window: how many requests due by then were still out."""
        for step in self.schedule.steps:
            if (wait := step.measure_end - self.shared.clock()) > 0:
                gevent.sleep(wait)
            late = [due for due in self.inflight.values() if due < step.measure_end]
            oldest = (step.measure_end - min(late)) * 1000 if late else 0.0
            self.shared.arrivals.add_unfinished(step.index, len(late), oldest)


def default_cap(rates: tuple[int, ...], timeout_s: float, schedulers: int) -> int:
    """Requests in flight one scheduler allows: enough for its share of the highest rate for
    as long as a request may take, within reason (each is a connection)."""
    return max(1, min(10_000, -(-int(max(rates) * timeout_s) // max(schedulers, 1))))
