"""Every worker model's server settings and command line, in one place.

A target in the config names a server and its settings. This module knows, per server, which
settings exist, their pinned defaults (never the server's own defaults, which drift between
releases and obey environment variables such as WEB_CONCURRENCY), which combinations are
impossible, and the exact command line that serves the app with them. Every server serves
`appload:application` (targets/appload.py), which loads the configured app and wraps it in the
gauge, so a user's app is served exactly like the built-in one. waitress, uWSGI and granian start
through targets/serve.py (their own command lines, without the environment variables they would
read as options); Flask behind an ASGI server through targets/asgiserve.py.

`Target.workers` is the number of processes serving requests and `Target.threads` what one of
them serves at once (None: a thread per connection), which is what theory.py counts slots from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
    # (target, host, port) -> the arguments after `python`; the harness's package
    # (flaskbench_target) is importable, after the app's directory.
    argv: Callable[[Target, str, int], list[str]]
    # How the report names the target's worker model.
    describe: Callable[[Target], str]
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


APP = "flaskbench_target.appload:application"


def _werkzeug_argv(target: Target, host: str, port: int) -> list[str]:
    argv = ["-m", "flaskbench_target.devserver", "--host", host, "--port", str(port)]
    argv.append("--threaded" if target.settings["threaded"] else "--no-threaded")
    return [*argv, "--processes", str(target.settings["processes"])]


GUNICORN_CLASSES = ("sync", "gthread", "gevent")


def _gunicorn_resolve(
    name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
) -> tuple[Target | None, list[Problem]]:
    problems = _positive_ints(
        settings, ("workers", "threads", "worker_connections", "backlog", "timeout")
    )
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


def _gunicorn_argv(target: Target, host: str, port: int) -> list[str]:
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


def _asgi_unused(settings: Mapping[str, Setting]) -> frozenset[str]:
    return frozenset({"threads"} if settings.get("adapter") == "asgiref" else ())


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
    "connection_limit": "cl",
    "channel_timeout": "ct",
    "listen": "l",
    "harakiri": "h",
    "blocking_threads": "bt",
    "backpressure": "bp",
}


def _werkzeug_describe(target: Target) -> str:
    return {
        "threaded": "Werkzeug dev server, a thread per connection",
        "single": "Werkzeug dev server, single-threaded",
        "processes": f"Werkzeug dev server, a process per request, up to {target.workers}",
    }[target.worker_class]


def _gunicorn_describe(target: Target) -> str:
    workers = _count(target.workers, "worker")
    if target.worker_class == "gthread":
        return f"gunicorn gthread, {workers} x {target.threads} threads"
    if target.worker_class == "gevent":
        return f"gunicorn gevent, {workers} x {target.worker_connections} connections"
    return f"gunicorn {target.worker_class}, {workers}"


def _waitress_resolve(
    name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
) -> tuple[Target | None, list[Problem]]:
    problems = _positive_ints(
        settings, ("threads", "connection_limit", "backlog", "channel_timeout")
    )
    if not problems and _int(settings["connection_limit"]) < _int(settings["threads"]):
        problems.append(
            Problem(
                "connection_limit",
                "is below threads: waitress holds at most connection_limit connections, so "
                "threads beyond it never get a request; raise it or lower threads",
            )
        )
    if problems:
        return None, problems
    # One process; every request runs, is iterated and closed on one of `threads` threads
    # (waitress/task.py), which is the documented meaning of threads.
    return Target(name, "waitress", "threads", 1, _int(settings["threads"]), dict(settings)), []


def _waitress_argv(target: Target, host: str, port: int) -> list[str]:
    s = target.settings
    return [
        "-m",
        "flaskbench_target.serve",
        "waitress",
        f"--listen={host}:{port}",
        f"--threads={s['threads']}",
        f"--connection-limit={s['connection_limit']}",
        f"--backlog={s['backlog']}",
        f"--channel-timeout={s['channel_timeout']}",
        APP,
    ]


def _waitress_describe(target: Target) -> str:
    return f"waitress, 1 process x {_count(target.threads or 1, 'thread')}"


def _uwsgi_resolve(
    name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
) -> tuple[Target | None, list[Problem]]:
    problems = _positive_ints(settings, ("processes", "threads", "listen"))
    if not _non_negative_int(settings["harakiri"]):
        problems.append(Problem("harakiri", "must be an integer of 0 or more (0 turns it off)"))
    listen, most = settings["listen"], _somaxconn()
    if _positive_int(listen) and most is not None and _int(listen) > most:
        problems.append(
            Problem(
                "listen",
                f"uWSGI refuses a listen queue above net.core.somaxconn ({most} on this host); "
                "lower it",
            )
        )
    if problems:
        return None, problems
    processes, threads = _int(settings["processes"]), _int(settings["threads"])
    return Target(name, "uwsgi", "prefork", processes, threads, dict(settings)), []


def _uwsgi_argv(target: Target, host: str, port: int) -> list[str]:
    s = target.settings
    return [
        "-m",
        "flaskbench_target.serve",
        "uwsgi",
        # An option uWSGI does not know is an error, not a warning.
        "--strict",
        "--master",
        # Without it, uWSGI serves 500s for an app that failed to load; with it, it exits.
        "--need-app",
        # uWSGI 2.0 reloads on SIGTERM; the launcher's SIGTERM must stop it.
        "--die-on-term",
        "--http-socket",
        f"{host}:{port}",
        # An http-socket closes every connection after its response, yet answers HTTP/1.1
        # without saying so: a client that sends its next request on that connection first has
        # it dropped (Locust retries a GET, but a POST fails). Saying so makes clients reconnect.
        "--add-header",
        "Connection: close",
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
        # The app is loaded in the master and the workers are forked from it, uWSGI's default
        # (no --lazy-apps): the gauge still counts per worker, since each process claims its
        # own slot, by pid, at its first request (targets/gauge.py).
        "--module",
        APP,
    ]


def _uwsgi_describe(target: Target) -> str:
    threads = _count(target.threads or 1, "thread")
    return f"uWSGI, {_count(target.workers, 'process', 'processes')} x {threads}"


def _granian_resolve(
    name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
) -> tuple[Target | None, list[Problem]]:
    problems = _positive_ints(settings, ("workers", "blocking_threads", "backlog", "backpressure"))
    backlog = settings["backlog"]
    if _positive_int(backlog) and _int(backlog) < GRANIAN_MIN_BACKLOG:
        problems.append(Problem("backlog", f"granian takes {GRANIAN_MIN_BACKLOG} or more"))
    if not problems and _int(settings["backpressure"]) < _int(settings["blocking_threads"]):
        problems.append(
            Problem(
                "backpressure",
                "is below blocking_threads: granian holds at most backpressure connections per "
                "worker, so threads beyond it never get a request; raise it or lower "
                "blocking_threads",
            )
        )
    if problems:
        return None, problems
    workers, threads = _int(settings["workers"]), _int(settings["blocking_threads"])
    # Documented: on WSGI, blocking_threads is "the maximum amount of threads interacting with
    # your application code" per worker (granian's README). Each request's response is also
    # iterated and closed on its thread (response_iter in granian's src/wsgi/io.rs).
    return Target(name, "granian", "wsgi", workers, threads, dict(settings)), []


def _granian_argv(target: Target, host: str, port: int) -> list[str]:
    s = target.settings
    return [
        "-m",
        "flaskbench_target.serve",
        "granian",
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
        "--blocking-threads-idle-timeout",
        "30",
        "--backlog",
        str(s["backlog"]),
        "--backpressure",
        str(s["backpressure"]),
        "--runtime-threads",
        "1",
        "--runtime-blocking-threads",
        "512",
        "--runtime-mode",
        "mt",
        "--loop",
        "asyncio",
        "--http",
        "1",
        "--http1-keep-alive",
        "--no-ws",
        # A worker that dies is replaced, as gunicorn and uWSGI do (granian's default is to
        # shut the whole server down), and its "Respawning worker-N" line flags the cell.
        "--respawn-failed-workers",
        "--no-access-log",
        "--log-level",
        "info",
        APP,
    ]


def _granian_describe(target: Target) -> str:
    threads = _count(target.threads or 1, "blocking thread")
    return f"granian WSGI, {_count(target.workers, 'worker')} x {threads}"


ASGI_ADAPTERS = ("a2wsgi", "asgiref")


def _asgi_resolve(
    name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
) -> tuple[Target | None, list[Problem]]:
    problems = _positive_ints(settings, ("workers", "threads", "backlog"))
    if not isinstance(settings["reset_contextvars"], bool):
        problems.append(Problem("reset_contextvars", "must be true or false"))
    adapter = settings["adapter"]
    if adapter not in ASGI_ADAPTERS:
        problems.append(
            Problem(
                "adapter",
                f"unknown adapter {adapter!r}; use one of {', '.join(ASGI_ADAPTERS)}",
            )
        )
    elif adapter == "asgiref" and "threads" in explicit:
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
    # Per process: a2wsgi's pool of `threads` (one WSGIMiddleware per process, a2wsgi/wsgi.py);
    # asgiref one request at a time (targets/asgiserve.py says why).
    threads = _int(settings["threads"]) if adapter == "a2wsgi" else 1
    return Target(
        name, "asgi", str(adapter), _int(settings["workers"]), threads, dict(settings)
    ), []


def _asgi_argv(target: Target, host: str, port: int) -> list[str]:
    s = target.settings
    pool = ["--threads", str(s["threads"])] if target.worker_class == "a2wsgi" else []
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
        "--reset-contextvars" if s["reset_contextvars"] else "--no-reset-contextvars",
    ]


def _asgi_describe(target: Target) -> str:
    workers = _count(target.workers, "worker")
    if target.worker_class == "asgiref":
        return f"uvicorn + asgiref WsgiToAsgi, {workers} x 1 thread"
    return f"uvicorn + a2wsgi, {workers} x {_count(target.threads or 1, 'thread')}"


GRANIAN_MIN_BACKLOG = 128
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def _somaxconn() -> int | None:
    """The kernel's cap on listen queues here, when it can be read."""
    try:
        return int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return None


