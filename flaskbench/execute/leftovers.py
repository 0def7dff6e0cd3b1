"""Containers that crashed runs of flaskbench left behind: found by label, and only those removed.

Every container a run starts carries the labels below. Its owner is the orchestrator process
(pid and start time, so a reused pid is not mistaken for it) on one controller (the machine that
ran flaskbench); a container whose owner is gone is a leftover. Containers of a live run, of
another controller, or without flaskbench's labels are never touched.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from flaskbench.execute.engines import list_containers

RUN_LABEL = "flaskbench.run"
CELL_LABEL = "flaskbench.cell"
OWNER_LABEL = "flaskbench.owner"
OWNER_STARTED_LABEL = "flaskbench.owner_started"
CONTROLLER_LABEL = "flaskbench.controller"
# The ports a container listens on (host networking publishes nothing Docker could tell).
PORTS_LABEL = "flaskbench.ports"
# The engine's answer to a removal while another is under way.
CONFLICT = 409


@dataclass(frozen=True)
class Owner:
    """The orchestrator process that starts containers, as its labels record it."""

    pid: int
    started: str
    controller: str

    def labels(self) -> dict[str, str]:
        return {
            OWNER_LABEL: str(self.pid),
            OWNER_STARTED_LABEL: self.started,
            CONTROLLER_LABEL: self.controller,
        }


def this_process() -> Owner:
    process = psutil.Process()
    return Owner(process.pid, f"{process.create_time():.2f}", controller_id())


def controller_id() -> str:
    """This machine, as long as it runs: a reboot ends every process a label could name."""
    boot = ""
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as handle:
        boot = handle.read().strip()[:8]
    return f"{socket.gethostname()}/{boot}" if boot else socket.gethostname()


@dataclass(frozen=True)
class Leftover:
    container: str
    container_id: str
    run_id: str
    cell: str
    running: bool
    ports: tuple[int, ...]
    # The host it was found on, as [hosts] names its engine ("" for this machine's engine).
    host: str = ""

    def describe(self) -> str:
        state = "running" if self.running else "stopped"
        where = f" on {self.host}" if self.host else ""
        return f"container {self.container}{where} of crashed run {self.run_id} ({state})"


def owner_alive(labels: dict[str, str], here: str, alive: Callable[[int, str], bool]) -> bool:
    """Whether the run that started a container may still be going (then it is not ours)."""
    controller = labels.get(CONTROLLER_LABEL, here)
    if controller != here:
        # Another machine's run: nothing here can tell whether it is alive.
        return True
    owner = labels.get(OWNER_LABEL, "")
    if not owner.isdigit():
        return True
    return alive(int(owner), labels.get(OWNER_STARTED_LABEL, ""))


def flaskbench_alive(pid: int, started: str) -> bool:
    """A live flaskbench process with that pid (and start time, when the label has it)."""
    try:
        process = psutil.Process(pid)
        if started and f"{process.create_time():.2f}" != started:
            return False
        return "flaskbench" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def find_leftovers(
    client: Any, alive: Callable[[int, str], bool] = flaskbench_alive, host: str = ""
) -> list[Leftover]:
    here = controller_id()
    found = []
    for container in list_containers(client, {"label": OWNER_LABEL}):
        labels = dict(container.labels)
        if owner_alive(labels, here, alive):
            continue
        ports = tuple(int(p) for p in labels.get(PORTS_LABEL, "").split(",") if p.isdigit())
        found.append(
            Leftover(
                container=container.name,
                container_id=container.id,
                run_id=labels.get(RUN_LABEL, "?"),
                cell=labels.get(CELL_LABEL, "?"),
                running=container.status in ("created", "running", "restarting"),
                ports=ports,
                host=host,
            )
        )
    return sorted(found, key=lambda leftover: (leftover.run_id, leftover.container))


def remove_leftovers(
    client: Any, host: str = "", alive: Callable[[int, str], bool] = flaskbench_alive
) -> list[Leftover]:
    """Remove every leftover of a crashed run, with the volume that held its raw files; return
    what went."""
    import docker.errors

    removed = []
    for leftover in find_leftovers(client, alive, host):
        try:
            client.containers.get(leftover.container_id).remove(force=True, v=True)
        except docker.errors.APIError as exc:
            # Gone already, or going: runs starting at once each remove what a crashed one left.
            if not (isinstance(exc, docker.errors.NotFound) or being_removed(exc)):
                raise
        removed.append(leftover)
    return removed


def being_removed(exc: Any) -> bool:
    """Whether the engine refused a removal because another is under way."""
    return exc.status_code == CONFLICT and "already in progress" in str(exc.explanation)


def holders(leftovers: list[Leftover], port: int) -> list[Leftover]:
    """The running leftovers that listen on `port`."""
    return [leftover for leftover in leftovers if leftover.running and port in leftover.ports]
