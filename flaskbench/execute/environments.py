"""The environments a run's targets are served from, and which server versions they got.

An environment is the app's requirements as they are plus some servers; both runners build each
one once (a virtualenv of the local runner, appenv.py; an image of the docker runner, images.py)
with envbuild.py, which lets pip's resolver decide every version. A run has:

- the app's environment, for every target that does not ask for a version: each server its
  targets need, at the app's version where the app pins it, else at flaskbench's pin where that
  fits beside the app's pins, else the newest supported version that does (the server's module
  says what to install then); a server that fits in no way is left out, and only its targets
  with it, each with one line naming the conflict. With app.servers = "flaskbench" (and for the
  built-in app) every server's pins instead, whatever the app says, as one unit.
- one environment per version a target asks for (`version = "23.0.0"`), targets of different
  servers sharing one where they ask for one version each: that version exactly, beside the
  app's requirements with the app's own line for that server left out (a requirements file only;
  a pyproject's pin stays, and then the two conflict).

After the build, each target gets its server's installed version and where it came from
(contract.VERSION_SOURCES), or is left out: its server (or a package its worker model needs) was
not installed, or the installed version is one its server's module refuses.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from flaskbench.config.app import SERVERS_FLASKBENCH, App, exact_pins
from flaskbench.config.app import pins as pinned_versions
from flaskbench.results.contract import VERSION_SOURCES, EnvironmentRecord, ServerVersionRecord
from flaskbench.servers.registry import SERVERS, server_of
from flaskbench.servers.server import Server, Target

ENVBUILD = Path(__file__).resolve().parent / "envbuild.py"
# The files Flask's CLI reads variables from (with python-dotenv installed), in its order.
DOTENV_FILES = (".flaskenv", ".env")
_DOTENV_NAME = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
# The build's result, in the environment's prefix (a virtualenv's directory, the image's venv).
RESULT_NAME = "flaskbench-env.json"


@dataclass(frozen=True)
class Environment:
    """One environment: the app, and the servers it is built with, each with the version a
    target asked for (None: whichever fits the app)."""

    app: App
    servers: tuple[tuple[str, str | None], ...]

    @property
    def pinned(self) -> bool:
        """flaskbench's pins for every server, whatever the app says (no version asked)."""
        asked = any(version for _, version in self.servers)
        return (self.app.builtin or self.app.servers == SERVERS_FLASKBENCH) and not asked

    @property
    def asked(self) -> dict[str, str]:
        return {server: version for server, version in self.servers if version}

    def describe(self) -> str:
        if not self.asked:
            return "the app's environment"
        return ", ".join(f"{SERVERS[s].package} {v}" for s, v in self.asked.items())

    def spec(self, app_args: list[str], pins: Mapping[Path, str], result: str) -> dict[str, Any]:
        """envbuild.py's SPEC: `app_args` install the app, `pins` names each pins file where the
        build runs."""
        installed = [(SERVERS[name], version) for name, version in self.servers]
        with_pins = [(s, v) for s, v in installed if s.pins is not None]
        if self.pinned:
            return {
                "app": app_args,
                "constraints": [pins[s.pins] for s, _ in with_pins if s.pins],
                "servers": [{"name": s.name, "options": [pin_lines(s)]} for s, _ in with_pins],
                "needs": [],
                "result": result,
            }
        app_pins = exact_pins(self.app)
        override = [s.package for s, _ in with_pins if s.name in self.asked]
        return {
            "app": app_args,
            "constraints": [],
            "override": override if self.app.requirements is not None else [],
            "servers": [
                {"name": s.name, "options": options(s, version, app_pins)}
                for s, version in with_pins
            ],
            "needs": [
                {"package": n.package, "below": n.below, "requirements": list(n.requirements)}
                for s, _ in installed
                for n in s.version_needs
            ],
            "result": result,
        }

    def key(self) -> str:
        """What the environment's content depends on: its spec, the app's requirement files,
        the servers' pins and the builder (the Python or base image is added by whoever builds
        it)."""
        digest = hashlib.sha256()
        pins = {s.pins: s.name for s in SERVERS.values() if s.pins is not None}
        digest.update(json.dumps(self.spec(["app"], pins, "result"), sort_keys=True).encode())
        for path in (*self.app.install_files, *pins, ENVBUILD):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]


