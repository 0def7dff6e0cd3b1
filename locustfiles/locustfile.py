"""Locust side of flaskbench: the user class that sends a workload's requests, the check of a
workload before any load, and the workers' per-second request buckets, which the master
(master.py) gathers into each cell's loadgen.json (docs/raw-data.md).

Workers run `locust --worker -f locustfile.py[,theirs.py]` and have every user class of those
files; each cell's order to the master (master.py) says which runs: RequestsUser with the
workload's requests (--fb-requests), OpenLoopUser with them offered at rates (--fb-open-loop:
--fb-steps are then requests per second, see scheduler.py), or a user class of the user's own,
whose requests are recorded the same way. flaskbench's own requests may come from slow clients
(--fb-send-rate, --fb-receive-rate: paced.py) and on a new connection each (--fb-close). The
--fb-* options are the master's, one set per cell: Locust ships them to the workers in every
spawn message (except --fb-clock-skew, which only tests give a worker).

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
import random
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
import locust.runners
import psutil
from locust import FastHttpUser, User, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import Runner, WorkerRunner
from paced import Answer, Pace, http_client
from paced import send as send_paced
from scheduler import ARRIVALS, OpenLoopContext, OpenLoopScheduler, attach
from stepstats import (
    Buckets,
    ClockSync,
    worker_report,
)

# Key of our data in the reports workers send to the master.
REPORT_KEY = "flaskbench"
# Verification: characters of an unexpected response's body kept, and how long one user of a
# class of the user's own runs (longer if it has sent no request yet, up to --fb-timeout).
BODY_SHOWN = 400
VERIFY_S = 3.0
# What loadgen.json's verification calls the wait for the target's first answer.
READINESS = "readiness"
# Workers report every 3 s by default; every second keeps the wait after a cell's last window
# (for the report covering it) short. Locust reads this module global at each report.
WORKER_REPORT_INTERVAL = 1.0
locust.runners.WORKER_REPORT_INTERVAL = WORKER_REPORT_INTERVAL
# A worker asks the master for its clock: quickly at first, so its first requests are stamped
# right, then every second to catch a shorter round trip.
CLOCK_REQUEST, CLOCK_ANSWER = "fb_clock", "fb_clock_answer"
CLOCK_FIRST_ASKS, CLOCK_FIRST_INTERVAL_S, CLOCK_INTERVAL_S = 10, 0.05, 1.0
# The master's word that a new cell starts: a CPU warning belongs to the cell it came in.
NEW_CELL = "fb_new_cell"
# The master's request for a report at once: a cell's last window is over.
REPORT_NOW = "fb_report_now"


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


def _rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected bytes per second, 0 or more, got {text!r}")
    return value


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


# Locust's EventHook.add_listener has no annotations (it returns the listener as it is).
@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
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
        "--fb-send-rate",
        type=_rate,
        default=0,
        help="bytes per second clients send request bodies at (0: as fast as they can)",
    )
    group.add_argument(
        "--fb-receive-rate",
        type=_rate,
        default=0,
        help="bytes per second clients read responses at (0: as fast as they can)",
    )
    group.add_argument(
        "--fb-close",
        action="store_true",
        help="a new connection per request (Connection: close) instead of keep-alive",
    )
    group.add_argument(
        "--fb-open-loop",
        choices=ARRIVALS,
        default=None,
        help="an open loop (OpenLoopUser): --fb-steps are offered requests per second, arriving "
        "as a Poisson process or evenly spaced",
    )
    group.add_argument(
        "--fb-open-late-ms",
        type=_positive,
        default=10.0,
        help="an open loop's request sent this many ms after it was due counts as late",
    )
    # Set by the master for its workers (the open loop's start, and how many share its rate).
    group.add_argument("--fb-open-start", type=float, default=None, help=argparse.SUPPRESS)
    group.add_argument("--fb-open-schedulers", type=int, default=1, help=argparse.SUPPRESS)
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
        self._pace = _pace(options)
        # A slow client's own connection, with the small socket buffers that make it slow on
        # the wire (paced.py); made on its first request.
        self._paced: Any = None

    @property
    def requests(self) -> list[_Request]:
        return self._requests

    @task
    def request(self) -> None:
        self.send(random.choices(self._requests, self._weights)[0])

    def send(self, request: _Request) -> tuple[int, str]:
        """Send one request; a status it does not expect is a failure. (status, body start)"""
        if self._pace.paced:
            return self._send_paced(request)
        headers = request.headers | ({} if self._pace.keepalive else {"Connection": "close"})
        data: dict[str, str] | str | None = request.form
        if request.body_size:
            data = "u" * request.body_size
            headers = {"Content-Type": "application/octet-stream"} | headers
        with self.client.request(
            request.method,
            request.path,
            name=request.path,
            headers=headers,
            data=data,
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

    def _send_paced(self, request: _Request) -> tuple[int, str]:
        """A slow client's request, timed from its start to the last byte of its response."""
        if self._paced is None:
            timeout = float(_options(self.environment).fb_timeout)
            self._paced = http_client(str(self.host), self._pace, 1, timeout)
        began = time.perf_counter()
        answer = request.send(self._paced, self._pace)
        self.environment.events.request.fire(
            request_type=request.method,
            name=request.path,
            response_time=(time.perf_counter() - began) * 1000,
            response_length=answer.length,
            response=None,
            context={},
            exception=request.judge(answer),
        )
        return answer.status, answer.body


