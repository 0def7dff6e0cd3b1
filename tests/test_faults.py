"""Fault injection through the real command: every fault ends with a clear message, no lost
results, nothing left running, and a run that can be finished."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
from benchrun import (
    ALL_TARGETS,
    docker_leftovers,
    flaskbench,
    interrupt,
    processes_mentioning,
    require_docker,
    run_dir_of,
    start_flaskbench,
    summary,
    wait_for,
    write_config,
)
from fakerun import Step, make_run

from flaskbench.execute.engines import list_containers

pytestmark = pytest.mark.load

RUNNERS = [
    pytest.param("local", id="local"),
    pytest.param("docker", id="docker", marks=pytest.mark.docker),
]


def setup_runner(runner: str) -> None:
    if runner == "docker":
        require_docker()


# The labels of the first cell's target container (with its run's: other runs may be going).
SYNC_TARGET = ("flaskbench.cell=sync--io--r1", "com.docker.compose.service=target")


def the_run_dir(directory: Path) -> Path:
    wait_for(lambda: list((directory / "results").glob("*/raw")), 120, "the run directory")
    return next((directory / "results").glob("*/raw")).parent


def served(cell: Path, engine: Any = None) -> int:
    """Requests the target's gauge has seen served so far (`engine`: see gauge_so_far)."""
    rows = [row.split(",") for row in gauge_so_far(cell, engine).splitlines()[1:]]
    return max((int(row[4]) for row in rows if len(row) == 6 and row[1] == "0"), default=0)


def gauge_so_far(cell: Path, engine: Any = None) -> str:
    """The gauge as written so far: in the cell's directory with the local runner; inside the
    running target's container with the docker runner, which brings the raw files home only
    when the cell ends. `engine`: a client of the engine the target runs on, if not this
    machine's."""
    gauge = cell / "gauge.csv"
    if gauge.is_file():
        return gauge.read_text()
    from flaskbench.execute.engines import docker_client_if_running

    client = engine if engine is not None else docker_client_if_running()
    if client is None:
        return ""
    labels = [
        f"flaskbench.run={cell.parent.parent.name}",
        f"flaskbench.cell={cell.name}",
        "com.docker.compose.service=target",
    ]
    for container in list_containers(client, {"label": labels}):
        try:
            stream, _ = container.get_archive("/results/gauge.csv")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.extractfile("gauge.csv")
                return member.read().decode() if member else ""
        except Exception:  # not written yet, or the container just went: nothing so far
            return ""
    return ""


def traffic_started(cell: Path) -> bool:
    return served(cell) > 20


def nothing_left(directory: Path, port: int, run_id: str, runner: str) -> None:
    assert processes_mentioning(str(directory)) == []
    assert processes_mentioning(f"--master-port {port}") == []
    if runner == "docker":
        assert docker_leftovers(run_id) == []


def master_port(config: Path) -> int:
    line = next(x for x in config.read_text().splitlines() if x.startswith("master_port"))
    return int(line.split("=")[1])


def target_port(config: Path) -> int:
    line = next(x for x in config.read_text().splitlines() if x.startswith("port"))
    return int(line.split("=")[1])


def gunicorn_worker_pids(port: int) -> list[int]:
    """Host pids of the gunicorn workers listening on port (containers included)."""
    servers = {
        pid
        for pid in processes_mentioning(f"--bind 127.0.0.1:{port}")
        if b"flaskbench_target.launch" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    }
    workers = []
    for pid in servers:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent in servers:
            workers.append(pid)
    return workers


def own_namespace_pid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1])


@pytest.mark.parametrize("runner", RUNNERS)
def test_killing_a_gunicorn_worker_mid_step(tmp_path: Path, runner: str) -> None:
    setup_runner(runner)
    if runner == "docker" and os.geteuid() != 0:
        pytest.skip("killing a process inside a container from the host needs root")
    # Requests of 500 ms: a worker is inside one all but a few ms of the time, however slow
    # the machine, so the one killed holds a request.
    config = write_config(
        tmp_path,
        {"sync": ALL_TARGETS["sync"]},
        {"io": {"io_ms": 500}},
        users=[4],
        warmup="2s",
        measure="6s",
        runner=runner,
    )
    process = start_flaskbench("run", "--config", str(config), log=tmp_path / "out.log")
    cell = the_run_dir(tmp_path) / "raw" / "sync--io--r1"
    # 4 users at 4 req/s: 12 served is 3 s in, inside the measured window (2 s to 8 s).
    wait_for(lambda: served(cell) > 12, 120, "the measured window")
    victim = gunicorn_worker_pids(target_port(config))[0]
    # The pid gunicorn logs: inside a container that is the container's pid namespace.
    logged = own_namespace_pid(victim)
    os.kill(victim, signal.SIGKILL)
    assert process.wait(timeout=120) == 1
    run_dir = cell.parent.parent
    status = json.loads((cell / "cell.json").read_text())
    assert status["status"] == "degraded"
    assert f"gunicorn worker {logged} was killed (SIGKILL" in status["reason"]
    (row,) = summary(run_dir)
    # The killed worker held a request; the server never answered it (the HTTP client may have
    # retried it on a new connection, so it need not show as a client failure).
    assert int(row["lost_requests"]) >= 1
    assert "lost_requests" in row["flags"]
    assert "degraded" in row["flags"]
    assert row["valid"] == "false"
    assert "1 of 1 cell(s) failed or were degraded" in (tmp_path / "out.log").read_text()
    nothing_left(tmp_path, master_port(config), run_dir.name, runner)


