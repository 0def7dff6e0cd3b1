"""Read and validate the benchmark config (TOML) and the command-line overrides.

Every problem is collected before anything starts and reported at once, each naming the key,
the file and line where it was written, and what to do about it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flaskbench.config.app import (
    App,
    parse_app,
)
from flaskbench.config.cpus import CPU_KEYS, CpuSplit, parse_cpu_split, requested_cpus
from flaskbench.config.env import env_values, placeholder_problems
from flaskbench.config.goal import Goal, parse_goal
from flaskbench.config.hosts import Hosts, parse_hosts
from flaskbench.config.openloop import OpenLoop, read_open_loop
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
from flaskbench.config.revisions import (
    Revision,
    RevisionError,
    parse_revisions,
    revision_app,
    with_revisions,
)
from flaskbench.config.services import ServiceSpec, parse_services
from flaskbench.config.sweeps import VERSION, asked_version, expand_sweep, resolve_counts
from flaskbench.config.trials import Comparing, Trials, parse_compare, parse_trials
from flaskbench.config.units import parse_duration
from flaskbench.config.workloads import Workload, parse_workload
from flaskbench.proxies.proxy_registry import parse_proxy, split_settings
from flaskbench.proxies.reverse_proxy import PROXY_KEYS, UPSTREAM_OFFSET
from flaskbench.servers.registry import SERVERS, resolve_target
from flaskbench.servers.server import Target

LOOPBACK = re.compile(r"^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


@dataclass(frozen=True)
class Staircase:
    """The user counts one Locust run walks through, and how long each step is held; or, with
    `open_loop` ([load] rates), no users: every workload walks offered rates instead."""

    users: tuple[int, ...]
    warmup_s: int
    measure_s: int
    open_loop: OpenLoop | None = None

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
    trials: Trials
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
    # [compare]: the baseline every other target is compared with, trial by trial.
    comparing: Comparing | None = None
    # [services]: Postgres, Redis... started beside the target for the app.
    services: tuple[ServiceSpec, ...] = ()
    # app.revision: the app as committed at each revision its targets serve, by name.
    revision_apps: Mapping[str, App] = field(default_factory=dict)

    @property
    def repeats(self) -> int:
        """The trials planned from the start."""
        return self.trials.count


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
    repeats: int | str | None = None
    # On --resume: the order the run started with (from its meta.json).
    seed: int | None = None
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
    "compare",
    "services",
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
    "rates",
    "arrival",
    "warmup",
    "measure",
    "repeats",
    "seed",
    "budget",
    "locust_workers",
    "request_timeout",
    "stop_when_saturated",
}
_QUICK_KEYS = {"users", "rates", "arrival", "warmup", "measure"}
# The keys that say what a staircase's steps are: users, or an open loop's rates.
_STEP_KEYS = ("users", "rates", "arrival")


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
    revisions = _revisions(data, app, problems)
    # With [hosts] and no cpus.target, the target's cores are only known from its engine.
    cores = len(split.target) if split and split.target else None
    targets, dropped = _targets(data, cores, revisions, problems)
    services = _services(data, app, targets, problems)
    staircase = _staircase(load, ("load",), problems)
    if overrides.quick:
        staircase = _staircase(_quick_table(load, quick), ("quick",), problems) or staircase
    workloads = _workloads(
        path, data, "app" in data, staircase.open_loop if staircase else None, problems
    )
    stop_when_saturated = flag(load, "stop_when_saturated", ("load",), problems)

    host = _host(run, overrides, hosts, problems)
    port, master_port = _ports(run, targets, problems)
    ready_timeout = whole_seconds(run, "ready_timeout", ("run",), problems, default=30)
    base_image = run.get("base_image", "python:3.12-slim")
    if not isinstance(base_image, str) or not base_image:
        problems.add(("run", "base_image"), "must be an image name such as 'python:3.12-slim'")
    results_dir = _results_dir(path, run.get("results_dir", "results"), problems)
    gauge = {True: "on", False: "off", "alternate": "alternate"}.get(run.get("gauge", True))
    if gauge is None:
        problems.add(("run", "gauge"), 'must be true, false or "alternate"')

    locust_workers = integer(load, "locust_workers", ("load",), problems, default=0, low=0)
    request_timeout = whole_seconds(load, "request_timeout", ("load",), problems, default=60)

    if overrides.targets:
        targets = _select(targets, overrides.targets, "--targets", problems)
    if overrides.workloads:
        workloads = _select(workloads, overrides.workloads, "--workloads", problems)
    if staircase and (overrides.users or overrides.step_time or overrides.warmup):
        staircase = _override_staircase(staircase, overrides, problems)
    comparing = parse_compare(data, [t.name for t in targets], problems)
    compares = comparing is not None or ("sweep" in data and "goal" in data)
    trials = parse_trials(load, overrides.repeats, overrides.seed, compares, problems)
    goal = parse_goal(data, staircase.users if staircase else None, _rates(workloads), problems)
    if problems.items or staircase is None or split is None:
        return None
    revision_apps = _revision_apps(app, revisions, problems)
    if problems.items:
        return None
    as_run = {
        **data,
        "load": {
            **load,
            **_steps_as_run(staircase),
            "repeats": "auto" if trials.auto else trials.count,
            "seed": trials.seed,
        },
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
        trials=trials,
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
        comparing=comparing,
        services=services,
        revision_apps=revision_apps,
    )


def _revisions(data: Mapping[str, Any], app: App, problems: Problems) -> tuple[Revision, ...]:
    table = data.get("app")
    if not isinstance(table, dict) or "revision" not in table:
        return ()
    return parse_revisions(table["revision"], app, problems)


def _revision_apps(app: App, revisions: tuple[Revision, ...], problems: Problems) -> dict[str, App]:
    """Each revision's tree, exported once per commit."""
    found = {}
    for revision in revisions:
        try:
            found[revision.name] = revision_app(app, revision)
        except RevisionError as exc:
            problems.add(("app", "revision"), str(exc))
    return found


