"""Locust side of flaskbench: one user class per workload, a staircase load shape, and
per-second request buckets written to loadgen.json (docs/raw-data.md).

Run one user class per Locust run, headless, distributed (master + workers) or single process.
Custom --fb-* options are given to the master only: Locust ships them to the workers in every
spawn message.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

import gevent
import locust.runners
import psutil
from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner
from stepstats import Buckets, Record, Schedule, plan_schedule, worker_report, write_json_atomic

# Key of our data in the reports workers send to the master.
REPORT_KEY = "flaskbench"
# Workers report every 3 s by default; every second keeps the tail after the last window (which
# waits for the last report) short. Locust reads this module global at each report.
WORKER_REPORT_INTERVAL = 1.0
locust.runners.WORKER_REPORT_INTERVAL = WORKER_REPORT_INTERVAL


def _whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def _steps(text: str) -> tuple[int, ...]:
    try:
        users = tuple(int(part) for part in text.split(","))
    except ValueError:
        users = ()
    if not users or min(users) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated user counts >= 1 such as 1,2,4, got {text!r}"
        )
    return users


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], got {text!r}")
    return value


def _out_path(text: str) -> str:
    # Fail before the run rather than after it, when the file is written.
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise argparse.ArgumentTypeError(f"directory {directory!r} is missing or not writable")
    return text


@events.init_command_line_parser.add_listener
def add_options(parser: argparse.ArgumentParser, **_kwargs: Any) -> None:
    group = parser.add_argument_group("flaskbench")
    group.add_argument("--fb-io-ms", type=_whole_number(0), default=100, help="/io?ms=, /mixed?io=")
    group.add_argument(
        "--fb-cpu-ms", type=_whole_number(0), default=10, help="/cpu?ms=, /mixed?cpu="
    )
    group.add_argument(
        "--fb-steps",
        type=_steps,
        default="1,2,4,8,16,32,64,128",
        help="user count of each step of the staircase, comma-separated",
    )
    group.add_argument("--fb-warmup", type=_whole_number(1), default=5, help="seconds per step")
    group.add_argument("--fb-measure", type=_whole_number(1), default=15, help="seconds per step")
    group.add_argument(
        "--fb-tail",
        type=_whole_number(0),
        default=1,
        help="seconds the last step keeps running after its window, so the workers' last periodic "
        f"report (every {WORKER_REPORT_INTERVAL:g} s) covers the window",
    )
    group.add_argument("--fb-timeout", type=_timeout, default=60.0, help="request timeout, seconds")
    group.add_argument(
        "--fb-out", type=_out_path, default=None, help="where the master writes loadgen.json"
    )


class _WorkloadUser(FastHttpUser):
    """Requests one endpoint back to back: no think time, so users == requests in flight."""

    abstract = True
    wait_time = constant(0)
    endpoint: ClassVar[str]

    @classmethod
    def query(cls, options: argparse.Namespace) -> str:
        return ""

    @classmethod
    def path(cls, options: argparse.Namespace) -> str:
        query = cls.query(options)
        return f"{cls.endpoint}?{query}" if query else cls.endpoint

    def __init__(self, environment: Environment) -> None:
        # Read per user, not at import: on a worker the options arrive with the spawn message.
        options = _options(environment)
        self.connection_timeout = self.network_timeout = float(options.fb_timeout)
        super().__init__(environment)
        self._path = self.path(options)

    @task
    def request(self) -> None:
        self.client.get(self._path, name=self.endpoint)


class NoopUser(_WorkloadUser):
    endpoint = "/hello"


class IoUser(_WorkloadUser):
    endpoint = "/io"

    @classmethod
    def query(cls, options: argparse.Namespace) -> str:
        return f"ms={options.fb_io_ms}"


class CpuUser(_WorkloadUser):
    endpoint = "/cpu"

    @classmethod
    def query(cls, options: argparse.Namespace) -> str:
        return f"ms={options.fb_cpu_ms}"


class MixedUser(_WorkloadUser):
    endpoint = "/mixed"

    @classmethod
    def query(cls, options: argparse.Namespace) -> str:
        return f"io={options.fb_io_ms}&cpu={options.fb_cpu_ms}"


class StaircaseShape(LoadTestShape):
    """Walks the --fb-steps staircase in one run, then stops it.

    Locust calls tick() about once a second at an arbitrary phase (later while start() spawns),
    so the step is looked up by wall-clock time, and a tick just before a step edge waits for it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.schedule: Schedule | None = None
        # Called with the time of each tick; the master samples its own CPU with it.
        self.on_tick: Callable[[float], None] | None = None

    def tick(self) -> tuple[int, float] | None:
        now = time.time()
        if self.schedule is None:
            assert self.runner is not None  # Locust sets it before the first tick
            self.schedule = _schedule(_options(self.runner.environment), now)
        change = self.schedule.next_change(now)
        if change is not None and change - now < 1:
            gevent.sleep(change - now)
            now = change
        if self.on_tick is not None:
            self.on_tick(now)
        users = self.schedule.users_at(now)
        if users is None:
            return None
        # A spawn rate of the whole step starts all its users in one go, well inside the warmup.
        return users, float(max(users, 1))


