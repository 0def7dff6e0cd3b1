"""Exact windows across machines: every time lands on the Locust master's clock, whatever the
clocks of the workers' and the target's hosts say."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from fakerun import MEASURE, T0, WARMUP, Step, make_run
from stepstats import Buckets, ClockSync, plan_schedule

from flaskbench.execute.engines import engine_time, read_clock, significant
from flaskbench.measure.collect import read_cell

# The worker's host runs its clock this far ahead of the master's.
SKEW_S = 1.5


def ask(sync: ClockSync, master_now: float, there_s: float, back_s: float) -> None:
    """One question for the master's time, as the worker's skewed clock sees it."""
    sent = master_now + SKEW_S
    sync.add(sent, master_now + there_s, sent + there_s + back_s)


def test_the_offset_comes_from_the_shortest_round_trip() -> None:
    sync = ClockSync()
    assert sync.correction() == 0.0
    # A slow, lopsided answer first (50 ms out, 2 ms back): off by 24 ms.
    ask(sync, 1000.0, 0.050, 0.002)
    assert sync.offset_s == pytest.approx(-SKEW_S + 0.024)
    # A quick one replaces it; a slower one after it does not.
    ask(sync, 1001.0, 0.0004, 0.0004)
    ask(sync, 1002.0, 0.200, 0.001)
    assert sync.correction() == pytest.approx(-SKEW_S, abs=1e-9)
    assert sync.answers == 3
    assert sync.to_json()["round_trip_s"] == pytest.approx(0.0008)


def test_no_correction_within_the_uncertainty() -> None:
    sync = ClockSync()
    # Same clock, 2 ms round trip spent asymmetrically: an apparent 0.5 ms offset is noise.
    sync.add(100.0, 100.0015, 100.002)
    assert sync.offset_s == pytest.approx(0.0005)
    assert sync.correction() == 0.0
    # A time from the past (clock stepped back mid-question) is ignored.
    sync.add(200.0, 150.0, 199.0)
    assert sync.answers == 1


def requests_per_window(stamp: Any) -> list[int]:
    """Two steps of one user each sending 10 requests a second, then 20: how many requests
    each step's measured window counts when the worker stamps them with `stamp(t)`."""
    schedule = plan_schedule([1, 2], warmup_s=1, measure_s=2, start_time=T0)
    buckets = Buckets()
    for step in schedule.steps:
        rate = 10 * step.users
        for n in range(int((step.measure_end - step.start) * rate)):
            buckets.add(stamp(step.start + (n + 0.5) / rate), 100.0, failed=False)
    counted = []
    for step in schedule.steps:
        rows = buckets.to_json()
        counted.append(
            sum(
                b["requests"]
                for b in rows
                if step.measure_start <= b["t"] and b["t"] + 1 <= step.measure_end
            )
        )
    return counted


def test_a_skewed_workers_requests_land_in_the_masters_windows() -> None:
    sync = ClockSync()
    ask(sync, T0 - 5, 0.0003, 0.0003)
    exact = requests_per_window(lambda t: t)
    assert exact == [20, 40]
    # Stamped with the worker's clock corrected by what it measured: exactly the master's.
    assert requests_per_window(lambda t: t + SKEW_S + sync.correction()) == exact
    # Uncorrected, the first window takes half a second of the second step's faster traffic.
    assert requests_per_window(lambda t: t + SKEW_S) != exact


class FakeEngine:
    """An engine whose clock runs `offset` seconds off ours and answers in `delay` seconds."""

    def __init__(self, offset: float, now: Any) -> None:
        self.offset = offset
        self.now = now

    def info(self) -> dict[str, Any]:
        import datetime as dt

        stamp = dt.datetime.fromtimestamp(self.now() + self.offset, dt.UTC)
        return {"SystemTime": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"), "ID": "x"}


def test_an_engines_clock_is_read_from_its_info() -> None:
    import time

    assert engine_time("2026-01-02T03:04:05.123456789Z") == pytest.approx(1767323045.123456789)
    assert engine_time("2026-01-02T05:04:05.5+02:00") == pytest.approx(1767323045.5)
    with pytest.raises(ValueError, match="cannot read"):
        engine_time("yesterday")
    offset, uncertainty, info = read_clock(FakeEngine(-2.5, time.time))
    assert offset == pytest.approx(-2.5, abs=0.01)
    assert 0 <= uncertainty < 0.01
    assert info["ID"] == "x"
    assert significant(0.004, 0.005) == 0.0
    assert significant(-2.5, 0.005) == -2.5


def shift_gauge(cell: Path, seconds: float) -> None:
    path = cell / "gauge.csv"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    for row in rows[1:]:
        row[0] = f"{float(row[0]) + seconds:.3f}"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_the_targets_gauge_is_read_on_the_masters_clock(tmp_path: Path) -> None:
    # Three requests in flight in the first step, one in the second.
    run = make_run(
        tmp_path / "run",
        {"sync--io--r1": [Step(1, 10, 100, processes=[(101, 3, 10)]), Step(2, 10, 100)]},
    )
    cell = run.cell_dir("sync--io--r1")
    status = run.statuses()["sync--io--r1"]
    # The target's host runs its clock 3 s ahead of the master's.
    shift_gauge(cell, 3.0)
    (cell / "hosts.json").write_text(json.dumps({"clock": {"target_to_master_s": -3.0}}))
    steps = read_cell(cell, status, load_cpus=1).steps
    assert [s.peak_inflight_process for s in steps] == [3, 1]
    assert steps[1].measure_start == T0 + WARMUP + MEASURE + WARMUP
    # Read on its own clock, the second window catches the first step's last seconds.
    (cell / "hosts.json").unlink()
    assert [s.peak_inflight_process for s in read_cell(cell, status, 1).steps] == [3, 3]


def test_resources_are_summed_per_host(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"sync--io--r1": [Step(1, 10, 100)]})
    cell = run.cell_dir("sync--io--r1")
    start = T0 + WARMUP
    rows = [("t", "side", "name", "cpu_pct", "rss_mb", "host")]
    for second in range(start + 1, start + MEASURE + 1):
        rows.append((second, "target", "target", 90.0, 60.0, "vm-a"))
        rows.append((second, "loadgen", "locust-master", 5.0, 30.0, "vm-b"))
        rows.append((second, "loadgen", "locust-worker-1", 40.0, 50.0, "vm-b"))
    with (cell / "resources.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    (step,) = read_cell(cell, run.statuses()["sync--io--r1"], load_cpus=2).steps
    used = {use.host: use for use in step.hosts}
    assert set(used) == {"vm-a", "vm-b"}
    assert (used["vm-a"].cpu_pct, used["vm-a"].rss_mb, used["vm-a"].sides) == (
        90.0,
        60.0,
        ("target",),
    )
    assert (used["vm-b"].cpu_pct, used["vm-b"].rss_mb) == (45.0, 80.0)
    assert step.loadgen_cpu_pct == pytest.approx(22.5)
