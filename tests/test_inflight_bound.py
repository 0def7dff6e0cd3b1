"""Requests in flight, taken literally, on real servers: with N users that each wait for their
response, no sample of the gauge shows more than N in flight, and a sync worker never more than
one. Werkzeug's threaded dev server used to show 2 with 1 user: it closes a response up to 10 ms
after sending it, and the next request was inside by then.

One short local-runner run through the real `flaskbench run`: the threaded dev server and gunicorn
sync with 2 workers, 1 then 4 users, on /hello and on /io?ms=20; every row of every gauge.csv.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from benchrun import ALL_TARGETS, flaskbench, run_dir_of, write_config

pytestmark = pytest.mark.load

TARGETS = ("dev", "sync")
WORKLOADS = {"hello": {"io_ms": 0}, "io": {"io_ms": 20}}
USERS = [1, 4]


@dataclass(frozen=True)
class GaugeRow:
    t: float
    pid: int
    peak: int


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bound")
    targets = {name: ALL_TARGETS[name] for name in TARGETS}
    config = write_config(directory, targets, WORKLOADS, users=USERS)
    result = flaskbench("run", "--config", str(config), "--runner", "local", timeout=400)
    assert result.returncode == 0, result.stderr
    return run_dir_of(result)


def gauge_rows(cell: Path) -> list[GaugeRow]:
    with (cell / "gauge.csv").open(newline="") as file:
        rows = csv.DictReader(file)
        return [GaugeRow(float(r["t"]), int(r["pid"]), int(r["peak"])) for r in rows]


def users_by_then(cell: Path) -> list[tuple[float, int]]:
    """(start, users) of each step: from `start` on, at most `users` are sending."""
    steps = json.loads((cell / "loadgen.json").read_text())["steps"]
    return [(float(step["start"]), int(step["users"])) for step in steps]


def users_at(t: float, steps: list[tuple[float, int]]) -> int:
    """Users that can have sent a request by time t (before the first step: the runner's one
    readiness probe at a time)."""
    return max([users for start, users in steps if start < t], default=1)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_no_sample_shows_more_in_flight_than_users(
    run_dir: Path, target: str, workload: str
) -> None:
    cell = run_dir / "raw" / f"{target}--{workload}--r1"
    rows, steps = gauge_rows(cell), users_by_then(cell)
    assert [users for _, users in steps] == USERS
    over = [row for row in rows if row.peak > users_at(row.t, steps)]
    assert over == [], f"more in flight than users: {over[:5]}"
    if target == "sync":
        assert max(row.peak for row in rows if row.pid != 0) == 1
    # The premise: requests in every step, and on /io (20 ms inside the app) as many at once as
    # the server lets in.
    slots = {"dev": 4, "sync": 2}[target]
    for (start, users), (end, _) in zip(steps, [*steps[1:], (float("inf"), 0)], strict=True):
        peak = max(row.peak for row in rows if row.pid == 0 and start < row.t <= end)
        assert peak == min(users, slots) if workload == "io" else peak >= 1, (start, users)