def pin_lines(server: Server) -> list[str]:
    """The requirement lines of a server's pins file."""
    assert server.pins is not None
    lines = (line.split("#", 1)[0].strip() for line in server.pins.read_text().splitlines())
    return [line for line in lines if line]


def options(server: Server, version: str | None, app_pins: Mapping[str, str]) -> list[list[str]]:
    """What to try, most wanted first: the server's pins (a version asked for in place of its
    own; the app's exact pins of the other packages kept), then what its module says."""
    pinned = []
    for line in pin_lines(server):
        name = _name(line)
        if name == server.package:
            if version is not None:
                pinned.append(f"{server.package}=={version}")
            elif name not in app_pins:
                pinned.append(line)
        elif name not in app_pins:
            pinned.append(line)
    return [pinned, *(list(option) for option in server.requirements(version))]


def _name(line: str) -> str:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return ""


@dataclass(frozen=True)
class EnvironmentPlan:
    """Every environment a run needs, and which serves each target."""

    environments: tuple[Environment, ...]
    of_target: dict[str, int]


def plan_environments(
    app: App, targets: Sequence[Target], revision_apps: Mapping[str, App] | None = None
) -> EnvironmentPlan:
    """The environments of the targets that serve the app as it is, then of those that serve
    each revision of it (app.revision: each revision's app is another app)."""
    by_revision: dict[str | None, list[Target]] = {}
    for target in targets:
        by_revision.setdefault(target.revision, []).append(target)
    environments: list[Environment] = []
    of_target: dict[str, int] = {}
    for revision, members in by_revision.items() or [(None, [])]:
        found = _app_environments(
            revision_apps[revision] if revision and revision_apps else app, members
        )
        of_target |= {name: len(environments) + i for name, i in found.of_target.items()}
        environments += found.environments
    return EnvironmentPlan(tuple(environments), of_target)


def _app_environments(app: App, targets: Sequence[Target]) -> EnvironmentPlan:
    """The app's environment first (with every server's pins when they are flaskbench's, so
    one environment serves every config), then one per version asked for, shared by targets
    of different servers."""
    unasked = [t for t in targets if t.version is None]
    default = Environment(app, ())
    if default.pinned:
        wanted = [s.name for s in SERVERS.values() if s.pins is not None]
    else:
        wanted = [s.name for s in SERVERS.values() if any(t.server == s.name for t in unasked)]
    environments = [Environment(app, tuple((name, None) for name in wanted))]
    of_target = {t.name: 0 for t in unasked}
    groups: list[dict[str, str]] = []
    for target in targets:
        if target.version is None:
            continue
        index = next(
            (
                i
                for i, group in enumerate(groups)
                if group.get(target.server, target.version) == target.version
            ),
            len(groups),
        )
        if index == len(groups):
            groups.append({})
        groups[index][target.server] = target.version
        of_target[target.name] = index + 1
    for group in groups:
        ordered = tuple((s, group[s]) for s in SERVERS if s in group)
        environments.append(Environment(app, ordered))
    return EnvironmentPlan(tuple(environments), of_target)


@dataclass(frozen=True)
class Built:
    """What an environment's build reported (envbuild.py's result)."""

    where: str
    python: str
    # {distribution: version} of everything installed.
    packages: dict[str, str]
    # {server: the option chosen (0: flaskbench's pins), None: left out}
    chosen: dict[str, int | None] = field(default_factory=dict)
    # {server: pip's reason for every option that did not fit}
    failures: dict[str, list[str]] = field(default_factory=dict)

    @property
    def installed(self) -> dict[str, str]:
        """{canonical distribution name: version}."""
        return {canonicalize_name(name): version for name, version in self.packages.items()}

    def record(self, environment: Environment) -> EnvironmentRecord:
        return {
            "where": self.where,
            "python": self.python,
            "servers": {name: version for name, version in environment.servers},
            "packages": dict(sorted(self.packages.items())),
        }


