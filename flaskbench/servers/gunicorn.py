"""gunicorn: a master forking `workers` processes of one worker class.

- sync: a worker serves one request at a time and closes every connection after its response
  (gunicorn/workers/sync.py), so `keepalive`, `threads` and `worker_connections` have no effect.
- gthread: a worker runs `threads` threads and holds at most `worker_connections` connections,
  idle keep-alive ones included: it stops accepting at that many (gunicorn/workers/gthread.py,
  `nr_conns`), so min(threads, worker_connections) requests run at once, and it keeps at most
  worker_connections - threads idle connections alive, none when worker_connections <= threads.
- gevent: a greenlet per connection, at most `worker_connections` per worker (its pool);
  `threads` has no effect.

Slots: W for sync, W x min(T, worker_connections) for gthread, W x worker_connections for
gevent; gunicorn's docs say so for sync and gthread, its code for the connection cap.

Versions (each checked through the launcher, sync, gthread and gevent, a killed worker, a stop):
from 20.1.0. `--no-control-socket` exists from 25.1.0 (no control socket before it). 20.x
imports pkg_resources at start-up (setuptools before 82), logs a killed worker as "Worker with
pid N was terminated due to signal 9" (and signal 15 for every worker at each normal stop);
21.0 and later as "Worker (pid:N) was sent SIGKILL!". The gevent worker: gunicorn 24 and later
refuse gevent before 24.10.1 (their `gevent` extra says so); gevent 22.10 loads its plugins
through pkg_resources and needs setuptools 75.9.1 up to 82; gevent before 22.10 is not
supported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from flaskbench.servers.server import (
    APP,
    Problem,
    Resolved,
    RuleOfThumb,
    Server,
    Setting,
    Target,
    TransferHold,
    VersionNeed,
    WorkerTrouble,
    at_least,
    counted,
    exactly_or_from,
    integer,
    non_negative_ints,
    positive_ints,
)

CLASSES = ("sync", "gthread", "gevent")
# util.close_graceful: after a response, a closing worker reads until the client hangs up, for
# at most this long (gunicorn/util.py).
CLOSE_GRACEFUL_S = 2.0
TRANSFER_HOLDS = {
    "sync": TransferHold(
        upload=True,
        download="client",
        close_wait_s=CLOSE_GRACEFUL_S,
        why="a sync worker reads the request body itself as the app reads it, and after the "
        "response closes the connection with util.close_graceful, reading until the client has "
        "read everything and hung up, for up to 2 s (gunicorn/workers/sync.py, util.py)",
    ),
    "gthread": TransferHold(
        upload=True,
        download="kernel",
        why="gthread hands a connection to a thread as soon as it is accepted (or has data), "
        "and that thread reads the body as the app reads it; the response is done once the "
        "kernel took it, and a kept-alive connection goes back to the worker's poller "
        "(gunicorn/workers/gthread.py: accept, handle, finish_request)",
    ),
    "gevent": TransferHold(
        upload=True,
        download="kernel",
        why="a gevent worker's greenlet reads the body as it arrives and is done once the "
        "kernel took the response; a greenlet is one of worker_connections slots, so slow "
        "clients only count against that (gunicorn/workers/base_async.py)",
    ),
}
# The first gunicorn with --no-control-socket (checked in --help of 25.0.3 and 25.1.0).
CONTROL_SOCKET = "25.1.0"
OLDEST_GEVENT = "22.10"


class Gunicorn(Server):
    name = "gunicorn"
    listed = 2
    defaults: ClassVar[Mapping[str, Setting]] = {
        "worker_class": "sync",
        "workers": 2,
        "threads": 1,
        "worker_connections": 1000,
        "backlog": 2048,
        "keepalive": 2,
        "timeout": 30,
        "graceful_timeout": 5,
        "max_requests": 0,
    }
    short_names: ClassVar[Mapping[str, str]] = {
        "workers": "w",
        "threads": "t",
        "worker_connections": "c",
        "backlog": "b",
        "keepalive": "ka",
        "timeout": "to",
        "graceful_timeout": "gt",
        "max_requests": "mr",
    }
    packages = ("gunicorn", "gevent", "greenlet")
    # QUIT would be quicker than TERM, but gthread workers then often hang until the master
    # SIGKILLs them, which reads as a lost worker.
    stop_signal = "TERM"
    slots_rule = (
        "gunicorn sync W, gthread W x T (W x worker_connections where that is fewer), gevent W x "
        "worker_connections"
    )
    worker_troubles = (
        WorkerTrouble(
            re.compile(r"WORKER TIMEOUT \(pid:(\d+)\)"),
            "gunicorn worker {0} timed out and was killed",
        ),
        WorkerTrouble(
            re.compile(r"Worker \(pid:(\d+)\) was sent SIGKILL"),
            "gunicorn worker {0} was killed (SIGKILL; out of memory?)",
        ),
        WorkerTrouble(
            re.compile(r"Worker \(pid:(\d+)\) was sent code (\d+)"),
            "gunicorn worker {0} exited with code {1}",
        ),
        WorkerTrouble(
            re.compile(r"Worker \(pid:(\d+)\) exited with code (\d+)"),
            "gunicorn worker {0} exited with code {1}",
        ),
        # gunicorn 20.x; signal 15 is every worker's at a normal stop.
        WorkerTrouble(
            re.compile(r"Worker with pid (\d+) was terminated due to signal (?!15\b)(\d+)"),
            "gunicorn worker {0} was killed by signal {1}",
        ),
    )
    oldest = "20.1.0"
    older_refused = "older releases were never checked with flaskbench's launcher"
    version_needs = (
        VersionNeed("gunicorn", "21", ("setuptools<82",), "gunicorn 20.x imports pkg_resources"),
        VersionNeed(
            "gevent",
            "23.9",
            ("setuptools>=75.9.1,<82",),
            "gevent 22.10 loads its plugins through pkg_resources",
        ),
    )

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        problems = positive_ints(
            settings, ("workers", "threads", "worker_connections", "backlog", "timeout")
        )
        problems += non_negative_ints(settings, ("keepalive", "graceful_timeout", "max_requests"))
        worker_class = settings["worker_class"]
        if worker_class not in CLASSES:
            problems.append(
                Problem(
                    "worker_class",
                    f"unknown gunicorn worker class {worker_class!r}; use one of "
                    + ", ".join(CLASSES),
                )
            )
        elif worker_class != "gthread" and "threads" in explicit:
            problems.append(
                Problem(
                    "threads",
                    "only the gthread worker class uses threads; remove it or set "
                    f"worker_class = 'gthread' (this target is {worker_class!r})",
                    combination=True,
                )
            )
        if problems:
            return None, problems
        workers, threads = integer(settings["workers"]), integer(settings["threads"])
        return Target(name, self.name, str(worker_class), workers, threads, dict(settings)), []

    def requirements(self, version: str | None) -> tuple[tuple[str, ...], ...]:
        """With the gevent worker class's packages as gunicorn's own extra asks for them (24
        and later need gevent 24.10.1), else gunicorn alone: its gevent targets are then left
        out, the others run."""
        gunicorn = "gunicorn" + exactly_or_from(version, self.oldest)
        return (
            (gunicorn.replace("gunicorn", "gunicorn[gevent]", 1), f"gevent>={OLDEST_GEVENT}"),
            (gunicorn,),
        )

    def needs(self, target: Target) -> tuple[str, ...]:
        return ("gunicorn", "gevent") if target.worker_class == "gevent" else ("gunicorn",)

    def installed_problem(self, target: Target, installed: Mapping[str, str]) -> str | None:
        gevent = installed.get("gevent")
        if target.worker_class == "gevent" and gevent and not at_least(gevent, OLDEST_GEVENT):
            return (
                f"gevent {gevent} is older than the oldest flaskbench supports for the gevent "
                f"worker, {OLDEST_GEVENT}"
            )
        return super().installed_problem(target, installed)

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        s = target.settings
        control = ["--no-control-socket"] if at_least(version, CONTROL_SOCKET) else []
        return [
            "-m",
            "gunicorn",
            # Settings from the harness's package, which sets none: the app's own
            # gunicorn.conf.py, read from its directory by default, would change what the
            # target's settings say, or start a server of another shape altogether.
            "--config",
            "python:flaskbench_target",
            "--bind",
            f"{host}:{port}",
            "--worker-class",
            target.worker_class,
            "--workers",
            str(s["workers"]),
            "--threads",
            str(s["threads"]),
            "--worker-connections",
            str(s["worker_connections"]),
            "--backlog",
            str(s["backlog"]),
            "--keep-alive",
            str(s["keepalive"]),
            "--timeout",
            str(s["timeout"]),
            "--graceful-timeout",
            str(s["graceful_timeout"]),
            "--max-requests",
            str(s["max_requests"]),
            "--max-requests-jitter",
            "0",
            # The heartbeat file and the control socket would otherwise land on the (read-only)
            # root filesystem of the container.
            "--worker-tmp-dir",
            "/dev/shm",
            *control,
            # No access log, gunicorn's default: a line per request would cost throughput.
            "--log-level",
            "info",
            APP,
        ]

    def describe(self, target: Target) -> str:
        workers = counted(target.workers, "worker")
        if target.worker_class == "gthread":
            connections = _worker_connections(target)
            capped = connections < integer(target.threads or 1)
            cap = f" (at most {connections} connections)" if capped else ""
            return f"gunicorn gthread, {workers} x {target.threads} threads{cap}"
        if target.worker_class == "gevent":
            return (
                f"gunicorn gevent, {workers} x {target.setting('worker_connections')} connections"
            )
        return f"gunicorn {target.worker_class}, {workers}"

    def unused(self, settings: Mapping[str, Setting]) -> frozenset[str]:
        worker_class = settings.get("worker_class")
        unused = set()
        if worker_class != "gthread":
            unused.add("threads")
        if worker_class == "sync":
            # A sync worker closes every connection after its response.
            unused |= {"keepalive", "worker_connections"}
        return frozenset(unused)

    def slots(self, target: Target) -> int | None:
        if target.worker_class == "gevent":
            return target.workers * integer(target.settings["worker_connections"])
        if target.worker_class == "gthread":
            per_worker = min(integer(target.threads or 1), _worker_connections(target))
            return target.workers * per_worker
        return target.workers

    def transfer_hold(self, target: Target) -> TransferHold:
        return TRANSFER_HOLDS[target.worker_class]

    def takes_connections_while_full(self, target: Target) -> bool:
        # gthread's main thread accepts while it holds fewer than worker_connections
        # connections, whatever its threads are doing, and queues the request for its own pool
        # (gunicorn/workers/gthread.py: accept, enqueue_req); a sync worker accepts only when
        # it is free.
        return target.worker_class == "gthread"

    def notes(self, target: Target, top_users: int) -> tuple[str, ...]:
        if target.worker_class != "gthread" or target.threads is None:
            return ()
        connections = _worker_connections(target)
        if connections < target.threads:
            return (
                f"a worker holds at most worker_connections ({connections}) connections, idle "
                f"ones included, so only {connections} of its {target.threads} threads ever run "
                "a request, and no connection is kept alive (gunicorn/workers/gthread.py)",
            )
        if connections == target.threads:
            return (
                f"worker_connections ({connections}) is no more than threads, so a worker keeps "
                "no connection alive between requests (gunicorn/workers/gthread.py)",
            )
        return ()

    def rule_of_thumb(self, targets: Sequence[Target], cores: int) -> RuleOfThumb | None:
        """gunicorn's advice: 2 x cores + 1 sync workers."""
        workers = 2 * cores + 1
        for target in targets:
            sync = target.server == self.name and target.worker_class == "sync"
            if sync and target.workers == workers:
                rule = f"2 x {cores} cores + 1 = {workers} sync workers"
                return RuleOfThumb(target, "gunicorn", rule)
        return None


def _worker_connections(target: Target) -> int:
    return integer(target.settings["worker_connections"])


SERVER = Gunicorn()
