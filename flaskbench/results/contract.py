"""The results contract: every file of a run directory, and the shape of its JSON files.

Everything that writes a run and everything that reads one (collect, analyze, report, compare,
publish) goes through the names and types here; what a runner did reaches the report only as
these types say (meta.json's `runner.details`, a cell's hosts.json). docs/raw-data.md describes
the same files for people.

    results/<run_id>/
      meta.json            MetaJson: how the run was made, and the SHA-256 of every file
      config.toml          the config file as it was
      app-check.log        what loading the app once before any cell printed
      summary.csv          one row per target x workload x users x repeat (measure/analyze.py)
      services.csv         with [services]: the same per service (report/service_blocks.py)
      recommendation.json  with a [goal]: the pick per workload (measure/recommend.py)
      report.md, report.html, charts/
      raw/<cell_id>/       one cell: a target x workload x repeat walking the staircase
        cell.json          CellJson, written last: a cell without it did not finish
        loadgen.json       LoadgenJson, from the Locust master (locustfiles/stepstats.py)
        hosts.json         HostsJson (docker runner): which host ran what, and the clocks
        gauge.csv, resources.csv, memory.csv, host_cpu.csv, the target's log, the Locust
        master's log while the cell ran and Locust's CSVs of it, setup.log, app-error.txt,
        error.txt
      swarm/               the run's Locust swarms (one, unless workloads need others): each
                           process's output over the whole run, master-N.log, worker-N-M.log
        gauge.csv, resources.csv, memory.csv, host_cpu.csv, the processes' logs and Locust's
        CSVs, setup.log, app-error.txt, error.txt; behind a proxy, proxy.conf and proxy.log
        services.json      ServicesJson (with [services]): where the cell's services ran
        service-NAME.csv, service-NAME.log: each service's samples and its log

Each JSON file carries a `format` number; readers take every format up to the current one (a
file from before format numbers has none and counts as 1) and refuse a newer one in one line.

History of formats:
- meta.json 1: every run made before format numbers were written. 2: `format` itself; the
  servers' packages among `packages` follow the servers (one module each); a target's
  `settings` hold what its server derives from the others where the config left a setting out
  (as passed to the server); `git` is null outside a checkout. 3: `trials` (the seed of the
  trials' shuffled orders, the orders, and with repeats = "auto" why no further trial ran);
  `repeats` is the number of trials planned from the start. Added within format 3 (runs before
  them read as their absence meant, see _LATER_DEFAULTS): a target's `version` (the server
  version it asked for), `app.servers`, `server_versions` (per target, which version of its
  server ran and where that version came from), `targets_left_out`, `app_python` and
  `environments`; a target's `revision` and `app.revisions` (app.revision).
- cell.json 1: `cell_id, status, reason, started, ended`, and from December 2026 `format`.
- loadgen.json 1: as docs/raw-data.md describes it (`workload`, `verification`, `skipped` and
  `clocks` were added without a format change: readers treat them as optional). 2: open loops:
  `open_loop` and `arrivals`, and each step's `rate` (its `users` then count the load
  generator's schedulers, not users); a format 1 file is a closed loop of users. Closed loops
  write the same as before, but a reader of format 1 would take an open loop's schedulers for
  its users, so it must refuse format 2.
- meta.json 2 gained, without a format change (absent: what runs before them did): a target's
  `proxy` (null: none), a workload's `upload_bytes`, `download_bytes`, `client`, `keepalive`
  and `open_loop`, the staircase's `rates` and `arrival` and the goal's `rate`.
- hosts.json 1: as docs/raw-data.md describes it.

Between processes (never in a run directory): the orders the orchestrator sends the Locust
master, and the events it answers with (SwarmOrder, SwarmEvent; locustfiles/master.py).
- swarm format 1: an order per cell `format, cell, out, user_class, argv`; events `ready`
  (`workers`), `measured`, `done` (`ok`, `error` when the order could not run), `error`
  (`message`); and a `heartbeat` file the orchestrator rewrites every few seconds while it
  lives (its content: a count), without which the master ends once idle.
- services.json 1: as docs/raw-data.md describes it. meta.json took `services`, `cpus.services`
  and `runner.details.services` without a format change (a run without them had no services).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

# -- the run directory --------------------------------------------------------------------------

META_JSON = "meta.json"
CONFIG_COPY = "config.toml"
APP_CHECK_LOG = "app-check.log"
SUMMARY_CSV = "summary.csv"
# With [services]: one row per target x workload x users x repeat x service.
SERVICES_CSV = "services.csv"
RECOMMENDATION_JSON = "recommendation.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
CHARTS_DIR = "charts"
RAW_DIR = "raw"
# Beside the run directories: what building the images printed.
IMAGE_BUILD_LOG = "image-build.log"

# -- a cell's directory -------------------------------------------------------------------------

CELL_JSON = "cell.json"
LOADGEN_JSON = "loadgen.json"
CELL_HOSTS_JSON = "hosts.json"
GAUGE_CSV = "gauge.csv"
RESOURCES_CSV = "resources.csv"
MEMORY_CSV = "memory.csv"
HOST_CPU_CSV = "host_cpu.csv"
TARGET_LOG = "target.log"
MASTER_LOG = "locust-master.log"
# Locust's own CSVs: locust_stats.csv, locust_stats_history.csv, locust_failures.csv...
LOCUST_CSV_PREFIX = "locust"
SETUP_LOG = "setup.log"
# The app's first traceback, when it raised while serving.
APP_ERROR = "app-error.txt"
# Behind a proxy: how resources.csv names its processes (on the target side, apart from the
# server's), its config as generated for the cell, and its output (its error log).
PROXY_RESOURCE = "proxy"
PROXY_CONF = "proxy.conf"
PROXY_LOG = f"{PROXY_RESOURCE}.log"
# flaskbench's own traceback, when a cell broke in a way it did not foresee.
ERROR_TXT = "error.txt"
# With [services]: where the cell's services ran, and per service its samples and its log.
SERVICES_JSON = "services.json"


def service_csv(name: str) -> str:
    return f"service-{name}.csv"


def service_log(name: str) -> str:
    return f"service-{name}.log"


# -- the run's Locust swarms --------------------------------------------------------------------

SWARM_DIR = "swarm"

META_FORMAT = 3
CELL_FORMAT = 1
LOADGEN_FORMAT = 2
HOSTS_FORMAT = 1
SWARM_FORMAT = 1
SERVICES_FORMAT = 1

CellState = Literal["ok", "degraded", "failed"]


class ContractError(Exception):
    """A file of a run does not keep the contract; the message names it and what to do."""


# -- meta.json ----------------------------------------------------------------------------------


class Tool(TypedDict):
    name: str
    version: str


class GitRevision(TypedDict):
    commit: str
    # Whether tracked files differ from the commit.
    dirty: bool


class MachineModel(TypedDict):
    vendor: str | None
    product: str | None


class CpuFrequency(TypedDict):
    driver: str | None
    governor: str | None


class Machine(TypedDict):
    cpu_model: str
    cpu_count: int | None
    cpus_available: str
    memory_gib: float | None
    kernel: str
    os: str
    model: MachineModel
    cpufreq: CpuFrequency


class Cpus(TypedDict):
    target: str
    load: str
    target_cores: NotRequired[int]
    load_cores: NotRequired[int]
    # With [services]: their CPUs (the target's, unless cpus.services gave them their own).
    services: NotRequired[str]


class ImagesRecord(TypedDict):
    """How the images got to every host (docker runner)."""

    # "copy": built once and copied with the engines' save and load; "build": on each host.
    mode: str
    built_on: str
    # Per host: {tag: image ID}.
    hosts: dict[str, dict[str, str]]
    same_image_ids: bool


class ServiceDetails(TypedDict):
    """What one service of `[services]` was started from, as the runner found it."""

    kind: str
    # The server's own version (e.g. "15.18").
    version: str
    # local runner: the server's program; docker runner: the services image.
    program: NotRequired[str]
    image: NotRequired[str]


class ServiceRecord(TypedDict):
    """A service as the config asked for it."""

    kind: str
    version: str | None
    per_cell: bool
    settings: dict[str, str | int | float | bool]


class RunnerDetails(TypedDict, total=False):
    """What the runner set up, as it says (every runner: app_packages)."""

    # {distribution: version} of the environment the app was served from.
    app_packages: dict[str, str]
    # local runner
    python: str
    packages: dict[str, str | None]
    app_python: str
    # docker runner
    docker_engine: str
    compose: str
    base_image: str
    target_image: str
    loadgen_images: dict[str, str]
    container_python: str
    images: ImagesRecord
    # with [services]: what each was started from
    services: dict[str, ServiceDetails]


class Runner(TypedDict):
    name: str
    reason: str
    details: NotRequired[RunnerDetails]


class Session(TypedDict):
    started: str
    runner: str
    ended: NotRequired[str]
    interrupted: NotRequired[bool]
    # Why the run stopped before its last cell without being interrupted (a host was lost).
    stopped: NotRequired[str]


class HostRecord(TypedDict):
    """One host of a run across several (docker runner with [hosts])."""

    engine: str
    name: str
    roles: list[str]
    hostname: str
    engine_version: str
    cpu_model: str
    cpus: int
    cpus_used: dict[str, str | None]
    workers: int
    kernel: str
    os: str
    memory_gib: float | None
    clock_offset_s: float
    clock_uncertainty_s: float


class ProxyRecord(TypedDict):
    """A target's proxy (proxies/reverse_proxy.py's ProxySpec)."""

    name: str
    buffering: bool
    request_buffering: bool
    keepalive: bool


class TargetRecord(TypedDict):
    """A target as meta.json records it (servers/server.py's Target)."""

    name: str
    server: str
    worker_class: str
    workers: int
    threads: int | None
    settings: dict[str, int | bool | str]
    expressions: dict[str, str]
    sweep: str | None
    # The app's environment of its own (a sweep's env); absent in runs before it existed.
    env: NotRequired[dict[str, str]]
    # Runs before proxies have none: the target was served directly.
    proxy: NotRequired[ProxyRecord | None]
    # The server version it asked for (None: whichever fits the app).
    version: NotRequired[str | None]
    # The app's git revision it served (app.revision; None: the app's directory as it was).
    revision: NotRequired[str | None]


# Where the version of a target's server came from (ServerVersionRecord's `source`), as the
# report says it.
VERSION_SOURCES = {
    "target": "asked for by the target",
    "app": "pinned by the app",
    "flaskbench": "flaskbench's pin",
    "resolved": "the newest that fits the app's pins",
    "with-app": "the app's own",
}


class ServerVersionRecord(TypedDict):
    """Which version of its server a target ran with, and where that version came from."""

    server: str
    # The distribution whose version is the server's (its module's first package).
    package: str
    version: str | None
    # A key of VERSION_SOURCES.
    source: str
    # The app's own exact pin of that distribution, if it has one.
    app_pin: str | None
    # The key of the environment it ran in (`environments`).
    environment: str


class EnvironmentRecord(TypedDict):
    """One environment targets were served from: a virtualenv, or an image."""

    # Where: the virtualenv's directory, or the image's tag.
    where: str
    python: str
    # {server: the version targets asked for, or None} of what it was built for.
    servers: dict[str, str | None]
    # {distribution: version} of everything installed.
    packages: dict[str, str]


class Staircase(TypedDict):
    users: list[int]
    warmup_s: int
    measure_s: int
    # With [load] rates: every workload's open loop (users is then empty).
    rates: NotRequired[list[int]]
    arrival: NotRequired[str]


class Goal(TypedDict):
    p99_ms: float
    users: int
    max_rss_mb: float | None
    max_error_rate: float
    # The offered rate open-loop workloads must hold the p99 at (absent or null: none).
    rate: NotRequired[int | None]


class AppRecord(TypedDict):
    """The app, in the config's own words (never a value from the host's environment)."""

    builtin: bool
    path: str
    wsgi: str
    requirements: str | None
    project: bool
    env: dict[str, str]
    setup: str | None
    git: GitRevision | None
    # "app" (the app's server pins, else versions that fit beside them) or "flaskbench" (its own
    # pins); runs before it have none and ran flaskbench's.
    servers: NotRequired[str]
    # app.revision: {revision as the config named it: its commit}; absent: the app's directory.
    revisions: NotRequired[dict[str, str]]


class TrialsRecord(TypedDict):
    """How a run's trials were made (format 3)."""

    # Every trial's order of cells comes from it.
    seed: int
    # repeats = "auto": trials were added until every comparison was decided or the budget spent.
    auto: bool
    budget_s: float | None
    planned: int
    # Each trial's cell ids in the order they ran.
    order: list[list[str]]
    # With auto: "decided", "budget" or "nothing to compare"; and what was left undecided.
    stopped: str
    undecided: list[str]


class MetaJson(TypedDict):
    format: int
    run_id: str
    tool: Tool
    # flaskbench's own checkout (None: not run from one).
    git: GitRevision | None
    python: str
    # {distribution: version, None where it is not installed} of what flaskbench runs with.
    packages: dict[str, str | None]
    machine: Machine
    cpus: Cpus
    locust_workers: int
    runner: Runner
    config_file: str
    # The config as run, overrides applied.
    config: dict[str, Any]
    placement: dict[str, Any]
    load_goes_to: str
    allow_remote_target: bool
    overrides: dict[str, Any]
    targets: dict[str, TargetRecord]
    workloads: dict[str, dict[str, Any]]
    app: AppRecord
    goal: Goal | None
    stop_when_saturated: bool
    sweeps_dropped: list[str]
    staircase: Staircase
    repeats: int
    # From format 3.
    trials: NotRequired[TrialsRecord]
    cells: list[str]
    started: str
    orchestrator_cpus: NotRequired[str]
    sessions: NotRequired[list[Session]]
    hosts: NotRequired[list[HostRecord]]
    ended: NotRequired[str]
    # {path relative to the run: SHA-256} of every raw file, at the end of the run.
    files: NotRequired[dict[str, str]]
    # The same for what `flaskbench report` wrote (the report, summary.csv, config.toml).
    outputs: NotRequired[dict[str, str]]
    # [services], as the config asked for them (absent: the run had none).
    services: NotRequired[dict[str, ServiceRecord]]
    # {target: ServerVersionRecord}, {target: why it was left out} (no cell of it ran), the
    # Python version the app ran under, and {key: EnvironmentRecord}.
    server_versions: NotRequired[dict[str, ServerVersionRecord]]
    targets_left_out: NotRequired[dict[str, str]]
    app_python: NotRequired[str]
    environments: NotRequired[dict[str, EnvironmentRecord]]


# -- cell.json ----------------------------------------------------------------------------------


class CellJson(TypedDict):
    format: int
    cell_id: str
    status: CellState
    reason: str
    started: float
    ended: float


# -- loadgen.json -------------------------------------------------------------------------------


class WorkloadRecord(TypedDict):
    user_class: str
    path: str
    wait_time: str | None


class VerificationFailure(TypedDict, total=False):
    request: str
    status: int
    expected: str
    body: str


class Verification(TypedDict):
    ok: bool
    checked: list[str]
    failure: VerificationFailure | None


class StepRecord(TypedDict):
    index: int
    # An open loop's: its schedulers (one per load-generating process).
    users: int
    start: float
    measure_start: float
    measure_end: float
    # An open loop's offered requests per second.
    rate: NotRequired[int]


class SkippedRecord(TypedDict):
    index: int
    users: int
    reason: str
    stopped_at: float


class BucketRecord(TypedDict):
    t: int
    requests: int
    failures: int
    # {response time in ms to three significant digits: count}
    latency_ms: dict[str, int]


class LoadgenCpu(TypedDict):
    t: float
    node: str
    cpu_pct: float


class ClockRecord(TypedDict):
    offset_s: float
    round_trip_s: float
    answers: int
    applied_s: float


class OpenLoopRecord(TypedDict):
    # "poisson" or "fixed"
    arrival: str
    rates: list[int]
    # A request sent this long after it was due counts as late.
    late_ms: float


class ArrivalSecond(TypedDict):
    """An open loop's requests that were due in second `t`."""

    t: int
    scheduled: int
    late: int
    # Not sent: every in-flight slot of the load generator was taken.
    dropped: int
    max_lag_ms: float


class UnfinishedRecord(TypedDict):
    """Requests due by the end of step `step`'s window and still unanswered then."""

    step: int
    count: int
    oldest_ms: float


class ArrivalsRecord(TypedDict):
    seconds: list[ArrivalSecond]
    unfinished: list[UnfinishedRecord]


class LoadgenJson(TypedDict):
    format: int
    bucket_s: int
    # Both since April 2026's runs; earlier ones have neither.
    workload: NotRequired[WorkloadRecord]
    verification: NotRequired[Verification]
    steps: list[StepRecord]
    skipped: NotRequired[list[SkippedRecord]]
    buckets: list[BucketRecord]
    loadgen_cpu: list[LoadgenCpu]
    cpu_warnings: list[str]
    workers: int
    clocks: NotRequired[dict[str, ClockRecord]]
    # Format 2, an open loop only.
    open_loop: NotRequired[OpenLoopRecord]
    arrivals: NotRequired[ArrivalsRecord]


# -- the swarm's orders and events ---------------------------------------------------------------


class SwarmOrder(TypedDict):
    """One cell for the Locust master (locustfiles/master.py)."""

    format: int
    cell: str
    # Where the master writes the cell's loadgen.json, log and CSVs, as the master sees it.
    out: str
    # The Locust user class that runs the cell (the master's workers have every one).
    user_class: str
    # The cell's Locust options: --host and locustfile.py's --fb-* (execute/commands.py).
    argv: list[str]


class SwarmEvent(TypedDict):
    """One line of the master's standard output."""

    format: int
    event: Literal["ready", "measured", "done", "error"]
    workers: NotRequired[int]
    cell: NotRequired[str]
    # done: whether load was sent (False: the workload failed its check, or the order could
    # not run: then `error` says why).
    ok: NotRequired[bool]
    error: NotRequired[str]
    # error: why the master cannot go on.
    message: NotRequired[str]


# -- hosts.json ---------------------------------------------------------------------------------


class EngineClock(TypedDict):
    offset_s: float
    uncertainty_s: float


class CellClock(TypedDict):
    # Seconds to add to a time of the target host's clock (gauge.csv) to read the master's.
    target_to_master_s: float
    resources_on_master_clock: bool
    engines: dict[str, EngineClock]


class HostsJson(TypedDict):
    format: int
    target: str
    master: str
    workers: dict[str, int]
    clock: CellClock


# -- services.json ------------------------------------------------------------------------------


class CellService(TypedDict):
    kind: str
    per_cell: bool
    host: str
    port: int
    # "pid 4711" (local runner) or "container NAME" (docker runner).
    where: str
    # Seconds from its start until it answered (for a service of the whole run: its first start).
    ready_s: float
    # Its samples' file in the cell (service-NAME.csv).
    samples: str


class ServicesJson(TypedDict):
    format: int
    services: dict[str, CellService]


# -- reading ------------------------------------------------------------------------------------


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a file of a run; ContractError (naming the file) if it is none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: not a JSON object")
    return data


def _checked_format(path: Path, data: dict[str, Any], current: int) -> dict[str, Any]:
    found = data.setdefault("format", 1)
    if not isinstance(found, int) or found < 1:
        raise ContractError(f"{path}: format {found!r} is not a format number")
    if found > current:
        raise ContractError(
            f"{path}: format {found} is newer than this flaskbench reads (up to {current}); "
            "update flaskbench to read it"
        )
    return data


def read_meta(path: Path) -> MetaJson:
    data = _checked_format(path, read_json_object(path), META_FORMAT)
    if data["format"] == 1:
        data = _meta_from_format_1(data)
    for key, default in _LATER_DEFAULTS.items():
        data.setdefault(key, copy.deepcopy(default))
    return cast(MetaJson, data)


# Keys added within format 3; a run made before one did what its absence says: no target left
# out, its versions and Python not recorded (apart from the packages lists).
_LATER_DEFAULTS: dict[str, Any] = {
    "server_versions": {},
    "targets_left_out": {},
    "app_python": "?",
    "environments": {},
}


# What a reader finds in a meta.json of format 1 where that run did not write a key: runs made
# before a key existed (the goal, sweeps, an own app...) did what its absence says.
_FORMAT_1_DEFAULTS: dict[str, Any] = {
    "tool": {"name": "flaskbench", "version": "?"},
    "python": "?",
    "packages": {},
    "machine": {
        "cpu_model": "unknown",
        "cpu_count": None,
        "cpus_available": "",
        "memory_gib": None,
        "kernel": "",
        "os": "",
        "model": {"vendor": None, "product": None},
        "cpufreq": {"driver": None, "governor": None},
    },
    "locust_workers": 0,
    "runner": {"name": "?", "reason": ""},
    "config_file": "",
    "config": {},
    "placement": {},
    "load_goes_to": "",
    "allow_remote_target": False,
    "overrides": {},
    "targets": {},
    "workloads": {},
    "app": {
        "builtin": True,
        "path": "",
        "wsgi": "",
        "requirements": None,
        "project": False,
        "env": {},
        "setup": None,
        "git": None,
    },
    "goal": None,
    "stop_when_saturated": False,
    "sweeps_dropped": [],
    "staircase": {"users": [], "warmup_s": 0, "measure_s": 0},
    "repeats": 1,
    "cells": [],
    "started": "?",
}


def _meta_from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    upgraded = dict(data)
    for key, default in _FORMAT_1_DEFAULTS.items():
        found = upgraded.get(key, default)
        if isinstance(default, dict) and isinstance(found, dict) and default:
            found = {**default, **found}
        upgraded[key] = found
    # Format 1 wrote {"commit": null, "dirty": null} where there was no checkout.
    upgraded["git"] = _revision_or_none(upgraded.get("git"))
    upgraded["app"]["git"] = _revision_or_none(upgraded["app"].get("git"))
    return upgraded


def _revision_or_none(git: object) -> dict[str, Any] | None:
    if isinstance(git, dict) and git.get("commit"):
        return {"commit": str(git["commit"]), "dirty": bool(git.get("dirty"))}
    return None


def read_cell(path: Path) -> CellJson:
    return cast(CellJson, _checked_format(path, read_json_object(path), CELL_FORMAT))


def read_loadgen(path: Path) -> LoadgenJson:
    return cast(LoadgenJson, _checked_format(path, read_json_object(path), LOADGEN_FORMAT))


def read_hosts(path: Path) -> HostsJson:
    return cast(HostsJson, _checked_format(path, read_json_object(path), HOSTS_FORMAT))


def read_services(path: Path) -> ServicesJson:
    return cast(ServicesJson, _checked_format(path, read_json_object(path), SERVICES_FORMAT))


def iso(timestamp: float) -> str:
    """A time as meta.json writes it: ISO 8601, UTC, to the second."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")
