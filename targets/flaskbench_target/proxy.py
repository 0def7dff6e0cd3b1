"""Start a reverse proxy in front of the server once the server accepts connections.

    python -m flaskbench_target.proxy --config PATH --config-env NAME --upstream HOST:PORT \\
        [--wait S] -- PROXY ARGV...

Writes the proxy's config (the text of the environment variable NAME, generated per cell by the
orchestrator) to PATH, creating its directory; waits until HOST:PORT accepts a TCP connection
(the server behind it is up), for at most --wait seconds; then becomes the proxy (exec), in the
foreground. Until then the target's port is closed, so whoever waits for the target to answer
waits for the server too, not for a proxy that would answer 502.

Exit status (before the exec): 2 for a bad command line, 3 if the config cannot be written, 4 if
the server did not accept connections in time, 127 if the proxy cannot be started.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
import time
from pathlib import Path

POLL_S = 0.05
CANNOT_WRITE, NO_SERVER, CANNOT_START = 3, 4, 127


def log(message: str) -> None:
    """A line of the proxy's log (its failures start with "error: ")."""
    print(f"proxy: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m flaskbench_target.proxy",
        usage="%(prog)s --config PATH --config-env NAME --upstream HOST:PORT [--wait S] -- "
        "PROXY ARGV...",
        description="Start a reverse proxy once the server behind it accepts connections.",
    )
    parser.add_argument("--config", type=Path, required=True, help="where the config goes")
    parser.add_argument("--config-env", required=True, help="the variable holding its text")
    parser.add_argument("--upstream", required=True, help="HOST:PORT the server listens on")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for it")
    if "--" not in argv:
        parser.error("put -- before the proxy's command line")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    host, _, port = args.upstream.rpartition(":")
    if not command or not host or not port.isdigit():
        parser.error("give --upstream as HOST:PORT and the proxy's command line after --")
    if args.config_env not in os.environ:
        parser.error(f"{args.config_env} is not set")
    return args, command


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not accepts(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def main(argv: list[str] | None = None) -> int:
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        args.config.parent.mkdir(parents=True, exist_ok=True)
        args.config.write_text(os.environ[args.config_env])
    except OSError as error:
        log(f"error: cannot write {args.config}: {error}")
        return CANNOT_WRITE
    host, _, port = args.upstream.rpartition(":")
    if not wait_for(host, int(port), args.wait):
        log(f"error: the server did not accept connections on {args.upstream} in {args.wait:g} s")
        return NO_SERVER
    log(f"the server accepts connections on {args.upstream}; starting {shlex.join(command)}")
    try:
        os.execvp(command[0], command)
    except OSError as error:
        log(f"error: could not start {shlex.join(command)}: {error}")
    return CANNOT_START


if __name__ == "__main__":
    sys.exit(main())
