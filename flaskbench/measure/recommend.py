"""Which target to run, per workload, under the config's `[goal]`: the measured answer to "what
should I run instead?".

Among the targets that hold the goal at the users it names (for an open-loop workload: at the
offered rate it names; p99 within the goal, memory within
the budget, failures within the allowed rate) with a valid measurement, the one with the highest
throughput wins; targets whose throughput intervals (95%, over repeats or the window's seconds)
overlap the best's are a tie, settled by less memory, then fewer processes. Every other target
is listed with why it was left out. Where the targets include a server's own rule of thumb
(such as 2 x cores + 1 workers), the recommendation says how it compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from flaskbench.measure.analyze import Analysis, Point
from flaskbench.results.contract import MetaJson
from flaskbench.servers.registry import rule_of_thumb
from flaskbench.servers.server import Target


@dataclass(frozen=True)
class GoalSpec:
    p99_ms: float
    users: int
    max_rss_mb: float | None
    max_error_rate: float
    # The offered rate open-loop workloads are judged at (None: they are not), and what
    # `users` counts in a spec made for one workload (for_workload).
    rate: int | None = None
    unit: str = "users"

    @property
    def at(self) -> str:
        return f"{self.users} {self.unit}"

    def for_workload(self, open_loop: bool) -> GoalSpec | None:
        """The goal as one workload is judged: at the users, or an open loop at the rate
        (None: the goal names no rate)."""
        if not open_loop:
            return self
        if self.rate is None:
            return None
        return replace(self, users=self.rate, unit="req/s offered")

    @classmethod
    def from_meta(cls, meta: MetaJson) -> GoalSpec | None:
        goal = meta["goal"]
        if not goal:
            return None
        budget = goal["max_rss_mb"]
        rate = goal.get("rate")
        return cls(
            float(goal["p99_ms"]),
            int(goal["users"]),
            float(budget) if budget else None,
            float(goal["max_error_rate"]),
            int(rate) if rate else None,
        )


@dataclass(frozen=True)
class Candidate:
    target: Target
    point: Point

    @property
    def interval(self) -> tuple[float, float]:
        """Where the throughput may be: its 95% interval (over repeats when there are several,
        else over the window's seconds), widened to the range over repeats."""
        low, high = self.point.rps_min, self.point.rps_max
        if (ci := self.point.rps_ci) is not None:
            low, high = min(low, ci.low), max(high, ci.high)
        return (low, high)

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target.name,
            "rps": round(self.point.rps, 3),
            "p99_ms": self.point.p99_ms,
            "rss_mb": self.point.target_rss_mb,
        }


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def exclusion(point: Point | None, goal: GoalSpec, skipped: str | None) -> str | None:
    """Why a target's measurement at the goal's users does not qualify, or None. A goal missed
    by far says more than a flag on the measurement, so it comes first, with the flags."""
    if point is None:
        if skipped:
            return f"not measured at {goal.at}: the staircase stopped before ({skipped})"
        return f"no measurement at {goal.at}"
    flagged = [flag for flag in point.flags if flag != "failures"]
    missed = _missed(point, goal)
    if missed and flagged:
        return f"{missed} (and the measurement is flagged: {', '.join(flagged)})"
    if flagged:
        return f"invalid measurement at {goal.at} ({', '.join(flagged)})"
    return missed


def _missed(point: Point, goal: GoalSpec) -> str | None:
    rate = point.failures / point.requests if point.requests else 0.0
    if point.p99_ms is not None and point.p99_ms > goal.p99_ms:
        return f"p99 {point.p99_ms:g} ms over the goal of {goal.p99_ms:g} ms at {goal.at}"
    if point.failures and rate > goal.max_error_rate:
        return f"{rate:.1%} of requests failed at {goal.at} (allowed {goal.max_error_rate:.1%})"
    if (
        goal.max_rss_mb is not None
        and point.target_rss_mb is not None
        and point.target_rss_mb > goal.max_rss_mb
    ):
        return f"memory {point.target_rss_mb:.0f} MB over the budget of {goal.max_rss_mb:g} MB"
    if point.p99_ms is None:
        return f"no latency measured at {goal.at}"
    return None


