"""The new servers end to end through the real command, on both runners: each one's slots are
what its model says, and the report says where a model comes from the server's code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from benchrun import docker_leftovers, flaskbench, require_docker, run_dir_of, summary, write_config

pytestmark = pytest.mark.load

SERVER_TARGETS: dict[str, dict[str, Any]] = {
    "waitress": {"server": "waitress", "threads": 4},
    "uwsgi": {"server": "uwsgi", "processes": 2, "threads": 2},
    "granian": {"server": "granian", "workers": 1, "blocking_threads": 4},
    "a2wsgi": {"server": "asgi", "adapter": "a2wsgi", "threads": 4},
    "asgiref": {"server": "asgi", "adapter": "asgiref", "reset_contextvars": True},
}
# Peak in flight per process and server-wide with 8 users, where each model is saturated.
SATURATED = {
    "waitress": (4, 4),
    "uwsgi": (2, 4),
    "granian": (4, 4),
    "a2wsgi": (4, 4),
    "asgiref": (1, 1),
}


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("docker", marks=pytest.mark.docker)],
)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runner = request.param
    if runner == "docker":
        require_docker()
    directory = tmp_path_factory.mktemp(runner)
    config = write_config(
        directory, SERVER_TARGETS, {"io": {"io_ms": 100}}, users=[1, 8], runner=runner
    )
    # The first docker run builds the images (a few minutes); later runs reuse them.
    result = flaskbench("run", "--config", str(config), timeout=900)
    assert result.returncode == 0, result.stderr
    run_dir = run_dir_of(result)
    if runner == "docker":
        assert docker_leftovers(run_dir.name) == []
    return run_dir


def rows_of(run_dir: Path) -> dict[tuple[str, int], dict[str, str]]:
    return {(row["target"], int(row["users"])): row for row in summary(run_dir)}


def test_every_server_is_held_to_its_slots(run: Path) -> None:
    rows = rows_of(run)
    assert set(rows) == {(t, u) for t in SERVER_TARGETS for u in (1, 8)}
    measured = {
        name: (
            int(rows[(name, 8)]["peak_inflight_process"]),
            int(rows[(name, 8)]["peak_inflight_server"]),
        )
        for name in SERVER_TARGETS
    }
    assert measured == SATURATED
    assert {name: int(rows[(name, 8)]["expected_slots"]) for name in SERVER_TARGETS} == {
        name: server for name, (_, server) in SATURATED.items()
    }
    assert int(rows[("uwsgi", 8)]["worker_processes"]) == 2
    assert all(row["failures"] == "0" for row in rows.values())


def test_throughput_follows_the_slots_of_each_model(run: Path) -> None:
    rows = rows_of(run)
    for name, (_, slots) in SATURATED.items():
        # /io?ms=100 with 8 users: never above 10/s per slot on any machine (4 slots 40/s,
        # asgiref's one thread 10/s), and near `slots` times what 1 user got in the same run.
        one, eight = float(rows[(name, 1)]["rps"]), float(rows[(name, 8)]["rps"])
        assert 0.7 * slots * one <= eight <= 1.02 * 10 * slots, name


def test_the_report_names_models_and_where_asgirefs_comes_from(run: Path) -> None:
    report = (run / "report.md").read_text()
    assert "uWSGI, 2 processes x 2 threads" in report
    assert "uvicorn + asgiref WsgiToAsgi, 1 worker x 1 thread" in report
    assert "come from the server's code" in report
    assert "**asgiref**: asgiref's WsgiToAsgi" in report
    assert "asgiref/sync.py" in report
    # The documented ones are not in that note.
    assert "**uwsgi**:" not in report
