"""The Locust master of a run: it stays up with its workers, and walks one staircase per cell it
is sent, so a cell costs no Locust start or stop.

    python master.py [--locustfile theirs.py] --bind-host 127.0.0.1 --bind-port 5557 \\
        --expect-workers 2 --inbox DIR

Orders come as JSON files in the inbox, one per cell, taken in name order and removed once read
(a file that does not parse yet is still being written): {"format", "cell", "out",
"user_class", "argv"}, `argv` being the cell's Locust options (--host and the --fb-* ones of
locustfile.py) and `user_class` one of locustfile.py's or of the user's own file's. The
master answers on stdout, one JSON line per event (the orchestrator's side is
flaskbench/execute/swarm.py; both sides' types are in flaskbench/results/contract.py):

    {"event": "ready", "workers": N}       its workers are connected; orders may come
    {"event": "measured", "cell": ID}      the cell's last window is over: its target may stop
    {"event": "done", "cell": ID, "ok": B} the cell's files are in `out` (B: load was sent)
    {"event": "error", "message": TEXT}    it cannot go on, and exits

Between cells no user runs. A cell's files in `out`: loadgen.json (stepstats.Record), the
master's log while the cell ran, and Locust's CSVs of the cell's requests, failures and
exceptions. After `--idle-timeout` seconds without an order or a heartbeat (the orchestrator
rewrites a file in the inbox every few seconds while it lives: without it, nobody is left to
send an order) the master tells its workers to quit, and exits.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust import LoadTestShape, User, events
from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments
from locust.env import Environment
from locust.log import setup_logging
from locust.runners import MasterRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from locust.util.load_locustfile import load_locustfile
from locustfile import (
    CLOCK_ANSWER,
    CLOCK_REQUEST,
    NEW_CELL,
    OWN_USERS,
    REPORT_KEY,
    REPORT_NOW,
    CpuMeter,
    describe_workload,
    verify,
)
from stepstats import (
    Record,
    Schedule,
    Step,
    StepResult,
    StopRule,
    plan_schedule,
    stop_reason,
    write_json_atomic,
)

# The orders' and events' format: flaskbench/results/contract.py's SWARM_FORMAT (the Locust
# image carries no flaskbench; a test checks that they agree).
FORMAT = 1
INBOX_POLL_S = 0.02
# The file the orchestrator rewrites in the inbox every few seconds while it lives (the name is
# flaskbench/execute/swarm.py's HEARTBEAT_FILE): each new content counts as activity.
HEARTBEAT_FILE = "heartbeat"
# A step is judged for a stop rule once the workers' reports for its last second are in (they
# report every second).
REPORT_LAG_S = 1.1
# After a cell's last window, how long the master waits for the workers to stop their users and
# report what they recorded before it writes what it has.
LAST_REPORT_WAIT_S = 3.0
LOADGEN_JSON = "loadgen.json"
MASTER_LOG = "locust-master.log"
CSV_PREFIX = "locust"


class OrderError(Exception):
    """An order the master cannot run; the message says why."""


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"format": FORMAT, "event": event, **fields}), flush=True)


@dataclass
class Cell:
    """One cell on the master: its options, its staircase, and what the workers reported."""

    cell_id: str
    out: Path
    options: argparse.Namespace
    user_class: type[User]
    record: Record = field(default_factory=Record)
    schedule: Schedule | None = None
    rule: StopRule = field(default_factory=StopRule)
    done: list[StepResult] = field(default_factory=list)
    # Why the staircase stopped climbing, and when (the master's clock).
    stopped: str | None = None
    stopped_at: float | None = None
    # Each worker's latest report time (the master's clock).
    reported: dict[str, float] = field(default_factory=dict)

    @property
    def steps_run(self) -> tuple[Step, ...]:
        if self.schedule is None:
            return ()
        return self.schedule.steps[: len(self.done)] if self.stopped else self.schedule.steps

    @property
    def measured_until(self) -> float:
        """When the last window that runs ends (the last one, unless the staircase stopped)."""
        assert self.schedule is not None
        steps = self.steps_run
        return steps[-1].measure_end if steps else self.schedule.steps[0].start

    @property
    def unit(self) -> str:
        """What a step's level counts."""
        return "requests/s offered" if self.options.fb_open_loop else "users"

    def next_judgement(self) -> float | None:
        """When the next step can be judged for the stop rule (None: nothing to judge)."""
        if self.schedule is None or self.rule == StopRule() or self.stopped:
            return None
        pending = self.schedule.steps[len(self.done) :]
        return pending[0].measure_end + REPORT_LAG_S if pending else None

    def judge(self, now: float) -> None:
        """Judge each step whose last worker reports are in, until the rule says stop."""
        assert self.schedule is not None
        if self.rule == StopRule():
            return
        for step in self.schedule.steps[len(self.done) :]:
            if self.stopped or now < step.measure_end + REPORT_LAG_S:
                return
            self.done.append(
                self.record.buckets.window(
                    step.level, step.measure_start, step.measure_end, self.unit
                )
            )
            self.stopped = stop_reason(self.done, self.rule)
            self.stopped_at = now if self.stopped else None

    def skipped(self) -> list[dict[str, Any]]:
        if not self.stopped or self.schedule is None:
            return []
        return [
            {
                "index": step.index,
                "users": step.users,
                "reason": self.stopped,
                "stopped_at": self.stopped_at,
            }
            for step in self.schedule.steps[len(self.done) :]
        ]


