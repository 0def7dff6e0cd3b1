"""The command lines of one cell: the target launcher, the Locust master and its workers.

Both runners use these same command lines; only the paths differ (a checkout on the host, or
the image's /app, /locust and /results).
"""

from __future__ import annotations

from dataclasses import dataclass

from flaskbench.config import Config
from flaskbench.plan import LOADGEN_STARTUP_S, TAIL_S, Cell
from flaskbench.servers import server_argv

USER_CLASSES = {"noop": "NoopUser", "io": "IoUser", "cpu": "CpuUser", "mixed": "MixedUser"}

# Cell files named in docs/raw-data.md.
GAUGE_CSV = "gauge.csv"
LOADGEN_JSON = "loadgen.json"
LOCUST_CSV_PREFIX = "locust"
MASTER_LOG = "locust-master.log"
# With run.gauge = "alternate": the gauge counts in even periods of this many seconds.
ALTERNATE_S = 2


@dataclass(frozen=True)
class Paths:
    python: str
    targets: str
    locustfiles: str
    # The cell's raw directory as the processes see it.
    cell: str
    # Where the target's gauge lives; None lets the launcher pick a fresh file in /dev/shm.
    gauge_file: str | None = None


def target_command(cell: Cell, config: Config, paths: Paths) -> list[str]:
    """Run from `paths.targets`: the launcher samples the gauge and supervises the server."""
    server = server_argv(cell.target, config.host, config.port)
    gauge = [] if config.gauge == "off" else ["--gauge-out", f"{paths.cell}/{GAUGE_CSV}"]
    if gauge and paths.gauge_file:
        gauge += ["--gauge-file", paths.gauge_file]
    if config.gauge == "alternate":
        gauge += ["--alternate", str(ALTERNATE_S)]
    return [
        paths.python,
        "launch.py",
        *gauge,
        "--grace",
        str(int(cell.target.settings.get("graceful_timeout", 5)) + 2),
        "--",
        paths.python,
        *server,
    ]


def locust_base(cell: Cell, paths: Paths) -> list[str]:
    return [
        paths.python,
        "-m",
        "locust",
        "-f",
        f"{paths.locustfiles}/locustfile.py",
        USER_CLASSES[cell.workload.kind],
    ]


def master_command(cell: Cell, config: Config, paths: Paths, workers: int) -> list[str]:
    stairs = config.staircase
    return [
        *locust_base(cell, paths),
        "--headless",
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(config.master_port),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        str(LOADGEN_STARTUP_S),
        "--host",
        f"http://{config.host}:{config.port}",
        "--csv",
        f"{paths.cell}/{LOCUST_CSV_PREFIX}",
        "--logfile",
        f"{paths.cell}/{MASTER_LOG}",
        "--loglevel",
        "INFO",
        "--fb-io-ms",
        str(cell.workload.io_ms),
        "--fb-cpu-ms",
        str(cell.workload.cpu_ms),
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
        "--fb-out",
        f"{paths.cell}/{LOADGEN_JSON}",
    ]


def worker_command(cell: Cell, config: Config, paths: Paths) -> list[str]:
    return [
        *locust_base(cell, paths),
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        str(config.master_port),
    ]
