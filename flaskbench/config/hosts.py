"""`[hosts]`: the Docker engines that run the target and the load, and where the load goes.

Without the table everything runs on the one engine Docker finds by itself (DOCKER_HOST or the
current context), as a single-host run always has. With it, the target runs on one engine, a
Locust master on another (the first load host unless `master` says otherwise) and Locust
workers on every load host; each is named the way Docker names an engine: a URL
(`ssh://user@vm-a`, `tcp://10.0.0.5:2376`, `unix:///run/docker.sock`) or a docker context.
This module reads the table; flaskbench/plan/cells.py places the sides on the hosts once their
engines have said how many CPUs they have (`HostFacts`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# The engine Docker itself picks on the machine running flaskbench.
DEFAULT_ENGINE = ""
# How a user names that engine in `hosts.master`.
CONTROLLER = "controller"
IMAGE_MODES = ("copy", "build")
HOSTS_KEYS = {
    "target",
    "load",
    "target_address",
    "master",
    "master_address",
    "workers_per_host",
    "images",
}

_URL = re.compile(r"^(ssh|tcp|unix)://\S+$")
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

Report = Callable[[Sequence[str], str], None]


@dataclass(frozen=True)
class Hosts:
    """The `[hosts]` table as written, validated."""

    target: str
    load: tuple[str, ...]
    target_address: str
    # The engine the Locust master runs on (DEFAULT_ENGINE: the machine running flaskbench).
    master: str
    # Where the master listens for its workers; 127.0.0.1 when they all share its host.
    master_address: str
    # None: one worker per CPU the load has on each host.
    workers_per_host: int | None
    # "copy": built once, saved and loaded into every host; "build": built on every host.
    images: str

    @property
    def engines(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.target, self.master, *self.load]))

    def roles(self, engine: str) -> str:
        """What an engine runs, for messages: "target", "master, workers", ..."""
        roles = [
            role
            for role, here in (
                ("target", engine == self.target),
                ("master", engine == self.master),
                ("workers", engine in self.load),
            )
            if here
        ]
        return ", ".join(roles)


@dataclass(frozen=True)
class HostFacts:
    """What one engine says about its machine, and its clock against the controller's."""

    engine: str
    daemon_id: str
    hostname: str
    cpus: int
    kernel: str
    os: str
    engine_version: str
    memory_gib: float
    # The engine's clock minus this machine's, and how far that estimate may be off.
    clock_offset_s: float
    clock_uncertainty_s: float


def engine_label(engine: str) -> str:
    """An engine as messages name it."""
    return engine or "the local Docker engine"


def host_name(engine: str) -> str:
    """An engine as raw files and the report name its host."""
    return engine or "local"


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def docker_contexts() -> set[str]:
    """Names of the docker contexts this user has (read from ~/.docker, no daemon needed)."""
    from docker.context import ContextAPI

    try:
        return {context.Name for context in ContextAPI.contexts()}
    except Exception:  # a damaged context store: treat as none; naming one then fails clearly
        return {"default"}


def parse_hosts(
    table: Any,
    allow_remote_target: bool,
    report: Report,
    contexts: Callable[[], set[str]] = docker_contexts,
) -> Hosts | None:
    """The `[hosts]` table, or None after reporting every problem with it."""
    if not isinstance(table, dict):
        report(("hosts",), "must be a table, written as [hosts]")
        return None
    before = _Counter(report)
    for key in table:
        if key not in HOSTS_KEYS:
            before.report(
                ("hosts", key), f"unknown key; known keys here: {', '.join(sorted(HOSTS_KEYS))}"
            )
    known = _ContextCheck(contexts)
    target = _engine(table.get("target"), ("hosts", "target"), known, before.report)
    load = _load(table.get("load"), known, before.report)
    master = _master(table.get("master"), load, known, before.report)
    address = _target_address(table.get("target_address"), allow_remote_target, before.report)
    remote_load = target is not None and any(engine != target for engine in load)
    if remote_load and address is not None and is_loopback(address):
        before.report(
            ("hosts", "target_address"),
            f"{address} is a loopback address, which load from another host cannot reach; "
            "give the target host's own address (and pass --allow-remote-target)",
        )
    master_address = _master_address(table.get("master_address"), master, load, before.report)
    workers = table.get("workers_per_host")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        before.report(
            ("hosts", "workers_per_host"),
            f"must be an integer 1 or more (or left out: one per CPU), got {workers!r}",
        )
    images = table.get("images", "copy")
    if images not in IMAGE_MODES:
        before.report(
            ("hosts", "images"),
            f"must be {' or '.join(repr(m) for m in IMAGE_MODES)} (built once and copied to "
            f"every host, or built on each), got {images!r}",
        )
    if before.count or target is None or not load or master is None or address is None:
        return None
    assert master_address is not None
    return Hosts(
        target=target,
        load=load,
        target_address=address,
        master=master,
        master_address=master_address,
        workers_per_host=workers,
        images=str(images),
    )