class CellShape(LoadTestShape):
    """Runs as long as the master does: no user between cells, the current cell's staircase
    while one runs. Locust calls tick() about once a second at an arbitrary phase, so the step
    is looked up by wall-clock time, and a tick just before a step edge waits for it."""

    def __init__(self) -> None:
        # LoadTestShape.__init__ has no annotations (through super(), untyped_calls_exclude
        # does not reach it).
        super().__init__()  # type: ignore[no-untyped-call]
        self.cell: Cell | None = None
        # Called with the time of each tick; the master samples its own CPU with it.
        self.on_tick: Callable[[float], None] | None = None
        self._users, self._rate = 0, 1.0
        # The user class of the cell the users belong to (Locust acts on a tick that differs
        # from the last: a class only changes with the users).
        self._classes: list[type[User]] = []
        self._new_cell = gevent.event.Event()

    def begin(self, cell: Cell) -> None:
        """Walk this cell's staircase; a tick waiting for a cell wakes at once."""
        self.cell = cell
        self._new_cell.set()

    def end(self) -> None:
        self.cell = None

    def tick(self) -> tuple[int, float, list[type[User]]]:
        users = self._users_now()
        if self.cell is not None and users:
            self._classes = [self.cell.user_class]
        if users != self._users:
            # The whole step's users in one go, up or down (Locust stops users at the spawn
            # rate too), well inside the next step's warmup. (Locust acts on a tick that
            # differs from the last: the rate stays until the users change.)
            self._rate = float(max(users, self._users, 1))
        self._users = users
        return users, self._rate, self._classes

    def _users_now(self) -> int:
        while self._users == 0 and self._idle():
            # Between cells (no user left running) the tick waits for the next cell, so that
            # its first step starts on time rather than at Locust's next tick.
            self._new_cell.clear()
            if self._idle():
                self._new_cell.wait()
        cell = self.cell
        if cell is None or cell.schedule is None:
            return 0
        now = time.time()
        # The next step edge, or the moment the next step can be judged, if that comes before
        # Locust's next tick.
        moments = [cell.schedule.next_change(now), cell.next_judgement()]
        soon = min((m for m in moments if m is not None and m >= now), default=None)
        if soon is not None and soon - now < 1:
            gevent.sleep(soon - now)
            now = soon
        if self.on_tick is not None:
            self.on_tick(now)
        cell.judge(now)
        users = None if cell.stopped else cell.schedule.users_at(now)
        return users or 0

    def _idle(self) -> bool:
        """No cell, or one whose staircase is over."""
        cell = self.cell
        if cell is None or cell.schedule is None:
            return True
        return bool(cell.stopped) or cell.schedule.users_at(time.time()) is None


def order_parser() -> argparse.ArgumentParser:
    """Locust's options with the locustfile's own (--fb-*): a cell's argv."""
    parser = get_empty_argument_parser(add_help=False)
    setup_parser_arguments(parser)
    events.init_command_line_parser.fire(parser=parser)

    def refuse(message: str) -> None:
        raise OrderError(message)

    # argparse calls error() for every problem it finds, which would exit the master.
    parser.error = refuse  # type: ignore[method-assign]
    return parser


@dataclass(frozen=True)
class Order:
    cell_id: str
    out: Path
    user_class: str
    argv: list[str]


