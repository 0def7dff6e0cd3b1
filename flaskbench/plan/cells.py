"""Expand a config into the cells of a run: targets x workloads x repeats, and place its sides.

A cell is one Locust run against one freshly started target, walking the whole user staircase.
The placement says which Docker engine runs the target, the Locust master and each host's
workers, on which CPUs; runners start exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flaskbench.config.hosts import DEFAULT_ENGINE, HostFacts, engine_label
from flaskbench.config.load import Config, Staircase, format_cpus
from flaskbench.config.workloads import Workload
from flaskbench.servers.registry import Target

# Seconds the last step's users keep running after its window. None are needed: a worker told
# to quit sends a last report with everything it recorded, which the master waits for.
TAIL_S = 0
# Locust needs a few seconds to start its workers before the staircase's clock starts; the
# master gives up waiting for them after this long.
LOADGEN_STARTUP_S = 30
# With stop_when_saturated, a cell stops climbing once a step's p99 passes this many times the
# goal's p99, or, without a goal, this many times its first step's p99.
STOP_GOAL_FACTOR = 4
STOP_FIRST_STEP_FACTOR = 10
# Rough cost of starting and stopping one cell's processes or containers, for the ETA only.
CELL_OVERHEAD_S = {"local": 4, "docker": 8}


@dataclass(frozen=True)
class Cell:
    target: Target
    workload: Workload
    repeat: int

    @property
    def cell_id(self) -> str:
        return f"{self.target.name}--{self.workload.name}--r{self.repeat}"


class PlacementError(Exception):
    """The hosts cannot run the config as written; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Placement:
    """Where each side of every cell runs. A single-host run is one engine for both sides."""

    target: str
    master: str
    # (engine, Locust workers there), in the order of hosts.load.
    workers: tuple[tuple[str, int], ...]
    target_address: str
    master_address: str
    target_cpus: tuple[int, ...]
    # The CPUs the load has on each engine that runs part of it (the master's included).
    load_cpus: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def engines(self) -> tuple[str, ...]:
        """Every engine the run uses, each once: the target's, the master's, the workers'."""
        return tuple(dict.fromkeys([self.target, self.master, *(e for e, _ in self.workers)]))

    @property
    def worker_count(self) -> int:
        return sum(count for _, count in self.workers)

    @property
    def load_cores(self) -> int:
        return sum(len(cpus) for engine, cpus in self.load_cpus if self.workers_on(engine))

    def workers_on(self, engine: str) -> int:
        return sum(count for e, count in self.workers if e == engine)

    def cpus_for_load(self, engine: str) -> tuple[int, ...]:
        return dict(self.load_cpus)[engine]

    def roles(self, engine: str) -> tuple[str, ...]:
        roles = [
            role
            for role, here in (
                ("target", engine == self.target),
                ("master", engine == self.master),
                ("workers", self.workers_on(engine) > 0),
            )
            if here
        ]
        return tuple(roles)

    def describe(self) -> dict[str, object]:
        """For meta.json."""
        return {
            "target": {"engine": self.target, "address": self.target_address},
            "master": {"engine": self.master, "address": self.master_address},
            "workers": [{"engine": e, "count": n} for e, n in self.workers],
            "cpus": {
                "target": format_cpus(self.target_cpus),
                "load": {engine or "local": format_cpus(c) for engine, c in self.load_cpus},
            },
        }


def single_host(config: Config) -> Placement:
    """Both sides on the engine Docker finds by itself (or, with the local runner, here)."""
    return Placement(
        target=DEFAULT_ENGINE,
        master=DEFAULT_ENGINE,
        workers=((DEFAULT_ENGINE, config.locust_workers),),
        target_address=config.host,
        master_address="127.0.0.1",
        target_cpus=config.cpus.target,
        load_cpus=((DEFAULT_ENGINE, config.cpus.load),),
    )


def place(config: Config, facts: Mapping[str, HostFacts]) -> Placement:
    """The placement `[hosts]` asks for, on the CPUs the hosts' engines report. Without
    `[cpus]`, a side with a host to itself has all of it and two sides sharing one host split
    it in halves, as on a single host."""
    hosts = config.hosts
    if hosts is None:
        return single_host(config)
    problems: list[str] = []
    target_host = facts[hosts.target]
    shared = {
        engine
        for engine in (hosts.master, *hosts.load)
        if facts[engine].daemon_id == target_host.daemon_id
    }
    target_cpus = _side_cpus(
        config.cpus.target, target_host, "target", bool(shared), first_half=True, problems=problems
    )
    load_cpus = []
    for engine in dict.fromkeys([hosts.master, *hosts.load]):
        cpus = _side_cpus(
            config.cpus.load, facts[engine], "load", engine in shared, False, problems
        )
        if engine in shared and set(cpus) & set(target_cpus):
            problems.append(
                f"cpus.load: shares CPU(s) {format_cpus(sorted(set(cpus) & set(target_cpus)))} "
                f"with cpus.target on {engine_label(engine)}, which runs both sides; give each "
                "side its own CPUs"
            )
        load_cpus.append((engine, cpus))
    if problems:
        raise PlacementError(problems)
    per_host = dict(load_cpus)
    return Placement(
        target=hosts.target,
        master=hosts.master,
        workers=tuple((e, hosts.workers_per_host or len(per_host[e])) for e in hosts.load),
        target_address=hosts.target_address,
        master_address=hosts.master_address,
        target_cpus=target_cpus,
        load_cpus=tuple(load_cpus),
    )


def _side_cpus(
    wanted: tuple[int, ...],
    host: HostFacts,
    side: str,
    shared: bool,
    first_half: bool,
    problems: list[str],
) -> tuple[int, ...]:
    every = tuple(range(host.cpus))
    if wanted:
        if extra := [c for c in wanted if c >= host.cpus]:
            problems.append(
                f"cpus.{side}: CPU(s) {format_cpus(extra)} do not exist on "
                f"{engine_label(host.engine)}, which has {host.cpus} (0-{host.cpus - 1})"
            )
        return wanted
    if not shared:
        return every
    if host.cpus < 2:
        problems.append(
            f"cpus: {engine_label(host.engine)} runs both sides and has {host.cpus} CPU; "
            "pinning them apart needs 2"
        )
        return every
    half = host.cpus // 2
    return every[:half] if first_half else every[half:]


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    staircase: Staircase
    placement: Placement

    @property
    def load_seconds_per_cell(self) -> int:
        return len(self.staircase.users) * self.staircase.step_s + TAIL_S

    def estimated_seconds(self, runner: str, cells: int | None = None) -> int:
        count = len(self.cells) if cells is None else cells
        return count * (self.load_seconds_per_cell + CELL_OVERHEAD_S.get(runner, 8))

    def without(self, done: set[str]) -> Plan:
        return Plan(
            tuple(c for c in self.cells if c.cell_id not in done), self.staircase, self.placement
        )


def expand(config: Config, placement: Placement | None = None) -> Plan:
    """Repeats are the outer loop so a slow drift of the machine spreads over all targets."""
    cells = tuple(
        Cell(target, workload, repeat)
        for repeat in range(1, config.repeats + 1)
        for target in config.targets
        for workload in config.workloads
    )
    return Plan(cells, config.staircase, placement or single_host(config))


def ready_budget_s(config: Config) -> int:
    """How long a target may take to answer: the ready timeout, and as long again for the app's
    setup command when it has one."""
    return config.ready_timeout_s * (2 if config.app.setup else 1)
