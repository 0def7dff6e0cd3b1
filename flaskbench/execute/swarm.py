"""The orchestrator's side of the run's Locust swarm (locustfiles/master.py is the master's).

A swarm (a master and its workers) starts with a run's first cell and stays up: each cell is an
order dropped into the master's inbox, and the master answers with events on its standard
output. A runner starts the processes or containers (a SwarmHandle); this module speaks the
protocol: waiting for the workers, sending a cell's order, following the cell to its end.
Both sides' messages are typed in flaskbench/results/contract.py (SwarmOrder, SwarmEvent).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from flaskbench.plan.cells import Cell
from flaskbench.results.contract import SWARM_FORMAT, SwarmEvent, SwarmOrder

# How long a swarm may take for its workers to connect.
SWARM_STARTUP_S = 30
# While a swarm lives, the orchestrator drops a heartbeat into its master's inbox this often;
# without an order or a heartbeat for IDLE_TIMEOUT_S, the orchestrator is gone (killed, say), and
# the master ends and takes its workers with it: a killed run's swarm does not outlive it by
# more than that, whatever the pause between two cells of a live run.
HEARTBEAT_S = 5
HEARTBEAT_FILE = "heartbeat"
IDLE_TIMEOUT_S = 30


# The Locust user classes that send a workload's own requests (locustfiles/locustfile.py): a
# closed loop of users, or an open loop at rates.
REQUESTS_USER = "RequestsUser"
OPEN_LOOP_USER = "OpenLoopUser"


@dataclass(frozen=True)
class SwarmKey:
    """What a swarm is started with: cells with another key need another swarm."""

    # A workload's own Locust file, with its user classes beside locustfile.py's (None: none).
    locustfile: str | None


def swarm_key(cell: Cell) -> SwarmKey:
    return SwarmKey(cell.workload.locustfile)


def user_class(cell: Cell) -> str:
    """The Locust user class that runs the cell."""
    workload = cell.workload
    own = OPEN_LOOP_USER if workload.open_loop else REQUESTS_USER
    return workload.user_class or own


class SwarmHandle(Protocol):
    """The processes or containers of a swarm, as a runner started them."""

    def put_order(self, name: str, text: str) -> None:
        """Drop a file into the master's inbox (it takes one once it parses)."""

    def lines(self) -> Iterator[str]:
        """The master's standard output, line by line, until it ends."""

    def out_dir(self, cell_id: str) -> str:
        """Where the master writes a cell's files, as the master sees it."""

    def bring_home(self, cell_id: str) -> None:
        """The cell's files, from where the master wrote them into the cell's directory."""

    def returncode(self) -> int | None: ...

    def exit_description(self) -> str: ...

    def stop(self) -> None: ...


class SwarmFailed(Exception):
    """The swarm cannot run a cell (its master ended, or said it cannot go on)."""


class Swarm:
    """A started swarm: its handle, and the events its master sent, read as they come."""

    def __init__(self, key: SwarmKey, handle: SwarmHandle) -> None:
        self.key = key
        self.handle = handle
        self._events: queue.Queue[SwarmEvent | None] = queue.Queue()
        self._orders = 0
        # Orders and heartbeats go through the handle one at a time.
        self._inbox = threading.Lock()
        self._stopped = threading.Event()
        self._reader = threading.Thread(target=self._read, name="swarm-events", daemon=True)
        self._reader.start()
        threading.Thread(target=self._beat, name="swarm-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        """Tell the master the orchestrator lives; a beat that cannot be delivered (its host is
        gone) is left: the master ends by itself then."""
        beats = 0
        while not self._stopped.wait(HEARTBEAT_S):
            beats += 1
            with self._inbox, contextlib.suppress(Exception):
                self.handle.put_order(HEARTBEAT_FILE, str(beats))

    def _read(self) -> None:
        try:
            for line in self.handle.lines():
                event = _event(line)
                if event is not None:
                    self._events.put(event)
        finally:
            self._events.put(None)

    def wait_ready(self, timeout_s: float = SWARM_STARTUP_S + 10) -> None:
        self.next_event(time.monotonic() + timeout_s, "ready")

    def order(self, cell: Cell, argv: list[str]) -> None:
        self._orders += 1
        order: SwarmOrder = {
            "format": SWARM_FORMAT,
            "cell": cell.cell_id,
            "out": self.handle.out_dir(cell.cell_id),
            "user_class": user_class(cell),
            "argv": argv,
        }
        with self._inbox:
            self.handle.put_order(f"{self._orders:06d}.json", json.dumps(order))

    def next_event(
        self, deadline: float, wanted: str, check: Callable[[], None] = lambda: None
    ) -> SwarmEvent:
        """The master's next event, which must be `wanted`; `check` runs between polls (it
        raises when something else ended the cell). Raises SwarmFailed when the master ends,
        says it cannot go on, or says nothing until the deadline."""
        while True:
            check()
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise SwarmFailed(f"the Locust master sent no {wanted!r} in time") from None
                continue
            if event is None:
                raise SwarmFailed(f"the Locust master {self.handle.exit_description()}")
            if event["event"] == "error":
                raise SwarmFailed(f"the Locust master: {event.get('message', '')}")
            if event["event"] == wanted:
                return event

    def alive(self) -> bool:
        return self.handle.returncode() is None

    def stop(self) -> None:
        # Not behind the inbox's lock: a heartbeat under way to a host that is gone must not
        # hold the stop up (it fails on its own once the swarm is gone).
        self._stopped.set()
        self.handle.stop()
        self._reader.join(timeout=5)


def _event(line: str) -> SwarmEvent | None:
    """An event the master printed; anything else on its output is not one."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != SWARM_FORMAT or "event" not in data:
        return None
    event: SwarmEvent = data  # type: ignore[assignment]
    return event