class OpenLoopUser(OpenLoopScheduler):
    """Offers the workload's requests at the staircase's rates (see scheduler.py), picked by
    weight, from clients of the workload's pace; a status a request does not expect is a
    failure."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        options = _options(environment)
        self._requests = [_Request.from_json(r) for r in options.fb_requests]
        self._weights = [r.weight for r in self._requests]

    def pace(self) -> Pace:
        return _pace(_options(self.environment))

    def pick(self) -> _Request:
        return random.choices(self._requests, self._weights)[0]


# The user classes that send the workload's own requests (--fb-requests).
OWN_USERS = (RequestsUser, OpenLoopUser)


def _pace(options: argparse.Namespace) -> Pace:
    return Pace(int(options.fb_send_rate), int(options.fb_receive_rate), not options.fb_close)


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
        body_size: int | None = None,
    ) -> None:
        self.path, self.method, self.headers = path, method, headers
        self.form, self.json, self.expect, self.weight = form, body, expect, weight
        self.body_size = body_size

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
            body_size=int(data["body_size"]) if data.get("body_size") else None,
        )

    def accepts(self, status: int) -> bool:
        return status in self.expect if self.expect else 200 <= status < 300

    def send(self, client: Any, pace: Pace) -> Answer:
        """Through geventhttpclient directly (paced.py), at the pace's rates."""
        return send_paced(
            client, pace, self.method, self.path, self.headers, self.form, self.json, self.body_size
        )

    def judge(self, answer: Answer) -> BaseException | None:
        """Why an answer is a failure, or None: no answer, or a status it does not expect."""
        if answer.error is not None:
            return answer.error
        if not self.accepts(answer.status):
            return RuntimeError(f"HTTP {answer.status}, expected {self.expected}")
        return None

    @property
    def expected(self) -> str:
        return " or ".join(map(str, self.expect)) if self.expect else "2xx"

    def describe(self) -> str:
        return f"{self.method} {self.path}"


def _options(environment: Environment) -> argparse.Namespace:
    # Only None for an Environment built by hand, never under the locust command.
    options: argparse.Namespace | None = environment.parsed_options
    assert options is not None
    return options


class CpuMeter:
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


@events.init.add_listener  # type: ignore[untyped-decorator]
def on_init(environment: Environment, runner: Runner, **_kwargs: Any) -> None:
    """A worker records its requests; the master (master.py) gathers them per cell."""
    if isinstance(runner, WorkerRunner):
        _record_on_worker(environment, runner)


def _record_on_worker(environment: Environment, runner: WorkerRunner) -> None:
    buckets = Buckets()
    meter = CpuMeter()
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
            open_loop.arrivals.take_delta(),
        )

    def on_new_cell(msg: Any, **_kw: Any) -> None:
        runner.cpu_warning_emitted = False

    def on_report_now(msg: Any, **_kw: Any) -> None:
        # What Locust's worker does every WORKER_REPORT_INTERVAL, now.
        runner._send_stats()

    open_loop = OpenLoopContext(master_clock)
    attach(environment, open_loop)
    runner.register_message(CLOCK_ANSWER, on_clock_answer)
    runner.register_message(NEW_CELL, on_new_cell)
    runner.register_message(REPORT_NOW, on_report_now)
    gevent.spawn(ask_for_the_clock)
    environment.events.request.add_listener(_request_recorder(buckets, master_clock))
    environment.events.report_to_master.add_listener(on_report_to_master)


def describe_workload(user_class: type[User], options: argparse.Namespace) -> dict[str, Any]:
    if user_class in OWN_USERS:
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
    if user_class in OWN_USERS:
        # Each request once, as a user of the workload's clients sends it.
        RequestsUser.host = environment.host
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