def _positive_ints(settings: Mapping[str, Setting], keys: tuple[str, ...]) -> list[Problem]:
    return [
        Problem(key, "must be a positive integer")
        for key in keys
        if not _positive_int(settings[key])
    ]


def _int(value: Setting) -> int:
    assert isinstance(value, int)
    return value


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


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
        describe=_werkzeug_describe,
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
        describe=_gunicorn_describe,
    ),
    # The defaults of the new servers are the servers' own (of the pinned versions), written
    # out so that neither a new release nor the environment can change them.
    "waitress": Server(
        name="waitress",
        defaults={"threads": 4, "connection_limit": 100, "backlog": 1024, "channel_timeout": 120},
        resolve=_waitress_resolve,
        argv=_waitress_argv,
        describe=_waitress_describe,
    ),
    "uwsgi": Server(
        name="uwsgi",
        defaults={"processes": 1, "threads": 1, "listen": 100, "harakiri": 0},
        resolve=_uwsgi_resolve,
        argv=_uwsgi_argv,
        describe=_uwsgi_describe,
    ),
    # granian derives its defaults from each other (backpressure backlog / workers, blocking
    # threads half of that): these are what it uses with one worker.
    "granian": Server(
        name="granian",
        defaults={"workers": 1, "blocking_threads": 512, "backlog": 1024, "backpressure": 1024},
        resolve=_granian_resolve,
        argv=_granian_argv,
        describe=_granian_describe,
    ),
    # uvicorn's backlog and reset_contextvars, and a2wsgi's pool (its `workers`, here threads)
    # as they default.
    "asgi": Server(
        name="asgi",
        defaults={
            "adapter": "a2wsgi",
            "workers": 1,
            "threads": 10,
            "backlog": 2048,
            "reset_contextvars": False,
        },
        resolve=_asgi_resolve,
        argv=_asgi_argv,
        describe=_asgi_describe,
        unused=_asgi_unused,
    ),
}


def resolve_target(
    name: str, server: str, overrides: Mapping[str, Setting]
) -> tuple[Target | None, list[Problem]]:
    """Validate one target's settings (keys already known to exist) against its server."""
    spec = SERVERS[server]
    return spec.resolve(name, {**spec.defaults, **overrides}, frozenset(overrides))


def server_argv(target: Target, host: str, port: int) -> list[str]:
    """Arguments after `python` that serve the app (flaskbench_target.appload)."""
    return SERVERS[target.server].argv(target, host, port)


def describe(target: Target) -> str:
    """How the report names a target's worker model (and counts written relative to cores)."""
    written = ", ".join(f"{k} = {v}" for k, v in target.expressions.items())
    return SERVERS[target.server].describe(target) + (f" ({written})" if written else "")
