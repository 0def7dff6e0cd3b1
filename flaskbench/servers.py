"""Every worker model's server settings and command line, in one place.

A target in the config names a server and its settings. This module knows, per server, which
settings exist, their pinned defaults (never the server's own defaults, which drift between
releases and obey environment variables such as WEB_CONCURRENCY), which combinations are
impossible, and the exact command line that serves the app with them. Every server serves
`appload:application` (targets/appload.py), which loads the configured app and wraps it in the
gauge, so a user's app is served exactly like the built-in one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Setting = int | bool | str


@dataclass(frozen=True)
class Target:
    """A validated target: one Flask app served one way."""

    name: str
    server: str
    worker_class: str
    workers: int
    # Threads per worker process; None means unbounded (a new thread per connection).
    threads: int | None
    settings: Mapping[str, Setting] = field(default_factory=dict)
    # Settings written relative to the target's cores, as written ("2*cores+1").
    expressions: Mapping[str, str] = field(default_factory=dict)
    # The [sweep.NAME] this target was expanded from, if any.
    sweep: str | None = None

    @property
    def worker_connections(self) -> int | None:
        value = self.settings.get("worker_connections")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    # A combination of valid values that cannot go together (a sweep drops it, not an error).
    combination: bool = False


@dataclass(frozen=True)
class Server:
    name: str
    # Every setting that changes results, with the value used when the config leaves it out.
    defaults: Mapping[str, Setting]
    # (target name, settings with defaults filled in, keys the config set) -> target or problems
    resolve: Callable[
        [str, Mapping[str, Setting], frozenset[str]], tuple[Target | None, list[Problem]]
    ]
    # (target, host, port, the harness directory holding appload.py and devserver.py)
    argv: Callable[[Target, str, int, str], list[str]]
    # Settings that have no effect with these settings (a sweep leaves them out of the name
    # and does not multiply targets by them).
    unused: Callable[[Mapping[str, Setting]], frozenset[str]] = lambda _settings: frozenset()
    # What the launcher stops the server with (signalling the server's whole process group).
    # gunicorn's QUIT would be quicker than TERM, but its gthread workers then often hang
    # until the master SIGKILLs them, which reads as a lost worker.
    stop_signal: str = "TERM"


def _werkzeug_resolve(
    name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
) -> tuple[Target | None, list[Problem]]:
    threaded = settings["threaded"]
    processes = settings["processes"]
    problems: list[Problem] = []
    if not isinstance(threaded, bool):
        problems.append(Problem("threaded", "must be true or false"))
    if not _positive_int(processes):
        problems.append(Problem("processes", "must be a positive integer"))
    if problems:
        return None, problems
    assert isinstance(processes, int)
    if threaded and processes > 1:
        return None, [
            Problem(
                "processes",
                "Werkzeug cannot combine threads and processes; set threaded = false "
                "to fork a process per request, or processes = 1",
                combination=True,
            )
        ]
    if threaded:
        return Target(name, "werkzeug", "threaded", 1, None, dict(settings)), []
    if processes > 1:
        return Target(name, "werkzeug", "processes", processes, 1, dict(settings)), []
    return Target(name, "werkzeug", "single", 1, 1, dict(settings)), []


APP = "appload:application"


def _werkzeug_argv(target: Target, host: str, port: int, harness: str) -> list[str]:
    argv = [f"{harness}/devserver.py", "--host", host, "--port", str(port)]
    argv.append("--threaded" if target.settings["threaded"] else "--no-threaded")
    return [*argv, "--processes", str(target.settings["processes"])]


GUNICORN_CLASSES = ("sync", "gthread", "gevent")


def _gunicorn_resolve(
    name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
) -> tuple[Target | None, list[Problem]]:
    problems = [
        Problem(key, "must be a positive integer")
        for key in ("workers", "threads", "worker_connections", "backlog", "timeout")
        if not _positive_int(settings[key])
    ]
    problems += [
        Problem(key, "must be an integer of 0 or more")
        for key in ("keepalive", "graceful_timeout", "max_requests")
        if not _non_negative_int(settings[key])
    ]
    worker_class = settings["worker_class"]
    if worker_class not in GUNICORN_CLASSES:
        problems.append(
            Problem(
                "worker_class",
                f"unknown gunicorn worker class {worker_class!r}; use one of "
                + ", ".join(GUNICORN_CLASSES),
            )
        )
    elif worker_class != "gthread" and "threads" in explicit:
        problems.append(
            Problem(
                "threads",
                f"only the gthread worker class uses threads; remove it or set "
                f"worker_class = 'gthread' (this target is {worker_class!r})",
                combination=True,
            )
        )
    if problems:
        return None, problems
    workers = settings["workers"]
    threads = settings["threads"]
    assert isinstance(workers, int)
    assert isinstance(threads, int)
    return Target(name, "gunicorn", str(worker_class), workers, threads, dict(settings)), []


def _gunicorn_argv(target: Target, host: str, port: int, harness: str) -> list[str]:
    s = target.settings
    return [
        "-m",
        "gunicorn",
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
        "--no-control-socket",
        # No access log, gunicorn's default: a line per request would cost throughput.
        "--log-level",
        "info",
        APP,
    ]


def _gunicorn_unused(settings: Mapping[str, Setting]) -> frozenset[str]:
    worker_class = settings.get("worker_class")
    unused = set()
    if worker_class != "gthread":
        unused.add("threads")
    if worker_class != "gevent":
        unused.add("worker_connections")
    return frozenset(unused)


# How a generated target name shows a setting's value (NAME-gthread-w2-t4).
SHORT_NAMES = {
    "workers": "w",
    "threads": "t",
    "worker_connections": "c",
    "processes": "p",
    "backlog": "b",
    "keepalive": "ka",
    "timeout": "to",
    "graceful_timeout": "gt",
    "max_requests": "mr",
}


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


SERVERS: Mapping[str, Server] = {
    "werkzeug": Server(
        name="werkzeug",
        defaults={"threaded": True, "processes": 1},
        resolve=_werkzeug_resolve,
        argv=_werkzeug_argv,
    ),
    "gunicorn": Server(
        name="gunicorn",
        defaults={
            "worker_class": "sync",
            "workers": 2,
            "threads": 1,
            "worker_connections": 1000,
            "backlog": 2048,
            "keepalive": 2,
            "timeout": 30,
            "graceful_timeout": 5,
            "max_requests": 0,
        },
        resolve=_gunicorn_resolve,
        argv=_gunicorn_argv,
        unused=_gunicorn_unused,
    ),
}


def resolve_target(
    name: str, server: str, overrides: Mapping[str, Setting]
) -> tuple[Target | None, list[Problem]]:
    """Validate one target's settings (keys already known to exist) against its server."""
    spec = SERVERS[server]
    return spec.resolve(name, {**spec.defaults, **overrides}, frozenset(overrides))


def server_argv(target: Target, host: str, port: int, harness: str) -> list[str]:
    """Arguments after `python` that serve the app, with `harness` on the import path."""
    return SERVERS[target.server].argv(target, host, port, harness)


def describe(target: Target) -> str:
    """How the report names a target's worker model (and counts written relative to cores)."""
    written = ", ".join(f"{k} = {v}" for k, v in target.expressions.items())
    return _model(target) + (f" ({written})" if written else "")


def _model(target: Target) -> str:
    if target.server == "werkzeug":
        return {
            "threaded": "Werkzeug dev server, a thread per connection",
            "single": "Werkzeug dev server, single-threaded",
            "processes": f"Werkzeug dev server, a process per request, up to {target.workers}",
        }[target.worker_class]
    workers = f"{target.workers} worker{'s' if target.workers != 1 else ''}"
    if target.worker_class == "gthread":
        return f"gunicorn gthread, {workers} x {target.threads} threads"
    if target.worker_class == "gevent":
        return f"gunicorn gevent, {workers} x {target.worker_connections} connections"
    return f"gunicorn {target.worker_class}, {workers}"
