"""Reading raw cell files into per-step numbers over exactly each measured window."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakerun import MEASURE, Step, make_run

from flaskbench.measure.collect import RawDataError, load_run, read_cell
from flaskbench.measure.stats import Histogram


def test_steps_cover_only_their_measured_window(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {
            "sync--io--r1": [
                Step(users=1, rps=10, latency_ms=100),
                Step(users=8, rps=20, latency_ms=400),
            ]
        },
    )
    data = load_run(run)
    (cell,) = data.cells
    first, second = cell.steps
    # The warmup buckets (ten times the traffic) are left out entirely.
    assert (first.requests, first.duration_s) == (10 * MEASURE, MEASURE)
    assert second.requests == 20 * MEASURE
    assert first.latency.percentile(50) == 100
    assert second.latency.percentile(99) == 400
    # Locust's own total covers warmups too and must match the buckets' total.
    assert cell.locust_requests == cell.bucket_requests


def test_gauge_peaks_and_served_per_process(tmp_path: Path) -> None:
    steps = [Step(users=8, rps=20, latency_ms=400, processes=[(101, 1, 150), (102, 1, 50)])]
    run = make_run(tmp_path / "run", {"sync--io--r1": steps})
    (step,) = load_run(run).cells[0].steps
    assert step.peak_inflight_process == 1
    assert step.peak_inflight_server == 2
    assert step.mean_inflight_server == 2
    assert step.served_by_process == {101: 150 * MEASURE, 102: 50 * MEASURE}


def test_resources_are_averaged_over_the_window(tmp_path: Path) -> None:
    steps = [Step(users=1, rps=10, latency_ms=100, target_cpu=40, loadgen_cpu=90)]
    (step,) = load_run(make_run(tmp_path / "run", {"sync--io--r1": steps})).cells[0].steps
    assert step.target_cpu_pct == 40
    # One load CPU: the side's share equals its only process.
    assert step.loadgen_cpu_pct == 90
    assert step.loadgen_process_cpu_max_pct == 90


def test_a_damaged_csv_is_named_and_the_other_cells_still_load(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {
            "sync--io--r1": [Step(users=1, rps=10, latency_ms=100)],
            "gevent--io--r1": [Step(users=1, rps=10, latency_ms=100)],
        },
    )
    gauge = run.cell_dir("sync--io--r1") / "gauge.csv"
    gauge.write_text(gauge.read_text().replace("101", "1x1", 1))
    data = load_run(run)
    assert [c.cell_id for c in data.cells] == ["gevent--io--r1"]
    assert data.unreadable["sync--io--r1"].startswith(f"{gauge}:")
    assert "unreadable row" in data.unreadable["sync--io--r1"]


def test_a_truncated_csv_header_is_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"sync--io--r1": [Step(users=1, rps=10, latency_ms=100)]})
    resources = run.cell_dir("sync--io--r1") / "resources.csv"
    resources.write_text("t,side\n")
    status = run.cell_status("sync--io--r1")
    assert status is not None
    with pytest.raises(RawDataError, match=f"{resources}: expected the columns"):
        read_cell(run.cell_dir("sync--io--r1"), status, 1)


def test_missing_loadgen_file_is_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"sync--io--r1": [Step(users=1, rps=10, latency_ms=100)]})
    loadgen = run.cell_dir("sync--io--r1") / "loadgen.json"
    loadgen.write_text("{not json")
    assert str(loadgen) in load_run(run).unreadable["sync--io--r1"]


def test_failed_cells_are_not_read(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"sync--io--r1": [Step(1, 10, 100)]}, status="failed")
    (run.cell_dir("sync--io--r1") / "loadgen.json").unlink()
    data = load_run(run)
    assert data.cells == ()
    assert data.unreadable == {}
    assert data.statuses["sync--io--r1"].status == "failed"


def test_histogram_percentiles_are_nearest_rank() -> None:
    histogram = Histogram({1.0: 50, 2.0: 45, 10.0: 4, 100.0: 1})
    assert histogram.percentile(50) == 1.0
    assert histogram.percentile(51) == 2.0
    assert histogram.percentile(95) == 2.0
    assert histogram.percentile(99) == 10.0
    assert histogram.percentile(100) == 100.0
    assert histogram.mean() == pytest.approx((50 + 90 + 40 + 100) / 100)
    assert Histogram({}).percentile(50) is None