def built_from(result: Mapping[str, Any], where: str) -> Built:
    """envbuild.py's result, read back."""
    servers = result.get("servers", {})
    return Built(
        where=where,
        python=str(result.get("python", "?")),
        packages={str(k): str(v) for k, v in result.get("packages", {}).items()},
        chosen={name: info.get("option") for name, info in servers.items()},
        failures={name: list(info.get("failures", [])) for name, info in servers.items()},
    )


@dataclass(frozen=True)
class Outcome:
    """Which version each target's server is, or why the target cannot run."""

    versions: dict[str, ServerVersionRecord]
    left_out: dict[str, str]


def outcomes(
    targets: Sequence[Target], plan: EnvironmentPlan, built: Sequence[Built], keys: Sequence[str]
) -> Outcome:
    """Each target's server version and its source, or the one line that leaves it out."""
    versions: dict[str, ServerVersionRecord] = {}
    left_out: dict[str, str] = {}
    for target in targets:
        index = plan.of_target[target.name]
        environment, found = plan.environments[index], built[index]
        record, problem = _outcome(target, environment, found, keys[index])
        if problem:
            left_out[target.name] = problem
        else:
            versions[target.name] = record
    return Outcome(versions, left_out)


def _outcome(
    target: Target, environment: Environment, built: Built, key: str
) -> tuple[ServerVersionRecord, str]:
    server = server_of(target)
    app_pin = None if environment.app.builtin else exact_pins(environment.app).get(server.package)
    installed = built.installed
    version = installed.get(server.package)
    record: ServerVersionRecord = {
        "server": server.name,
        "package": server.package,
        "version": version,
        "source": _source(target, server, environment, built, app_pin, version),
        "app_pin": app_pin,
        "environment": key,
    }
    missing = [package for package in server.needs(target) if package not in installed]
    if missing:
        failures = built.failures.get(server.name) or ["pip did not install it"]
        what = missing[0] if missing[0] == server.package else f"{missing[0]} (its worker model)"
        fix = (
            "loosen the app's pin pip names there, or ask for a version that fits "
            '(version = "..." in the target)'
        )
        if target.version:
            fix = "ask for another version, or loosen the app's pin pip names there"
        return record, (
            f"{what} cannot be installed beside the app's requirements ({failures[-1]}); {fix}"
        )
    if problem := server.installed_problem(target, installed):
        where = VERSION_SOURCES[record["source"]]
        return record, f'{problem} ({where}); ask for a supported version (version = "...")'
    return record, ""


def _source(
    target: Target,
    server: Server,
    environment: Environment,
    built: Built,
    app_pin: str | None,
    version: str | None,
) -> str:
    if target.version is not None:
        return "target"
    if server.pins is None:
        return "flaskbench" if environment.app.builtin else "with-app"
    if environment.pinned:
        return "flaskbench"
    if app_pin is not None:
        return "app"
    assert server.pins is not None
    ours = pinned_versions(server.pins).get(server.package)
    if built.chosen.get(server.name) == 0 and ours == version:
        return "flaskbench"
    return "resolved"


def dotenv_notes(app: App, packages: Mapping[str, str]) -> list[str]:
    """What holds for the app's .flaskenv and .env: Flask's CLI (a `flask` command in app.setup)
    reads them when python-dotenv is installed with the app, as it would for its developers;
    no server does (their variables reach the app through app.env). Names only: values may be
    secrets."""
    found = [name for name in DOTENV_FILES if (app.path / name).is_file()]
    if app.builtin or not found:
        return []
    names = sorted(
        {
            match.group(1)
            for name in found
            for line in (app.path / name).read_text(errors="replace").splitlines()
            if (match := _DOTENV_NAME.match(line))
        }
    )
    files = " and ".join(found)
    verb = "set" if len(found) > 1 else "sets"
    sets = f"{files} {verb} {', '.join(names) or 'nothing'}"
    if "python-dotenv" not in {canonicalize_name(name) for name in packages}:
        return [
            f"app: {sets}, but python-dotenv is not installed with the app, so Flask's CLI "
            "ignores it (`flask` in app.setup, as for you without it); add python-dotenv to "
            "the requirements, or set them in app.env"
        ]
    return [
        f"app: {sets}: `flask` commands in app.setup read it (Flask's CLI, with python-dotenv); "
        "the servers do not, so what the app needs while serving goes in app.env"
    ]
