"""The real Locust swarm for tests: locustfiles/master.py and workers of locustfile.py, started
as the local runner starts them, taking one order per cell.

Locust runs in subprocesses only: importing it would monkey-patch the test process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LOCUSTFILES = Path(__file__).resolve().parents[1] / "locustfiles"
LOCUSTFILE = LOCUSTFILES / "locustfile.py"
MASTER = LOCUSTFILES / "master.py"
RUN_TIMEOUT_S = 60
WORKER_EXIT_TIMEOUT_S = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Swarm:
    """master.py and its workers, started as the local runner starts them."""

    def __init__(
        self,
        directory: Path,
        workers: int,
        extra: Path | None = None,
        idle_timeout_s: float = RUN_TIMEOUT_S,
    ) -> None:
        self.directory = directory
        self.inbox = directory / "inbox"
        self.inbox.mkdir()
        port = free_port()
        own = ["--locustfile", str(extra)] if extra else []
        self.master = subprocess.Popen(
            [
                sys.executable,
                str(MASTER),
                *own,
                "--bind-port",
                str(port),
                "--expect-workers",
                str(workers),
                "--expect-workers-max-wait",
                "20",
                "--inbox",
                str(self.inbox),
                "--idle-timeout",
                str(idle_timeout_s),
            ],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=(directory / "master.err").open("wb"),
        )
        files = f"{LOCUSTFILE},{extra}" if extra else str(LOCUSTFILE)
        self.workers = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "locust", "-f", files),
                    *("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
                ],
                cwd=directory,
                stdout=(directory / f"worker-{index}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            for index in range(workers)
        ]
        self.events: list[dict[str, Any]] = []
        self._orders = 0

    def next_event(self, wanted: str) -> dict[str, Any]:
        assert self.master.stdout is not None
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.master.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event["event"] in (wanted, "error"):
                return dict(event)
        raise AssertionError(f"no {wanted!r} from the master: {self.events}")

    def order(self, cell: str, user_class: str, argv: list[str]) -> dict[str, Any]:
        """Run one cell; its "done" event."""
        self._orders += 1
        order = {
            "format": 1,
            "cell": cell,
            "out": str(self.directory / cell),
            "user_class": user_class,
            "argv": argv,
        }
        partial = self.inbox / ".order"
        partial.write_text(json.dumps(order))
        partial.rename(self.inbox / f"{self._orders:06d}.json")
        return self.next_event("done")

    def close(self) -> tuple[int, list[int]]:
        """SIGTERM to the master, as the orchestrator ends a run; exit codes."""
        processes = [self.master, *self.workers]
        try:
            if self.master.poll() is None:
                self.master.terminate()
            return (
                self.master.wait(timeout=WORKER_EXIT_TIMEOUT_S),
                [w.wait(timeout=WORKER_EXIT_TIMEOUT_S) for w in self.workers],
            )
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=WORKER_EXIT_TIMEOUT_S)


def one_cell(
    directory: Path,
    user_class: str,
    workers: int,
    argv: list[str],
    extra: Path | None = None,
) -> tuple[dict[str, Any], int, list[int]]:
    """One cell on a swarm of its own (`extra`: a locustfile of the user's): its "done" event,
    the master's exit code and the workers'. Its files are in directory / "cell"."""
    swarm = Swarm(directory, workers, extra)
    try:
        assert swarm.next_event("ready")["event"] == "ready"
        done = swarm.order("cell", user_class, argv)
    finally:
        master_code, worker_codes = swarm.close()
    return done, master_code, worker_codes
