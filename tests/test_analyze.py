"""Summary rows, knees, and validity flags: each with a case that raises it and one that won't."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakerun import Step, make_point, make_run

from flaskbench.measure.analyze import Point, Row, analyze_run, find_knee
from flaskbench.measure.collect import load_run


def rows(tmp_path: Path, cells: dict[str, list[Step]], **kwargs: object) -> list[Row]:
    return list(analyze_run(load_run(make_run(tmp_path / "run", cells, **kwargs))).rows)  # type: ignore[arg-type]


def one(tmp_path: Path, step: Step, cell: str = "sync--io--r1", **kwargs: object) -> Row:
    (row,) = rows(tmp_path, {cell: [step]}, **kwargs)
    return row


# users 2, 20 req/s at 100 ms: Little's law holds exactly (2 = 20 x 0.1).
CLEAN = {"users": 2, "rps": 20, "latency_ms": 100}


def test_a_clean_step_is_valid_and_measured_against_theory(tmp_path: Path) -> None:
    row = one(tmp_path, Step(**CLEAN, processes=[(101, 1, 100), (102, 1, 100)]))
    assert row.valid
    assert row.flags == ()
    assert (row.rps, row.p50_ms, row.p99_ms) == (20, 100, 100)
    assert (row.expected_slots, row.expected_rps) == (2, pytest.approx(20))
    assert row.rps_vs_expected == pytest.approx(1.0)
    assert (row.peak_inflight_process, row.peak_inflight_server) == (1, 2)
    assert row.worker_request_share_max == pytest.approx(0.5)
    assert (row.server, row.worker_class, row.workers, row.threads) == ("gunicorn", "sync", 2, 1)
    assert row.as_csv()["valid"] == "true"


def test_loadgen_cpu_flag(tmp_path: Path) -> None:
    assert "loadgen_cpu" in one(tmp_path / "a", Step(**CLEAN, loadgen_cpu=90)).flags
    assert "loadgen_cpu" not in one(tmp_path / "b", Step(**CLEAN, loadgen_cpu=80)).flags


def test_locust_cpu_warning_lands_on_the_busiest_step(tmp_path: Path) -> None:
    steps = [Step(**CLEAN, loadgen_cpu=40), Step(users=4, rps=40, latency_ms=100, loadgen_cpu=80)]
    flagged = rows(tmp_path / "a", {"sync--io--r1": steps}, cpu_warnings=["worker-1"])
    assert [r.flags for r in flagged] == [(), ("locust_cpu_warning",)]
    assert all(r.valid for r in rows(tmp_path / "b", {"sync--io--r1": steps}))


def test_failures_flag(tmp_path: Path) -> None:
    assert one(tmp_path / "a", Step(**CLEAN, failures=8)).flags == ("failures",)
    assert one(tmp_path / "b", Step(**CLEAN, failures=0)).valid


def test_lost_requests_flag(tmp_path: Path) -> None:
    lost = one(tmp_path / "a", Step(**CLEAN, lost=2))
    assert (lost.flags, lost.lost_requests) == (("lost_requests",), 2)
    assert one(tmp_path / "b", Step(**CLEAN, lost=0)).valid


def test_littles_law_flag(tmp_path: Path) -> None:
    # 2 users at 20 req/s must mean 100 ms; 50 ms means time went missing outside requests.
    assert "littles_law" in one(tmp_path / "a", Step(users=2, rps=20, latency_ms=50)).flags
    assert "littles_law" not in one(tmp_path / "b", Step(users=2, rps=20, latency_ms=95)).flags


def test_ramping_flag(tmp_path: Path) -> None:
    ramping = Step(users=20, rps=200, latency_ms=100, second_half=1.3)
    # Latency follows throughput only loosely here; the ramp flag is what is tested.
    assert "ramping" in one(tmp_path / "a", ramping).flags
    settled = Step(users=20, rps=200, latency_ms=100, second_half=1.02)
    assert "ramping" not in one(tmp_path / "b", settled).flags
    # A big relative change on a handful of requests is noise, not a ramp.
    few = Step(users=1, rps=3, latency_ms=333, second_half=1.34)
    assert "ramping" not in one(tmp_path / "c", few).flags


def test_a_spread_between_trials_widens_the_interval_instead_of_flagging(
    tmp_path: Path,
) -> None:
    def point(path: Path, second: Step) -> Point:
        cells = {"sync--io--r1": [Step(**CLEAN)], "sync--io--r2": [second]}
        (found,) = analyze_run(load_run(make_run(path, cells))).points
        return found

    spread = point(tmp_path / "a", Step(users=2, rps=24, latency_ms=83))
    steady = point(tmp_path / "b", Step(users=2, rps=20, latency_ms=100))
    assert spread.flags == steady.flags == ()
    assert spread.rps_ci is not None
    assert steady.rps_ci is not None
    # Run-level chance is variance: the interval over trials holds both trials' throughput.
    assert spread.rps_ci.low < 20
    assert spread.rps_ci.high > 24
    assert spread.rps_ci.high - spread.rps_ci.low > steady.rps_ci.high - steady.rps_ci.low


def test_degraded_cell_flags_its_rows(tmp_path: Path) -> None:
    assert "degraded" in one(tmp_path / "a", Step(**CLEAN), status="degraded").flags


def test_no_requests_flag(tmp_path: Path) -> None:
    row = one(tmp_path, Step(users=2, rps=0, latency_ms=100))
    assert "no_requests" in row.flags
    assert row.p99_ms is None


def test_median_over_repeats_with_min_and_max(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {
            f"sync--io--r{i}": [Step(users=2, rps=rps, latency_ms=2000 / rps)]
            for i, rps in enumerate((18, 20, 25), start=1)
        },
    )
    (point,) = analyze_run(load_run(run)).points
    assert (point.rps, point.rps_min, point.rps_max, point.repeats) == (20, 18, 25, 3)


def point(users: int, rps: float, p99: float) -> Point:
    return make_point(users=users, rps=rps, p99_ms=p99)


def test_knee_is_the_lowest_user_count_at_95_percent_of_peak() -> None:
    knee = find_knee(
        [point(8, 19.8, 400), point(1, 10, 100), point(2, 19.0, 101), point(4, 19.9, 200)]
    )
    assert knee is not None
    assert (knee.peak_rps, knee.peak_users) == (19.9, 4)
    assert knee.knee_users == 2  # 19.0 >= 0.95 * 19.9
    assert knee.p99_doubling_users == 8  # 200 is not more than twice 100; 400 is


def test_knee_below_95_percent_is_not_the_knee() -> None:
    knee = find_knee([point(1, 10, 100), point(2, 18.0, 100), point(4, 20, 100)])
    assert knee is not None
    assert knee.knee_users == 4  # 18.0 < 19.0
    assert knee.p99_doubling_users is None
