"""Expand a config into the cells of a run: targets x workloads, once per trial.

A cell is one staircase of the run's Locust swarm against one freshly started target;
where its sides run is the placement's (placement.py). A trial runs every cell once, in an
order shuffled from the run's seed (the same seed gives the same orders), so that what changes
over a run (the machine's drift, a neighbour passing by) spreads evenly over the targets
instead of landing on one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from flaskbench.config.load import Config, Staircase
from flaskbench.config.workloads import Workload
from flaskbench.plan.placement import Placement, single_host
from flaskbench.servers.server import Target

# With stop_when_saturated, a cell stops climbing once a step's p99 passes this many times the
# goal's p99, or, without a goal, this many times its first step's p99.
STOP_GOAL_FACTOR = 4
STOP_FIRST_STEP_FACTOR = 10
# What a cell costs beyond its steps, for the ETA only: a --quick run's wall time less its steps,
# per cell (`make accuracy`'s harness figure: 39 s over 24 cells locally, 56 s with docker).
CELL_OVERHEAD_S = {"local": 2, "docker": 3}


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
        """How long the cell's staircase takes from its first step to its last window's end."""
        return len(cell.levels(self.staircase)) * self.staircase.step_s

    def estimated_seconds(self, runner: str, cells: int | None = None) -> int:
        """The first `cells` cells' (all of them by default) load and overhead."""
        chosen = self.cells if cells is None else self.cells[:cells]
        return sum(self.load_seconds(c) + CELL_OVERHEAD_S.get(runner, 3) for c in chosen)

    def without(self, done: set[str]) -> Plan:
        return Plan(
            tuple(c for c in self.cells if c.cell_id not in done), self.staircase, self.placement
        )

    def with_cells(self, cells: Sequence[Cell]) -> Plan:
        return Plan((*self.cells, *cells), self.staircase, self.placement)

    @property
    def trials(self) -> int:
        return max((c.repeat for c in self.cells), default=0)


def make_plan(config: Config, placement: Placement | None = None, trials: int = 0) -> Plan:
    """The trials planned from the start (or, resuming, as many as the run had reached), one
    after the other, each in its own order."""
    count = max(config.trials.count, trials)
    cells = tuple(cell for trial in range(1, count + 1) for cell in trial_cells(config, trial))
    return Plan(cells, config.staircase, placement or single_host(config))


def trial_cells(config: Config, trial: int) -> list[Cell]:
    """Every cell once, in the trial's shuffled order."""
    cells = [Cell(t, w, trial) for t in config.targets for w in config.workloads]
    random.Random(f"{config.trials.seed}:{trial}").shuffle(cells)
    return cells


def ready_budget_s(config: Config) -> int:
    """How long a target may take to answer: the ready timeout, and as long again for the app's
    setup command when it has one."""
    return config.ready_timeout_s * (2 if config.app.setup else 1)
