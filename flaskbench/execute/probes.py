"""Port probes for the configured target host: made by the orchestrator itself (on this machine),
or as short-lived containers on a host's engine (the docker runner, for other hosts), given to
the image's Python with `python -c SCRIPT ARGS`. Whether the target answers is asked by the
Locust master, from where the load comes from (locustfiles/locustfile.py)."""

from __future__ import annotations

import socket


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens there (a bind would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# Exits 0 when ADDRESS:PORT is free on this host, 1 when something listens there, 2 when
# ADDRESS is not an address of this host.
PORT_FREE_SCRIPT = """
import errno, socket, sys
sock = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    sock.bind((sys.argv[1], int(sys.argv[2])))
except OSError as exc:
    sys.exit(2 if exc.errno == errno.EADDRNOTAVAIL else 1)
"""
PORT_BUSY, NOT_HERE = 1, 2

# Exits 0 once ADDRESS:PORT answers any HTTP request for "/", 1 if it has not within SECONDS.
