"""Sweeps: a `[sweep.NAME]` table of a target's keys with lists as values, expanded into one
target per combination, and counts written relative to the cores a target gets.

A combination that makes no sense is not an error: a setting that has no effect with the others
(threads with the sync worker class) is left out, so the combination appears once, and one that
cannot be (Werkzeug's threads with processes) is dropped and said once. Names are generated from
the values that vary, in the table's order: `NAME-gthread-w2-t4`. Counts may be written as
expressions of `cores` ("cores", "2*cores+1"); the target records the expression beside its value.
`version` (a server version, or a list of them) is a key of every target and sweep: each version
runs as a target of its own, named `NAME-v23.0.0`, in an environment of its own.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from flaskbench.config.env import env_values
from flaskbench.proxies.proxy_registry import parse_proxy, proxy_name_part, split_settings
from flaskbench.proxies.reverse_proxy import NO_PROXY, PROXY_KEYS
from flaskbench.servers.registry import SERVERS, resolve_target, server_of
from flaskbench.servers.server import Setting, Target

# Every target's and sweep's key beside its server's settings.
VERSION = "version"


class CountError(ValueError):
    """A count expression that cannot be read; the message says how to write one."""


def count(expression: str, cores: int | None) -> int:
    """The value of a count written relative to the cores, like "2*cores+1". `cores` is None
    when the target's cores are not known before it runs (a host of its own, no cpus.target)."""
    if cores is None:
        raise CountError(
            f"{expression!r} needs the target's cores, which only its engine knows with "
            "[hosts]; set cpus.target, or write a number"
        )
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise CountError(f'cannot read {expression!r}; write it like "2*cores+1"') from None
    value = _evaluate(tree, cores, expression)
    if value < 1:
        raise CountError(f"{expression!r} is {value} with {cores} cores; it must be 1 or more")
    return value


def _evaluate(node: ast.expr, cores: int, expression: str) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name) and node.id == "cores":
        return cores
    if isinstance(node, ast.BinOp) and isinstance(
        node.op, ast.Add | ast.Sub | ast.Mult | ast.FloorDiv
    ):
        left, right = (
            _evaluate(node.left, cores, expression),
            _evaluate(node.right, cores, expression),
        )
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise CountError(f"{expression!r} divides by zero")
        return left // right
    raise CountError(
        f'cannot read {expression!r}: use whole numbers, `cores`, + - * and //, like "2*cores+1"'
    )


def asked_version(target: Target, version: object) -> tuple[Target | None, str | None]:
    """The target with the server version it asks for, or the problem with that version: not
    one (PEP 440), older than its server supports, or one its settings cannot run on."""
    server = server_of(target)
    problem = server.version_problem(version) or server.installed_problem(
        target, {server.package: str(version)}
    )
    if problem:
        return None, problem
    return replace(target, version=str(version)), None


def resolve_counts(
    server: str, settings: Mapping[str, object], cores: int | None
) -> tuple[dict[str, Setting], dict[str, str], list[tuple[str, str]]]:
    """Counts written as expressions, replaced by their value: (settings, the expressions as
    written, problems as (key, message))."""
    defaults = SERVERS[server].defaults
    values: dict[str, Setting] = {}
    expressions: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for key, value in settings.items():
        numeric = isinstance(defaults.get(key), int) and not isinstance(defaults.get(key), bool)
        if numeric and isinstance(value, str):
            try:
                values[key] = count(value, cores)
            except CountError as exc:
                problems.append((key, str(exc)))
                continue
            expressions[key] = value
        else:
            values[key] = value  # type: ignore[assignment]
    return values, expressions, problems


@dataclass
class Expansion:
    targets: list[Target] = field(default_factory=list)
    # Combinations that cannot be, each said once.
    dropped: list[str] = field(default_factory=list)
    # (key below the sweep table, message), each said once.
    problems: list[tuple[str, str]] = field(default_factory=list)


