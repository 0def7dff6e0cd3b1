"""A short docker-runner run of sync and gevent with a two-worker Locust swarm."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from benchrun import (
    ALL_TARGETS,
    docker_leftovers,
    flaskbench,
    require_docker,
    run_dir_of,
    summary,
    write_config,
)

pytestmark = [pytest.mark.docker, pytest.mark.load]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_docker()
    directory = tmp_path_factory.mktemp("docker")
    targets = {name: ALL_TARGETS[name] for name in ("sync", "gevent")}
    config = write_config(
        directory, targets, {"io": {"io_ms": 100}}, users=[1, 4], runner="docker", locust_workers=2
    )
    # The first run builds the images (a few minutes); later runs reuse them.
    result = flaskbench("run", "--config", str(config), timeout=900)
    assert result.returncode == 0, result.stderr
    return run_dir_of(result)


def test_both_targets_measured_in_containers(run: Path) -> None:
    rows = {(r["target"], int(r["users"])): r for r in summary(run)}
    assert set(rows) == {(t, u) for t in ("sync", "gevent") for u in (1, 4)}
    assert rows[("sync", 4)]["peak_inflight_process"] == "1"
    assert rows[("sync", 4)]["peak_inflight_server"] == "2"
    assert int(rows[("gevent", 4)]["peak_inflight_server"]) >= 4
    # 2 slots of 100 ms: at most 20/s, and about twice what 1 user gets here.
    assert float(rows[("sync", 1)]["rps"]) * 1.5 < float(rows[("sync", 4)]["rps"]) <= 20.2
    meta = json.loads((run / "meta.json").read_text())
    assert meta["runner"]["name"] == "docker"
    assert meta["runner"]["details"]["target_image"].startswith("flaskbench-target:")


def test_two_locust_workers_reported(run: Path) -> None:
    cell = run / "raw" / "sync--io--r1"
    assert json.loads((cell / "loadgen.json").read_text())["workers"] == 2
    with (cell / "resources.csv").open() as handle:
        names = {row["name"] for row in csv.DictReader(handle)}
    assert {"target", "locust-master", "locust-worker-1", "locust-worker-2"} <= names
    # Steal and contention are read on the host, whichever runner started the processes.
    with (cell / "host_cpu.csv").open() as handle:
        assert {row["side"] for row in csv.DictReader(handle)} == {"target", "load"}


def test_no_container_is_left(run: Path) -> None:
    assert docker_leftovers(run.name) == []


def test_results_belong_to_the_caller(run: Path) -> None:
    cell = run / "raw" / "gevent--io--r1"
    owner = cell.stat().st_uid
    assert all(path.stat().st_uid == owner for path in cell.iterdir())
    assert owner == run.stat().st_uid
