"""What the tests of every server share: a target resolved from settings, its problems, its
command line."""

from __future__ import annotations

from flaskbench.servers.registry import resolve_target, server_argv
from flaskbench.servers.server import Setting, Target


def resolved(server: str, **settings: Setting) -> Target:
    target, problems = resolve_target("t", server, settings)
    assert problems == []
    assert target is not None
    return target


def problems_of(server: str, **settings: Setting) -> dict[str, str]:
    target, problems = resolve_target("t", server, settings)
    assert target is None
    return {problem.key: problem.message for problem in problems}


def argv(target: Target) -> list[str]:
    return server_argv(target, "127.0.0.1", 18080)


def option(command: list[str], name: str) -> str:
    """The value after `name` in a command line."""
    return command[command.index(name) + 1]


def in_process(command: list[str]) -> tuple[list[str], list[str]]:
    """(what flaskbench_target.serve is told, the server's own arguments)."""
    assert command[:2] == ["-m", "flaskbench_target.serve"]
    split = command.index("--")
    return command[2:split], command[split + 1 :]