@pytest.mark.parametrize("runner", RUNNERS)
def test_killing_the_target_fails_that_cell_only(tmp_path: Path, runner: str) -> None:
    setup_runner(runner)
    targets = {name: ALL_TARGETS[name] for name in ("sync", "gevent")}
    config = write_config(
        tmp_path, targets, {"io": {"io_ms": 100}}, users=[2], measure="4s", runner=runner
    )
    process = start_flaskbench("run", "--config", str(config), log=tmp_path / "out.log")
    run_dir = the_run_dir(tmp_path)
    cell = run_dir / "raw" / "sync--io--r1"
    wait_for(lambda: traffic_started(cell), 120, "traffic")
    if runner == "docker":
        from flaskbench.execute.engines import docker_client

        (container,) = list_containers(
            docker_client(),
            {"label": [f"flaskbench.run={run_dir.name}", *SYNC_TARGET]},
        )
        container.kill()
    else:
        (launcher,) = [
            pid
            for pid in processes_mentioning(str(cell))
            if "flaskbench_target.launch" in Path(f"/proc/{pid}/cmdline").read_text()
        ]
        os.kill(launcher, signal.SIGKILL)
    assert process.wait(timeout=180) == 1
    failed = json.loads((cell / "cell.json").read_text())
    assert failed["status"] == "failed"
    assert "signal 9" in failed["reason"]
    assert "into the staircase" in failed["reason"]
    assert (cell / "target.log").read_text()
    later = json.loads((run_dir / "raw" / "gevent--io--r1" / "cell.json").read_text())
    assert later["status"] == "ok"
    assert {row["target"] for row in summary(run_dir)} == {"gevent"}
    assert "sync--io--r1: failed" in (run_dir / "report.md").read_text()
    nothing_left(tmp_path, master_port(config), run_dir.name, runner)


@pytest.mark.docker
def test_a_target_container_removed_by_someone_else_fails_that_cell_only(tmp_path: Path) -> None:
    """`docker rm -f` on the target while the runner polls it: one line naming the container,
    no traceback, and the next cell runs."""
    setup_runner("docker")
    targets = {name: ALL_TARGETS[name] for name in ("sync", "gevent")}
    config = write_config(
        tmp_path, targets, {"io": {"io_ms": 100}}, users=[2], measure="4s", runner="docker"
    )
    process = start_flaskbench("run", "--config", str(config), log=tmp_path / "out.log")
    run_dir = the_run_dir(tmp_path)
    cell = run_dir / "raw" / "sync--io--r1"
    wait_for(lambda: traffic_started(cell), 300, "traffic")
    from flaskbench.execute.engines import docker_client

    (container,) = list_containers(
        docker_client(),
        {"label": [f"flaskbench.run={run_dir.name}", *SYNC_TARGET]},
    )
    container.remove(force=True)
    assert process.wait(timeout=300) == 1
    failed = json.loads((cell / "cell.json").read_text())
    assert failed["status"] == "failed"
    assert failed["reason"].startswith(
        f"target container {container.name} was removed while the cell ran (not by flaskbench) "
    )
    assert "into the staircase" in failed["reason"]
    assert not (cell / "error.txt").exists()
    assert "Traceback" not in (tmp_path / "out.log").read_text()
    later = json.loads((run_dir / "raw" / "gevent--io--r1" / "cell.json").read_text())
    assert later["status"] == "ok"
    assert {row["target"] for row in summary(run_dir)} == {"gevent"}
    nothing_left(tmp_path, master_port(config), run_dir.name, "docker")


