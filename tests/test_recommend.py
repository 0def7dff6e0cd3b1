"""The recommendation under a goal: the rule that picks, ties, "too close to call", nothing
meeting the goal, and every reason a target is left out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from fakerun import make_point

from flaskbench.config.workloads import Workload
from flaskbench.measure.analyze import Analysis, Point, Skipped
from flaskbench.measure.collect import RunData
from flaskbench.measure.recommend import GoalSpec, recommend
from flaskbench.measure.stats import Interval
from flaskbench.servers.registry import resolve_target
from flaskbench.servers.server import Target

GOAL = GoalSpec(p99_ms=250, users=32, max_rss_mb=None, max_error_rate=0.0)


def target(name: str, **settings: Any) -> Target:
    resolved, problems = resolve_target(name, "gunicorn", settings)
    assert resolved is not None, problems
    return resolved


TARGETS = {
    "gt-w1-t16": target("gt-w1-t16", worker_class="gthread", workers=1, threads=16),
    "gt-w2-t16": target("gt-w2-t16", worker_class="gthread", workers=2, threads=16),
    "gt-w2-t4": target("gt-w2-t4", worker_class="gthread", workers=2, threads=4),
    "sync-w3": target("sync-w3", worker_class="sync", workers=3),
}


def analysis(points: list[Point], skipped: tuple[Skipped, ...] = ()) -> Analysis:
    data = RunData(
        run_id="run",
        meta={},
        targets=TARGETS,
        workloads={"io": Workload("io", io_ms=100)},
        target_cores=1,
        load_cores=1,
        cells=(),
        statuses={},
        unreadable={},
        missing=(),
    )
    return Analysis(data, (), tuple(points), {}, {}, skipped)


def at(name: str, rps: float, p99: float, **values: Any) -> Point:
    return make_point(target=name, users=32, rps=rps, p99_ms=p99, **values)


def only(points: list[Point], goal: GoalSpec = GOAL, **kw: Any) -> dict[str, Any]:
    (result,) = recommend(analysis(points, **kw), goal)
    return result


def test_the_fastest_target_within_the_goal_wins() -> None:
    result = only(
        [
            at("gt-w1-t16", 157, 212),
            at("gt-w2-t16", 290, 208),
            at("gt-w2-t4", 77, 496),
            at("sync-w3", 29, 1190),
        ]
    )
    assert (result["target"], result["rps"], result["p99_ms"]) == ("gt-w2-t16", 290, 208)
    assert result["runner_up"]["target"] == "gt-w1-t16"
    assert result["margin"] == pytest.approx(290 / 157 - 1, abs=1e-4)
    assert result["too_close_to_call"] is False
    assert result["excluded"] == [
        {"target": "gt-w2-t4", "reason": "p99 496 ms over the goal of 250 ms at 32 users"},
        {"target": "sync-w3", "reason": "p99 1190 ms over the goal of 250 ms at 32 users"},
    ]
    assert result["settings"]["threads"] == 16
    thumb = result["rule_of_thumb"]
    assert (thumb["target"], thumb["workers"]) == ("sync-w3", 3)
    assert "p99 1190 ms" in thumb["excluded"]


def test_a_tie_within_the_spread_goes_to_less_memory_then_fewer_processes() -> None:
    points = [
        at("gt-w1-t16", 290, 200, rps_min=280, rps_max=300, target_rss_mb=30.0),
        at("gt-w2-t16", 295, 200, rps_min=285, rps_max=305, target_rss_mb=50.0),
    ]
    result = only(points)
    assert result["target"] == "gt-w1-t16"
    assert result["runner_up"]["target"] == "gt-w2-t16"
    assert result["too_close_to_call"] is True
    same_memory = [replace(p, target_rss_mb=40.0) for p in points]
    assert only(same_memory)["target"] == "gt-w1-t16"  # one process, not two


def test_one_repeats_interval_makes_the_spread_too() -> None:
    points = [
        at("gt-w1-t16", 290, 200, rps_ci=Interval(270, 310), target_rss_mb=30.0),
        at("gt-w2-t16", 300, 200, rps_ci=Interval(295, 305), target_rss_mb=50.0),
    ]
    assert (only(points)["target"], only(points)["too_close_to_call"]) == ("gt-w1-t16", True)
    apart = [points[0], at("gt-w2-t16", 330, 200, rps_ci=Interval(320, 340), target_rss_mb=50.0)]
    assert (only(apart)["target"], only(apart)["too_close_to_call"]) == ("gt-w2-t16", False)


def test_without_overlap_throughput_decides_whatever_the_memory() -> None:
    points = [
        at("gt-w1-t16", 250, 200, rps_min=245, rps_max=255, target_rss_mb=30.0),
        at("gt-w2-t16", 295, 200, rps_min=285, rps_max=305, target_rss_mb=50.0),
    ]
    result = only(points)
    assert (result["target"], result["too_close_to_call"]) == ("gt-w2-t16", False)


def test_memory_failures_and_invalid_measurements_are_each_a_reason() -> None:
    goal = replace(GOAL, max_rss_mb=40, max_error_rate=0.01)
    result = only(
        [
            at("gt-w1-t16", 150, 200, target_rss_mb=35.0),
            at("gt-w2-t16", 290, 200, target_rss_mb=52.0),
            at("gt-w2-t4", 90, 200, failures=30, requests=900, flags=("failures",)),
            at("sync-w3", 30, 200, target_rss_mb=30.0, flags=("loadgen_cpu",)),
        ],
        goal,
    )
    assert result["target"] == "gt-w1-t16"
    reasons = {e["target"]: e["reason"] for e in result["excluded"]}
    assert reasons == {
        "gt-w2-t16": "memory 52 MB over the budget of 40 MB",
        "gt-w2-t4": "3.3% of requests failed at 32 users (allowed 1.0%)",
        "sync-w3": "invalid measurement at 32 users (loadgen_cpu)",
    }


def test_a_missed_goal_comes_before_the_flags_on_its_measurement() -> None:
    result = only([at("gt-w1-t16", 150, 200), at("sync-w3", 10, 3280, flags=("littles_law",))])
    assert result["excluded"] == [
        {
            "target": "sync-w3",
            "reason": "p99 3280 ms over the goal of 250 ms at 32 users (and the measurement "
            "is flagged: littles_law)",
        }
    ]


def test_a_step_not_climbed_to_is_a_reason_too() -> None:
    skipped = (Skipped("run", TARGETS["gt-w2-t4"], "io", 32, 1, "p99 1200 ms at 8 users"),)
    points = [at("gt-w1-t16", 150, 200), make_point(target="gt-w2-t4", users=8, rps=77)]
    result = only(points, skipped=skipped)
    assert result["excluded"] == [
        {
            "target": "gt-w2-t4",
            "reason": "not measured at 32 users: the staircase stopped before "
            "(p99 1200 ms at 8 users)",
        }
    ]


def test_when_nothing_meets_the_goal_the_closest_is_named() -> None:
    result = only([at("gt-w1-t16", 157, 300), at("gt-w2-t16", 290, 275), at("sync-w3", 29, 900)])
    assert result["target"] is None
    assert result["closest"] == {
        "target": "gt-w2-t16",
        "misses_by": "p99 275 ms against 250 ms (+10%)",
        "rps": 290,
    }
    assert len(result["excluded"]) == 3
