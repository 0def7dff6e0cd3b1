"""Requests sent with geventhttpclient directly, timed from a given moment to the last byte of the
response: for slow clients (a request body sent and a response read at a limited rate) and for
the open loop, which times each request from when it was due (scheduler.py).

A slow client must be slow on the wire, not only in the program: a paced sender whose socket
has the kernel's default send buffer (autotuned up to megabytes) only fills that buffer slowly,
and the server reads it all at once when it gets to it. So the sockets of a paced client get a
small send buffer (SEND_BUFFER) or receive buffer (RECEIVE_BUFFER) before they connect, the body
leaves in pieces on a schedule (a token bucket of one piece: no burst to catch up after a send
blocked), and the response is read in pieces on a schedule. What the server's kernel still
buffers (its receive buffer for a connection waiting to be accepted, its send buffer for a
response) is the server's, as it would be with a real slow client.

Pure gevent and geventhttpclient (no locust): the orchestrator's tests import it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.url import URL

# SO_SNDBUF / SO_RCVBUF of a paced client's sockets; the kernel doubles them.
SEND_BUFFER = 16384
RECEIVE_BUFFER = 32768
# Pieces a paced body leaves in and a paced response is read in.
SEND_PIECE = 4096
RECEIVE_PIECE = 16384
# Characters of a response's body kept, for the verification's report.
BODY_SHOWN = 400


@dataclass(frozen=True)
class Pace:
    """Bytes per second a client sends its request body and reads its response (0: as fast as
    it can), and whether it keeps its connections between requests."""

    send_rate: int = 0
    receive_rate: int = 0
    keepalive: bool = True

    @property
    def paced(self) -> bool:
        return bool(self.send_rate or self.receive_rate)


class PacedBody:
    """A request body that geventhttpclient sends with its Content-Length (it has a length and
    reads like a file) and that comes out at `rate` bytes per second."""

    mode = "rb"

    def __init__(self, size: int, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._rate = rate
        self._clock = clock
        self._sent = 0
        self._due: float | None = None

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        if self._sent >= self._size:
            return b""
        now = self._clock()
        if self._due is None:
            self._due = now
        elif self._due > now:
            gevent.sleep(self._due - now)
        wanted = SEND_PIECE if size < 0 else min(size, SEND_PIECE)
        piece = min(wanted, self._size - self._sent)
        self._sent += piece
        # The next piece is due a piece's time after this one was, or now if this one was late.
        self._due = max(self._due + piece / self._rate, self._clock())
        return b"u" * piece


def _pool_class(pace: Pace) -> type[ConnectionPool]:
    class PacedPool(ConnectionPool):
        """Sockets with the small buffers that make a paced client slow on the wire."""

        def _create_tcp_socket(self, family: int, socktype: int, protocol: int) -> Any:
            sock = super()._create_tcp_socket(family, socktype, protocol)
            if pace.send_rate:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            if pace.receive_rate:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            return sock

    return PacedPool


def http_client(host: str, pace: Pace, concurrency: int, timeout: float) -> HTTPClient:
    """A keep-alive pool of up to `concurrency` connections to `host` (http://host:port)."""
    url = URL(host)
    client = HTTPClient(
        url.host,
        port=url.port,
        concurrency=concurrency,
        connection_timeout=timeout,
        network_timeout=timeout,
        headers={"User-Agent": "flaskbench"},
    )
    if pace.paced:
        # geventhttpclient creates its pool in its constructor with no say in its sockets; the
        # same pool, but whose sockets get their buffers before they connect.
        pool = client._connection_pool
        port = int(client.port or 80)
        client._connection_pool = _pool_class(pace)(
            url.host,
            port,
            url.host,
            port,
            size=concurrency,
            connection_timeout=timeout,
            network_timeout=timeout,
        )
        pool.close()
    return client


@dataclass(frozen=True)
class Answer:
    status: int
    length: int
    body: str
    # Why there was no usable answer (None: there was one).
    error: BaseException | None = None


def send(
    client: HTTPClient,
    pace: Pace,
    method: str,
    path: str,
    headers: Mapping[str, str],
    form: Mapping[str, str] | None,
    body_json: Any,
    body_size: int | None,
) -> Answer:
    """One request, its body sent and its response read at the pace's rates."""
    head = dict(headers)
    if not pace.keepalive:
        head["Connection"] = "close"
    # A paced body reads like a file, which is what geventhttpclient asks of a body of its size.
    body: Any = b""
    if body_size:
        head.setdefault("Content-Type", "application/octet-stream")
        body = PacedBody(body_size, pace.send_rate) if pace.send_rate else b"u" * body_size
    elif form is not None:
        head.setdefault("Content-Type", "application/x-www-form-urlencoded")
        body = urllib.parse.urlencode(form).encode()
    elif body_json is not None:
        head.setdefault("Content-Type", "application/json")
        body = json.dumps(body_json).encode()
    try:
        response = client.request(method, path, body=body, headers=head)
        try:
            length, kept = _read(response, pace.receive_rate)
        finally:
            response.release()
    except Exception as exc:  # every failure is recorded, as Locust's own clients do
        return Answer(0, 0, "", exc)
    return Answer(int(response.status_code), length, kept.decode(errors="replace"))


def _read(response: Any, rate: int) -> tuple[int, bytes]:
    """The response's body to its end, at `rate` bytes per second (0: at once): its length and
    its first BODY_SHOWN bytes."""
    kept = b""
    length = 0
    began = time.monotonic()
    while piece := response.read(RECEIVE_PIECE):
        length += len(piece)
        if len(kept) < BODY_SHOWN:
            kept += piece[: BODY_SHOWN - len(kept)]
        if rate and (wait := began + length / rate - time.monotonic()) > 0:
            gevent.sleep(wait)
    return length, kept
