"""Start one server, supervise it, and sample its concurrency gauge into gauge.csv.

    python -m flaskbench_target.launch [--gauge-out PATH] [--gauge-file PATH] [--interval 0.1] \\
        [--grace 5] [--alternate S] [--app SPEC] [--app-src DIR] [--app-dir DIR] [--setup CMD] \\
        [--setup-log PATH] [--setup-timeout S] -- SERVER ARGV...

The server runs in its own process group, in the launcher's session, and dies with the launcher
(Linux PR_SET_PDEATHSIG); whatever it forked stays in that session even when orphaned, so whoever
started the launcher in a session of its own can find and end all of it. SIGTERM or SIGINT to
the launcher sends --stop-signal (default SIGTERM) to the server's process group, then SIGKILL
after --grace seconds.
With --gauge-out, the launcher creates an empty gauge file, hands its path to the server in
FLASKBENCH_GAUGE, and writes a row per process every --interval seconds, on multiples of the
interval in wall-clock time, plus one after the server has ended (format: docs/raw-data.md).
The rows for time t are written at t + interval, so that requests that read the clock just
before t have stored their events; at exit it logs what made the counts approximate, if
anything (see gauge.py).

The server runs in --app-dir (default: the current directory), with the app (--app, as
appload.py reads it) and that directory first on its import path. With --app-src, the directory
is first made a fresh copy of it, and with --setup the app's own setup command runs there
(output into --setup-log) before the server starts.

Exit status: the server's exit code if it ended on its own (128 + N if killed by signal N), 0 if
it ended because the launcher was asked to stop, 1 if the gauge files could not be created, 2 for
a bad command line, 3 if the app could not be copied or its setup command failed, 127 if the
server could not be started.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from flaskbench_target import appdir, gauge

GAUGE_ENV = "FLASKBENCH_GAUGE"
CSV_HEADER = "t,pid,inflight,peak,served,lost\n"
PR_SET_PDEATHSIG = 1
SETUP_FAILED = 3
# The directory this package is in: on the server's import path after the app's own.
HARNESS = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"launch: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m flaskbench_target.launch",
        usage="%(prog)s [--gauge-out PATH] [--gauge-file PATH] [--interval S] [--grace S] "
        "[--alternate S] [--app SPEC] [--app-src DIR] [--app-dir DIR] [--setup CMD] "
        "[--setup-log PATH] [--setup-timeout S] -- SERVER ARGV...",
        description="Start a server, supervise it and sample its concurrency gauge.",
    )
    parser.add_argument("--gauge-out", help="write gauge.csv here (no gauge without it)")
    parser.add_argument(
        "--gauge-file", help="the shared gauge file (default: a new file in /dev/shm)"
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument(
        "--stop-signal",
        type=_signal,
        default=signal.SIGTERM,
        help="what stops the server (default TERM; the server's module says which)",
    )
    parser.add_argument(
        "--alternate",
        type=int,
        metavar="S",
        help="pause the gauge in every other period of S whole seconds of wall-clock time "
        "(counting in even periods), to measure its own cost within one run",
    )
    parser.add_argument(
        "--app", default="flaskbench_target.builtin_app:app", help="the WSGI app (see appload.py)"
    )
    parser.add_argument("--app-src", type=Path, help="copy this directory into --app-dir first")
    parser.add_argument("--app-dir", type=Path, help="the server's directory (default: here)")
    parser.add_argument("--setup", help="a shell command run in --app-dir before the server")
    parser.add_argument("--setup-log", type=Path, help="where the setup command's output goes")
    parser.add_argument(
        "--setup-timeout", type=float, default=60.0, help="seconds the setup command may take"
    )
    if "--" not in argv:
        parser.error("put -- before the server's command line")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("no server command line after --")
    if not args.interval > 0 or not args.grace >= 0:
        parser.error("--interval must be above 0 and --grace 0 or more")
    if (args.gauge_file or args.alternate) and not args.gauge_out:
        parser.error("--gauge-file and --alternate need --gauge-out")
    if args.alternate is not None and args.alternate < 1:
        parser.error("--alternate must be 1 or more whole seconds")
    if args.app_src and not args.app_dir:
        parser.error("--app-src needs --app-dir")
    if args.setup and not args.setup_log:
        parser.error("--setup needs --setup-log")
    return args, command


def prepare_app(args: argparse.Namespace, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The directory the server runs in and its environment; raises appdir.SetupFailed."""
    app_dir = (args.app_dir or Path.cwd()).resolve()
    if args.app_src:
        appdir.fresh_copy(args.app_src, app_dir)
    server_env = appdir.server_env(env, app_dir, args.app, HARNESS)
    if args.setup:
        appdir.run_setup(args.setup, app_dir, server_env, args.setup_log, args.setup_timeout)
    return app_dir, server_env


