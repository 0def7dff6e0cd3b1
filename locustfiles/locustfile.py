"""Locust side of flaskbench: the user class that sends a workload's requests, a staircase
load shape, and per-second request buckets written to loadgen.json (docs/raw-data.md).

Run one user class per Locust run, headless, distributed (master + workers) or single process:
RequestsUser with the workload's requests (--fb-requests), or a user class of the user's own from
a second locustfile (`-f locustfile.py,theirs.py Visitor`), whose requests are recorded the same
way. Custom --fb-* options are given to the master only: Locust ships them to the workers in
every spawn message (except --fb-clock-skew, which only tests give a worker).

The master's clock defines the step windows. Workers may run on other hosts whose clocks differ
by seconds, so each worker keeps asking the master for its time (stepstats.ClockSync) and
stamps its requests with the master's clock.
"""

from __future__ import annotations

import argparse
import http.client
import inspect
import itertools
import json
import math
import os
import random
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
import locust.runners
import psutil
from locust import FastHttpUser, LoadTestShape, User, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, Runner, WorkerRunner
from stepstats import (
    Buckets,
    ClockSync,
    Record,
    Schedule,
    Step,
    StepResult,
    StopRule,
    plan_schedule,
    stop_reason,
    worker_report,
    write_json_atomic,
)

