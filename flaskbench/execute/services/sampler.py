"""Sample one service beside the target: its connections in use ten times a second, the CPU and
memory of its processes once a second, one CSV row per sample (format: docs/raw-data.md).

    python3 sampler.py --kind postgres --url URL (--pid PID | --program NAME) [--out PATH]
    python3 sampler.py --kind redis --port PORT (--pid PID | --program NAME) [--out PATH]

A plain script, stdlib and psycopg only: the local runner runs it with its own Python, the
docker runner in a container of the services image that shares the service container's
processes (--program finds the server there, --pid names it locally). It runs until SIGTERM or
SIGINT. Postgres is asked over one connection kept open, in autocommit (pg_stat_activity is a
snapshot per transaction), its own session left out; Redis over one raw socket, its own
connection subtracted. CPU comes from /proc/PID/stat over the server's process tree, with the
time of children it has already reaped (Postgres' backends come and go), memory is the sum of
their proportional set sizes (PSS: every backend maps the shared buffers, which RSS would count
once per backend).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

HEADER = "t,open,busy,active,cpu_pct,pss_mb\n"
# Client sessions, those running a statement, and those inside a transaction between statements
# (an app's pool has lent them out), the sampler's own left out.
PG_QUERY = (
    "SELECT count(*), "
    "count(*) FILTER (WHERE state = 'active'), "
    "count(*) FILTER (WHERE state LIKE 'idle in transaction%') "
    "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")

Connections = tuple[int | None, int | None, int | None]


class Postgres:
    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: Any = None

    def sample(self) -> Connections:
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self._url, autocommit=True, connect_timeout=2, application_name="flaskbench"
            )
        row = self._connection.execute(PG_QUERY, prepare=True).fetchone()
        total, active, in_transaction = (int(v) for v in row)
        return total, active + in_transaction, active

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


class Redis:
    """INFO clients over a socket kept open (RESP by hand: one command, one bulk reply)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._socket: socket.socket | None = None
        self._reader: Any = None

    def sample(self) -> Connections:
        try:
            if self._socket is None:
                self._socket = socket.create_connection(("127.0.0.1", self._port), timeout=2)
                self._reader = self._socket.makefile("rb")
            self._socket.sendall(b"*2\r\n$4\r\nINFO\r\n$7\r\nclients\r\n")
            header = self._reader.readline()
            if not header.startswith(b"$"):
                raise ConnectionError(f"unexpected reply {header[:40]!r}")
            body = self._reader.read(int(header[1:]) + 2).decode()
        except Exception:
            self.close()  # the next sample connects afresh
            raise
        info = dict(line.split(":", 1) for line in body.splitlines() if ":" in line)
        # Its own connection is one of them.
        return int(info["connected_clients"]) - 1, None, None

    def close(self) -> None:
        if self._socket is not None:
            self._reader.close()
            self._socket.close()
            self._socket = None


def _stat(pid: int) -> tuple[int, str, float, float] | None:
    """(parent pid, name, own CPU seconds, reaped children's CPU seconds) of a process."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / TICKS
    reaped = (int(fields[13]) + int(fields[14])) / TICKS
    return int(fields[1]), name, own, reaped


def _processes() -> dict[int, tuple[int, str, float, float]]:
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def find_program(name: str, processes: dict[int, tuple[int, str, float, float]]) -> int | None:
    """The server: the process of that name whose parent is not one too."""
    roots = [
        pid
        for pid, (parent, program, _, _) in processes.items()
        if program == name and processes.get(parent, (0, ""))[1] != name
    ]
    return min(roots, default=None)


def _pss_mb(pid: int) -> float:
    try:
        with (PROC / str(pid) / "smaps_rollup").open() as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return 0.0
    return 0.0


class Usage:
    """CPU and memory of the server's process tree."""

    def __init__(self, pid: int | None, program: str | None) -> None:
        self._pid = pid
        self._program = program
        self._last: tuple[float, float] | None = None

    def _root(self, processes: dict[int, tuple[int, str, float, float]]) -> int | None:
        if self._pid is not None:
            return self._pid if self._pid in processes else None
        assert self._program is not None
        return find_program(self._program, processes)

    def sample(self, now: float) -> tuple[float | None, float | None]:
        processes = _processes()
        root = self._root(processes)
        if root is None:
            return None, None
        tree = {root}
        grew = True
        while grew:
            children = {pid for pid, stat in processes.items() if stat[0] in tree} - tree
            tree |= children
            grew = bool(children)
        cpu_s = sum(processes[pid][2] for pid in tree) + processes[root][3]
        memory = sum(_pss_mb(pid) for pid in tree)
        last, self._last = self._last, (now, cpu_s)
        if last is None or now <= last[0]:
            return None, memory
        return max(0.0, 100 * (cpu_s - last[1]) / (now - last[0])), memory


def _cell(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def run(
    connections: Callable[[], Connections],
    usage: Usage,
    out: TextIO,
    interval: float,
    every: int,
    stopped: Callable[[], bool],
) -> None:
    """Sample on multiples of `interval` in wall-clock time until `stopped()`; CPU and memory
    on every `every`-th one."""
    out.write(HEADER)
    out.flush()
    tick = math.floor(time.time() / interval)
    said = ""
    while not stopped():
        tick += 1
        time.sleep(max(tick * interval - time.time(), 0.0))
        now = time.time()
        try:
            open_, busy, active = connections()
        except Exception as exc:  # not answering (yet, or any more): an empty sample
            if (problem := f"{type(exc).__name__}: {exc}".strip()) != said:
                print(f"sampler: {problem}", file=sys.stderr, flush=True)
                said = problem
            open_ = busy = active = None
        cpu, memory = usage.sample(now) if tick % every == 0 else (None, None)
        out.write(
            f"{now:.3f},{_cell(open_)},{_cell(busy)},{_cell(active)},{_cell(cpu)},"
            f"{_cell(memory, 2)}\n"
        )
        out.flush()
        tick = max(tick, math.floor(time.time() / interval))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sample a service's connections and resources.")
    parser.add_argument("--kind", choices=("postgres", "redis"), required=True)
    parser.add_argument("--url", help="postgres: the login's URL")
    parser.add_argument("--port", type=int, help="redis: its port on 127.0.0.1")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--pid", type=int, help="the server's pid")
    which.add_argument("--program", help="the server's process name (in a container)")
    parser.add_argument("--out", default="-", help="CSV output (default: stdout)")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--every", type=int, default=10, help="CPU and memory every N samples")
    args = parser.parse_args(argv)
    if (args.kind == "postgres") != bool(args.url) or (args.kind == "redis") != bool(args.port):
        parser.error("postgres takes --url, redis --port")
    stop: list[int] = []

    def ask(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, ask)
    signal.signal(signal.SIGINT, ask)
    client = Postgres(args.url) if args.kind == "postgres" else Redis(args.port)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="ascii")  # noqa: SIM115
    try:
        run(
            client.sample,
            Usage(args.pid, args.program),
            out,
            args.interval,
            args.every,
            lambda: bool(stop),
        )
    finally:
        client.close()
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
