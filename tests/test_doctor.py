"""`flaskbench doctor`, and cleaning up after an earlier crashed run, and only that."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from benchrun import ALL_TARGETS, flaskbench, require_docker, run_dir_of, write_config
from leftovers_guard import guard_labels

from flaskbench.execute.engines import list_containers


def test_doctor_lists_every_check_with_a_fix_for_failures(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"sync": ALL_TARGETS["sync"]}, {"io": {"io_ms": 100}})
    port = int(
        next(x for x in config.read_text().splitlines() if x.startswith("port")).split("=")[1]
    )
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = flaskbench("doctor", "--config", str(config))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    names = [line[5:].split(":")[0] for line in lines]
    assert names == [
        "CPU split",
        "taskset",
        "services",
        "ports",
        "disk",
        "proxy",
        "docker daemon",
        "compose v2",
        "base image",
        "leftovers",
    ]
    (ports,) = [line for line in lines if line.startswith("FAIL ports")]
    assert f"{port} on 127.0.0.1 already in use -> stop what listens there" in ports


def test_doctor_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"sync": ALL_TARGETS["sync"]}, {"io": {"io_ms": 100}})
    result = flaskbench("doctor", "--config", str(config), "--json")
    checks = json.loads(result.stdout)
    assert {"name", "ok", "detail", "fix"} <= set(checks[0])


@pytest.mark.docker
@pytest.mark.load
def test_a_run_removes_leftovers_of_a_crashed_run_and_nothing_else(tmp_path: Path) -> None:
    require_docker()
    from flaskbench.execute.engines import docker_client

    client = docker_client()
    image = next(
        name
        for name in ("flaskbench-base:bookworm", "python:3.12-slim")
        if client.images.list(name=name)
    )
    # An owner pid that cannot exist: the orchestrator that started it is gone.
    orphan = client.containers.run(
        image,
        ["sleep", "300"],
        detach=True,
        network_mode="none",
        labels={"flaskbench.owner": "4194305", "flaskbench.run": "crashed", **guard_labels()},
    )
    bystander = client.containers.run(
        image,
        ["sleep", "300"],
        detach=True,
        network_mode="none",
        labels={"other": "app", **guard_labels()},
    )
    try:
        config = write_config(
            tmp_path,
            {"sync": ALL_TARGETS["sync"]},
            {"io": {"io_ms": 100}},
            users=[1],
            measure="1s",
            runner="docker",
        )
        result = flaskbench("run", "--config", str(config), timeout=600)
        assert result.returncode == 0, result.stderr
        assert run_dir_of(result).is_dir()
        assert f"removed container {orphan.name} of crashed run crashed (running)" in result.stderr
        assert not list_containers(client, {"id": orphan.id})
        bystander.reload()
        assert bystander.status == "running"
    finally:
        bystander.remove(force=True)
        if list_containers(client, {"id": orphan.id}):
            orphan.remove(force=True)
