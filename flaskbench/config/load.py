"""Read and validate the benchmark config (TOML) and the command-line overrides.

Every problem is collected before anything starts and reported at once, each naming the key,
the file and line where it was written, and what to do about it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flaskbench.config.app import (
    App,
    app_pin_conflicts,
    built_in_app,
    missing_references,
    wsgi_problem,
)
from flaskbench.config.hosts import Hosts, parse_hosts
from flaskbench.config.sweeps import expand_sweep, resolve_counts
from flaskbench.config.workloads import Workload, parse_workload
from flaskbench.servers.registry import SERVERS, Target, resolve_target

LOOPBACK = re.compile(r"^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
# Names end up in cell ids (`target--workload--r1`) and file names, so no "--" inside.
NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
NAME_RULE = "use lower-case letters and digits, joined by single '-' or '_'"


class ConfigError(Exception):
    """One or more problems with the config or the command line, each a complete line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


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
class Goal:
    """What a recommended target must hold: p99 latency at a concurrency, within budgets."""

    p99_ms: float
    users: int
    # Memory of the whole server (all its processes), None: no budget.
    max_rss_mb: float | None
    # Share of requests that may fail (0 to 1).
    max_error_rate: float


@dataclass(frozen=True)
class CpuSplit:
    target: tuple[int, ...]
    load: tuple[int, ...]


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

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """'15s', '2m', '500ms', 30 -> seconds. Raises ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '15s' or '2m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ValueError(f"cannot read {value!r} as a duration; write it like '15s' or '2m'")
    return seconds


def parse_cpus(value: object) -> tuple[int, ...]:
    """'0', '0-3', '0,2' -> CPU ids."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", value):
        raise ValueError(f"cannot read {value!r} as a CPU list; write it like '0', '1-3' or '0,2'")
    cpus: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(cpus))


