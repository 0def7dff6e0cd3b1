"""An orchestrator killed outright (SIGKILL) with the docker runner: the next run, `--resume`,
`doctor` and `clean` deal with what it left, and its containers stop by themselves."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from benchrun import (
    ALL_TARGETS,
    flaskbench,
    live_run_stand_in,
    require_docker,
    run_dir_of,
    start_flaskbench,
    summary,
    wait_for,
    write_config,
)
from leftovers_guard import guard_labels
from test_faults import target_port, the_run_dir, traffic_started

from flaskbench.execute.engines import list_containers
from flaskbench.execute.leftovers import controller_id
from flaskbench.execute.probes import port_in_use
from flaskbench.execute.runners.docker.compose import DEADLINE_KILL_AFTER_S
from flaskbench.execute.runners.runner import TEARDOWN_MARGIN_S

pytestmark = [pytest.mark.docker, pytest.mark.load]

TARGETS = {name: ALL_TARGETS[name] for name in ("sync", "gevent")}


def client() -> Any:
    from flaskbench.execute.engines import docker_client

    return docker_client()


def containers_of(run_id: str, running_only: bool = False) -> list[Any]:
    found = list_containers(client(), {"label": f"flaskbench.run={run_id}"})
    return [c for c in found if c.status == "running" or not running_only]


def docker_time(stamp: str) -> float:
    """Docker's RFC 3339 times carry nanoseconds, which fromisoformat does not take."""
    return dt.datetime.fromisoformat(stamp[:19]).replace(tzinfo=dt.UTC).timestamp()


def killed_mid_cell(directory: Path, config: Path) -> Path:
    """Start a run, SIGKILL it once the first cell has traffic; its run directory."""
    process = start_flaskbench("run", "--config", str(config), log=directory / "killed.log")
    run_dir = the_run_dir(directory)
    wait_for(lambda: traffic_started(run_dir / "raw" / "sync--io--r1"), 300, "traffic")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return run_dir


@pytest.fixture
def bystanders() -> Iterator[list[Any]]:
    """A container of a live run (its owner is alive) and one without flaskbench's labels."""
    docker = client()
    image = next(
        name
        for name in ("flaskbench-base:bookworm", "python:3.12-slim")
        if docker.images.list(name=name)
    )
    owner = live_run_stand_in(900)
    started = f"{psutil.Process(owner.pid).create_time():.2f}"
    live = docker.containers.run(
        image,
        ["sleep", "900"],
        detach=True,
        network_mode="none",
        labels={
            "flaskbench.run": "live-run",
            "flaskbench.owner": str(owner.pid),
            "flaskbench.owner_started": started,
            "flaskbench.controller": controller_id(),
            **guard_labels(),
        },
    )
    foreign = docker.containers.run(
        image,
        ["sleep", "900"],
        detach=True,
        network_mode="none",
        labels={"other": "app", **guard_labels()},
    )
    try:
        yield [live, foreign]
    finally:
        for container in (live, foreign):
            container.remove(force=True)
        owner.kill()
        owner.wait()


def test_after_a_killed_run_the_next_run_and_resume_just_work(
    tmp_path: Path, bystanders: list[Any]
) -> None:
    require_docker()
    config = write_config(
        tmp_path, TARGETS, {"io": {"io_ms": 100}}, users=[1, 2], measure="3s", runner="docker"
    )
    killed = killed_mid_cell(tmp_path, config)
    # What a new user found: the target goes on serving and holds the port.
    assert port_in_use("127.0.0.1", target_port(config))
    assert containers_of(killed.name, running_only=True)

    doctor = flaskbench("doctor", "--config", str(config))
    assert doctor.returncode == 1
    lines = doctor.stdout.splitlines()
    (ports,) = [line for line in lines if line.startswith("FAIL ports")]
    assert f"held by a container of crashed run {killed.name} (" in ports
    assert "-> run `flaskbench clean`" in ports
    (leftovers,) = [line for line in lines if line.startswith("FAIL leftovers")]
    assert killed.name in leftovers

    # (a) The same config again, same ports: no manual step.
    again = flaskbench("run", "--config", str(config), timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"of crashed run {killed.name} (running)" in again.stderr
    assert containers_of(killed.name) == []
    for container in bystanders:
        container.reload()
        assert container.status == "running"
    assert {row["target"] for row in summary(run_dir_of(again))} == set(TARGETS)

    # (b) The killed run itself finishes, every cell exactly once.
    resumed = flaskbench("run", "--resume", str(killed), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    rows = sorted((r["target"], r["users"], r["repeat"]) for r in summary(killed))
    assert rows == sorted((t, u, "1") for t in TARGETS for u in ("1", "2"))
    statuses = {p.parent.name for p in (killed / "raw").glob("*/cell.json")}
    assert statuses == {"sync--io--r1", "gevent--io--r1"}
    assert flaskbench("verify", str(killed)).returncode == 0
    assert containers_of(killed.name) == []


def test_a_killed_runs_containers_stop_by_themselves_by_their_deadline(tmp_path: Path) -> None:
    require_docker()
    config = write_config(
        tmp_path,
        TARGETS,
        {"io": {"io_ms": 100}},
        users=[1, 2],
        measure="3s",
        runner="docker",
        ready_timeout="5s",
        request_timeout="2s",
    )
    killed = killed_mid_cell(tmp_path, config)
    started = min(docker_time(c.attrs["State"]["StartedAt"]) for c in containers_of(killed.name))
    # 5 s ready + 2 s request + 30 s Locust start-up + 2 x 4 s + 1 s staircase + margin.
    deadline = 5 + 2 + 30 + 9 + TEARDOWN_MARGIN_S
    assert containers_of(killed.name, running_only=True)
    wait_for(
        lambda: not containers_of(killed.name, running_only=True),
        deadline + DEADLINE_KILL_AFTER_S + 30 - (time.time() - started),
        "the killed run's containers to stop",
    )
    stopped_by = max(
        docker_time(c.attrs["State"]["FinishedAt"]) for c in containers_of(killed.name)
    )
    assert stopped_by - started <= deadline + DEADLINE_KILL_AFTER_S + 5
    assert not port_in_use("127.0.0.1", target_port(config))
    target = next(c for c in containers_of(killed.name) if "target" in c.name)
    # Stopped by its deadline (timeout exits 124), not by anyone else.
    assert target.attrs["State"]["ExitCode"] == 124

    cleaned = flaskbench("clean", "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    removed = json.loads(cleaned.stdout)
    assert {item["run_id"] for item in removed} == {killed.name}
    assert containers_of(killed.name) == []
    assert json.loads(flaskbench("clean", "--json").stdout) == []
    assert os.path.isdir(killed)