def _read_text(path: Path) -> str:
    """A small file's text, or "" where there is none (yet)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def read_order(path: Path) -> Order | None:
    """The order in a file of the inbox; None while the file is still being written (it does
    not parse yet)."""
    try:
        order = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(order, dict) or order.get("format") != FORMAT:
        raise OrderError(f"{path.name}: not an order of format {FORMAT}")
    try:
        return Order(
            str(order["cell"]),
            Path(order["out"]),
            str(order["user_class"]),
            [str(a) for a in order["argv"]],
        )
    except (KeyError, TypeError) as exc:
        raise OrderError(f"{path.name}: no {exc} in the order") from None


class Master:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.user_classes = _user_classes(args.locustfile)
        self.parser = order_parser()
        self.shape = CellShape()
        self.environment = Environment(
            user_classes=list(self.user_classes.values()),
            shape_class=self.shape,
            events=events,
            parsed_options=self.parser.parse_args([]),
        )
        self.runner: MasterRunner = self.environment.create_master_runner(
            args.bind_host, args.bind_port
        )
        # Locust's own listeners for a master (those of a locustfile, and its init hooks).
        events.init.fire(environment=self.environment, runner=self.runner, web_ui=None)
        self.cell: Cell | None = None
        self.meter = CpuMeter()
        self.shape.on_tick = self._on_tick
        self.environment.events.worker_report.add_listener(self._on_worker_report)
        self.runner.register_message(CLOCK_REQUEST, self._on_clock_request)

    def _on_tick(self, now: float) -> None:
        if self.cell is not None and now - self.meter.last_sample >= 1.0:
            self.cell.record.add_cpu("master", now, self.meter.sample())

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        report = data.get(REPORT_KEY)
        if self.cell is None or report is None:
            return
        node = f"worker-{client_id}"
        self.cell.record.add_report(node, report)
        self.cell.reported[node] = float(report["t"])

    def _on_clock_request(self, msg: Any, **_kw: Any) -> None:
        answer = {"sent": msg.data["sent"], "master": time.time()}
        self.runner.send_message(CLOCK_ANSWER, answer, client_id=msg.node_id)

    def wait_for_workers(self) -> bool:
        deadline = time.monotonic() + self.args.expect_workers_max_wait
        while self.runner.worker_count < self.args.expect_workers:
            if time.monotonic() > deadline:
                return False
            gevent.sleep(0.05)
        self.runner.start_shape()
        return True

    def serve(self) -> None:
        """Take orders until neither an order nor a heartbeat comes for --idle-timeout seconds
        (the orchestrator is gone then)."""
        idle_since = time.monotonic()
        inbox = Path(self.args.inbox)
        beat = ""
        # Orders stay in the inbox (names are never reused): removing one could race the
        # container engine, which sets a file's owner and times after writing it.
        taken: set[str] = set()
        while time.monotonic() - idle_since < self.args.idle_timeout:
            # Not a dot file: the local runner writes an order under a hidden name, then renames.
            for path in sorted(inbox.glob("[!.]*.json")):
                order = None if path.name in taken else read_order(path)
                if order is None:
                    continue
                taken.add(path.name)
                self.run_cell(order)
                idle_since = time.monotonic()
            latest = _read_text(inbox / HEARTBEAT_FILE)
            if latest != beat:
                beat, idle_since = latest, time.monotonic()
            gevent.sleep(INBOX_POLL_S)

    def run_cell(self, order: Order) -> None:
        try:
            options = self.parser.parse_args(order.argv)
        except OrderError as exc:
            emit("done", cell=order.cell_id, ok=False, error=f"bad options: {exc}")
            return
        user_class = self.user_classes.get(order.user_class)
        if user_class is None:
            known = ", ".join(sorted(self.user_classes))
            error = f"no user class {order.user_class} (known: {known})"
            emit("done", cell=order.cell_id, ok=False, error=error)
            return
        order.out.mkdir(parents=True, exist_ok=True)
        log = _cell_log(order.out / MASTER_LOG)
        try:
            ok = self._walk(Cell(order.cell_id, order.out, options, user_class))
        finally:
            _end_cell_log(log)
        emit("done", cell=order.cell_id, ok=ok)

    def _walk(self, cell: Cell) -> bool:
        env, options = self.environment, cell.options
        env.parsed_options, env.host = options, options.host
        workload = describe_workload(cell.user_class, options)
        # Before any user starts: a workload the app does not answer as expected gets no load.
        cell.record.verification = verify(env, cell.user_class)
        if not cell.record.verification["ok"]:
            emit("measured", cell=cell.cell_id)
            write_json_atomic(cell.out / LOADGEN_JSON, cell.record.document(workload, ()))
            return False
        if options.fb_stop_p99_ms is not None or options.fb_stop_p99_factor is not None:
            cell.rule = StopRule(options.fb_stop_p99_ms, options.fb_stop_p99_factor)
        self.runner.stats.reset_all()
        self.runner.exceptions = {}
        self.runner.send_message(NEW_CELL)
        self.cell = cell
        cell.schedule = self._schedule(options, time.time())
        if options.fb_open_loop:
            cell.record.open_loop = {
                "arrival": options.fb_open_loop,
                "rates": list(options.fb_steps),
                "late_ms": float(options.fb_open_late_ms),
            }
        self.shape.begin(cell)
        try:
            while time.time() < cell.measured_until:
                gevent.sleep(0.05)
            emit("measured", cell=cell.cell_id)
            self._collect_last_reports(cell)
        finally:
            self.shape.end()
            self.cell = None
        if self.runner.cpu_warning_emitted:
            cell.record.add_cpu_warning("master")
        cell.record.skipped = cell.skipped()
        write_json_atomic(cell.out / LOADGEN_JSON, cell.record.document(workload, cell.steps_run))
        _write_csvs(self.environment, cell.out)
        return True

    def _collect_last_reports(self, cell: Cell) -> None:
        """Once the workers stopped their users (a request still in flight then is dropped,
        never recorded), a report from each, asked for at once, holds every request left."""
        deadline = time.monotonic() + LAST_REPORT_WAIT_S
        while self.runner.user_count and time.monotonic() < deadline:
            gevent.sleep(0.02)
        asked = time.time()
        self.runner.send_message(REPORT_NOW)
        workers = {f"worker-{client.id}" for client in self.runner.clients.all}
        while time.monotonic() < deadline:
            if all(cell.reported.get(w, 0.0) >= asked for w in workers):
                return
            gevent.sleep(0.02)

    def quit(self) -> None:
        self.runner.quit()

    def _schedule(self, options: argparse.Namespace, now: float) -> Schedule:
        """The cell's staircase from now. An open loop runs a scheduler per worker, which gets
        its start and their number with the options of its first spawn message, and works
        out the same schedule (see scheduler.py)."""
        schedulers = None
        if options.fb_open_loop:
            schedulers = self.runner.worker_count
            options.fb_open_start, options.fb_open_schedulers = now, schedulers
        return plan_schedule(
            options.fb_steps,
            options.fb_warmup,
            options.fb_measure,
            start_time=now,
            schedulers=schedulers,
        )


def _write_csvs(environment: Environment, out: Path) -> None:
    """Locust's own account of the cell: its requests, failures and exceptions."""
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("stats", writer.requests_csv),
        ("failures", writer.failures_csv),
        ("exceptions", writer.exceptions_csv),
    ):
        with (out / f"{CSV_PREFIX}_{suffix}.csv").open("w", newline="") as handle:
            write(csv.writer(handle))