def format_cpus(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


class _Lines:
    """Finds the line a key was written on, for error messages (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.split("#", 1)[0].strip()
            if header := re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]", stripped):
                table = _split_key(header.group(1))
                self._lines.setdefault(table, number)
            elif key := re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=", stripped):
                self._lines.setdefault((*table, *_split_key(key.group(1))), number)

    def line(self, path: Sequence[str]) -> int | None:
        for end in range(len(path), 0, -1):
            if (number := self._lines.get(tuple(path[:end]))) is not None:
                return number
        return None


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(
        part.strip().strip("\"'") for part in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", text)
    )


class _Problems:
    def __init__(self, path: Path, lines: _Lines) -> None:
        self._path = path
        self._lines = lines
        self.items: list[str] = []

    def add(self, key: Sequence[str], message: str) -> None:
        line = self._lines.line(key)
        where = f"{self._path}:{line}" if line else str(self._path)
        self.items.append(f"{where}: {'.'.join(key)}: {message}")

    def cli(self, option: str, message: str) -> None:
        self.items.append(f"command line: {option}: {message}")


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
_GOAL_KEYS = {"p99_ms", "users", "max_rss_mb", "max_error_rate"}
_QUICK_KEYS = {"users", "warmup", "measure"}
_CPU_KEYS = {"target", "load"}
_APP_KEYS = {"path", "wsgi", "requirements", "env", "setup"}


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
    problems = _Problems(path, _Lines(text))
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
    path: Path, data: dict[str, Any], overrides: Overrides, problems: _Problems
) -> Config | None:
    _unknown(data, _TOP_KEYS, (), problems)
    run = _table(data, "run", _RUN_KEYS, problems)
    load = _table(data, "load", _LOAD_KEYS, problems)
    quick = _table(data, "quick", _QUICK_KEYS, problems)
    cpus = _table(data, "cpus", _CPU_KEYS, problems)

    runner = overrides.runner or run.get("runner", "auto")
    if runner not in RUNNERS:
        where = "--runner" if overrides.runner else None
        message = f"unknown runner {runner!r}; use one of {', '.join(RUNNERS)}"
        (problems.cli(where, message) if where else problems.add(("run", "runner"), message))
    hosts = _hosts(data, run, load, runner, overrides, problems)
    split = _requested_cpus(cpus, problems) if hosts else _cpus(cpus, problems)

    app = _app(path, data, problems)
    # With [hosts] and no cpus.target, the target's cores are only known from its engine.
    cores = len(split.target) if split and split.target else None
    targets, dropped = _targets(data, cores, problems)
    workloads = _workloads(path, data, "app" in data, problems)
    staircase = _staircase(load, ("load",), problems)
    if overrides.quick:
        quick_stairs = _staircase({**load, **quick}, ("quick",), problems)
        staircase = quick_stairs or staircase
    stop_when_saturated = _flag(load, "stop_when_saturated", ("load",), problems)

    host = _host(run, overrides, hosts, problems)
    port = _int(run, "port", ("run",), problems, default=18080, low=1024, high=65535)
    master_port = _int(run, "master_port", ("run",), problems, default=15557, low=1024, high=65535)
    if port == master_port:
        problems.add(("run", "master_port"), "must differ from run.port")
    ready_timeout = _seconds(run, "ready_timeout", ("run",), problems, default=30)
    base_image = run.get("base_image", "python:3.12-slim")
    if not isinstance(base_image, str) or not base_image:
        problems.add(("run", "base_image"), "must be an image name such as 'python:3.12-slim'")
    results_dir = _results_dir(path, run.get("results_dir", "results"), problems)
    gauge = {True: "on", False: "off", "alternate": "alternate"}.get(run.get("gauge", True))
    if gauge is None:
        problems.add(("run", "gauge"), 'must be true, false or "alternate"')

    repeats = _int(load, "repeats", ("load",), problems, default=1)
    locust_workers = _int(load, "locust_workers", ("load",), problems, default=0, low=0)
    request_timeout = _seconds(load, "request_timeout", ("load",), problems, default=60)

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

    goal = _goal(data, staircase, problems)
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


def _table(
    data: Mapping[str, Any], name: str, keys: set[str], problems: _Problems
) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.add((name,), "must be a table, written as [" + name + "]")
        return {}
    _unknown(value, keys, (name,), problems)
    return value


def _unknown(
    table: Mapping[str, Any], known: set[str], prefix: tuple[str, ...], p: _Problems
) -> None:
    for key in table:
        if key not in known:
            p.add((*prefix, key), f"unknown key; known keys here: {', '.join(sorted(known))}")


def _int(
    table: Mapping[str, Any],
    key: str,
    prefix: tuple[str, ...],
    problems: _Problems,
    default: int,
    low: int = 1,
    high: int | None = None,
) -> int:
    value = table.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f"{low} or more"
        problems.add((*prefix, key), f"must be an integer {bound}, got {value!r}")
        return default
    return value


def _host(
    run: Mapping[str, Any], overrides: Overrides, hosts: Hosts | None, problems: _Problems
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


def _flag(table: Mapping[str, Any], key: str, prefix: tuple[str, ...], problems: _Problems) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        problems.add((*prefix, key), f"must be true or false, got {value!r}")
        return False
    return value


def _seconds(
    table: Mapping[str, Any],
    key: str,
    prefix: tuple[str, ...],
    problems: _Problems,
    default: int,
    low: int = 1,
) -> int:
    """Durations that the schedule needs in whole seconds."""
    if key not in table:
        return default
    try:
        seconds = parse_duration(table[key])
    except ValueError as exc:
        problems.add((*prefix, key), str(exc))
        return default
    if seconds != int(seconds) or seconds < low:
        problems.add(
            (*prefix, key), f"must be a whole number of seconds, {low}s or more; got {table[key]!r}"
        )
        return default
    return int(seconds)


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
    table: Mapping[str, Any], prefix: tuple[str, ...], problems: _Problems
) -> Staircase | None:
    users = _users(
        table.get("users", [1, 2, 4, 8, 16, 32, 64, 128]),
        lambda message: problems.add((*prefix, "users"), message),
    )
    warmup = _seconds(table, "warmup", prefix, problems, default=5)
    measure = _seconds(table, "measure", prefix, problems, default=15)
    return Staircase(users, warmup, measure) if users else None


def _override_staircase(
    staircase: Staircase, overrides: Overrides, problems: _Problems
) -> Staircase:
    users = staircase.users
    if overrides.users:
        users = _users(overrides.users, lambda m: problems.cli("--users", m)) or users
    measure = _cli_seconds("--step-time", overrides.step_time, problems)
    warmup = _cli_seconds("--warmup", overrides.warmup, problems)
    return Staircase(users, warmup or staircase.warmup_s, measure or staircase.measure_s)


def _cli_seconds(option: str, value: str | None, problems: _Problems) -> int | None:
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


def _named_tables(
    data: Mapping[str, Any], kind: str, example: str, problems: _Problems
) -> Iterator[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """(name, key path, table) for each well-formed [kind.name] table; reports the others."""
    table = data.get(kind)
    if not isinstance(table, dict) or not table:
        problems.add((kind,), f"define at least one, e.g. [{kind}.{example}]")
        return
    for name, raw in table.items():
        key = (kind, name)
        if not NAME.fullmatch(name):
            problems.add(key, f"bad name; {NAME_RULE}")
        elif not isinstance(raw, dict):
            problems.add(key, f"must be a table, written as [{kind}.{name}]")
        else:
            yield name, key, raw


def _targets(
    data: Mapping[str, Any], cores: int | None, problems: _Problems
) -> tuple[list[Target], list[str]]:
    """[targets.*], then the targets each [sweep.*] expands into; and what sweeps dropped."""
    targets = []
    has_sweeps = isinstance(data.get("sweep"), dict) and bool(data["sweep"])
    tables = (
        _named_tables(data, "targets", "sync", problems)
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
        settings = {k: v for k, v in raw.items() if k != "server"}
        _unknown(settings, set(SERVERS[server].defaults), key, problems)
        known = {k: v for k, v in settings.items() if k in SERVERS[server].defaults}
        values, expressions, count_problems = resolve_counts(server, known, cores)
        for setting, message in count_problems:
            problems.add((*key, setting), message)
        if count_problems:
            continue
        target, target_problems = resolve_target(name, server, values)
        for problem in target_problems:
            problems.add((*key, problem.key), problem.message)
        if target:
            targets.append(replace(target, expressions=expressions))
    dropped: list[str] = []
    if has_sweeps:
        for name, key, raw in _named_tables(data, "sweep", "threads", problems):
            expansion = expand_sweep(name, raw, cores)
            for setting, message in expansion.problems:
                problems.add((*key, setting), message)
            targets += expansion.targets
            dropped += expansion.dropped
    names = [t.name for t in targets]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.add(("sweep",), f"two targets are named {duplicate}; rename a sweep or target")
    return targets, dropped


def _goal(data: Mapping[str, Any], staircase: Staircase | None, problems: _Problems) -> Goal | None:
    """[goal]: what a recommended target must hold (absent: no recommendation)."""
    if "goal" not in data:
        return None
    table = _table(data, "goal", _GOAL_KEYS, problems)
    before = len(problems.items)
    p99 = table.get("p99_ms")
    if isinstance(p99, bool) or not isinstance(p99, int | float) or p99 <= 0:
        problems.add(("goal", "p99_ms"), f"required: the p99 latency goal in ms, got {p99!r}")
    top = staircase.users[-1] if staircase else 1
    users = table.get("users", top)
    if staircase and users not in staircase.users:
        problems.add(
            ("goal", "users"),
            f"must be one of the staircase's user counts ({', '.join(map(str, staircase.users))}), "
            f"got {users!r}",
        )
    budget = table.get("max_rss_mb")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0
    ):
        problems.add(("goal", "max_rss_mb"), f"must be a positive number of MB, got {budget!r}")
    errors = table.get("max_error_rate", 0)
    if isinstance(errors, bool) or not isinstance(errors, int | float) or not 0 <= errors < 1:
        problems.add(
            ("goal", "max_error_rate"),
            f"must be a share from 0 to below 1 (0.01 = 1%), got {errors!r}",
        )
    if len(problems.items) > before:
        return None
    return Goal(float(p99), int(users), float(budget) if budget else None, float(errors))  # type: ignore[arg-type]


def _workloads(
    path: Path, data: Mapping[str, Any], own_app: bool, problems: _Problems
) -> list[Workload]:
    workloads = []
    for name, key, raw in _named_tables(data, "workloads", "io", problems):

        def report(where: tuple[str, ...], message: str, key: tuple[str, ...] = key) -> None:
            problems.add((*key, *where), message)

        workload = parse_workload(name, raw, path.parent, own_app, report)
        if workload is not None:
            workloads.append(workload)
    return workloads


def _app(config_path: Path, data: Mapping[str, Any], problems: _Problems) -> App:
    """The `[app]` table, or the built-in app without one (or, with problems, in its place:
    the config is refused then anyway)."""
    if "app" not in data:
        return built_in_app()
    table = _table(data, "app", _APP_KEYS, problems)
    before = len(problems.items)
    directory = table.get("path")
    if not isinstance(directory, str) or not directory:
        problems.add(("app", "path"), "required: the app's project directory")
        return built_in_app()
    path = (config_path.parent / directory).resolve()
    if not path.is_dir():
        problems.add(
            ("app", "path"),
            f"{path} is not a directory; give the app's project directory, relative to the "
            "config file or absolute",
        )
        return built_in_app()
    wsgi = table.get("wsgi")
    if not isinstance(wsgi, str) or not wsgi:
        problems.add(
            ("app", "wsgi"), "required: what to serve, e.g. 'flaskr:create_app()' or 'app:app'"
        )
    elif problem := wsgi_problem(wsgi):
        problems.add(("app", "wsgi"), problem)
    requirements = None
    if "requirements" in table:
        value = table["requirements"]
        requirements = path / value if isinstance(value, str) and value else None
        if requirements is None or not requirements.is_file():
            problems.add(
                ("app", "requirements"),
                f"{requirements or value!r} is not a file; name a requirements file in the "
                "app's directory",
            )
    env = _app_env(table.get("env", {}), problems)
    setup = table.get("setup")
    if setup is not None and (not isinstance(setup, str) or not setup.strip()):
        problems.add(("app", "setup"), 'must be a shell command, e.g. "flask --app app init-db"')
    if len(problems.items) > before:
        return built_in_app()
    app = App(
        path=path,
        wsgi=str(wsgi),
        requirements=requirements,
        project=requirements is None and (path / "pyproject.toml").is_file(),
        env=env,
        setup=setup,
        builtin=False,
    )
    for conflict in app_pin_conflicts(app):
        problems.add(("app", "requirements"), conflict)
    return app


def _app_env(value: object, problems: _Problems) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        problems.add(("app", "env"), 'must be a table, e.g. env = { SECRET_KEY = "${SECRET_KEY}" }')
        return ()
    env = []
    for name, text in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.add(("app", "env", name), "is not a valid environment variable name")
        elif isinstance(text, bool) or not isinstance(text, str | int | float):
            problems.add(("app", "env", name), "must be a string (or a number)")
        elif missing := missing_references(str(text), os.environ):
            problems.add(
                ("app", "env", name),
                f"refers to ${{{missing[0]}}}, which is not set in this environment; export "
                f"it, or give a default as ${{{missing[0]}:-value}}",
            )
        else:
            env.append((name, str(text)))
    return tuple(env)


def _select(items: list[Any], wanted: str, option: str, problems: _Problems) -> list[Any]:
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


def _cpus(table: Mapping[str, Any], problems: _Problems) -> CpuSplit | None:
    available = sorted(os.sched_getaffinity(0))
    sides: dict[str, tuple[int, ...]] = {}
    for side in ("target", "load"):
        value = table.get(side, "auto")
        if value == "auto":
            continue
        try:
            sides[side] = parse_cpus(value)
        except ValueError as exc:
            problems.add(("cpus", side), str(exc))
            return None
        if extra := [c for c in sides[side] if c not in available]:
            problems.add(
                ("cpus", side),
                f"CPU(s) {format_cpus(extra)} not available here; this host offers "
                f"{format_cpus(available)}",
            )
            return None
    target = sides.get("target")
    load = sides.get("load")
    if target is None or load is None:
        if len(available) < 2:
            problems.add(
                ("cpus",),
                "pinning the target and the load generator apart needs 2 CPUs; this host has "
                f"{len(available)}",
            )
            return None
        half = max(1, len(available) // 2)
        target = target or tuple(c for c in available[:half] if c not in (load or ()))
        load = load or tuple(c for c in available if c not in target)
    if set(target) & set(load):
        problems.add(
            ("cpus", "load"),
            f"shares CPU(s) {format_cpus(sorted(set(target) & set(load)))} with cpus.target; "
            "give each side its own CPUs",
        )
        return None
    if not target or not load:
        problems.add(("cpus",), "each side needs at least one CPU")
        return None
    return CpuSplit(target, load)


def _hosts(
    data: Mapping[str, Any],
    run: Mapping[str, Any],
    load: Mapping[str, Any],
    runner: object,
    overrides: Overrides,
    problems: _Problems,
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


def _requested_cpus(table: Mapping[str, Any], problems: _Problems) -> CpuSplit | None:
    """With [hosts], CPUs are checked against each host's own once its engine answers; an
    empty side is placed per host (a whole host, or half of one the two sides share)."""
    sides: dict[str, tuple[int, ...]] = {}
    for side in ("target", "load"):
        value = table.get(side, "auto")
        try:
            sides[side] = () if value == "auto" else parse_cpus(value)
        except ValueError as exc:
            problems.add(("cpus", side), str(exc))
            return None
    return CpuSplit(sides["target"], sides["load"])


def _results_dir(config_path: Path, value: object, problems: _Problems) -> Path:
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