def expand_sweep(name: str, raw: Mapping[str, object], cores: int | None) -> Expansion:
    """One [sweep.NAME] table (server, then the target's keys, each a value or a list)."""
    result = Expansion()
    server = raw.get("server")
    if not isinstance(server, str) or server not in SERVERS:
        result.problems.append(
            ("server", f"unknown server {server!r}; use one of {', '.join(SERVERS)}")
        )
        return result
    axes = {
        k: v if isinstance(v, list) else [v] for k, v in raw.items() if k not in ("server", "env")
    }
    env = env_values(
        raw.get("env", {}),
        lambda where, message: result.problems.append((".".join(("env", *where)), message)),
    )
    known = {*SERVERS[server].defaults, *PROXY_KEYS}
    for key, values in axes.items():
        if key not in known and key != VERSION:
            result.problems.append(
                (key, f"unknown key; known keys here: {', '.join(sorted([*known, VERSION]))}")
            )
        elif not values:
            result.problems.append((key, "lists at least one value"))
    if result.problems:
        return result
    # The app's environment varies like a setting: one axis per variable, named env.NAME.
    axes |= {f"{ENV_PREFIX}{name}": v if isinstance(v, list) else [v] for name, v in env.items()}
    varying = [key for key, values in axes.items() if len(values) > 1]
    seen: set[str] = set()
    for combination in itertools.product(*axes.values()):
        settings = dict(zip(axes, combination, strict=True))
        _expand_one(name, server, settings, varying, cores, result, seen)
    if not result.targets and not result.problems:
        result.problems.append(("server", "every combination was dropped; see the reasons above"))
    return result


def _expand_one(
    name: str,
    server: str,
    settings: dict[str, object],
    varying: list[str],
    cores: int | None,
    result: Expansion,
    seen: set[str],
) -> None:
    version = settings.pop(VERSION, None)
    env = {
        k.removeprefix(ENV_PREFIX): str(v) for k, v in settings.items() if k.startswith(ENV_PREFIX)
    }
    settings = {k: v for k, v in settings.items() if not k.startswith(ENV_PREFIX)}
    settings, proxy_settings = split_settings(settings)
    proxy_problems: list[tuple[str, str]] = []
    proxy, _ = parse_proxy(
        _used_proxy_settings(proxy_settings), lambda k, m: proxy_problems.append((k, m))
    )
    for proxy_problem in proxy_problems:
        if proxy_problem not in result.problems:
            result.problems.append(proxy_problem)
    if proxy_problems:
        return
    values, expressions, count_problems = resolve_counts(server, settings, cores)
    for count_problem in count_problems:
        if count_problem not in result.problems:
            result.problems.append(count_problem)
    if count_problems:
        return
    unused = SERVERS[server].unused({**SERVERS[server].defaults, **values})
    values = {k: v for k, v in values.items() if k not in unused}
    short = SERVERS[server].short_names
    named = {**values, **_used_proxy_settings(proxy_settings), VERSION: version}
    parts = [
        _env_part(k.removeprefix(ENV_PREFIX), env[k.removeprefix(ENV_PREFIX)])
        if k.startswith(ENV_PREFIX)
        else _part(k, named[k], short)
        for k in varying
        if k in named or k.startswith(ENV_PREFIX)
    ]
    target_name = "-".join([name, *parts])
    if target_name in seen:
        return
    seen.add(target_name)
    target, target_problems = resolve_target(target_name, server, values)
    if target is None:
        if all(p.combination for p in target_problems):
            shown = ", ".join(f"{k} = {settings[k]!r}" for k in varying if k in values)
            reason = "; ".join(p.message for p in target_problems)
            result.dropped.append(f"sweep.{name}: {shown} dropped: {reason}")
        for problem in target_problems:
            if not problem.combination and (problem.key, problem.message) not in result.problems:
                result.problems.append((problem.key, problem.message))
        return
    kept = {k: v for k, v in expressions.items() if k in values}
    target = replace(target, expressions=kept, sweep=name, env=env, proxy=proxy)
    if version is not None:
        asked, refused = asked_version(target, version)
        if refused and (VERSION, refused) not in result.problems:
            result.problems.append((VERSION, refused))
        if asked is None:
            return
        target = asked
    result.targets.append(target)


ENV_PREFIX = "env."


def _env_part(name: str, value: str) -> str:
    """A variable's part of a target's name: its name in lower case, then its value (digits
    follow directly, like a setting's: db_pool_size5)."""
    text = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "empty"
    return f"{name.lower()}{text}" if text.isdigit() else f"{name.lower()}-{text}"


def _used_proxy_settings(settings: Mapping[str, object]) -> dict[str, object]:
    """The proxy's settings that have an effect: none without a proxy (as a server's unused
    settings, they neither multiply targets nor show in their names)."""
    if settings.get("proxy", NO_PROXY) == NO_PROXY:
        return {k: v for k, v in settings.items() if k == "proxy"}
    return dict(settings)


def _part(key: str, value: object, short: Mapping[str, str]) -> str:
    if key == VERSION:
        return f"v{value}"
    if key in PROXY_KEYS:
        return proxy_name_part(key, value)
    if isinstance(value, bool):
        return key if value else f"no-{key}"
    if isinstance(value, int):
        return f"{short.get(key, key)}{value}"
    return str(value)
