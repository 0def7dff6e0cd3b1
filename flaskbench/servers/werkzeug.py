"""Werkzeug's development server, as Flask's `app.run` starts it (targets/flaskbench_target/
devserver.py): a thread per connection (`threaded`), one request at a time, or a process forked
per request, at most `processes` at once. It comes with the app's own Werkzeug: nothing to pin.

It listens with a backlog fixed at 128 (werkzeug/serving.py, BaseWSGIServer.request_queue_size):
beyond the connections waiting there, the kernel drops new ones and clients retry after a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from flaskbench.servers.server import (
    Problem,
    Resolved,
    Server,
    Setting,
    Target,
    boolean,
    counted,
    integer,
    positive_ints,
)

# werkzeug/serving.py: BaseWSGIServer.request_queue_size.
BACKLOG = 128


class Werkzeug(Server):
    name = "werkzeug"
    listed = 1
    defaults: ClassVar[Mapping[str, Setting]] = {"threaded": True, "processes": 1}
    short_names: ClassVar[Mapping[str, str]] = {"processes": "p"}
    packages = ("werkzeug",)
    slots_rule = "Werkzeug dev-single 1, threaded unbounded, processes N"

    def resolve(
        self, name: str, settings: Mapping[str, Setting], explicit: frozenset[str]
    ) -> Resolved:
        problems = boolean(settings, "threaded") + positive_ints(settings, ("processes",))
        if problems:
            return None, problems
        threaded, processes = settings["threaded"], integer(settings["processes"])
        if threaded and processes > 1:
            return None, [
                Problem(
                    "processes",
                    "Werkzeug cannot combine threads and processes; set threaded = false "
                    "to fork a process per request, or processes = 1",
                    combination=True,
                )
            ]
        if threaded:
            return Target(name, self.name, "threaded", 1, None, dict(settings)), []
        if processes > 1:
            return Target(name, self.name, "processes", processes, 1, dict(settings)), []
        return Target(name, self.name, "single", 1, 1, dict(settings)), []

    def argv(self, target: Target, host: str, port: int, version: str | None = None) -> list[str]:
        argv = ["-m", "flaskbench_target.devserver", "--host", host, "--port", str(port)]
        argv.append("--threaded" if target.settings["threaded"] else "--no-threaded")
        return [*argv, "--processes", str(target.settings["processes"])]

    def describe(self, target: Target) -> str:
        return {
            "threaded": "Werkzeug dev server, a thread per connection",
            "single": "Werkzeug dev server, single-threaded",
            "processes": f"Werkzeug dev server, a process per request, up to {target.workers}",
        }[target.worker_class]

    def notes(self, target: Target, top_users: int) -> tuple[str, ...]:
        """A thread per connection accepts them all; the others leave the waiting ones in the
        listen backlog, which the staircase's top step may fill."""
        slots = self.slots(target)
        if slots is None or top_users - slots < BACKLOG - 1:
            return ()
        waiting = top_users - slots
        what = (
            "more than it holds: the kernel drops new connections and their clients retry a "
            "second later"
            if waiting > BACKLOG
            else "as many as it holds: one user more and the kernel would drop new connections "
            "(their clients retry a second later)"
        )
        return (
            f"Werkzeug listens with a backlog fixed at {BACKLOG} (werkzeug/serving.py), and at "
            f"{top_users} users {waiting} connections wait there for its "
            f"{counted(slots, 'slot')}, {what}",
        )


SERVER = Werkzeug()
