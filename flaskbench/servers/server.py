"""What every server module says about its server, and the checks their settings share.

Each module of this package (but this one and registry.py) defines `SERVER`, a `Server`: its
settings and their defaults (the server's own, written out, so neither a new release nor the
environment can change them), which combinations are impossible and which settings have no
effect, the exact command line, how many requests one process serves at once and where that is
known from, what the report should say about it, how its dying workers show in its log, how it
stops, and its packages (pinned in pins/<name>.txt). A target in the config names a server and
its settings; `Server.resolve` turns them into a `Target`.

`Target.workers` is the number of processes serving requests and `Target.threads` what one of
them serves at once (None: a thread per connection).

Versions: a module says the oldest version of its server flaskbench supports (and why older ones
are refused), what some versions need installed beside them, what to install when its pins do
not fit beside an app's, and how its command line differs by version: `argv` gets the version
installed in the target's environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from packaging.version import InvalidVersion, Version

from flaskbench.proxies.reverse_proxy import ProxySpec

Setting = int | bool | str

PINS_DIR = Path(__file__).resolve().parent / "pins"
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


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
    # Environment variables of its own for the app, beside [app] env (a sweep may vary them).
    env: Mapping[str, str] = field(default_factory=dict)
    # The reverse proxy it is served behind (None: clients talk to the server directly).
    proxy: ProxySpec | None = None
    # The server version the target asked for (`version = "23.0.0"`); None: whichever fits the
    # app (its own pin, flaskbench's, or the newest that fits its pins).
    version: str | None = None
    # The app's git revision it serves (config/revisions.py); None: the app's directory as is.
    revision: str | None = None

    def setting(self, key: str) -> int | None:
        """An integer setting, or None where the target has no such setting."""
        value = self.settings.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    # A combination of valid values that cannot go together (a sweep drops it, not an error).
    combination: bool = False


@dataclass(frozen=True)
class WorkerTrouble:
    """A line a server writes when it loses a worker mid-run: the cell finishes but is degraded.
    `message` is formatted with the pattern's groups."""

    pattern: re.Pattern[str]
    message: str


@dataclass(frozen=True)
class RuleOfThumb:
    """A server's own advice on its settings, and the target of a run that follows it."""

    target: Target
    # Whose advice (the server's documentation), and what it says for these cores ("2 x 1 cores
    # + 1 = 3 ...").
    by: str
    rule: str


@dataclass(frozen=True)
class TransferHold:
    """What a slow client's transfer holds of the server's slots (a worker, a thread; flaskbench's
    theory, measure/theory.py, turns it into seconds): whether the slot reads the request body
    as it arrives (`upload`), and how long it is held by the response: "kernel" (until the
    kernel's send buffer took it: nothing, for responses that fit) or "client" (until the client
    has read it all and closed, at most `close_wait_s`)."""

    upload: bool
    download: str
    # Where this is known from (the server's code), for the report.
    why: str
    close_wait_s: float = 0.0
    # False: flaskbench's default model, not checked in this server's code.
    verified: bool = True


# A thread that reads the request as it comes and writes the response with blocking sends.
DEFAULT_TRANSFER_HOLD = TransferHold(
    upload=True,
    download="kernel",
    why="modelled as a slot that reads the request body as it arrives and is done once the "
    "kernel took its response (flaskbench's default model, not checked in this server's code)",
    verified=False,
)


@dataclass(frozen=True)
class VersionNeed:
    """What the versions of one of a server's packages below `below` need installed beside
    them (a setuptools that still has pkg_resources, say), and why."""

    package: str
    below: str
    requirements: tuple[str, ...]
    why: str


Resolved = tuple[Target | None, list[Problem]]


