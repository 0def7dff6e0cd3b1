"""More trials for a run whose `repeats` is "auto": after each trial, the run's comparisons are
judged (measure/judgement.py); the next trial starts only if some are undecided and the budget
leaves time for it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flaskbench.config.load import Config
from flaskbench.measure.analyze import analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.measure.judgement import Judgement, judge
from flaskbench.plan.cells import Cell, trial_cells
from flaskbench.results.rundir import RunDir


@dataclass
class MoreTrials:
    config: Config
    run: RunDir
    started: float = field(default_factory=time.monotonic)
    # Why no further trial ran ("" while the run goes on), and what was still undecided then.
    stopped: str = ""
    undecided: tuple[str, ...] = ()

    def after(self, trials_done: int, trial_s: float) -> list[Cell]:
        """The next trial's cells, or none: every comparison decided, or no time left for a
        trial as long as the last one took."""
        budget = self.config.trials.budget_s
        judgement = self._judge()
        self.undecided = judgement.undecided
        if judgement.decided:
            self.stopped = "decided" if judgement.compared else "nothing to compare"
            return []
        if budget is not None and time.monotonic() - self.started + trial_s > budget:
            self.stopped = "budget"
            return []
        return trial_cells(self.config, trials_done + 1)

    def _judge(self) -> Judgement:
        analysis = analyze_run(load_run(self.run))
        return judge(analysis, self.config.comparing, self.config.goal)
