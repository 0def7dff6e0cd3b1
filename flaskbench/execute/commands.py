"""The command lines of a run: each cell's target launcher, the proxy in front of it (if any)
and its order to the Locust swarm, the swarm's master and workers, and the check that the app
loads.

Both runners use these same command lines; only the paths differ (a checkout on the host, or
the image's /app, /locust and /results).
"""

from __future__ import annotations

from dataclasses import dataclass

from flaskbench.config.app import TARGET_PACKAGE
from flaskbench.config.load import Config
from flaskbench.config.openloop import LATE_MS
from flaskbench.config.workloads import Workload
from flaskbench.execute.swarm import IDLE_TIMEOUT_S, SWARM_STARTUP_S, SwarmKey
from flaskbench.plan.cells import (
    STOP_FIRST_STEP_FACTOR,
    STOP_GOAL_FACTOR,
    Cell,
    ready_budget_s,
)
from flaskbench.proxies.proxy_registry import proxy_of
from flaskbench.proxies.reverse_proxy import UPSTREAM_HOST, UPSTREAM_OFFSET
from flaskbench.results.contract import GAUGE_CSV, SETUP_LOG
from flaskbench.servers.registry import server_argv, server_of

# Where the proxy's harness finds its config's text (targets/flaskbench_target/proxy.py).
PROXY_CONF_ENV = "FLASKBENCH_PROXY_CONF"
# How loadgen.json's verification names the wait for the target's first answer.
READINESS = "readiness"

# With run.gauge = "alternate": the gauge counts in even periods of this many seconds.
ALTERNATE_S = 2
# A target stops once its cell's last window is over, when nothing it does is measured any
# more: it gets its stop signal, and this long to act on it before it is killed (the launcher
# checks every 0.1 s). Idle keep-alive connections and graceful timeouts are not waited for:
# Werkzeug's server still ends on its SIGTERM, while gunicorn's workers, which look at their
# stop flag up to once a second, are killed instead of keeping the next cell waiting.
STOP_GRACE_S = 0.1


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
    # Where the swarm's master takes its orders from.
    inbox: str = ""
    # Where the target's gauge lives; None lets the launcher pick a fresh file in /dev/shm.
    gauge_file: str | None = None
    # Behind a proxy: the directory it writes in (its config, pid, temp files), and its binary.
    proxy_dir: str | None = None
    proxy_binary: str | None = None


