"""granian (WSGI): `workers` processes, each running the app on at most `blocking_threads` threads
("the maximum amount of threads interacting with your application code", granian's README) and
holding at most `backpressure` connections, idle keep-alive ones included: a permit is taken
before each accept and kept until the connection ends (src/workers.rs). Each response is also
iterated and closed on its thread (response_iter in src/wsgi/io.rs).

Its defaults follow from each other and from the worker count (granian/server/common.py):
backpressure = max(128, backlog) // workers and blocking_threads = backpressure // 2, so with the
default backlog of 1024, 1024 and 512 with one worker, 512 and 256 with two. flaskbench derives
them the same way when the config leaves them out, and passes them explicitly.

On Linux every worker listens on a socket of its own (SO_REUSEPORT) with the whole backlog, and
the kernel spreads connections over workers by a hash, not by load: requests can queue in one
worker while another idles.

Versions: from 1.4 (the first with --backpressure; 1.0 to 1.2 have a command line that reads
GRANIAN_* variables and log no "Respawning" line for a dead worker). 1.x has none of 2.0's
runtime options (--runtime-threads, --runtime-blocking-threads, --runtime-mode,
--blocking-threads-idle-timeout); there, one runtime thread per worker (--threads 1
--threading-mode workers) runs the app in its pool of --blocking-threads threads, which also
serves the runtime's own blocking work, so a worker serves blocking_threads requests at once as
in 2.x. 1.4 to 1.6 sometimes hang on SIGTERM with a worker parked in the runtime; the launcher's
SIGKILL after the grace period ends them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from flaskbench.servers.server import (
    APP,
    Problem,
    Resolved,
    Server,
    Setting,
    Target,
    WorkerTrouble,
    at_least,
    counted,
    in_process,
    integer,
    positive_int,
    positive_ints,
)

MIN_BACKLOG = 128
# The first granian with the runtime options flaskbench passes.
RUNTIME_OPTIONS = "2.0.0"


class Granian(Server):
    name = "granian"
    listed = 5
    # granian's own defaults with one worker; backpressure and blocking_threads follow the
    # worker count when the config leaves them out (see `derived`).
    defaults: ClassVar[Mapping[str, Setting]] = {
        "workers": 1,
        "blocking_threads": 512,
        "backlog": 1024,
        "backpressure": 1024,
    }
    short_names: ClassVar[Mapping[str, str]] = {
        "workers": "w",
        "blocking_threads": "bt",
        "backlog": "b",
        "backpressure": "bp",
    }
    packages = ("granian",)
    slots_rule = "granian workers x blocking_threads"
    # granian names workers by index. It respawns only a worker that died on its own; its
    # "Unexpected exit" line can also come from a worker stopping on the SIGTERM the launcher
    # sends the whole group before the main process has asked it to.
    worker_troubles = (
        WorkerTrouble(
            re.compile(r"Respawning worker-(\d+)"), "granian worker-{0} died and was respawned"
        ),
    )
    oldest = "1.4.0"
    older_refused = (
        "granian before 1.4 has no --backpressure, and before 1.3 a command line that reads "
        "GRANIAN_* variables and logs no line for a worker it respawns"
    )

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        problems = positive_ints(
            settings, ("workers", "blocking_threads", "backlog", "backpressure")
        )
        backlog = settings["backlog"]
        if positive_int(backlog) and integer(backlog) < MIN_BACKLOG:
            problems.append(Problem("backlog", f"granian takes {MIN_BACKLOG} or more"))
        if problems:
            return None, problems
        settings = derived(settings, explicit)
        if integer(settings["backpressure"]) < integer(settings["blocking_threads"]):
            problems.append(
                Problem(
                    "backpressure",
                    "is below blocking_threads: granian holds at most backpressure connections "
                    "per worker, so threads beyond it never get a request; raise it or lower "
                    "blocking_threads",
                )
            )
            return None, problems
        workers, threads = integer(settings["workers"]), integer(settings["blocking_threads"])
        return Target(name, self.name, "wsgi", workers, threads, dict(settings)), []

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        s = target.settings
        if at_least(version, RUNTIME_OPTIONS):
            threading = [
                "--blocking-threads-idle-timeout",
                "30",
                "--runtime-threads",
                "1",
                "--runtime-blocking-threads",
                "512",
                "--runtime-mode",
                "mt",
            ]
        else:
            threading = ["--threads", "1", "--threading-mode", "workers"]
        args = [
            "--interface",
            "wsgi",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(s["workers"]),
            "--blocking-threads",
            str(s["blocking_threads"]),
            "--backlog",
            str(s["backlog"]),
            "--backpressure",
            str(s["backpressure"]),
            *threading,
            "--loop",
            "asyncio",
            "--http",
            "1",
            "--http1-keep-alive",
            "--no-ws",
            # A worker that dies is replaced, as servers with a master usually do (granian's
            # default is to shut the whole server down), and its "Respawning worker-N" line
            # flags the cell.
            "--respawn-failed-workers",
            "--no-access-log",
            "--log-level",
            "info",
            APP,
        ]
        # granian reads GRANIAN_* variables only when started as `granian` (auto_envvar_prefix
        # in granian/cli.py's entrypoint); its command is called here without that prefix.
        return in_process("granian.cli:cli.main", args)

    def describe(self, target: Target) -> str:
        threads = counted(target.threads or 1, "blocking thread")
        return f"granian WSGI, {counted(target.workers, 'worker')} x {threads}"

    def notes(self, target: Target, top_users: int) -> tuple[str, ...]:
        if target.workers == 1:
            return ()
        return (
            f"each worker holds up to backpressure ({target.settings['backpressure']}) "
            "connections whatever its threads, and the kernel spreads connections over workers "
            "by a hash, not by load (a listening socket per worker): requests can queue in one "
            "worker while another idles",
        )


def derived(settings: Mapping[str, Setting], explicit: frozenset[str]) -> dict[str, Setting]:
    """granian's defaults for what the config left out: backpressure from the backlog shared
    over the workers, blocking threads half of that (granian/server/common.py)."""
    values = dict(settings)
    if "backpressure" not in explicit:
        backlog = max(MIN_BACKLOG, integer(values["backlog"]))
        values["backpressure"] = max(1, backlog // integer(values["workers"]))
    if "blocking_threads" not in explicit:
        values["blocking_threads"] = max(1, integer(values["backpressure"]) // 2)
    return values


SERVER = Granian()
