"""Host CPU time of each side's CPUs from /proc/stat: how much processes used, how much was stolen.

On a virtual machine the hypervisor can run other guests on the physical cores behind our
virtual CPUs; the time our CPUs wanted to run but could not is "steal". Both sides run on this
host, each pinned to its own CPUs, so the per-CPU lines (`cpuN`) of /proc/stat say, per side,
how much of its CPU time went to steal, and how much processes ran there (whichever: with what
the side's own processes used, that tells how much others took).
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flaskbench.config.units import format_cpus
from flaskbench.results.rundir import atomic_write_text

PROC = Path("/proc")
PROC_STAT = PROC / "stat"
# The local container engine starts the containers and streams their stats to the orchestrator
# (several % of a core during a docker run). Its processes run on any CPU, so their time is the
# harness's own on both sides, not another process competing there. Names as in
# /proc/PID/stat, which cuts them to 15 characters (containerd-shim-runc-v2).
ENGINE_COMMANDS = frozenset({"dockerd", "containerd", "containerd-shim", "runc", "docker-proxy"})
HOST_CPU_COLUMNS = ("t", "side", "cpus", "busy_pct", "steal_pct", "flaskbench_pct")
# /proc/stat's per-CPU fields, in ticks: user nice system idle iowait irq softirq steal guest
# guest_nice; guest time is already part of user, so the first eight add up to all the time.
# Processes run in user, nice and system time; interrupts (mostly the benchmark's own network
# traffic) are charged to no process, so they are left out of what processes used.
_PROCESS_FIELDS = (0, 1, 2)
_STEAL_FIELD = 7
_TOTAL_FIELDS = 8
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    total: int
    process: int
    steal: int


def read_proc_stat(path: Path = PROC_STAT) -> dict[int, CpuTimes]:
    """Cumulative ticks per CPU number; an unreadable file gives nothing (not every host has it)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    times = {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            ticks = [int(f) for f in fields[:_TOTAL_FIELDS]]
            cpu = int(name.removeprefix("cpu"))
        except ValueError:
            continue
        ticks += [0] * (_TOTAL_FIELDS - len(ticks))
        times[cpu] = CpuTimes(
            total=sum(ticks),
            process=sum(ticks[i] for i in _PROCESS_FIELDS),
            steal=ticks[_STEAL_FIELD],
        )
    return times


@dataclass(frozen=True)
class SideUsage:
    """One side's CPUs over one interval, as percent of all their time (0 to 100)."""

    # Time processes ran there (user, nice, system), whichever processes they were.
    busy_pct: float
    steal_pct: float


def side_usage(
    before: Mapping[int, CpuTimes], after: Mapping[int, CpuTimes], cpus: Sequence[int]
) -> SideUsage | None:
    present = [c for c in cpus if c in before and c in after]
    total = sum(after[c].total - before[c].total for c in present)
    if total <= 0:
        return None
    process = sum(after[c].process - before[c].process for c in present)
    steal = sum(after[c].steal - before[c].steal for c in present)
    return SideUsage(100.0 * process / total, 100.0 * steal / total)


def engine_ticks(proc: Path = PROC) -> dict[int, int]:
    """CPU ticks (user and system) so far of each container-engine process on this host."""
    ticks = {}
    for entry in proc.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        head, _, tail = stat.rpartition(")")
        if head.partition("(")[2] not in ENGINE_COMMANDS:
            continue
        fields = tail.split()
        # The fields after the name start at field 3 (state); utime and stime are 14 and 15.
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def _home_side(sides: Mapping[str, Sequence[int]], affinity: set[int]) -> str | None:
    """The side whose CPUs this process is confined to, if any."""
    return next((side for side, cpus in sides.items() if affinity <= set(cpus)), None)


class HostCpuSampler:
    """Samples both sides' CPUs once a second into host_cpu.csv, each row covering the second
    before its time stamp.

    The orchestrator (this process, sampler included) runs pinned to the load side's CPUs; its
    own CPU is recorded too, with the container engine's on both sides, so that neither counts
    as another process competing there."""

    interval_s = 1.0

    def __init__(self, out: Path, sides: Mapping[str, Sequence[int]], proc: Path = PROC) -> None:
        self._out = out
        self._sides = dict(sides)
        self._proc = proc
        self._last: dict[int, CpuTimes] = {}
        self._last_engine: dict[int, int] = {}
        self._last_own: tuple[float, float] | None = None
        self._home = _home_side(self._sides, os.sched_getaffinity(0))
        self._rows: list[tuple[float, str, str, float, float, float]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="host-cpu-sampler", daemon=True)

    def start(self) -> HostCpuSampler:
        self.sample(time.time())
        self._thread.start()
        return self

    def sample(self, now: float) -> None:
        current = read_proc_stat(self._proc / "stat")
        engine = engine_ticks(self._proc)
        own = (now, time.process_time())
        if self._last and self._last_own and now > self._last_own[0]:
            seconds = now - self._last_own[0]
            # Percent of one core this process, and the engine, used since the previous sample.
            mine = 100 * (own[1] - self._last_own[1]) / seconds
            spent = sum(
                t - self._last_engine[p] for p, t in engine.items() if p in self._last_engine
            )
            engine_pct = 100 * spent / _TICKS_PER_S / seconds
            for side, cpus in self._sides.items():
                if usage := side_usage(self._last, current, cpus):
                    harness = engine_pct + (mine if side == self._home else 0.0)
                    self._rows.append(
                        (
                            round(now, 3),
                            side,
                            format_cpus(cpus),
                            round(usage.busy_pct, 1),
                            round(usage.steal_pct, 2),
                            round(harness / len(cpus), 2),
                        )
                    )
        self._last = current
        self._last_engine = engine
        self._last_own = own

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.sample(time.time())

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HOST_CPU_COLUMNS)
        writer.writerows(self._rows)
        atomic_write_text(self._out, buffer.getvalue())
