"""Start waitress, uWSGI or granian in this process with exactly the command line given.

    python -m flaskbench_target.serve waitress|uwsgi|granian ARGS...

Each server starts from its own command-line entry point, so ARGS are that server's own
options (flaskbench/servers/registry.py writes them), and the launcher supervises the server itself.
What a server would otherwise take from elsewhere is shut out:

- uWSGI reads every UWSGI_* environment variable as an option (parse_sys_envs in uWSGI's
  core/utils.c, called before the command line is parsed); they are removed first.
- granian reads GRANIAN_* variables only when started as `granian` (auto_envvar_prefix in
  granian/cli.py's entrypoint); its command is called here without that prefix.
- waitress logs "Task queue depth is N" for every request that waits for a thread
  (waitress/task.py), a line per request under load that no other server writes; its
  "waitress.queue" logger passes errors only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

UWSGI_PREFIX = "UWSGI_"


def log(message: str) -> None:
    print(f"serve: {message}", file=sys.stderr, flush=True)


def waitress(args: list[str]) -> None:
    from waitress.runner import run

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    run(["waitress-serve", *args])


def uwsgi(args: list[str]) -> None:
    for name in sorted(name for name in os.environ if name.startswith(UWSGI_PREFIX)):
        log(f"ignoring {name}: uWSGI would read it as an option")
        del os.environ[name]
    import pyuwsgi

    pyuwsgi.run(args)


def granian(args: list[str]) -> None:
    from granian.cli import cli

    cli.main(args, prog_name="granian")


SERVERS: dict[str, Callable[[list[str]], None]] = {
    "waitress": waitress,
    "uwsgi": uwsgi,
    "granian": granian,
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SERVERS:
        sys.exit(f"usage: python -m flaskbench_target.serve {'|'.join(SERVERS)} ARGS...")
    SERVERS[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
