"""The command lines of one cell: the target launcher, the Locust master and its workers, and the
check that the app loads.

Both runners use these same command lines; only the paths differ (a checkout on the host, or
the image's /app, /locust and /results).
"""

from __future__ import annotations

from dataclasses import dataclass

from flaskbench.config.app import TARGET_PACKAGE
from flaskbench.config.load import Config
from flaskbench.config.workloads import Workload
from flaskbench.plan.cells import (
    LOADGEN_STARTUP_S,
    STOP_FIRST_STEP_FACTOR,
    STOP_GOAL_FACTOR,
    TAIL_S,
    Cell,
    ready_budget_s,
)
from flaskbench.results.contract import (
    GAUGE_CSV,
    LOADGEN_JSON,
    LOCUST_CSV_PREFIX,
    MASTER_LOG,
    SETUP_LOG,
)
from flaskbench.servers.registry import server_argv, server_of

# The Locust user class that sends a workload's requests (locustfiles/locustfile.py).
REQUESTS_USER = "RequestsUser"
# How loadgen.json's verification names the wait for the target's first answer.
READINESS = "readiness"

# With run.gauge = "alternate": the gauge counts in even periods of this many seconds.
ALTERNATE_S = 2


def harness_env(paths: Paths) -> dict[str, str]:
    """What the launcher needs in its environment to be started as a module."""
    return {"PYTHONPATH": paths.harness}


@dataclass(frozen=True)
class Paths:
    """Where things are, as the processes of one cell see them."""

    # The target's Python (the app's environment) and the load generator's.
    python: str
    locust_python: str
    # The directory the harness's package (flaskbench_target) is in: the launcher runs with it
    # as PYTHONPATH (harness_env), and puts it after the app's directory for the server.
    harness: str
    locustfiles: str
    # The cell's raw directory.
    cell: str
    # The directory the server runs in, and the app snapshot it is made a fresh copy of first
    # (None: the app is served where it is, as the built-in app is).
    app_dir: str
    app_src: str | None = None
    # The workload's own Locust file, when it has one.
    user_locustfile: str | None = None
    # Where the target's gauge lives; None lets the launcher pick a fresh file in /dev/shm.
    gauge_file: str | None = None


def _launcher(
    config: Config, paths: Paths, gauge: list[str], grace_s: int, stop_signal: str = "TERM"
) -> list[str]:
    """The launcher up to its `--`: the app, its directory and setup, and the gauge."""
    app = config.app
    argv = [
        paths.python,
        "-m",
        f"{TARGET_PACKAGE}.launch",
        *gauge,
        "--grace",
        str(grace_s),
        "--stop-signal",
        stop_signal,
        "--app",
        app.wsgi,
        "--app-dir",
        paths.app_dir,
    ]
    if paths.app_src:
        argv += ["--app-src", paths.app_src]
    if app.setup:
        argv += [
            "--setup",
            app.setup,
            "--setup-log",
            f"{paths.cell}/{SETUP_LOG}",
            "--setup-timeout",
            str(config.ready_timeout_s),
        ]
    return [*argv, "--"]


def target_command(
    cell: Cell, config: Config, paths: Paths, version: str | None = None
) -> list[str]:
    """The launcher samples the gauge and supervises the server (`version`: the server's
    installed version, which its command line follows; None: the pinned one)."""
    gauge = [] if config.gauge == "off" else ["--gauge-out", f"{paths.cell}/{GAUGE_CSV}"]
    if gauge and paths.gauge_file:
        gauge += ["--gauge-file", paths.gauge_file]
    if config.gauge == "alternate":
        gauge += ["--alternate", str(ALTERNATE_S)]
    server = server_argv(cell.target, config.host, config.port, version)
    grace_s = int(cell.target.settings.get("graceful_timeout", 5)) + 2
    stop_signal = server_of(cell.target).stop_signal
    return [*_launcher(config, paths, gauge, grace_s, stop_signal), paths.python, *server]


def check_command(config: Config, paths: Paths) -> list[str]:
    """Set the app up and load it as a server would, once, without serving it."""
    check = [paths.python, "-m", f"{TARGET_PACKAGE}.appload", "--check"]
    return [*_launcher(config, paths, [], grace_s=5), *check]


def locust_base(workload: Workload, paths: Paths) -> list[str]:
    files = f"{paths.locustfiles}/locustfile.py"
    if paths.user_locustfile:
        files += f",{paths.user_locustfile}"
    return [
        paths.locust_python,
        "-m",
        "locust",
        "-f",
        files,
        workload.user_class or REQUESTS_USER,
    ]


def master_command(
    cell: Cell, config: Config, paths: Paths, workers: int, master_address: str = "127.0.0.1"
) -> list[str]:
    workload = cell.workload
    requests = [] if workload.locustfile else ["--fb-requests", workload.traffic_json()]
    return [
        *locust_base(workload, paths),
        *_master_options(config, workers, master_address),
        "--csv",
        f"{paths.cell}/{LOCUST_CSV_PREFIX}",
        "--logfile",
        f"{paths.cell}/{MASTER_LOG}",
        "--fb-out",
        f"{paths.cell}/{LOADGEN_JSON}",
        *requests,
        *_stop_options(config),
    ]


def _stop_options(config: Config) -> list[str]:
    if not config.stop_when_saturated:
        return []
    if config.goal is not None:
        return ["--fb-stop-p99-ms", str(STOP_GOAL_FACTOR * config.goal.p99_ms)]
    return ["--fb-stop-p99-factor", str(STOP_FIRST_STEP_FACTOR)]


def _master_options(config: Config, workers: int, master_address: str) -> list[str]:
    stairs = config.staircase
    return [
        "--headless",
        "--master",
        "--master-bind-host",
        master_address,
        "--master-bind-port",
        str(config.master_port),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        str(LOADGEN_STARTUP_S),
        "--host",
        f"http://{config.host}:{config.port}",
        "--loglevel",
        "INFO",
        "--fb-steps",
        ",".join(str(u) for u in stairs.users),
        "--fb-warmup",
        str(stairs.warmup_s),
        "--fb-measure",
        str(stairs.measure_s),
        "--fb-tail",
        str(TAIL_S),
        "--fb-timeout",
        str(config.request_timeout_s),
        "--fb-ready-timeout",
        str(ready_budget_s(config)),
    ]


def worker_command(
    cell: Cell,
    config: Config,
    paths: Paths,
    master_address: str = "127.0.0.1",
    clock_skew_s: float = 0.0,
) -> list[str]:
    """`clock_skew_s` (tests only) runs the worker's clock that far off the master's."""
    skew = ["--fb-clock-skew", str(clock_skew_s)] if clock_skew_s else []
    return [
        *locust_base(cell.workload, paths),
        "--worker",
        "--master-host",
        master_address,
        "--master-port",
        str(config.master_port),
        *skew,
    ]
