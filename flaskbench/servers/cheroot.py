"""cheroot, CherryPy's WSGI server: one process whose main thread accepts connections and hands
each request to a pool of `threads` threads (`numthreads`, cheroot/workers/threadpool.py), so
`threads` requests run at once; the connections waiting for a thread queue without a bound
(`accepted_queue_size` -1). An idle keep-alive connection holds no thread, but cheroot keeps at
most 10 of them (`keep_alive_conn_limit`, cheroot/server.py; no option changes it): beyond,
responses close their connections. It installs no signal handler: SIGTERM kills it at once,
dropping the requests in flight, while SIGINT stops it cleanly (and its command line then
re-raises the interrupt, which ends in a KeyboardInterrupt traceback in the target's log).

Versions: from 8.6.0, whose command line takes every option flaskbench passes; 8.x imports
pkg_resources (setuptools before 82), 9.0 and later do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from flaskbench.servers.server import (
    APP,
    Resolved,
    Server,
    Setting,
    Target,
    VersionNeed,
    counted,
    integer,
    positive_ints,
)

# cheroot/server.py: HTTPServer.keep_alive_conn_limit.
KEPT_ALIVE = 10


class Cheroot(Server):
    name = "cheroot"
    listed = 7
    # cheroot's own defaults (cheroot/wsgi.py), written out.
    defaults: ClassVar[Mapping[str, Setting]] = {
        "threads": 10,
        "request_queue_size": 5,
        "timeout": 10,
        "shutdown_timeout": 5,
    }
    short_names: ClassVar[Mapping[str, str]] = {
        "threads": "t",
        "request_queue_size": "q",
        "timeout": "to",
        "shutdown_timeout": "st",
    }
    packages = ("cheroot",)
    stop_signal = "INT"
    slots_rule = "cheroot threads (one process)"
    oldest = "8.6.0"
    older_refused = "older releases were never checked with flaskbench's launcher"
    version_needs = (
        VersionNeed("cheroot", "9", ("setuptools<82",), "cheroot 8.x imports pkg_resources"),
    )

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        problems = positive_ints(settings, tuple(self.defaults))
        if problems:
            return None, problems
        return Target(
            name, self.name, "threads", 1, integer(settings["threads"]), dict(settings)
        ), []

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        s = target.settings
        return [
            "-m",
            "cheroot",
            "--bind",
            f"{host}:{port}",
            "--threads",
            str(s["threads"]),
            "--request-queue-size",
            str(s["request_queue_size"]),
            "--timeout",
            str(s["timeout"]),
            "--shutdown-timeout",
            str(s["shutdown_timeout"]),
            APP,
        ]

    def describe(self, target: Target) -> str:
        return f"cheroot, 1 process x {counted(target.threads or 1, 'thread')}"

    def notes(self, target: Target, top_users: int) -> tuple[str, ...]:
        if top_users <= KEPT_ALIVE:
            return ()
        return (
            f"cheroot keeps at most {KEPT_ALIVE} idle keep-alive connections (cheroot/server.py), "
            f"so with up to {top_users} users most requests come on a new connection",
        )


SERVER = Cheroot()
