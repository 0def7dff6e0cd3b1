"""A worker of uWSGI, granian or uvicorn killed mid-step: the cell is flagged with what the
server logged, the requests it held are counted as lost, and nothing is left running."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from benchrun import start_flaskbench, summary, wait_for, write_config
from test_faults import master_port, nothing_left, served, the_run_dir

pytestmark = pytest.mark.load


def busiest_worker(cell: Path) -> int:
    """The pid of the process that has served the most so far, from the live gauge.csv."""
    rows = [row.split(",") for row in (cell / "gauge.csv").read_text().splitlines()[1:]]
    last = {int(row[1]): int(row[4]) for row in rows if len(row) == 6 and row[1] != "0"}
    return max(last, key=lambda pid: last[pid])


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param(
            {"server": "uwsgi", "processes": 2, "threads": 1},
            "uWSGI worker {pid} was killed by signal 9",
            id="uwsgi",
        ),
        pytest.param(
            {"server": "granian", "workers": 2, "blocking_threads": 2},
            "died and was respawned",
            id="granian",
        ),
        pytest.param(
            {"server": "asgi", "adapter": "a2wsgi", "workers": 2, "threads": 2},
            "uvicorn worker {pid} died and was replaced",
            id="uvicorn",
        ),
    ],
)
def test_killing_a_worker_mid_step_degrades_the_cell(
    tmp_path: Path, target: dict[str, Any], message: str
) -> None:
    config = write_config(
        tmp_path, {"t": target}, {"io": {"io_ms": 100}}, users=[4], warmup="2s", measure="6s"
    )
    process = start_flaskbench(
        "run", "--config", str(config), "--runner", "local", log=tmp_path / "out.log"
    )
    cell = the_run_dir(tmp_path) / "raw" / "t--io--r1"
    # 4 users hold 2 to 4 slots of 100 ms: 120 served is 3 s or more into the staircase,
    # inside the measured window (2 s to 8 s), not in its warmup.
    wait_for(lambda: served(cell) > 120, 120, "the measured window")
    victim = busiest_worker(cell)
    os.kill(victim, signal.SIGKILL)
    assert process.wait(timeout=120) == 1
    status = json.loads((cell / "cell.json").read_text())
    assert status["status"] == "degraded"
    assert message.format(pid=victim) in status["reason"]
    (row,) = summary(cell.parent.parent)
    assert int(row["lost_requests"]) >= 1
    assert "degraded" in row["flags"]
    assert row["valid"] == "false"
    nothing_left(tmp_path, master_port(config), cell.parent.parent.name, "local")
