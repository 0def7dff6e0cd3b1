"""The app the targets serve: the built-in one, or a user's own WSGI app from its project directory.

The config's `[app]` table names the app's directory and what to serve in it (as WSGI
servers' command lines take it: `module:variable` or `module:factory(...)`), how to install
what it needs, its environment and a setup command run before each cell's server. Everything
here is checked before anything starts: the `wsgi` spec's syntax and that the environment's
`${NAME}` references resolve. Values taken from the host's environment stay out of every file
flaskbench writes: only what the config wrote (the `${NAME}`) is recorded.

Which server versions an app runs with, `servers`: "app" (the default) measures a server the app
pins at the app's version and installs the others at a version that fits beside the app's pins
(flaskbench/execute/environments.py); "flaskbench" installs flaskbench's pins whatever the app
says, and an app pin that contradicts one is an error naming both.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from flaskbench import PROJECT_ROOT
from flaskbench.config.problems import Problems, read_table
from flaskbench.results.contract import AppRecord, GitRevision
from flaskbench.servers.registry import pinned_requirements

# What runs in the target's interpreter: the package TARGET_PACKAGE in this directory.
HARNESS = PROJECT_ROOT / "targets"
TARGET_PACKAGE = "flaskbench_target"
BUILT_IN_PINS = HARNESS / "app-requirements.txt"
BUILT_IN_SPEC = f"{TARGET_PACKAGE}.builtin_app:app"
# The built-in app's endpoints, for checking workloads that name paths.
BUILT_IN_PATHS = ("/hello", "/io", "/cpu", "/mixed", "/upload", "/bytes")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Never part of an app's snapshot: version control, virtualenvs and caches, which can be large
# and are not the app.
SNAPSHOT_IGNORED = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    "node_modules",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
)


@dataclass(frozen=True)
class App:
    # The app's project directory (the built-in app's is targets/).
    path: Path
    wsgi: str
    # A requirements file to install, or None: then the project itself if `project`, else
    # nothing beyond the servers (an app whose dependencies those already cover).
    requirements: Path | None
    project: bool
    # Environment variables as the config wrote them; `${NAME}` is read from the host at run time.
    env: tuple[tuple[str, str], ...]
    setup: str | None
    builtin: bool
    # "app" or "flaskbench" (see above).
    servers: str = "app"
    # The app as committed at a revision (config/revisions.py): its name and commit; None: the
    # app's directory as it is.
    revision: str | None = None
    commit: str | None = None

    def resolved_env(self, host: Mapping[str, str] | None = None) -> dict[str, str]:
        """The app's environment with host references filled in (never to be written down)."""
        source = os.environ if host is None else host
        return {name: fill_references(value, source) for name, value in self.env}

    @property
    def install_files(self) -> tuple[Path, ...]:
        """Requirement files whose content decides what the app's environment holds (those its
        requirements file includes too)."""
        files = list(pinned_requirements())
        if self.requirements is not None:
            files += requirement_files(self) or [self.requirements]
        elif self.project:
            files.append(self.path / "pyproject.toml")
        return tuple(files)

    def describe(self) -> AppRecord:
        """What meta.json records: the config's own words, never a value from the host."""
        return {
            "builtin": self.builtin,
            "path": str(self.path),
            "wsgi": self.wsgi,
            "requirements": str(self.requirements) if self.requirements else None,
            "project": self.project,
            "env": dict(self.env),
            "setup": self.setup,
            "git": git_revision(self.path),
            "servers": self.servers,
        }


def built_in_app() -> App:
    return App(HARNESS, BUILT_IN_SPEC, BUILT_IN_PINS, False, (), None, True, SERVERS_FLASKBENCH)


