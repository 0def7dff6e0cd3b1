"""Read and validate the benchmark config (TOML) and the command-line overrides.

Every problem is collected before anything starts and reported at once, each naming the key,
the file and line where it was written, and what to do about it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flaskbench.config.app import (
    App,
    parse_app,
)
from flaskbench.config.cpus import CPU_KEYS, CpuSplit, parse_cpu_split, requested_cpus
from flaskbench.config.goal import Goal, parse_goal
from flaskbench.config.hosts import Hosts, parse_hosts
from flaskbench.config.problems import (
    ConfigError,
    KeyLines,
    Problems,
    flag,
    integer,
    named_tables,
    read_table,
    unknown_keys,
    whole_seconds,
)
from flaskbench.config.sweeps import VERSION, asked_version, expand_sweep, resolve_counts
from flaskbench.config.units import parse_duration
from flaskbench.config.workloads import Workload, parse_workload
from flaskbench.servers.base import Target
from flaskbench.servers.registry import SERVERS, resolve_target

LOOPBACK = re.compile(r"^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


@dataclass(frozen=True)
class Staircase:
    """The user counts one Locust run walks through, and how long each step is held."""

    users: tuple[int, ...]
    warmup_s: int
    measure_s: int

    @property
    def step_s(self) -> int:
        return self.warmup_s + self.measure_s


@dataclass(frozen=True)
class Config:
    path: Path
    app: App
    targets: tuple[Target, ...]
    workloads: tuple[Workload, ...]
    staircase: Staircase
    repeats: int
    cpus: CpuSplit
    locust_workers: int
    request_timeout_s: int
    runner: str
    host: str
    port: int
    master_port: int
    results_dir: Path
    ready_timeout_s: int
    base_image: str
    # "on", "off", or "alternate" (counting paused every other 2 s, to measure its own cost).
    gauge: str
    # A cell stops climbing its staircase once the target is clearly saturated (see plan).
    stop_when_saturated: bool = False
    goal: Goal | None = None
    # Sweep combinations that could not be, each with why.
    dropped: tuple[str, ...] = ()
    # The config exactly as it was run, overrides applied, for meta.json.
    as_run: Mapping[str, Any] = field(default_factory=dict)
    # [hosts]: the engines each side runs on (None: one engine, the local one, for both). With
    # it, `host` is hosts.target_address, and empty `cpus` sides mean "placed per host".
    hosts: Hosts | None = None


@dataclass(frozen=True)
class Overrides:
    """What the command line may change; None leaves the config's value."""

    runner: str | None = None
    quick: bool = False
    targets: str | None = None
    workloads: str | None = None
    users: str | None = None
    step_time: str | None = None
    warmup: str | None = None
    repeats: int | None = None
    allow_remote_target: bool = False


RUNNERS = ("auto", "docker", "local")


# Keys each table may hold; everything else is reported as unknown.
_TOP_KEYS = {
    "run",
    "load",
    "quick",
    "cpus",
    "app",
    "targets",
    "sweep",
    "workloads",
    "goal",
    "hosts",
}
_RUN_KEYS = {
    "gauge",
    "runner",
    "host",
    "port",
    "master_port",
    "results_dir",
    "ready_timeout",
    "base_image",
}
_LOAD_KEYS = {
    "users",
    "warmup",
    "measure",
    "repeats",
    "locust_workers",
    "request_timeout",
    "stop_when_saturated",
}
_QUICK_KEYS = {"users", "warmup", "measure"}