def _signal(text: str) -> int:
    name = text.upper().removeprefix("SIG")
    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown signal {text!r}; use TERM, INT or QUIT"
        ) from None


# The signals a server may be stopped with: it must see them, whatever whoever started the
# launcher ignored (a shell ignores SIGINT in what it starts in the background, and an ignored
# signal stays ignored across exec).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)


def die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn that makes the server get SIGKILL when the launcher dies, and gives it the
    default handling of the stop signals."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child

    def preexec() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The launcher may have died before prctl took effect.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)

    return preexec


@dataclass
class StopRequest:
    """When the launcher was asked to stop (monotonic seconds), and whether the grace ran out."""

    group: int
    stop_signal: int = signal.SIGTERM
    asked_at: float | None = None
    killed: bool = False

    def ask(self, signum: int, _frame: FrameType | None) -> None:
        name = signal_name(self.stop_signal)
        if self.asked_at is None:
            self.asked_at = time.monotonic()
            log(f"got {signal_name(signum)}; sending {name} to the server's group")
        signal_group(self.group, self.stop_signal)

    def kill_if_overdue(self, grace: float) -> None:
        overdue = self.asked_at is not None and time.monotonic() - self.asked_at >= grace
        if overdue and not self.killed:
            log(
                f"server still running {grace:g} s after {signal_name(self.stop_signal)}; "
                "sending SIGKILL"
            )
            signal_group(self.group, signal.SIGKILL)
            self.killed = True