def fill_references(value: str, host: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in host:
            return host[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _REFERENCE.sub(replace, value)


def missing_references(value: str, host: Mapping[str, str]) -> list[str]:
    return [
        m.group(1)
        for m in _REFERENCE.finditer(value)
        if m.group(1) not in host and m.group(2) is None
    ]


def wsgi_problem(spec: str) -> str | None:
    """Why `spec` is not `module:variable` or `module:factory(literals)`, or None."""
    module, colon, expression = spec.partition(":")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        return f"{module!r} is not a module name; write it like 'package.module:app'"
    if colon and not expression:
        return "nothing after ':'; write module:variable or module:factory()"
    try:
        node = ast.parse(expression or "application", mode="eval").body
    except SyntaxError:
        return f"cannot read {expression!r}; write module:variable or module:factory()"
    if isinstance(node, ast.Name):
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            for argument in [*node.args, *(kw.value for kw in node.keywords)]:
                ast.literal_eval(argument)
        except ValueError:
            return "a factory's arguments must be literals (strings, numbers, lists...)"
        return None
    return "write module:variable or module:factory(literal arguments)"


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a pinned requirements file."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if "==" in text:
            name, version = text.split("==", 1)
            found[canonicalize_name(name)] = version.strip()
    return found


@dataclass(frozen=True)
class Wanted:
    """One requirement of the app, with where it was written."""

    requirement: Requirement
    where: str


def requirement_lines(path: Path, seen: frozenset[Path] = frozenset()) -> Iterator[Wanted]:
    """The requirements a pip requirements file asks for, following `-r` includes."""
    if path in seen:
        return
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(("-r ", "--requirement ")):
            include = path.parent / text.split(None, 1)[1].strip()
            if include.is_file():
                yield from requirement_lines(include, seen | {path})
            continue
        if text.startswith("-") or "://" in text or text.startswith((".", "/")):
            continue
        try:
            yield Wanted(Requirement(text), f"{path}:{number}")
        except InvalidRequirement:
            continue


def project_requirements(pyproject: Path) -> Iterator[Wanted]:
    try:
        dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except (KeyError, TypeError, tomllib.TOMLDecodeError):
        return
    for text in dependencies:
        try:
            yield Wanted(Requirement(str(text)), f"{pyproject} [project] dependencies")
        except InvalidRequirement:
            continue


def server_pins() -> dict[str, tuple[str, Path]]:
    """name -> (version, the servers' pins file saying so) over every server's pins."""
    return {
        name: (version, path)
        for path in pinned_requirements()
        for name, version in pins(path).items()
    }


def pin_conflicts(wanted: Iterator[Wanted], ours: Mapping[str, tuple[str, Path]]) -> list[str]:
    """One line per requirement of the app that the servers' pins do not satisfy."""
    problems = []
    for item in wanted:
        requirement = item.requirement
        name = canonicalize_name(requirement.name)
        if name not in ours:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version, where = ours[name]
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(
                f"{item.where} asks for {requirement} but flaskbench measures with "
                f"{requirement.name}=={version} ({where.relative_to(PROJECT_ROOT)}) with "
                f'app.servers = "{SERVERS_FLASKBENCH}"; loosen or remove the app\'s pin, or '
                "leave out app.servers to measure the versions the app pins"
            )
    return problems


def app_pin_conflicts(app: App) -> list[str]:
    return pin_conflicts(wanted(app), server_pins())


_INCLUDE = re.compile(r"(?:-r|--requirement|-c|--constraint)[\s=]+(\S+)")


def requirement_files(app: App) -> tuple[Path, ...] | None:
    """The files pip reads for the app's requirements file (it and what it includes, -r and -c),
    all inside the app's directory; None when pip reads more of the app's tree than those (a
    project, a local path, an editable install) or a file outside it."""
    if app.requirements is None:
        return None if app.project else ()
    found: list[Path] = []
    todo = [app.requirements.resolve()]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        if not path.is_file() or not path.is_relative_to(app.path):
            return None
        found.append(path)
        for line in path.read_text().splitlines():
            text = line.split(" #", 1)[0].strip()
            if include := _INCLUDE.match(text):
                todo.append((path.parent / include.group(1)).resolve())
            elif text.startswith(("-e", "--editable", ".", "/")) or "file:" in text:
                return None
    return tuple(found)


def wanted(app: App) -> Iterator[Wanted]:
    """What the app's requirements file (or its pyproject's dependencies) asks for."""
    if app.requirements is not None:
        yield from requirement_lines(app.requirements)
    elif app.project:
        yield from project_requirements(app.path / "pyproject.toml")


def exact_pins(app: App) -> dict[str, str]:
    """{canonical name: version} of what the app pins exactly (`name==version`), for this
    interpreter (environment markers evaluated)."""
    found: dict[str, str] = {}
    for item in wanted(app):
        requirement = item.requirement
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        exact = [s for s in requirement.specifier if s.operator in ("==", "===")]
        if exact and "*" not in exact[0].version:
            found[canonicalize_name(requirement.name)] = exact[0].version
    return found


def git_revision(path: Path) -> GitRevision | None:
    """The commit of the git checkout `path` is in (and whether it has changes), or None."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": bool(status)}


def snapshot(source: Path, destination: Path, leave_out: tuple[Path, ...] = ()) -> None:
    """Copy a directory as the app's (or Locust files') snapshot: what each cell starts from,
    without version control, virtualenvs and caches, nor `leave_out` (say, a results folder)."""
    skipped = {path.resolve() for path in leave_out}
    ignored = shutil.ignore_patterns(*SNAPSHOT_IGNORED)

    def ignore(directory: str, names: list[str]) -> set[str]:
        found = set(ignored(directory, names))
        return found | {n for n in names if (Path(directory) / n).resolve() in skipped}

    shutil.copytree(source, destination, symlinks=True, ignore=ignore, dirs_exist_ok=True)


def tree_digest(root: Path) -> str:
    """A digest of every file's path, mode and content under `root`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_symlink():
            digest.update(b"->" + os.readlink(path).encode())
        else:
            digest.update(oct(path.stat().st_mode & 0o777).encode() + path.read_bytes())
    return digest.hexdigest()


APP_KEYS = {"path", "wsgi", "requirements", "env", "setup", "servers", "revision"}
SERVERS_APP = "app"
SERVERS_FLASKBENCH = "flaskbench"


def parse_app(config_path: Path, data: Mapping[str, Any], problems: Problems) -> App:
    """The `[app]` table, or the built-in app without one (or, with problems, in its place:
    the config is refused then anyway)."""
    if "app" not in data:
        return built_in_app()
    table = read_table(data, "app", APP_KEYS, problems)
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
    servers = table.get("servers", SERVERS_APP)
    if servers not in (SERVERS_APP, SERVERS_FLASKBENCH):
        problems.add(
            ("app", "servers"),
            f'must be "{SERVERS_APP}" (the versions the app pins, else ones that fit beside its '
            f'pins) or "{SERVERS_FLASKBENCH}" (flaskbench\'s pins whatever the app says)',
        )
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
        servers=str(servers),
    )
    if app.servers == SERVERS_FLASKBENCH:
        for conflict in app_pin_conflicts(app):
            problems.add(("app", "requirements"), conflict)
    return app


def _app_env(value: object, problems: Problems) -> tuple[tuple[str, str], ...]:
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
