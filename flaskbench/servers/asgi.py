"""Flask "made async": the app in an ASGI adapter, run by uvicorn
(targets/flaskbench_target/asgiserve.py says how), `workers` processes of it.

What one process serves at once is the adapter's doing, not uvicorn's: a2wsgi runs requests in a
pool of `threads` threads per process (its `workers`, a2wsgi/wsgi.py); asgiref's WsgiToAsgi
sends every request of a process to one shared thread (asgiref/wsgi.py, asgiref/sync.py).

uvicorn accepts without a limit (`limit_concurrency` unset) and, with several workers sharing
one socket, whichever worker wakes first takes every connection waiting: each queues what it
took in its own pool, so requests can queue in one worker while another idles. With several
workers its supervisor binds the socket itself and asyncio leaves TCP_NODELAY off on the
connections (Kludex/uvicorn#3149): a response written in two parts waits for the client's
delayed ACK, about 40 ms per keep-alive request.

Versions: uvicorn from 0.30 (before it, a worker that dies is neither noticed nor replaced, and
an app that cannot load leaves the supervisor running); `reset_contextvars` exists from 0.45,
so a target asking for it needs 0.45 or later, and it is passed only there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from flaskbench.servers.server import (
    Problem,
    Resolved,
    Server,
    Setting,
    Target,
    WorkerTrouble,
    at_least,
    boolean,
    counted,
    integer,
    one_of,
    positive_ints,
)

ADAPTERS = ("a2wsgi", "asgiref")
# The first uvicorn with reset_contextvars (checked in each wheel from 0.40 to 0.47).
RESET_CONTEXTVARS = "0.45.0"


class Asgi(Server):
    name = "asgi"
    listed = 6
    # uvicorn's backlog and reset_contextvars, and a2wsgi's pool (its `workers`, here threads)
    # as they default.
    defaults: ClassVar[Mapping[str, Setting]] = {
        "adapter": "a2wsgi",
        "workers": 1,
        "threads": 10,
        "backlog": 2048,
        "reset_contextvars": False,
    }
    short_names: ClassVar[Mapping[str, str]] = {"workers": "w", "threads": "t", "backlog": "b"}
    packages = ("uvicorn", "a2wsgi", "asgiref")
    slots_rule = "uvicorn with a2wsgi workers x threads (a2wsgi's pool), with asgiref workers x 1"
    # uvicorn's supervisor, for a worker that died or stopped answering its health check.
    worker_troubles = (
        WorkerTrouble(
            re.compile(r"Child process \[(\d+)\] died"), "uvicorn worker {0} died and was replaced"
        ),
    )
    oldest = "0.30.0"
    older_refused = (
        "before 0.30 uvicorn neither notices nor replaces a worker that died, and its "
        "supervisor runs on when the app cannot load"
    )

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        problems = positive_ints(settings, ("workers", "threads", "backlog"))
        problems += boolean(settings, "reset_contextvars")
        problems += one_of(settings, "adapter", ADAPTERS, "adapter")
        adapter = settings["adapter"]
        if adapter == "asgiref" and "threads" in explicit:
            problems.append(
                Problem(
                    "threads",
                    "asgiref's WsgiToAsgi has no thread pool to size: it runs every request of a "
                    "process in one shared thread (asgiref/sync.py); remove threads or use "
                    "adapter = 'a2wsgi'",
                    combination=True,
                )
            )
        if problems:
            return None, problems
        # Per process: a2wsgi's pool of `threads` (one WSGIMiddleware per process); asgiref one
        # request at a time.
        threads = integer(settings["threads"]) if adapter == "a2wsgi" else 1
        workers = integer(settings["workers"])
        return Target(name, self.name, str(adapter), workers, threads, dict(settings)), []

    def requirements(self, version: str | None) -> tuple[tuple[str, ...], ...]:
        (uvicorn,) = super().requirements(version)[0]
        return ((uvicorn, "a2wsgi", "asgiref"),)

    def needs(self, target: Target) -> tuple[str, ...]:
        return ("uvicorn", target.worker_class)

    def installed_problem(self, target: Target, installed: Mapping[str, str]) -> str | None:
        version = installed.get(self.package)
        if target.settings.get("reset_contextvars") and not at_least(version, RESET_CONTEXTVARS):
            return self.reset_problem(str(version))
        return super().installed_problem(target, installed)

    def reset_problem(self, version: str) -> str:
        return (
            f"reset_contextvars needs uvicorn {RESET_CONTEXTVARS} or later, not {version}; "
            "ask for a newer version or set reset_contextvars = false"
        )

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        s = target.settings
        pool = ["--threads", str(s["threads"])] if target.worker_class == "a2wsgi" else []
        reset = "--reset-contextvars" if s["reset_contextvars"] else "--no-reset-contextvars"
        return [
            "-m",
            "flaskbench_target.asgiserve",
            "--adapter",
            target.worker_class,
            *pool,
            "--workers",
            str(s["workers"]),
            "--backlog",
            str(s["backlog"]),
            "--host",
            host,
            "--port",
            str(port),
            # Older uvicorns have no such keyword (and then no reset, as reset = false says).
            *([reset] if at_least(version, RESET_CONTEXTVARS) else []),
        ]

    def describe(self, target: Target) -> str:
        workers = counted(target.workers, "worker")
        if target.worker_class == "asgiref":
            return f"uvicorn + asgiref WsgiToAsgi, {workers} x 1 thread"
        return f"uvicorn + a2wsgi, {workers} x {counted(target.threads or 1, 'thread')}"

    def unused(self, settings: Mapping[str, Setting]) -> frozenset[str]:
        return frozenset({"threads"} if settings.get("adapter") == "asgiref" else ())

    def code_basis(self, target: Target) -> str | None:
        if target.worker_class != "asgiref":
            return None
        return (
            "asgiref's WsgiToAsgi runs each request through a @sync_to_async method, "
            "thread-sensitive by default (asgiref/wsgi.py), and asgiref/sync.py sends such "
            "calls to SyncToAsync.single_thread_executor, one thread per process; asgiref also "
            "never closes the app's response, so targets/flaskbench_target/asgiserve.py closes "
            "it when asgiref lets go of it"
        )

    def notes(self, target: Target, top_users: int) -> tuple[str, ...]:
        if target.workers == 1:
            return ()
        queue = (
            f"each uvicorn worker accepts without a limit and queues what it took in its own "
            f"pool of {counted(target.threads or 1, 'thread')}: requests can queue in one "
            "worker while another idles"
        )
        nodelay = (
            "with several workers uvicorn leaves TCP_NODELAY off on its connections "
            "(Kludex/uvicorn#3149), which adds about 40 ms to a keep-alive request whose "
            "response goes out in two writes"
        )
        return (queue, nodelay)


SERVER = Asgi()