def _ports(run: Mapping[str, Any], targets: list[Target], problems: Problems) -> tuple[int, int]:
    """run.port (the target's) and run.master_port (the Locust master's)."""
    port = integer(run, "port", ("run",), problems, default=18080, low=1024, high=65535)
    master_port = integer(
        run, "master_port", ("run",), problems, default=15557, low=1024, high=65535
    )
    if port == master_port:
        problems.add(("run", "master_port"), "must differ from run.port")
    _upstream_port(targets, port, master_port, problems)
    return port, master_port


def _upstream_port(targets: list[Target], port: int, master_port: int, problems: Problems) -> None:
    """A server behind a proxy listens one port above the target's (the proxy's)."""
    if not any(t.proxy for t in targets):
        return
    if port + UPSTREAM_OFFSET > 65535:
        problems.add(("run", "port"), "must leave room for the server behind a proxy, one above")
    elif master_port == port + UPSTREAM_OFFSET:
        problems.add(
            ("run", "master_port"),
            f"must differ from run.port + {UPSTREAM_OFFSET}, where a server behind a proxy listens",
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
    warmup = whole_seconds(table, "warmup", prefix, problems, default=5)
    measure = whole_seconds(table, "measure", prefix, problems, default=15)
    if "users" in table and "rates" in table:
        problems.add(
            (*prefix, "rates"),
            "set users (a closed loop: each user sends its next request when the last "
            "returned) or rates (an open loop: requests offered at a rate), not both",
        )
        return None
    if "rates" in table or "arrival" in table:
        open_loop, ok = read_open_loop(table, lambda key, m: problems.add((*prefix, key), m))
        return Staircase((), warmup, measure, open_loop) if ok and open_loop else None
    users = _users(
        table.get("users", [1, 2, 4, 8, 16, 32, 64, 128]),
        lambda message: problems.add((*prefix, "users"), message),
    )
    return Staircase(users, warmup, measure) if users else None


def _steps_as_run(staircase: Staircase) -> dict[str, Any]:
    """The steps that ran, as [load] writes them (overrides and --quick applied)."""
    if staircase.open_loop is None:
        return {"users": list(staircase.users)}
    return {"rates": list(staircase.open_loop.rates), "arrival": staircase.open_loop.arrival}


def _quick_table(load: Mapping[str, Any], quick: Mapping[str, Any]) -> dict[str, Any]:
    """[quick] over [load]: steps written in [quick] (users or rates) replace [load]'s."""
    steps = any(key in quick for key in _STEP_KEYS)
    return {k: v for k, v in load.items() if not (steps and k in _STEP_KEYS)} | dict(quick)


def _rates(workloads: list[Workload]) -> tuple[tuple[int, ...], ...]:
    """The offered rates of every open-loop workload, each its own staircase."""
    return tuple(w.open_loop.rates for w in workloads if w.open_loop)


def _override_staircase(
    staircase: Staircase, overrides: Overrides, problems: Problems
) -> Staircase:
    users = staircase.users
    if overrides.users and staircase.open_loop:
        problems.cli("--users", "[load] sets rates: every workload walks an open loop, not users")
    elif overrides.users:
        users = _users(overrides.users, lambda m: problems.cli("--users", m)) or users
    measure = _cli_seconds("--step-time", overrides.step_time, problems)
    warmup = _cli_seconds("--warmup", overrides.warmup, problems)
    return replace(
        staircase,
        users=users,
        warmup_s=warmup or staircase.warmup_s,
        measure_s=measure or staircase.measure_s,
    )


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
    data: Mapping[str, Any], cores: int | None, revisions: tuple[Revision, ...], problems: Problems
) -> tuple[list[Target], list[str]]:
    """[targets.*], then the targets each [sweep.*] expands into, each at every revision of
    app.revision; and what sweeps dropped."""
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
        settings, proxy_keys = split_settings(
            {k: v for k, v in raw.items() if k not in ("server", "env", VERSION)}
        )
        proxy, proxy_ok = parse_proxy(proxy_keys, _reporter(key, problems))
        unknown_keys(settings, {*SERVERS[server].defaults, *PROXY_KEYS}, key, problems)
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
        if target and proxy_ok:
            env = _target_env(raw.get("env", {}), key, problems)
            targets.append(replace(target, expressions=expressions, env=env, proxy=proxy))
    dropped: list[str] = []
    if has_sweeps:
        for name, key, raw in named_tables(data, "sweep", "threads", problems):
            expansion = expand_sweep(name, raw, cores)
            for setting, message in expansion.problems:
                problems.add((*key, *setting.split(".")), message)
            targets += expansion.targets
            dropped += expansion.dropped
    if revisions:
        targets = with_revisions(targets, revisions)
    names = [t.name for t in targets]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.add(("sweep",), f"two targets are named {duplicate}; rename a sweep or target")
    return targets, dropped