def choose(candidates: Sequence[Candidate]) -> tuple[Candidate, Candidate | None, bool]:
    """(the pick, the runner-up, whether the margin is within the measurements' spread)."""
    best = max(candidates, key=lambda c: c.point.rps)
    tied = [c for c in candidates if _overlap(c.interval, best.interval)]
    pick = min(
        tied,
        key=lambda c: (
            c.point.target_rss_mb if c.point.target_rss_mb is not None else float("inf"),
            c.target.workers,
            -c.point.rps,
        ),
    )
    others = [c for c in candidates if c is not pick]
    runner_up = max(others, key=lambda c: c.point.rps) if others else None
    too_close = runner_up is not None and _overlap(pick.interval, runner_up.interval)
    return pick, runner_up, too_close


def recommend(analysis: Analysis, overall: GoalSpec) -> list[dict[str, Any]]:
    """One recommendation per workload (see the module docstring)."""
    data = analysis.data
    results = []
    for workload, spec in data.workloads.items():
        goal = overall.for_workload(spec.open_loop is not None)
        if goal is None:
            continue
        points = {
            p.target: p for p in analysis.points if p.workload == workload and p.users == goal.users
        }
        skipped = {
            s.target.name: s.reason
            for s in analysis.skipped
            if s.workload == workload and s.users == goal.users
        }
        ran = {p.target for p in analysis.points if p.workload == workload} | set(skipped)
        measured = [t for t in data.targets.values() if t.name in ran]
        if not measured:
            continue
        excluded = {
            t.name: reason
            for t in measured
            if (reason := exclusion(points.get(t.name), goal, skipped.get(t.name)))
        }
        candidates = [Candidate(t, points[t.name]) for t in measured if t.name not in excluded]
        result: dict[str, Any] = {
            "workload": workload,
            "users": goal.users,
            "unit": goal.unit,
            "excluded": [{"target": name, "reason": why} for name, why in excluded.items()],
        }
        if candidates:
            pick, runner_up, too_close = choose(candidates)
            result |= {
                **pick.summary(),
                "settings": _settings(pick.target),
                "runner_up": runner_up.summary() if runner_up else None,
                "margin": round(pick.point.rps / runner_up.point.rps - 1, 4)
                if runner_up and runner_up.point.rps
                else None,
                "too_close_to_call": too_close,
                "closest": None,
            }
        else:
            result |= {
                "target": None,
                "settings": None,
                "rps": None,
                "p99_ms": None,
                "rss_mb": None,
                "runner_up": None,
                "margin": None,
                "too_close_to_call": False,
                "closest": _closest(measured, points, goal),
            }
        thumb = rule_of_thumb(measured, data.target_cores)
        result["rule_of_thumb"] = (
            {
                "target": thumb.target.name,
                "by": thumb.by,
                "rule": thumb.rule,
                "workers": thumb.target.workers,
                "rps": points[thumb.target.name].rps if thumb.target.name in points else None,
                "excluded": excluded.get(thumb.target.name),
            }
            if thumb
            else None
        )
        results.append(result)
    return results


def _settings(target: Target) -> dict[str, Any]:
    settings: dict[str, Any] = {"server": target.server, **target.settings}
    for key, expression in target.expressions.items():
        settings[key] = {"value": settings[key], "written": expression}
    return settings


def _closest(
    targets: Sequence[Target], points: dict[str, Point], goal: GoalSpec
) -> dict[str, Any] | None:
    """The target that misses the goal by the least, and by what."""
    misses = []
    for target in targets:
        point = points.get(target.name)
        if point is None or point.p99_ms is None or any(f != "failures" for f in point.flags):
            continue
        p99 = point.p99_ms / goal.p99_ms
        memory = (
            point.target_rss_mb / goal.max_rss_mb
            if goal.max_rss_mb and point.target_rss_mb is not None
            else 0.0
        )
        if max(p99, memory) > 1:
            misses.append((max(p99, memory), target, point, p99 >= memory))
    if not misses:
        return None
    ratio, target, point, by_latency = min(misses, key=lambda m: m[0])
    what = (
        f"p99 {point.p99_ms:g} ms against {goal.p99_ms:g} ms"
        if by_latency
        else f"memory {point.target_rss_mb:.0f} MB against {goal.max_rss_mb:g} MB"
    )
    return {"target": target.name, "misses_by": f"{what} ({ratio - 1:+.0%})", "rps": point.rps}