def _cell_log(path: Path) -> logging.Handler:
    """The master's log lines while a cell runs, into the cell's own file."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s/%(name)s: %(message)s"))
    for name in ("locust", ""):
        logging.getLogger(name).addHandler(handler)
    return handler


def _end_cell_log(handler: logging.Handler) -> None:
    for name in ("locust", ""):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def _user_classes(locustfile: str | None) -> dict[str, type[User]]:
    """Every user class a cell may name: ours (imported above, with their options and hooks),
    and those of a locustfile of the user's."""
    found: dict[str, type[User]] = {cls.__name__: cls for cls in OWN_USERS}
    if locustfile:
        classes, _shapes = load_locustfile(locustfile)
        found.update(classes)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="master.py", description=__doc__)
    parser.add_argument(
        "--locustfile", default=None, help="a locustfile of the user's, with its user classes"
    )
    parser.add_argument("--bind-host", default="127.0.0.1")
    parser.add_argument("--bind-port", type=int, default=5557)
    parser.add_argument("--expect-workers", type=int, default=1)
    parser.add_argument("--expect-workers-max-wait", type=float, default=30.0)
    parser.add_argument("--inbox", required=True, help="where orders arrive")
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    # Locust's master otherwise waits up to a second after each change of users for the
    # workers' next reports, which holds up its next tick.
    os.environ["LOCUST_WAIT_FOR_WORKERS_REPORT_AFTER_RAMP_UP"] = "0"
    setup_logging(args.loglevel)
    master = Master(args)
    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(_stop, master))
    if not master.wait_for_workers():
        emit(
            "error",
            message=f"{master.runner.worker_count} of {args.expect_workers} Locust workers "
            f"connected within {args.expect_workers_max_wait:g}s",
        )
        master.quit()
        return 1
    emit("ready", workers=master.runner.worker_count)
    try:
        master.serve()
    except OrderError as exc:
        emit("error", message=str(exc))
        return 2
    finally:
        master.quit()
    return 0


def _stop(master: Master) -> None:
    master.quit()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
