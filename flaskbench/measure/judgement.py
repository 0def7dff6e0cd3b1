"""Whether a run has made enough trials: every comparison it makes is decided.

A run compares `[compare]`'s baseline with every other target, or, with a sweep and a `[goal]`,
the recommendation's pick with its runner-up. A comparison is decided once its interval over
trials (paired by trial) is clear of 1 by the threshold (different) or inside the threshold
around 1 (the same); `repeats = "auto"` adds trials until all are, or its budget is spent.
Throughput decides (a p99's interval at few users stays open however many trials run); a step
flagged in either side cannot be judged, so it does not keep a run going.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flaskbench.config.goal import Goal
from flaskbench.config.trials import DEFAULT_THRESHOLD, Comparing
from flaskbench.measure.analyze import Analysis
from flaskbench.measure.compare import StepComparison, compare_within
from flaskbench.measure.recommend import GoalSpec, recommend


@dataclass(frozen=True)
class Judgement:
    # Valid throughput comparisons the run makes, and those not decided yet.
    compared: int
    undecided: tuple[str, ...]

    @property
    def decided(self) -> bool:
        return not self.undecided


def judge(analysis: Analysis, comparing: Comparing | None, goal: Goal | None) -> Judgement:
    if comparing is not None:
        found = compare_within(analysis, comparing.baseline, comparing.threshold)
        return _judged(found, comparing.threshold)
    if goal is not None:
        return _judged(_pick_against_runner_up(analysis, goal), DEFAULT_THRESHOLD)
    return Judgement(0, ())


def _pick_against_runner_up(analysis: Analysis, goal: Goal) -> list[StepComparison]:
    spec = GoalSpec(goal.p99_ms, goal.users, goal.max_rss_mb, goal.max_error_rate)
    found = []
    for pick in recommend(analysis, spec):
        runner_up = pick.get("runner_up")
        if not pick.get("target") or not runner_up:
            continue
        found += [
            c
            for c in compare_within(analysis, runner_up["target"], DEFAULT_THRESHOLD)
            if c.target == pick["target"]
            and c.workload == pick["workload"]
            and c.users == goal.users
        ]
    return found


def _judged(comparisons: Sequence[StepComparison], threshold: float) -> Judgement:
    judged = [c for c in comparisons if c.metric == "rps" and c.valid]
    undecided = tuple(
        f"{c.other_label} against {c.baseline_label}, {c.workload} at {c.load}"
        for c in judged
        if not c.decided(threshold)
    )
    return Judgement(len(judged), undecided)
