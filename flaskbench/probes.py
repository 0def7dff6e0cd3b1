"""Small network probes, always to the configured target host: made by the orchestrator itself
(the local runner), or as short-lived containers on a host's engine (the docker runner), given
to the image's Python with `python -c SCRIPT ARGS`."""

from __future__ import annotations

import http.client
import socket


def http_get(host: str, port: int, path: str, timeout: float) -> tuple[int, str]:
    """(status, start of the body); status 0 when nothing answered."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(200).decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        connection.close()


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
READY_SCRIPT = """
import http.client, sys, time
host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", "/")
        connection.getresponse()
        sys.exit(0)
    except (OSError, http.client.HTTPException):
        time.sleep(0.2)
    finally:
        connection.close()
sys.exit(1)
"""