def signal_group(group: int, signum: int) -> bool:
    """Signal a process group; False when no process is left in it."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def next_tick(last: int, interval: float) -> int:
    """Sleep until the next multiple of `interval` in wall-clock time; return its index."""
    now = time.time()
    # Never the same tick twice, even if the clock steps back; and never sleep long if it does.
    tick = max(math.floor(now / interval) + 1, last + 1)
    time.sleep(min(max(tick * interval - now, 0.0), interval))
    return tick


class GaugeCsv:
    """Samples a gauge file into gauge.csv rows."""

    def __init__(
        self, reader: gauge.GaugeReader, out: TextIO, gauge_path: str, alternate: int | None
    ) -> None:
        self._reader = reader
        self._alternate = alternate
        self._out = out
        self.gauge_path = gauge_path
        # Events are stamped with CLOCK_MONOTONIC; rows are in wall-clock time.
        self._wall_minus_monotonic_ns = time.time_ns() - time.monotonic_ns()
        self.last: gauge.Sample | None = None
        out.write(CSV_HEADER)
        out.flush()

    def pause_if_due(self, now: float) -> None:
        if self._alternate:
            self._reader.pause(paused_at(now, self._alternate))

    def write_sample(self, t: float, replay_all: bool = False) -> None:
        """Rows for wall-clock time `t`: every event stamped up to `t`, or every event there is."""
        horizon = None if replay_all else round(t * 1e9) - self._wall_minus_monotonic_ns
        sample = self.last = self._reader.sample(horizon)
        rows = [(sample.server, sample.lost), *((r, 0) for r in sample.processes)]
        # One write and a flush per sample: a reader of a live run never sees half a sample.
        self._out.write(
            "".join(
                f"{t:.3f},{r.pid},{r.inflight},{r.peak},{r.served},{lost}\n" for r, lost in rows
            )
        )
        self._out.flush()

    def warnings(self) -> list[str]:
        """What made the counts approximate, if anything."""
        sample = self.last
        if sample is None:
            return []
        problems = [
            (sample.overflow, "requests were not counted: every gauge slot was held"),
            (sample.late, "gauge events came in after their sample: some peaks are approximate"),
            (
                sample.dropped,
                "gauge events were lost (a ring overflowed, a dead process's slot was taken "
                "over before it was read, or a process was killed while storing one): counts "
                "and peaks are approximate",
            ),
        ]
        return [f"{count} {what}" for count, what in problems if count]


def paused_at(t: float, period_s: int) -> bool:
    """With --alternate: counting in even periods of wall-clock time, paused in odd ones."""
    return math.floor(t / period_s) % 2 == 1


def supervise(
    server: subprocess.Popen[bytes],
    stop: StopRequest,
    interval: float,
    grace: float,
    sampler: GaugeCsv | None,
) -> int:
    """Tick until the server has ended and one more sample was taken; return its exit code."""
    tick = math.floor(time.time() / interval)
    while True:
        ended = server.poll() is not None
        if not ended:
            stop.kill_if_overdue(grace)
        tick = next_tick(tick, interval)
        if sampler is not None:
            sampler.pause_if_due(tick * interval)
            # Up to one interval ago: a request that read the clock just before the tick may
            # not have published its event yet.
            sampler.write_sample((tick - 1) * interval)
            if ended:
                sampler.write_sample(tick * interval, replay_all=True)
        if ended:
            return server.wait()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_end(pid: int, code: int, stop: StopRequest) -> str:
    how = f"was killed by {signal_name(-code)}" if code < 0 else f"exited with code {code}"
    if stop.asked_at is None:
        return f"server pid {pid} {how} on its own"
    late = " once the grace period had run out" if stop.killed else ""
    return f"server pid {pid} {how} after we asked it to stop{late}"


def exit_status(code: int, stop: StopRequest) -> int:
    if stop.asked_at is not None:
        return 0
    return 128 - code if code < 0 else code


@contextlib.contextmanager
def shared_gauge_file(path: str | None) -> Iterator[str]:
    """The given gauge file path, or a new file in /dev/shm that is removed afterwards."""
    if path:
        yield path
        return
    fd, made = tempfile.mkstemp(dir="/dev/shm", prefix="flaskbench-gauge-")
    os.close(fd)
    try:
        yield made
    finally:
        os.unlink(made)


@contextlib.contextmanager
def gauge_csv(out_path: str, gauge_file: str | None, alternate: int | None) -> Iterator[GaugeCsv]:
    """gauge.csv, sampling a freshly zeroed gauge file."""
    with open(out_path, "w", encoding="ascii") as out, shared_gauge_file(gauge_file) as path:
        gauge.create(path)
        reader = gauge.GaugeReader(path)
        try:
            yield GaugeCsv(reader, out, path, alternate)
        finally:
            reader.close()


def run(args: argparse.Namespace, command: list[str]) -> int:
    env = dict(os.environ)
    # An inherited variable must not turn the gauge-off baseline into a gauged run.
    env.pop(GAUGE_ENV, None)
    try:
        app_dir, env = prepare_app(args, env)
    except appdir.SetupFailed as failure:
        log(f"setup failed: {failure}")
        return SETUP_FAILED
    with contextlib.ExitStack() as cleanup:
        sampler = None
        if args.gauge_out:
            try:
                sampler = cleanup.enter_context(
                    gauge_csv(args.gauge_out, args.gauge_file, args.alternate)
                )
            except OSError as error:
                log(f"could not set up the gauge: {error}")
                return 1
            env[GAUGE_ENV] = sampler.gauge_path
        try:
            # preexec_fn is safe here: the launcher runs no other thread.
            server = subprocess.Popen(
                command,
                cwd=app_dir,
                env=env,
                process_group=0,
                preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509
            )
        except OSError as error:
            log(f"could not start {shlex.join(command)}: {error}")
            return 127
        log(f"started pid {server.pid}: {shlex.join(command)}")
        stop = StopRequest(group=server.pid, stop_signal=args.stop_signal)
        signal.signal(signal.SIGTERM, stop.ask)
        signal.signal(signal.SIGINT, stop.ask)
        try:
            code = supervise(server, stop, args.interval, args.grace, sampler)
        finally:
            # Children the server left behind (or all of it, if the launcher itself failed).
            if signal_group(server.pid, signal.SIGKILL):
                log("killed processes left in the server's group")
    log(describe_end(server.pid, code, stop))
    if sampler is not None:
        # Sampling runs on the target's CPU: its cost is part of the gauge's.
        log(f"sampling the gauge took {time.process_time():.3f} s of CPU")
        for warning in sampler.warnings():
            log(warning)
    return exit_status(code, stop)


def main(argv: list[str] | None = None) -> int:
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    return run(args, command)


if __name__ == "__main__":
    sys.exit(main())