def load_config(path: Path, overrides: Overrides = Overrides()) -> Config:
    """Read, validate and apply overrides; raise ConfigError listing every problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read the config ({exc.strerror}); pass --config FILE"]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_problem(path, str(exc))]) from None
    problems = Problems(path, KeyLines(text))
    config = _build(path, data, overrides, problems)
    if problems.items:
        raise ConfigError(problems.items)
    assert config is not None
    return config


def _toml_problem(path: Path, message: str) -> str:
    where = str(path)
    if position := re.search(r"\s*\(at line (\d+), column \d+\)", message):
        where = f"{path}:{position.group(1)}"
        message = message[: position.start()] + message[position.end() :]
    if twice := re.fullmatch(r"Cannot (?:declare|overwrite a value) \((.*)\)( twice)?", message):
        key = ".".join(part.strip(" '\"") for part in twice.group(1).split(","))
        return f"{where}: {key} is defined twice; every table and key must be unique"
    return f"{where}: not valid TOML: {message}; fix the syntax there"


def _build(
    path: Path, data: dict[str, Any], overrides: Overrides, problems: Problems
) -> Config | None:
    unknown_keys(data, _TOP_KEYS, (), problems)
    run = read_table(data, "run", _RUN_KEYS, problems)
    load = read_table(data, "load", _LOAD_KEYS, problems)
    quick = read_table(data, "quick", _QUICK_KEYS, problems)
    cpus = read_table(data, "cpus", CPU_KEYS, problems)

    runner = overrides.runner or run.get("runner", "auto")
    if runner not in RUNNERS:
        where = "--runner" if overrides.runner else None
        message = f"unknown runner {runner!r}; use one of {', '.join(RUNNERS)}"
        (problems.cli(where, message) if where else problems.add(("run", "runner"), message))
    hosts = _hosts(data, run, load, runner, overrides, problems)
    split = requested_cpus(cpus, problems) if hosts else parse_cpu_split(cpus, problems)

    app = parse_app(path, data, problems)
    # With [hosts] and no cpus.target, the target's cores are only known from its engine.
    cores = len(split.target) if split and split.target else None
    targets, dropped = _targets(data, cores, problems)
    workloads = _workloads(path, data, "app" in data, problems)
    staircase = _staircase(load, ("load",), problems)
    if overrides.quick:
        quick_stairs = _staircase({**load, **quick}, ("quick",), problems)
        staircase = quick_stairs or staircase
    stop_when_saturated = flag(load, "stop_when_saturated", ("load",), problems)

    host = _host(run, overrides, hosts, problems)
    port = integer(run, "port", ("run",), problems, default=18080, low=1024, high=65535)
    master_port = integer(
        run, "master_port", ("run",), problems, default=15557, low=1024, high=65535
    )
    if port == master_port:
        problems.add(("run", "master_port"), "must differ from run.port")
    ready_timeout = whole_seconds(run, "ready_timeout", ("run",), problems, default=30)
    base_image = run.get("base_image", "python:3.12-slim")
    if not isinstance(base_image, str) or not base_image:
        problems.add(("run", "base_image"), "must be an image name such as 'python:3.12-slim'")
    results_dir = _results_dir(path, run.get("results_dir", "results"), problems)
    gauge = {True: "on", False: "off", "alternate": "alternate"}.get(run.get("gauge", True))
    if gauge is None:
        problems.add(("run", "gauge"), 'must be true, false or "alternate"')

    repeats = integer(load, "repeats", ("load",), problems, default=1)
    locust_workers = integer(load, "locust_workers", ("load",), problems, default=0, low=0)
    request_timeout = whole_seconds(load, "request_timeout", ("load",), problems, default=60)

    if overrides.targets:
        targets = _select(targets, overrides.targets, "--targets", problems)
    if overrides.workloads:
        workloads = _select(workloads, overrides.workloads, "--workloads", problems)
    if staircase and (overrides.users or overrides.step_time or overrides.warmup):
        staircase = _override_staircase(staircase, overrides, problems)
    if overrides.repeats is not None:
        if overrides.repeats < 1:
            problems.cli("--repeats", "must be 1 or more")
        repeats = overrides.repeats

    goal = parse_goal(data, staircase.users if staircase else None, problems)
    if problems.items or staircase is None or split is None:
        return None
    as_run = {
        **data,
        "load": {**load, "users": list(staircase.users), "repeats": repeats},
        "run": {**run, "runner": runner},
        "selected": {
            "targets": [t.name for t in targets],
            "workloads": [w.name for w in workloads],
            "warmup_s": staircase.warmup_s,
            "measure_s": staircase.measure_s,
            "quick": overrides.quick,
        },
    }
    return Config(
        path=path,
        app=app,
        targets=tuple(targets),
        workloads=tuple(workloads),
        staircase=staircase,
        repeats=repeats,
        cpus=split,
        locust_workers=locust_workers or len(split.load),
        request_timeout_s=request_timeout,
        runner=str(runner),
        host=str(host),
        port=port,
        master_port=master_port,
        results_dir=results_dir,
        ready_timeout_s=ready_timeout,
        base_image=str(base_image),
        gauge=str(gauge),
        stop_when_saturated=stop_when_saturated,
        goal=goal,
        dropped=tuple(dropped),
        as_run=as_run,
        hosts=hosts,
    )


def _host(
    run: Mapping[str, Any], overrides: Overrides, hosts: Hosts | None, problems: Problems
) -> str:
    """Where load goes: run.host, or with [hosts] its target_address (checked there)."""
    host = hosts.target_address if hosts else run.get("host", "127.0.0.1")
    if not isinstance(host, str) or not (
        LOOPBACK.match(host) or overrides.allow_remote_target or hosts
    ):
        problems.add(
            ("run", "host"),
            f"{host!r} is not a loopback address; load only goes to 127.0.0.0/8 unless you "
            "pass --allow-remote-target",
        )
    return str(host)


def _users(value: object, report: Any) -> tuple[int, ...] | None:
    if isinstance(value, str):
        try:
            value = [int(part) for part in value.split(",")]
        except ValueError:
            report(f"cannot read {value!r} as user counts; write them like 1,2,4,8")
            return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        report(f"must be a non-empty list of positive user counts, got {value!r}")
        return None
    if sorted(set(value)) != list(value):
        report(f"user counts must be distinct and increasing, got {value!r}")
        return None
    return tuple(value)


def _staircase(
    table: Mapping[str, Any], prefix: tuple[str, ...], problems: Problems
) -> Staircase | None:
    users = _users(
        table.get("users", [1, 2, 4, 8, 16, 32, 64, 128]),
        lambda message: problems.add((*prefix, "users"), message),
    )
    warmup = whole_seconds(table, "warmup", prefix, problems, default=5)
    measure = whole_seconds(table, "measure", prefix, problems, default=15)
    return Staircase(users, warmup, measure) if users else None


def _override_staircase(
    staircase: Staircase, overrides: Overrides, problems: Problems
) -> Staircase:
    users = staircase.users
    if overrides.users:
        users = _users(overrides.users, lambda m: problems.cli("--users", m)) or users
    measure = _cli_seconds("--step-time", overrides.step_time, problems)
    warmup = _cli_seconds("--warmup", overrides.warmup, problems)
    return Staircase(users, warmup or staircase.warmup_s, measure or staircase.measure_s)


def _cli_seconds(option: str, value: str | None, problems: Problems) -> int | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        problems.cli(option, str(exc))
        return None
    if seconds != int(seconds) or seconds < 1:
        problems.cli(option, f"must be a whole number of seconds, 1s or more; got {value!r}")
        return None
    return int(seconds)


def _targets(
    data: Mapping[str, Any], cores: int | None, problems: Problems
) -> tuple[list[Target], list[str]]:
    """[targets.*], then the targets each [sweep.*] expands into; and what sweeps dropped."""
    targets = []
    has_sweeps = isinstance(data.get("sweep"), dict) and bool(data["sweep"])
    tables = (
        named_tables(data, "targets", "sync", problems)
        if "targets" in data or not (has_sweeps)
        else iter(())
    )
    for name, key, raw in tables:
        server = raw.get("server")
        if not isinstance(server, str) or server not in SERVERS:
            problems.add(
                (*key, "server"), f"unknown server {server!r}; use one of {', '.join(SERVERS)}"
            )
            continue
        settings = {k: v for k, v in raw.items() if k not in ("server", VERSION)}
        unknown_keys(settings, set(SERVERS[server].defaults), key, problems)
        known = {k: v for k, v in settings.items() if k in SERVERS[server].defaults}
        values, expressions, count_problems = resolve_counts(server, known, cores)
        for setting, message in count_problems:
            problems.add((*key, setting), message)
        if count_problems:
            continue
        target, target_problems = resolve_target(name, server, values)
        for problem in target_problems:
            problems.add((*key, problem.key), problem.message)
        if target and VERSION in raw:
            target, refused = asked_version(target, raw[VERSION])
            if refused:
                problems.add((*key, VERSION), refused)
        if target:
            targets.append(replace(target, expressions=expressions))
    dropped: list[str] = []
    if has_sweeps:
        for name, key, raw in named_tables(data, "sweep", "threads", problems):
            expansion = expand_sweep(name, raw, cores)
            for setting, message in expansion.problems:
                problems.add((*key, setting), message)
            targets += expansion.targets
            dropped += expansion.dropped
    names = [t.name for t in targets]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.add(("sweep",), f"two targets are named {duplicate}; rename a sweep or target")
    return targets, dropped


def _workloads(
    path: Path, data: Mapping[str, Any], own_app: bool, problems: Problems
) -> list[Workload]:
    workloads = []
    for name, key, raw in named_tables(data, "workloads", "io", problems):

        def report(where: tuple[str, ...], message: str, key: tuple[str, ...] = key) -> None:
            problems.add((*key, *where), message)

        workload = parse_workload(name, raw, path.parent, own_app, report)
        if workload is not None:
            workloads.append(workload)
    return workloads


def _select(items: list[Any], wanted: str, option: str, problems: Problems) -> list[Any]:
    by_name = {item.name: item for item in items}
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    missing = [n for n in names if n not in by_name]
    if missing or not names:
        problems.cli(
            option,
            f"unknown name(s) {', '.join(missing) or wanted!r}; the config defines "
            + ", ".join(by_name),
        )
        return items
    if len(set(names)) != len(names):
        problems.cli(option, "names a target or workload twice")
    return [by_name[n] for n in dict.fromkeys(names)]


def _hosts(
    data: Mapping[str, Any],
    run: Mapping[str, Any],
    load: Mapping[str, Any],
    runner: object,
    overrides: Overrides,
    problems: Problems,
) -> Hosts | None:
    """`[hosts]` (see flaskbench/config/hosts.py), and the keys it takes the place of."""
    if "hosts" not in data:
        return None
    hosts = parse_hosts(data["hosts"], overrides.allow_remote_target, problems.add)
    replaced = {
        ("run", "host"): (run, "the address is hosts.target_address"),
        ("load", "locust_workers"): (load, "workers are counted per host: hosts.workers_per_host"),
    }
    for key, (table, why) in replaced.items():
        if key[1] in table:
            problems.add(key, f"remove it: with [hosts], {why}")
    if runner == "local":
        message = '[hosts] needs the docker runner; use "docker" or "auto"'
        if overrides.runner:
            problems.cli("--runner", message)
        else:
            problems.add(("run", "runner"), message)
    return hosts


def _results_dir(config_path: Path, value: object, problems: Problems) -> Path:
    if not isinstance(value, str) or not value:
        problems.add(("run", "results_dir"), "must be a directory path")
        return Path("results")
    path = Path(value)
    if not path.is_absolute():
        path = Path.cwd() / path
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        problems.add(
            ("run", "results_dir"),
            f"{path} is not writable; choose another directory or fix its permissions",
        )
    return path
