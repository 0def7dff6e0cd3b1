"""How a workload's clients behave on the wire: how fast they send their request bodies and read
their responses (`client = { send_rate = "64KB/s", receive_rate = "1MB/s" }`), and whether they
keep their connections alive between requests (`keepalive = false`: a connection per request).

A slow client is emulated on the socket itself: its request body leaves at `send_rate` from a
small send buffer and its response is read at `receive_rate` into a small receive buffer (both
set before connecting), so the server sees a slow link, not a burst from the kernel's buffers
(see locustfiles/paced.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flaskbench.config.units import format_size, parse_rate

CLIENT_KEYS = ("send_rate", "receive_rate")


@dataclass(frozen=True)
class Client:
    """Bytes per second a client sends its request body and reads its response (None: as fast
    as the network allows)."""

    send_rate: int | None = None
    receive_rate: int | None = None

    def describe(self) -> str:
        parts = [
            f"{what} {format_size(rate)}/s"
            for what, rate in (("send", self.send_rate), ("read", self.receive_rate))
            if rate
        ]
        return "clients " + " and ".join(parts)


# (key path below the workload, message) -> None, as workloads.Report.
Report = Callable[[tuple[str, ...], str], None]


def parse_client(value: object, report: Report) -> Client | None:
    """A workload's `client` table; None (and problems reported) if it cannot be read."""
    if not isinstance(value, dict) or not value:
        report(
            ("client",),
            'must be a table like { send_rate = "64KB/s", receive_rate = "1MB/s" }',
        )
        return None
    rates: dict[str, int] = {}
    for key, rate in value.items():
        if key not in CLIENT_KEYS:
            report(("client", key), f"unknown key; known keys here: {', '.join(CLIENT_KEYS)}")
            continue
        try:
            rates[key] = parse_rate(rate)
        except ValueError as exc:
            report(("client", key), str(exc))
    if len(rates) != len(value):
        return None
    return Client(rates.get("send_rate"), rates.get("receive_rate"))


def parse_keepalive(value: object, report: Report) -> bool | None:
    if not isinstance(value, bool):
        report(
            ("keepalive",),
            f"must be true (connections kept between requests) or false (a new connection per "
            f"request), got {value!r}",
        )
        return None
    return value