class _Counter:
    def __init__(self, report: Report) -> None:
        self._report = report
        self.count = 0

    def report(self, key: Sequence[str], message: str) -> None:
        self.count += 1
        self._report(key, message)


class _ContextCheck:
    """Reads the user's docker contexts once, and only when a name needs them."""

    def __init__(self, contexts: Callable[[], set[str]]) -> None:
        self._contexts = contexts
        self._names: set[str] | None = None

    def __contains__(self, name: str) -> bool:
        if self._names is None:
            self._names = self._contexts()
        return name in self._names


def _engine(
    value: Any, key: tuple[str, ...], contexts: _ContextCheck, report: Report
) -> str | None:
    example = "'ssh://user@vm-a', 'unix:///run/docker.sock' or a docker context name"
    if not isinstance(value, str) or not value.strip():
        report(key, f"required: a Docker engine, such as {example}")
        return None
    if "://" in value:
        if not _URL.match(value):
            report(key, f"{value!r} is not an engine URL; use ssh://, tcp:// or unix://")
            return None
        return value
    if not _CONTEXT.match(value):
        report(key, f"{value!r} is neither an engine URL nor a context name; use {example}")
        return None
    if value not in contexts:
        report(
            key,
            f"there is no docker context named {value!r}; create it (docker context create "
            f"{value} --docker host=ssh://user@host) or write the engine's URL",
        )
        return None
    return value


def _load(value: Any, contexts: _ContextCheck, report: Report) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        report(("hosts", "load"), "required: a list of Docker engines, e.g. ['ssh://user@vm-b']")
        return ()
    engines = [_engine(item, ("hosts", "load"), contexts, report) for item in value]
    if None in engines:
        return ()
    if len(set(engines)) != len(engines):
        report(("hosts", "load"), "names an engine twice; list every load host once")
        return ()
    return tuple(e for e in engines if e is not None)


def _master(
    value: Any, load: tuple[str, ...], contexts: _ContextCheck, report: Report
) -> str | None:
    if value is None:
        return load[0] if load else None
    if value == CONTROLLER:
        return DEFAULT_ENGINE
    return _engine(value, ("hosts", "master"), contexts, report)


def _target_address(value: Any, allow_remote: bool, report: Report) -> str | None:
    key = ("hosts", "target_address")
    if not isinstance(value, str) or not value:
        report(key, "required: the IP address the target listens on and the load is sent to")
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        report(key, f"{value!r} is not an IP address; give the target host's address")
        return None
    if address.is_unspecified or address.is_multicast:
        report(key, f"{value} listens everywhere or nowhere; give one address of the target host")
        return None
    if not address.is_loopback and not allow_remote:
        report(
            key,
            f"{value} is not a loopback address; load only goes to it with "
            "--allow-remote-target (make sure it is the target host's own address)",
        )
        return None
    return value


def _master_address(
    value: Any, master: str | None, load: tuple[str, ...], report: Report
) -> str | None:
    key = ("hosts", "master_address")
    if value is None:
        if master is not None and any(engine != master for engine in load):
            report(
                key,
                "required when Locust workers run on another host than the master: the "
                "address of the master's host that the workers connect to",
            )
            return None
        return "127.0.0.1"
    try:
        ipaddress.ip_address(value)
    except (ValueError, TypeError):
        report(key, f"{value!r} is not an IP address; give the master host's address")
        return None
    return str(value)