def _target_env(value: object, key: tuple[str, ...], problems: Problems) -> dict[str, str]:
    """A target's own `env`: one value per variable (a sweep varies them, a target does not)."""
    where = (*key, "env")
    env = env_values(value, lambda below, message: problems.add((*where, *below), message))
    for name, found in env.items():
        if isinstance(found, list):
            problems.add((*where, name), "takes one value; a [sweep] varies it over a list")
    return {name: found for name, found in env.items() if isinstance(found, str)}


def _services(
    data: Mapping[str, Any], app: App, targets: list[Target], problems: Problems
) -> tuple[ServiceSpec, ...]:
    """[services]; and every `{NAME.field}` names one of them and one of its fields (each
    problem said once, however many targets a sweep made of one table)."""
    services = parse_services(data, problems)
    written: list[tuple[tuple[str, ...], str]] = [
        (("app", "env", name), text) for name, text in app.env
    ]
    if app.setup:
        written.append((("app", "setup"), app.setup))
    for target in targets:
        table = ("sweep", target.sweep) if target.sweep else ("targets", target.name)
        written += [((*table, "env", name), text) for name, text in target.env.items()]
    said: set[tuple[tuple[str, ...], str]] = set()
    for key, text in written:
        for message in placeholder_problems(text, services):
            if (key, message) not in said:
                said.add((key, message))
                problems.add(key, message)
    return services


def _reporter(key: tuple[str, ...], problems: Problems) -> Callable[[str, str], None]:
    """Problems of the keys below `key` (a table's), reported as (key, message)."""
    return lambda below, message: problems.add((*key, below), message)


def _workloads(
    path: Path,
    data: Mapping[str, Any],
    own_app: bool,
    open_loop: OpenLoop | None,
    problems: Problems,
) -> list[Workload]:
    workloads = []
    for name, key, raw in named_tables(data, "workloads", "io", problems):

        def report(where: tuple[str, ...], message: str, key: tuple[str, ...] = key) -> None:
            problems.add((*key, *where), message)

        workload = parse_workload(name, raw, path.parent, own_app, report, open_loop)
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