# Key of our data in the reports workers send to the master.
REPORT_KEY = "flaskbench"
# Verification: characters of an unexpected response's body kept, and how long one user of a
# class of the user's own runs (longer if it has sent no request yet, up to --fb-timeout).
BODY_SHOWN = 400
VERIFY_S = 3.0
# The exit code of a master whose verification failed (no load was sent).
VERIFICATION_FAILED = 3
# What loadgen.json's verification calls the wait for the target's first answer.
READINESS = "readiness"
# A step is judged for --fb-stop-* once the workers' reports for its last second are in.
REPORT_LAG_S = 1.5
# Workers report every 3 s by default; every second keeps the tail after the last window (which
# waits for the last report) short. Locust reads this module global at each report.
WORKER_REPORT_INTERVAL = 1.0
locust.runners.WORKER_REPORT_INTERVAL = WORKER_REPORT_INTERVAL
# A worker asks the master for its clock: quickly at first, so its first requests are stamped
# right, then every second to catch a shorter round trip.
CLOCK_REQUEST, CLOCK_ANSWER = "fb_clock", "fb_clock_answer"
CLOCK_FIRST_ASKS, CLOCK_FIRST_INTERVAL_S, CLOCK_INTERVAL_S = 10, 0.05, 1.0


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


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _skew(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.inf
    if not abs(value) <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds in [-3600, 3600], got {text!r}")
    return value


def _out_path(text: str) -> str:
    # Fail before the run rather than after it, when the file is written.
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise argparse.ArgumentTypeError(f"directory {directory!r} is missing or not writable")
    return text


def _requests(text: str) -> list[dict[str, Any]]:
    try:
        requests = json.loads(text)
    except ValueError:
        requests = None
    if (
        not isinstance(requests, list)
        or not requests
        or not all(isinstance(r, dict) and str(r.get("path", "")).startswith("/") for r in requests)
    ):
        raise argparse.ArgumentTypeError(
            f'expected a JSON list of requests like [{{"path": "/"}}], got {text!r}'
        )
    return requests


@events.init_command_line_parser.add_listener
def add_options(parser: argparse.ArgumentParser, **_kwargs: Any) -> None:
    group = parser.add_argument_group("flaskbench")
    group.add_argument(
        "--fb-requests",
        type=_requests,
        default='[{"path": "/hello"}]',
        help="RequestsUser's requests: a JSON list of {path, method, headers, form, json, "
        "expect, weight}",
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
        "--fb-ready-timeout",
        type=_positive,
        default=30.0,
        help="seconds the master waits for the target's first answer before it verifies",
    )
    group.add_argument(
        "--fb-stop-p99-ms",
        type=_positive,
        default=None,
        help="stop climbing once a step's p99 passes this many ms (or failures appear, or "
        "throughput fell for two steps in a row)",
    )
    group.add_argument(
        "--fb-stop-p99-factor",
        type=_positive,
        default=None,
        help="the same, with the limit this many times the first step's p99",
    )
    group.add_argument(
        "--fb-out", type=_out_path, default=None, help="where the master writes loadgen.json"
    )
    group.add_argument(
        "--fb-clock-skew",
        type=_skew,
        default=0.0,
        help="tests only: run this worker's clock this many seconds off the real one",
    )


class RequestsUser(FastHttpUser):
    """Sends the workload's requests back to back, picked by weight: no think time, so users ==
    requests in flight. A status the request does not expect is a failure, never throughput;
    redirects are not followed, so every request is one request to the server."""

    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        # Read per user, not at import: on a worker the options arrive with the spawn message.
        options = _options(environment)
        self.connection_timeout = self.network_timeout = float(options.fb_timeout)
        super().__init__(environment)
        self._requests = [_Request.from_json(r) for r in options.fb_requests]
        self._weights = [r.weight for r in self._requests]

    @property
    def requests(self) -> list[_Request]:
        return self._requests

    @task
    def request(self) -> None:
        self.send(random.choices(self._requests, self._weights)[0])

    def send(self, request: _Request) -> tuple[int, str]:
        """Send one request; a status it does not expect is a failure. (status, body start)"""
        with self.client.request(
            request.method,
            request.path,
            name=request.path,
            headers=request.headers,
            data=request.form,
            json=request.json,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            status = int(response.status_code or 0)
            if not request.accepts(status):
                response.failure(f"HTTP {status}, expected {request.expected}")
            else:
                # Locust fails a 4xx or 5xx by itself unless told it was the one expected.
                response.success()
            return status, (response.text or "")[:BODY_SHOWN]


class _Request:
    """One of --fb-requests (the same fields as flaskbench.config.workloads.Request)."""

    def __init__(
        self,
        path: str,
        method: str,
        headers: dict[str, str],
        form: dict[str, str] | None,
        body: Any,
        expect: list[int],
        weight: int,
    ) -> None:
        self.path, self.method, self.headers = path, method, headers
        self.form, self.json, self.expect, self.weight = form, body, expect, weight

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Request:
        text = data.get("json")
        return cls(
            path=str(data["path"]),
            method=str(data.get("method") or "GET"),
            headers=dict(data.get("headers") or {}),
            form=data.get("form"),
            body=json.loads(text) if text is not None else None,
            expect=[int(s) for s in data.get("expect") or ()],
            weight=int(data.get("weight") or 1),
        )

    def accepts(self, status: int) -> bool:
        return status in self.expect if self.expect else 200 <= status < 300

    @property
    def expected(self) -> str:
        return " or ".join(map(str, self.expect)) if self.expect else "2xx"

    def describe(self) -> str:
        return f"{self.method} {self.path}"


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
        # With a stop rule: a step's results once its window is over, as the master has them.
        self.results: Callable[[Step], StepResult] | None = None
        self.rule = StopRule()
        self.done: list[StepResult] = []
        # Set when the staircase stopped climbing: why, and when (the master's clock).
        self.stopped: str | None = None
        self.stopped_at: float | None = None

    @property
    def steps_run(self) -> tuple[Step, ...]:
        if self.schedule is None:
            return ()
        return self.schedule.steps[: len(self.done)] if self.stopped else self.schedule.steps

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
        if self.stopped or self._saturated(now):
            return None
        users = self.schedule.users_at(now)
        if users is None:
            return None
        # A spawn rate of the whole step starts all its users in one go, well inside the warmup.
        return users, float(max(users, 1))

    def _saturated(self, now: float) -> bool:
        """Judge each step whose last worker reports are in; True once the rule says stop."""
        assert self.schedule is not None
        if self.results is None:
            return False
        for step in self.schedule.steps[len(self.done) :]:
            if now < step.measure_end + REPORT_LAG_S:
                break
            self.done.append(self.results(step))
            self.stopped = stop_reason(self.done, self.rule)
            if self.stopped:
                self.stopped_at = now
                return True
        return False


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


def _request_recorder(buckets: Buckets, now: Callable[[], float]) -> Callable[..., None]:
    """A request listener: each request counts in the second it completed, i.e. now() (the
    master's clock)."""

    def on_request(
        response_time: float, exception: BaseException | None = None, **_kwargs: Any
    ) -> None:
        buckets.add(now(), response_time, failed=exception is not None)

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
    # Read now: the master's options replace the worker's own with its first spawn message.
    skew = float(_options(environment).fb_clock_skew)
    sync = ClockSync()

    def own_clock() -> float:
        return time.time() + skew

    def master_clock() -> float:
        return own_clock() + sync.correction()

    def on_clock_answer(msg: Any, **_kw: Any) -> None:
        sync.add(float(msg.data["sent"]), float(msg.data["master"]), own_clock())

    def ask_for_the_clock() -> None:
        for asked in itertools.count():
            runner.send_message(CLOCK_REQUEST, {"sent": own_clock()})
            gevent.sleep(CLOCK_FIRST_INTERVAL_S if asked < CLOCK_FIRST_ASKS else CLOCK_INTERVAL_S)

    def on_report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        # Deltas: each report carries only what completed since the previous one, like
        # Locust's own stats in the same message, so the master's totals match Locust's.
        data[REPORT_KEY] = worker_report(
            buckets.take_delta(),
            master_clock(),
            meter.sample(),
            runner.cpu_warning_emitted,
            sync.to_json(),
        )

    runner.register_message(CLOCK_ANSWER, on_clock_answer)
    gevent.spawn(ask_for_the_clock)
    environment.events.request.add_listener(_request_recorder(buckets, master_clock))
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
    workload = _describe_workload(user_class, options)

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
        if shape.stopped and shape.schedule is not None:
            record.skipped = [
                {
                    "index": step.index,
                    "users": step.users,
                    "reason": shape.stopped,
                    "stopped_at": shape.stopped_at,
                }
                for step in shape.schedule.steps[len(shape.done) :]
            ]
        write_json_atomic(options.fb_out, record.document(workload, shape.steps_run))

    def on_clock_request(msg: Any, **_kw: Any) -> None:
        answer = {"sent": msg.data["sent"], "master": time.time()}
        runner.send_message(CLOCK_ANSWER, answer, client_id=msg.node_id)

    shape.on_tick = on_tick
    if options.fb_stop_p99_ms is not None or options.fb_stop_p99_factor is not None:
        shape.rule = StopRule(options.fb_stop_p99_ms, options.fb_stop_p99_factor)
        shape.results = lambda step: record.buckets.window(
            step.users, step.measure_start, step.measure_end
        )
    if distributed:
        runner.register_message(CLOCK_REQUEST, on_clock_request)
        environment.events.worker_report.add_listener(on_worker_report)
    else:
        environment.events.request.add_listener(_request_recorder(record.buckets, time.time))
    # Before any user starts: a workload the app does not answer as expected gets no load.
    record.verification = verify(environment, user_class)
    if options.fb_out:
        if not record.verification["ok"]:
            write_json_atomic(options.fb_out, record.document(workload, ()))
        else:
            environment.events.quitting.add_listener(on_quitting)
    if not record.verification["ok"]:
        sys.exit(VERIFICATION_FAILED)


def _single_user_class(environment: Environment) -> type[User]:
    classes = environment.user_classes
    if len(classes) != 1:
        names = ", ".join(cls.__name__ for cls in classes)
        sys.exit(
            "locustfile.py: error: name exactly one user class on the command line "
            f"(RequestsUser, or one of your own); found: {names or 'none'}"
        )
    return classes[0]


def _describe_workload(user_class: type[User], options: argparse.Namespace) -> dict[str, Any]:
    if user_class is RequestsUser:
        requests = [_Request.from_json(r) for r in options.fb_requests]
        return {
            "user_class": user_class.__name__,
            "path": ", ".join(r.describe() for r in requests),
            "wait_time": None,
        }
    return {
        "user_class": user_class.__name__,
        "path": inspect.getfile(user_class),
        "wait_time": own_wait_time(user_class),
    }


def own_wait_time(user_class: type[User]) -> str | None:
    """How a class of the user's own waits between tasks, if it sets that itself (else None:
    Locust's default, no wait)."""
    for cls in user_class.__mro__:
        # A user's file may well be called locustfile.py too: compare classes, not modules.
        if cls.__module__.split(".")[0] == "locust" or cls is RequestsUser:
            return None
        if "wait_time" in vars(cls):
            return _describe_wait(vars(cls)["wait_time"])
    return None


# Locust's own wait functions are closures over their arguments, which are named so.
_WAIT_ARGUMENTS = {
    "between": ("min_wait", "max_wait"),
    "constant": ("wait_time",),
    "constant_pacing": ("wait_time",),
    "constant_throughput": ("task_runs_per_second",),
}


def _describe_wait(wait_time: Any) -> str:
    """`between(1, 3)` for Locust's own wait functions, else the function's name."""
    name = getattr(wait_time, "__qualname__", "")
    outer = name.split(".<locals>")[0]
    code = getattr(wait_time, "__code__", None)
    cells = getattr(wait_time, "__closure__", None) or ()
    if outer in _WAIT_ARGUMENTS and code is not None:
        values = dict(zip(code.co_freevars, (c.cell_contents for c in cells), strict=True))
        if all(argument in values for argument in _WAIT_ARGUMENTS[outer]):
            shown = ", ".join(repr(values[argument]) for argument in _WAIT_ARGUMENTS[outer])
            return f"{outer}({shown})"
    return f"its own wait_time ({name or type(wait_time).__name__})"


def verify(environment: Environment, user_class: type[User]) -> dict[str, Any]:
    """Once the target answers at all: every request of the workload once (a user class of the
    user's own: one user for a few seconds); each must get a status it expects.
    {"ok", "checked", "failure"}"""
    timeout = float(_options(environment).fb_ready_timeout)
    if not _answers_within(str(environment.host), timeout):
        failure = {
            "request": READINESS,
            "status": 0,
            "expected": f"within {timeout:g}s",
            "body": "",
        }
        return {"ok": False, "checked": [], "failure": failure}
    # As Locust's runners do when they spawn users: load goes to --host, whatever the class says.
    user_class.host = environment.host
    if user_class is RequestsUser:
        return _verify_requests(RequestsUser(environment))
    return _verify_user_class(environment, user_class)


def _answers_within(host: str, timeout: float) -> bool:
    """Any HTTP answer to GET / will do: the app need not serve "/" (the target is up)."""
    url = urllib.parse.urlsplit(host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=1)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            gevent.sleep(0.05)
        finally:
            connection.close()
    return False


def _verify_requests(user: RequestsUser) -> dict[str, Any]:
    checked = []
    for request in user.requests:
        status, body = user.send(request)
        checked.append(request.describe())
        if not request.accepts(status):
            failure = {
                "request": request.describe(),
                "status": status,
                "expected": request.expected,
                "body": body,
            }
            return {"ok": False, "checked": checked, "failure": failure}
    return {"ok": True, "checked": checked, "failure": None}


def _verify_user_class(environment: Environment, user_class: type[User]) -> dict[str, Any]:
    seen: list[str] = []
    failures: list[dict[str, Any]] = []

    def capture(
        request_type: str,
        name: str,
        exception: BaseException | None = None,
        response: Any = None,
        **_kwargs: Any,
    ) -> None:
        seen.append(f"{request_type} {name}")
        if exception is not None and not failures:
            failures.append(
                {
                    "request": f"{request_type} {name}",
                    "status": int(getattr(response, "status_code", 0) or 0),
                    "expected": str(exception),
                    "body": (getattr(response, "text", "") or "")[:BODY_SHOWN],
                }
            )
            # Raised in the user's own greenlet: it stops before its next request.
            raise StopUser

    group = gevent.pool.Group()
    environment.events.request.add_listener(capture)
    try:
        user_class(environment).start(group)
        started = time.monotonic()
        limit = max(VERIFY_S, float(_options(environment).fb_timeout))
        while not failures and time.monotonic() - started < (VERIFY_S if seen else limit):
            gevent.sleep(0.05)
    finally:
        group.kill(block=True, timeout=5)
        environment.events.request.remove_listener(capture)
    checked = sorted(set(seen))
    if not failures and not seen:
        failures.append(
            {
                "request": f"one {user_class.__name__}",
                "status": 0,
                "expected": "at least one request",
                "body": "",
            }
        )
    return {"ok": not failures, "checked": checked, "failure": failures[0] if failures else None}
