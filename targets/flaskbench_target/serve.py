"""Start a server in this process from its own command-line entry point, with exactly the command
line given, and nothing it would otherwise read from elsewhere:

    python -m flaskbench_target.serve --call MODULE:ATTRIBUTE [--argv0 NAME] \\
        [--drop-env PREFIX]... [--quiet-logger NAME]... -- ARGS...

The entry point is called with ARGS (after NAME, with --argv0, for entry points that expect a
program name first). --drop-env removes every environment variable starting with PREFIX first (a
server that reads them as options); --quiet-logger passes only errors through that logger (a
server that writes a line per request). Which server needs what is its module's knowledge
(flaskbench/servers/), not this one's: this runs whatever it is given.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any


def log(message: str) -> None:
    print(f"serve: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m flaskbench_target.serve")
    parser.add_argument("--call", required=True, help="the entry point, module:attribute")
    parser.add_argument("--argv0", help="a program name to put before the arguments")
    parser.add_argument("--drop-env", action="append", default=[], metavar="PREFIX")
    parser.add_argument("--quiet-logger", action="append", default=[], metavar="NAME")
    if "--" not in argv:
        parser.error("put -- before the server's arguments")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    if ":" not in args.call:
        parser.error("--call takes module:attribute")
    return args, argv[split + 1 :]


def entry_point(spec: str) -> Callable[[list[str]], Any]:
    """The callable `spec` names; exits with one line when there is none (not installed)."""
    module, _, attributes = spec.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for name in attributes.split("."):
            found = getattr(found, name)
    except (ImportError, AttributeError) as exc:
        sys.exit(f"serve: cannot start {spec}: {type(exc).__name__}: {exc}")
    entry: Callable[[list[str]], Any] = found
    return entry


def main(argv: list[str]) -> None:
    args, server_args = parse_args(argv)
    for name in sorted(os.environ):
        if any(name.startswith(prefix) for prefix in args.drop_env):
            log(f"ignoring {name}: the server would read it as an option")
            del os.environ[name]
    for name in args.quiet_logger:
        logging.getLogger(name).setLevel(logging.ERROR)
    entry = entry_point(args.call)
    entry([args.argv0, *server_args] if args.argv0 else server_args)


if __name__ == "__main__":
    main(sys.argv[1:])
