"""uWSGI (the pyuwsgi wheel, with the server built in): a master and `processes` workers of
`threads` threads each. Its workers are forked from the master that loaded the app (no Python
fork hooks run); the gauge counts per worker regardless, since each process claims its own slot.

With `--http-socket` (keepalive = false, the default) it closes every connection after its
response; with `--http11-socket` (keepalive = true) it keeps connections open, and a thread stays
with its connection, idle or not, until the client closes it or `--socket-timeout` (4 s by
default) passes, so an idle keep-alive client holds a slot (core/socket.c, proto/http.c).

Versions: pyuwsgi from 2.0.21, the first with a wheel for CPython 3.11 (2.0.20's source does not
compile against it); its command line and log lines are the same in every one since.
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
    boolean,
    counted,
    in_process,
    integer,
    non_negative_ints,
    positive_int,
    positive_ints,
    somaxconn,
)


class Uwsgi(Server):
    name = "uwsgi"
    listed = 4
    # uWSGI's own defaults, written out.
    defaults: ClassVar[Mapping[str, Setting]] = {
        "processes": 1,
        "threads": 1,
        "listen": 100,
        "harakiri": 0,
        "keepalive": False,
    }
    short_names: ClassVar[Mapping[str, str]] = {
        "processes": "p",
        "threads": "t",
        "listen": "l",
        "harakiri": "h",
    }
    packages = ("pyuwsgi",)
    slots_rule = "uWSGI processes x threads"
    # uWSGI's master (core/master.c): only for a worker that dies while the server is not
    # stopping ("worker N buried" then).
    worker_troubles = (
        WorkerTrouble(
            re.compile(
                r"DAMN ! worker \d+ \(pid: (\d+)\) (?:MISTERIOUSLY |died, )killed by signal (\d+)"
            ),
            "uWSGI worker {0} was killed by signal {1}",
        ),
        WorkerTrouble(
            re.compile(r"DAMN ! worker \d+ \(pid: (\d+)\) died :\("), "uWSGI worker {0} died"
        ),
        WorkerTrouble(
            re.compile(r"HARAKIRI ON WORKER \d+ \(pid: (\d+)"),
            "uWSGI worker {0} passed its harakiri timeout and was killed",
        ),
    )
    oldest = "2.0.21"
    older_refused = "pyuwsgi 2.0.20 and older do not build on Python 3.11"

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        problems = positive_ints(settings, ("processes", "threads", "listen"))
        problems += non_negative_ints(settings, ("harakiri",), " (0 turns it off)")
        problems += boolean(settings, "keepalive")
        listen, most = settings["listen"], somaxconn()
        if positive_int(listen) and most is not None and integer(listen) > most:
            problems.append(
                Problem(
                    "listen",
                    f"uWSGI refuses a listen queue above net.core.somaxconn ({most} on this "
                    "host); lower it",
                )
            )
        if problems:
            return None, problems
        processes, threads = integer(settings["processes"]), integer(settings["threads"])
        return Target(name, self.name, "prefork", processes, threads, dict(settings)), []

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        s = target.settings
        if s["keepalive"]:
            socket = ["--http11-socket", f"{host}:{port}"]
        else:
            # An http-socket closes every connection after its response, yet answers HTTP/1.1
            # without saying so: a client that sends its next request on that connection first
            # has it dropped (Locust retries a GET, but a POST fails). Saying so makes clients
            # reconnect.
            socket = ["--http-socket", f"{host}:{port}", "--add-header", "Connection: close"]
        args = [
            # An option uWSGI does not know is an error, not a warning.
            "--strict",
            "--master",
            # Without it, uWSGI serves 500s for an app that failed to load; with it, it exits.
            "--need-app",
            # uWSGI 2.0 reloads on SIGTERM; the launcher's SIGTERM must stop it.
            "--die-on-term",
            *socket,
            "--processes",
            str(s["processes"]),
            "--threads",
            str(s["threads"]),
            "--enable-threads",
            "--listen",
            str(s["listen"]),
            "--harakiri",
            str(s["harakiri"]),
            # No request log (uWSGI logs every request by default): no other server writes one.
            "--disable-logging",
            # The app is loaded in the master and the workers are forked from it, uWSGI's
            # default (no --lazy-apps).
            "--module",
            APP,
        ]
        # uWSGI reads every UWSGI_* environment variable as an option (parse_sys_envs in
        # core/utils.c, before the command line).
        return in_process("pyuwsgi:run", args, "--drop-env", "UWSGI_")

    def describe(self, target: Target) -> str:
        threads = counted(target.threads or 1, "thread")
        keepalive = ", keep-alive" if target.settings.get("keepalive") else ""
        return f"uWSGI, {counted(target.workers, 'process', 'processes')} x {threads}{keepalive}"

    def notes(self, target: Target, top_users: int) -> tuple[str, ...]:
        if not target.settings.get("keepalive"):
            return ()
        return (
            "with keep-alive (http11-socket) a thread stays with its connection until the client "
            "closes it, so an idle client holds a slot; more clients than slots wait for one "
            "to go (up to uWSGI's socket timeout, 4 s)",
        )


SERVER = Uwsgi()