class Server:
    """Everything flaskbench knows about one server."""

    name: ClassVar[str]
    # Where it comes in lists (the config's errors, the report's method): the oldest first.
    listed: ClassVar[int]
    # Every setting that changes results, with the value used when the config leaves it out.
    defaults: ClassVar[Mapping[str, Setting]]
    # How a generated target name shows a setting's value (NAME-w2-t4).
    short_names: ClassVar[Mapping[str, str]] = {}
    # The distributions that make the server, as meta.json records their versions; the first
    # is the one whose version is the server's.
    packages: ClassVar[tuple[str, ...]] = ()
    # What the launcher stops the server with (signalling the server's whole process group).
    stop_signal: ClassVar[str] = "TERM"
    # How many requests it serves at once, per model, for the report's method section.
    slots_rule: ClassVar[str]
    worker_troubles: ClassVar[tuple[WorkerTrouble, ...]] = ()
    # The oldest version of its first package flaskbench supports (None: the server comes with
    # the app, and has no version of its own to ask for), and why older ones are refused.
    oldest: ClassVar[str | None] = None
    older_refused: ClassVar[str] = "flaskbench has not been checked with them"
    version_needs: ClassVar[tuple[VersionNeed, ...]] = ()

    @property
    def pins(self) -> Path | None:
        """The pinned requirements of its packages (None: the app brings what it needs)."""
        path = PINS_DIR / f"{self.name}.txt"
        return path if path.is_file() else None

    @property
    def package(self) -> str:
        """The distribution whose version is the server's."""
        return self.packages[0]

    def version_problem(self, version: object) -> str | None:
        """Why a target cannot ask for this version of the server, or None."""
        if self.oldest is None:
            return (
                f"{self.name} comes with the app (its {self.package}): pin {self.package} in "
                "the app's requirements instead"
            )
        if not isinstance(version, str) or not version:
            return f'must be a version, e.g. "{self.oldest}"'
        try:
            asked = Version(version)
        except InvalidVersion:
            return f'{version!r} is not a version (PEP 440); write it like "{self.oldest}"'
        if asked < Version(self.oldest):
            return self.too_old(version)
        return None

    def too_old(self, version: str) -> str:
        return (
            f"{self.package} {version} is older than the oldest flaskbench supports, "
            f"{self.oldest}: {self.older_refused}"
        )

    def installed_problem(self, target: Target, installed: Mapping[str, str]) -> str | None:
        """Why `target` cannot run with the versions installed in its environment ({canonical
        distribution name: version}), or None."""
        version = installed.get(self.package)
        if self.oldest is not None and version and not at_least(version, self.oldest):
            return self.too_old(version)
        return None

    def requirements(self, version: str | None) -> tuple[tuple[str, ...], ...]:
        """What pip installs the server from when its pins do not fit beside an app's, most
        wanted first: exactly `version` when a target asks for one, else the newest supported
        version that fits."""
        return ((self.package + exactly_or_from(version, self.oldest),),)

    def needs(self, target: Target) -> tuple[str, ...]:
        """The distributions `target` needs installed to run at all."""
        return (self.package,)

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        """A target from settings with the defaults filled in (`explicit`: the keys the config
        set), or the problems with them."""
        raise NotImplementedError

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        """The arguments after `python` that serve flaskbench_target.appload:application (the
        harness's package is on the import path, after the app's directory), for `version` of
        the server (None: the pinned one)."""
        raise NotImplementedError

    def describe(self, target: Target) -> str:
        """How the report names the target's worker model."""
        raise NotImplementedError

    def unused(self, settings: Mapping[str, Setting]) -> frozenset[str]:
        """Settings that have no effect with these settings (a sweep leaves them out of the
        name and does not multiply targets by them)."""
        return frozenset()

    def slots(self, target: Target) -> int | None:
        """Requests the whole server can have in flight at once (None: one per connection)."""
        if target.threads is None:
            return None
        return target.workers * target.threads

    def parallel_processes(self, target: Target) -> int:
        """Processes that can run Python at once (threads and greenlets share one GIL)."""
        return target.workers

    def transfer_hold(self, target: Target) -> TransferHold:
        """What a slow client's transfer holds of this target's slots."""
        return DEFAULT_TRANSFER_HOLD

    def takes_connections_while_full(self, target: Target) -> bool:
        """Whether a worker process accepts a connection while all its slots are busy (and
        queues it there), rather than leaving it to a worker with a free slot. Then
        connections land on workers at random, and with several workers some wait while
        another has slots free (theory.random_spread_busy)."""
        return False

    def code_basis(self, target: Target) -> str | None:
        """Where the slots come from when the server's documentation does not say: the files of
        its code that decide them. None when the documentation does."""
        return None

    def notes(self, target: Target, top_users: int) -> tuple[str, ...]:
        """What the report should say about this target beyond its slots: a way the server
        queues or refuses that the measurements alone do not name."""
        return ()

    def rule_of_thumb(self, targets: Sequence[Target], cores: int) -> RuleOfThumb | None:
        """The target among these that follows the server's own advice for `cores`, if any."""
        return None


def at_least(version: str | None, floor: str) -> bool:
    """Whether an installed version is `floor` or newer; None, the pinned version, always is."""
    if version is None:
        return True
    try:
        return Version(version) >= Version(floor)
    except InvalidVersion:
        return True


def exactly_or_from(version: str | None, oldest: str | None) -> str:
    """A version specifier: exactly the version asked for, or the oldest supported and newer."""
    if version is not None:
        return f"=={version}"
    return f">={oldest}" if oldest else ""


def positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def non_negative_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def positive_ints(settings: Mapping[str, Setting], keys: tuple[str, ...]) -> list[Problem]:
    return [
        Problem(key, "must be a positive integer")
        for key in keys
        if not positive_int(settings[key])
    ]


def non_negative_ints(
    settings: Mapping[str, Setting], keys: tuple[str, ...], why: str = ""
) -> list[Problem]:
    return [
        Problem(key, f"must be an integer of 0 or more{why}")
        for key in keys
        if not non_negative_int(settings[key])
    ]


def boolean(settings: Mapping[str, Setting], key: str) -> list[Problem]:
    return [] if isinstance(settings[key], bool) else [Problem(key, "must be true or false")]


def one_of(
    settings: Mapping[str, Setting], key: str, choices: Sequence[str], what: str
) -> list[Problem]:
    value = settings[key]
    if value in choices:
        return []
    return [Problem(key, f"unknown {what} {value!r}; use one of {', '.join(choices)}")]


def integer(value: Setting) -> int:
    assert isinstance(value, int)
    assert not isinstance(value, bool)
    return value


def counted(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


def somaxconn() -> int | None:
    """The kernel's cap on listen queues here, when it can be read."""
    try:
        return int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return None


APP = "flaskbench_target.appload:application"


def in_process(call: str, args: Sequence[str], *options: str) -> list[str]:
    """A server started from its own command-line entry point inside this process, through
    flaskbench_target.serve: `call` is that entry point (module:attribute), `options` what the
    entry point needs around it (see flaskbench_target/serve.py)."""
    return ["-m", "flaskbench_target.serve", "--call", call, *options, "--", *args]
