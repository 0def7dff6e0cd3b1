"""The servers flaskbench knows: every module of this package that defines `SERVER`, found by
itself, so that adding a server is writing its module (and its pins). Everything else asks here,
by a target's `server`, and never names a server itself."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from flaskbench.proxies.proxy_registry import describe_proxy
from flaskbench.servers import server as server_module
from flaskbench.servers.server import Problem, RuleOfThumb, Server, Setting, Target

_NOT_SERVERS = ("server", "registry")


def _discover() -> dict[str, Server]:
    found: dict[str, Server] = {}
    package = Path(server_module.__file__).parent
    for module in pkgutil.iter_modules([str(package)]):
        if module.name in _NOT_SERVERS:
            continue
        server = importlib.import_module(f"flaskbench.servers.{module.name}").SERVER
        assert isinstance(server, Server), module.name
        assert server.name == module.name, module.name
        found[server.name] = server
    return dict(sorted(found.items(), key=lambda item: item[1].listed))


SERVERS: Mapping[str, Server] = _discover()


def server_of(target: Target) -> Server:
    return SERVERS[target.server]


def resolve_target(
    name: str, server: str, overrides: Mapping[str, Setting]
) -> tuple[Target | None, list[Problem]]:
    """Validate one target's settings (keys already known to exist) against its server."""
    spec = SERVERS[server]
    return spec.resolve(name, {**spec.defaults, **overrides}, frozenset(overrides))


def server_argv(target: Target, host: str, port: int, version: str | None = None) -> list[str]:
    """Arguments after `python` that serve the app (flaskbench_target.appload), for `version` of
    the server (None: the pinned one)."""
    return server_of(target).argv(target, host, port, version)


def describe(target: Target) -> str:
    """How the report names a target's worker model (and counts written relative to cores, and
    the app's environment of its own)."""
    written = ", ".join(f"{k} = {v}" for k, v in target.expressions.items())
    env = "".join(f", {k}={v}" for k, v in target.env.items())
    proxy = f", {describe_proxy(target.proxy)}" if target.proxy else ""
    revision = f", the app at {target.revision}" if target.revision else ""
    return (
        server_of(target).describe(target)
        + (f" ({written})" if written else "")
        + env
        + proxy
        + revision
    )


def slots_rules() -> str:
    """How every server's slots follow from its settings, for the report's method section."""
    return "; ".join(server.slots_rule for server in SERVERS.values())


def pinned_requirements() -> tuple[Path, ...]:
    """Every server's pins: what the servers are installed from."""
    return tuple(pins for server in SERVERS.values() if (pins := server.pins) is not None)


def recorded_packages() -> tuple[str, ...]:
    """Every server's packages, as meta.json records their versions."""
    return tuple(dict.fromkeys(p for server in SERVERS.values() for p in server.packages))


def rule_of_thumb(targets: Sequence[Target], cores: int) -> RuleOfThumb | None:
    """The first target that follows its server's own advice, if any does."""
    for server in SERVERS.values():
        if (found := server.rule_of_thumb(targets, cores)) is not None:
            return found
    return None