def _launcher(
    config: Config, paths: Paths, gauge: list[str], grace_s: float, stop_signal: str = "TERM"
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
    server = server_argv(cell.target, *server_address(cell, config), version)
    stop_signal = server_of(cell.target).stop_signal
    return [*_launcher(config, paths, gauge, STOP_GRACE_S, stop_signal), paths.python, *server]


def server_address(cell: Cell, config: Config) -> tuple[str, int]:
    """Where the server listens: the target's address, or behind a proxy, the loopback port
    above the target's (the proxy's)."""
    if cell.target.proxy is None:
        return config.host, config.port
    return UPSTREAM_HOST, config.port + UPSTREAM_OFFSET


def cell_ports(cell: Cell, config: Config) -> tuple[int, ...]:
    """The ports the cell's target side listens on, which must be free before it starts."""
    server = server_address(cell, config)[1]
    return (config.port,) if server == config.port else (config.port, server)


def proxy_config(cell: Cell, config: Config, paths: Paths, cpus: int) -> str:
    """The proxy's config for this cell, as it will be kept in the cell's raw data."""
    assert cell.target.proxy is not None
    assert paths.proxy_dir is not None
    return proxy_of(cell.target.proxy).config_text(
        cell.target.proxy,
        (config.host, config.port),
        server_address(cell, config)[1],
        paths.proxy_dir,
        cpus,
    )


def proxy_command(cell: Cell, config: Config, paths: Paths) -> list[str]:
    """The proxy, started by the harness once the server accepts connections (its config's text
    in PROXY_CONF_ENV), then in the foreground."""
    assert cell.target.proxy is not None
    assert paths.proxy_dir is not None
    assert paths.proxy_binary is not None
    conf = f"{paths.proxy_dir}/proxy.conf"
    host, port = server_address(cell, config)
    return [
        paths.python,
        "-m",
        f"{TARGET_PACKAGE}.proxy",
        "--config",
        conf,
        "--config-env",
        PROXY_CONF_ENV,
        "--upstream",
        f"{host}:{port}",
        "--wait",
        str(ready_budget_s(config)),
        "--",
        *proxy_of(cell.target.proxy).argv(paths.proxy_binary, paths.proxy_dir, conf),
    ]


def check_command(config: Config, paths: Paths) -> list[str]:
    """Set the app up and load it as a server would, once, without serving it."""
    check = [paths.python, "-m", f"{TARGET_PACKAGE}.appload", "--check"]
    return [*_launcher(config, paths, [], grace_s=5), *check]


def master_command(
    key: SwarmKey, config: Config, paths: Paths, workers: int, master_address: str = "127.0.0.1"
) -> list[str]:
    """The run's Locust master (locustfiles/master.py), which takes one order per cell."""
    own = ["--locustfile", paths.user_locustfile] if paths.user_locustfile else []
    return [
        paths.locust_python,
        f"{paths.locustfiles}/master.py",
        *own,
        "--bind-host",
        master_address,
        "--bind-port",
        str(config.master_port),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        str(SWARM_STARTUP_S),
        "--inbox",
        paths.inbox,
        "--idle-timeout",
        str(IDLE_TIMEOUT_S),
    ]


def worker_command(
    key: SwarmKey,
    config: Config,
    paths: Paths,
    master_address: str = "127.0.0.1",
    clock_skew_s: float = 0.0,
) -> list[str]:
    """A worker with every user class of its Locust files: each cell's order says which runs.
    `clock_skew_s` (tests only) runs the worker's clock that far off the master's."""
    files = f"{paths.locustfiles}/locustfile.py"
    if paths.user_locustfile:
        files += f",{paths.user_locustfile}"
    skew = ["--fb-clock-skew", str(clock_skew_s)] if clock_skew_s else []
    return [
        paths.locust_python,
        "-m",
        "locust",
        "-f",
        files,
        "--worker",
        "--master-host",
        master_address,
        "--master-port",
        str(config.master_port),
        *skew,
    ]


def cell_options(cell: Cell, config: Config) -> list[str]:
    """A cell's order: where the load goes, its staircase (users, or an open loop's rates), its
    requests and how its clients send them, when to stop."""
    stairs = config.staircase
    workload = cell.workload
    requests = [] if workload.locustfile else ["--fb-requests", workload.traffic_json()]
    return [
        "--host",
        f"http://{config.host}:{config.port}",
        "--fb-steps",
        ",".join(str(level) for level in cell.levels(stairs)),
        "--fb-warmup",
        str(stairs.warmup_s),
        "--fb-measure",
        str(stairs.measure_s),
        "--fb-timeout",
        str(config.request_timeout_s),
        "--fb-ready-timeout",
        str(ready_budget_s(config)),
        *requests,
        *_client_options(workload),
        *_stop_options(config),
    ]


def _stop_options(config: Config) -> list[str]:
    if not config.stop_when_saturated:
        return []
    if config.goal is not None:
        return ["--fb-stop-p99-ms", str(STOP_GOAL_FACTOR * config.goal.p99_ms)]
    return ["--fb-stop-p99-factor", str(STOP_FIRST_STEP_FACTOR)]


def _client_options(workload: Workload) -> list[str]:
    """How the workload's clients behave: their pace, connections and an open loop."""
    options = []
    if workload.client and workload.client.send_rate:
        options += ["--fb-send-rate", str(workload.client.send_rate)]
    if workload.client and workload.client.receive_rate:
        options += ["--fb-receive-rate", str(workload.client.receive_rate)]
    if not workload.keepalive:
        options.append("--fb-close")
    if workload.open_loop:
        options += ["--fb-open-loop", workload.open_loop.arrival]
        options += ["--fb-open-late-ms", f"{LATE_MS:g}"]
    return options
