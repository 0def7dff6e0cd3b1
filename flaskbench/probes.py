"""Small network probes the orchestrator makes itself, always to the configured target host."""

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