@pytest.mark.parametrize("runner", RUNNERS)
def test_interrupt_then_resume_runs_every_cell_once(tmp_path: Path, runner: str) -> None:
    setup_runner(runner)
    targets = {name: ALL_TARGETS[name] for name in ("sync", "gevent", "dev-single")}
    config = write_config(tmp_path, targets, {"io": {"io_ms": 100}}, users=[1, 2], runner=runner)
    process = start_flaskbench("run", "--config", str(config), log=tmp_path / "out.log")
    run_dir = the_run_dir(tmp_path)
    # The trial's shuffled order, as meta.json records it: written once the run is set up (its
    # images checked, the app loaded), a moment after the run's directory appears.
    wait_for((run_dir / "meta.json").is_file, 120, "meta.json")
    first, second, _ = json.loads((run_dir / "meta.json").read_text())["trials"]["order"][0]
    wait_for((run_dir / "raw" / first / "cell.json").is_file, 120, "cell 1")
    wait_for(lambda: traffic_started(run_dir / "raw" / second), 120, "cell 2 traffic")
    assert interrupt(process) == 130
    output = (tmp_path / "out.log").read_text()
    assert f"flaskbench run --resume {run_dir}" in output
    assert "Traceback" not in output
    assert not (run_dir / "raw" / second / "cell.json").exists()
    assert {row["target"] for row in summary(run_dir)} == {first.split("--")[0]}
    nothing_left(tmp_path, master_port(config), run_dir.name, runner)

    resumed = flaskbench("run", "--resume", str(run_dir), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert run_dir_of(resumed) == run_dir
    rows = [(row["target"], row["users"], row["repeat"]) for row in summary(run_dir)]
    assert sorted(rows) == sorted((t, u, "1") for t in targets for u in ("1", "2"))
    meta = json.loads((run_dir / "meta.json").read_text())
    assert [s["interrupted"] for s in meta["sessions"]] == [True, False]
    assert flaskbench("verify", str(run_dir)).returncode == 0
    nothing_left(tmp_path, master_port(config), run_dir.name, runner)


def test_sigterm_stops_like_ctrl_c(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"sync": ALL_TARGETS["sync"]}, {"io": {"io_ms": 100}})
    process = start_flaskbench("run", "--config", str(config), log=tmp_path / "out.log")
    run_dir = the_run_dir(tmp_path)
    wait_for(lambda: traffic_started(run_dir / "raw" / "sync--io--r1"), 120, "traffic")
    assert interrupt(process, signal.SIGTERM) == 130
    nothing_left(tmp_path, master_port(config), run_dir.name, "local")


def test_a_corrupted_raw_csv_is_named_and_the_rest_reported(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {"sync--io--r1": [Step(1, 10, 100)], "gevent--io--r1": [Step(1, 10, 100)]},
    )
    gauge = run.cell_dir("sync--io--r1") / "gauge.csv"
    gauge.write_text(gauge.read_text()[:-40] + "garbage,,\n")
    result = flaskbench("report", str(run.path))
    assert result.returncode == 1
    assert f"flaskbench: left out of the report: {gauge}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert {row["target"] for row in summary(run.path)} == {"gevent"}
    assert "sync--io--r1: unreadable" in (run.path / "report.md").read_text()


def test_a_malformed_config_reports_every_bad_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        f'[run]\nresults_dir = "{tmp_path / "results"}"\n'
        '[load]\nusers = [0]\nmeasure = "forever"\n'
        '[targets.x]\nserver = "gunicorn"\nworker_class = "eventlet"\n'
        "[workloads.io]\nio_ms = 100\nspeed = 3\n"
    )
    result = flaskbench("run", "--config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(f"flaskbench: {config}:") for line in lines)
    assert sorted(line.split(": ")[1:3] for line in lines) == [
        [f"{config}:11", "workloads.io.speed"],
        [f"{config}:4", "load.users"],
        [f"{config}:5", "load.measure"],
        [f"{config}:8", "targets.x.worker_class"],
    ]
    assert not (tmp_path / "results").exists()


def test_a_busy_port_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"sync": ALL_TARGETS["sync"]}, {"io": {"io_ms": 100}})
    port = target_port(config)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = flaskbench("run", "--config", str(config), "--runner", "local")
    assert result.returncode == 2
    assert f"ports: {port} on 127.0.0.1 already in use -> stop what listens there" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_bad_run_directory_is_one_line(tmp_path: Path) -> None:
    result = flaskbench("report", str(tmp_path))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"flaskbench: {tmp_path}: no meta.json here; is this a flaskbench run directory?\n"
    )
