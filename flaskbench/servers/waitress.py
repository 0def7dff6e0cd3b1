"""waitress: one process; every request runs, is iterated and closed on one of `threads`
threads (waitress/task.py), which is the documented meaning of threads. It holds at most
`connection_limit` sockets, and counts among them its listening socket and the pipe that wakes
its loop (waitress/server.py, wasyncore's socket map), so connection_limit - 2 clients fit.

Versions: from 2.1.0; its command line, the options flaskbench passes and the logger of its
queue warning are the same in every one since.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from flaskbench.servers.server import (
    APP,
    Problem,
    Resolved,
    Server,
    Setting,
    Target,
    TransferHold,
    counted,
    in_process,
    integer,
    positive_ints,
)

# The listening socket and the trigger pipe count against connection_limit.
OWN_SOCKETS = 2
# waitress's channel reads a whole request, body included (spooled to a file past
# inbuf_overflow), before a thread gets it, and buffers the response (a thread blocks only past
# outbuf_high_watermark, 16 MB): slow clients hold no thread (waitress/channel.py:
# received, write_soon).
TRANSFER_HOLD = TransferHold(
    upload=False,
    download="kernel",
    why="waitress's event loop reads the whole request, body included, before a thread gets "
    "it, and buffers the response (up to 16 MB) for the loop to send, so a slow client holds no "
    "thread (waitress/channel.py: received, write_soon)",
)


class Waitress(Server):
    name = "waitress"
    listed = 3
    # waitress's own defaults, written out.
    defaults: ClassVar[Mapping[str, Setting]] = {
        "threads": 4,
        "connection_limit": 100,
        "backlog": 1024,
        "channel_timeout": 120,
    }
    short_names: ClassVar[Mapping[str, str]] = {
        "threads": "t",
        "connection_limit": "cl",
        "backlog": "b",
        "channel_timeout": "ct",
    }
    packages = ("waitress",)
    slots_rule = "waitress threads (one process)"
    oldest = "2.1.0"
    older_refused = "older releases were never checked with flaskbench's launcher"

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        problems = positive_ints(
            settings, ("threads", "connection_limit", "backlog", "channel_timeout")
        )
        if not problems and clients(settings) < integer(settings["threads"]):
            problems.append(
                Problem(
                    "connection_limit",
                    f"leaves room for {clients(settings)} clients, fewer than threads: waitress "
                    f"counts its listening socket and its wake-up pipe among the "
                    f"connection_limit, so threads beyond connection_limit - {OWN_SOCKETS} never "
                    "get a request; raise it or lower threads",
                )
            )
        if problems:
            return None, problems
        threads = integer(settings["threads"])
        return Target(name, self.name, "threads", 1, threads, dict(settings)), []

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        s = target.settings
        args = [
            f"--listen={host}:{port}",
            f"--threads={s['threads']}",
            f"--connection-limit={s['connection_limit']}",
            f"--backlog={s['backlog']}",
            f"--channel-timeout={s['channel_timeout']}",
            APP,
        ]
        # waitress logs "Task queue depth is N" for every request that waits for a thread
        # (waitress/task.py), a line per request under load that no other server writes.
        return in_process(
            "waitress.runner:run",
            args,
            "--argv0",
            "waitress-serve",
            "--quiet-logger",
            "waitress.queue",
        )

    def describe(self, target: Target) -> str:
        return f"waitress, 1 process x {counted(target.threads or 1, 'thread')}"

    def transfer_hold(self, target: Target) -> TransferHold:
        return TRANSFER_HOLD


def clients(settings: Mapping[str, Setting]) -> int:
    """How many client connections waitress holds at once with these settings."""
    return integer(settings["connection_limit"]) - OWN_SOCKETS


SERVER = Waitress()
