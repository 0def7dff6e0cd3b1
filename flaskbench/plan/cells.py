"""Expand a config into the cells of a run: targets x workloads x repeats.

A cell is one Locust run against one freshly started target, walking the whole user staircase;
where its sides run is the placement's (placement.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from flaskbench.config.load import Config, Staircase
from flaskbench.config.workloads import Workload
from flaskbench.plan.placement import Placement, single_host
from flaskbench.servers.base import Target

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

    def levels(self, staircase: Staircase) -> tuple[int, ...]:
        """The steps it climbs: its workload's open-loop rates, or the staircase's users."""
        open_loop = self.workload.open_loop
        return open_loop.rates if open_loop else staircase.users


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    staircase: Staircase
    placement: Placement

    def load_seconds(self, cell: Cell) -> int:
        """How long the cell's Locust run takes from its first step to its end."""
        return len(cell.levels(self.staircase)) * self.staircase.step_s + TAIL_S

    def estimated_seconds(self, runner: str, cells: int | None = None) -> int:
        """The first `cells` cells' (all of them by default) load and overhead."""
        chosen = self.cells if cells is None else self.cells[:cells]
        return sum(self.load_seconds(c) + CELL_OVERHEAD_S.get(runner, 8) for c in chosen)

    def without(self, done: set[str]) -> Plan:
        return Plan(
            tuple(c for c in self.cells if c.cell_id not in done), self.staircase, self.placement
        )


def make_plan(config: Config, placement: Placement | None = None) -> Plan:
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