def _options(environment: Environment) -> argparse.Namespace:
    # Only None for an Environment built by hand, never under the locust command.
    options: argparse.Namespace | None = environment.parsed_options
    assert options is not None
    return options


def _schedule(options: argparse.Namespace, now: float) -> Schedule:
    return plan_schedule(
        options.fb_steps, options.fb_warmup, options.fb_measure, options.fb_tail, start_time=now
    )


class _CpuMeter:
    """CPU % of one core used by this process since the previous sample."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        # The first reading is meaningless; take it now so the next covers a real interval.
        self._process.cpu_percent()
        self.last_sample = time.time()

    def sample(self) -> float:
        self.last_sample = time.time()
        return self._process.cpu_percent()


def _request_recorder(buckets: Buckets) -> Callable[..., None]:
    """A request listener: each request counts in the second it completed, i.e. now."""

    def on_request(
        response_time: float, exception: BaseException | None = None, **_kwargs: Any
    ) -> None:
        buckets.add(time.time(), response_time, failed=exception is not None)

    return on_request


@events.init.add_listener
def on_init(environment: Environment, runner: Runner, **_kwargs: Any) -> None:
    if isinstance(runner, WorkerRunner):
        _record_on_worker(environment, runner)
    else:
        _record_on_master(environment, runner)


def _record_on_worker(environment: Environment, runner: WorkerRunner) -> None:
    buckets = Buckets()
    meter = _CpuMeter()

    def on_report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        # Deltas: each report carries only what completed since the previous one, like
        # Locust's own stats in the same message, so the master's totals match Locust's.
        data[REPORT_KEY] = worker_report(
            buckets.take_delta(), time.time(), meter.sample(), runner.cpu_warning_emitted
        )

    environment.events.request.add_listener(_request_recorder(buckets))
    environment.events.report_to_master.add_listener(on_report_to_master)


def _record_on_master(environment: Environment, runner: Runner) -> None:
    """The master, or the single process of a non-distributed run."""
    user_class = _single_user_class(environment)
    shape = environment.shape_class
    assert isinstance(shape, StaircaseShape)
    options = _options(environment)
    distributed = isinstance(runner, MasterRunner)
    node = "master" if distributed else "local"
    record = Record()
    meter = _CpuMeter()

    def on_tick(now: float) -> None:
        if now - meter.last_sample >= WORKER_REPORT_INTERVAL:
            record.add_cpu(node, now, meter.sample())

    def on_worker_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        record.add_report(f"worker-{client_id}", data[REPORT_KEY])

    def on_quitting(**_kw: Any) -> None:
        # When the shape ends the run, the runner has quit by now (waiting 0.5 s for the
        # workers' final reports), so every worker report that will ever be processed is in.
        if runner.cpu_warning_emitted:
            record.add_cpu_warning(node)
        steps = shape.schedule.steps if shape.schedule is not None else ()
        document = record.document(user_class.__name__, user_class.path(options), steps)
        write_json_atomic(options.fb_out, document)

    shape.on_tick = on_tick
    if distributed:
        environment.events.worker_report.add_listener(on_worker_report)
    else:
        environment.events.request.add_listener(_request_recorder(record.buckets))
    if options.fb_out:
        environment.events.quitting.add_listener(on_quitting)


def _single_user_class(environment: Environment) -> type[_WorkloadUser]:
    classes = environment.user_classes
    if len(classes) != 1 or not issubclass(classes[0], _WorkloadUser):
        names = ", ".join(cls.__name__ for cls in (NoopUser, IoUser, CpuUser, MixedUser))
        sys.exit(f"locustfile.py: error: name exactly one user class on the command line: {names}")
    return classes[0]
