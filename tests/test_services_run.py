"""Services through the real command, on both runners: the catalog example with a real
PostgreSQL and Redis, its pool cap measured and named, a service that dies mid-cell failing that
cell only, and a run killed outright (SIGKILL) leaving no service running once the next run has
started, nor any of their data."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest
from benchrun import (
    ALL_TARGETS,
    PROJECT,
    flaskbench,
    free_port,
    require_docker,
    start_flaskbench,
    summary,
    wait_for,
    write_config,
)
from test_faults import the_run_dir, traffic_started

from flaskbench.execute.engines import docker_client, list_containers

pytestmark = pytest.mark.load

CATALOG = PROJECT / "examples" / "catalog"
MEMORY = Path("/dev/shm")
SERVICES = """
[services.db]
kind = "postgres"
[services.cache]
kind = "redis"
per_cell = false
"""


def catalog_config(directory: Path) -> Path:
    """The catalog app: gthread with 8 threads and a pool of 3, or of 8; its slow report."""
    path = directory / "bench.toml"
    path.write_text(
        f"""
[run]
runner = "local"
port = {free_port()}
master_port = {free_port()}
results_dir = "{directory / "results"}"
ready_timeout = "30s"
[load]
users = [1, 8]
warmup = "1s"
measure = "2s"
request_timeout = "10s"
{SERVICES}
[app]
path = "{CATALOG}"
wsgi = "catalog:create_app()"
requirements = "requirements.txt"
env = {{ DATABASE_URL = "{{db.url}}", REDIS_URL = "{{cache.url}}", DB_MAX_OVERFLOW = "0" }}
setup = "flask --app catalog init-db"
[sweep.pool]
server = "gunicorn"
worker_class = "gthread"
workers = 1
threads = 8
env.DB_POOL_SIZE = [3, 8]
[workloads.report]
path = "/products/7/sales?ms=50"
"""
    )
    return path


def services_of(cell: Path) -> dict[str, Any]:
    services: dict[str, Any] = json.loads((cell / "services.json").read_text())["services"]
    return services


def pid_of(where: str) -> int:
    assert where.startswith("pid "), where
    return int(where.removeprefix("pid "))


def gone(pids: list[int]) -> bool:
    return not [pid for pid in pids if psutil.pid_exists(pid) and not _zombie(pid)]


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def killed_once_serving(directory: Path, config: Path, cell: str) -> tuple[Path, int]:
    """A run SIGKILLed once its first cell serves; its run directory and pid."""
    process = start_flaskbench("run", "--config", str(config), log=directory / "killed.log")
    run_dir = the_run_dir(directory)
    wait_for(lambda: traffic_started(run_dir / "raw" / cell), 300, "traffic")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return run_dir, process.pid


def test_local_services_the_pool_cap_a_dying_service_and_a_killed_run(tmp_path: Path) -> None:
    config = catalog_config(tmp_path)
    killed, killed_pid = killed_once_serving(tmp_path, config, "pool-db_pool_size3--report--r1")
    first = services_of(killed / "raw" / "pool-db_pool_size3--report--r1")
    servers = [pid_of(first[name]["where"]) for name in ("db", "cache")]
    # The kernel ended the services with flaskbench; their data is still in memory.
    wait_for(lambda: gone(servers), 15, "the killed run's services to end")
    stale = list(MEMORY.glob(f"flaskbench-{killed_pid}-services-*"))
    assert stale

    # The next run: its first cell is capped by its pool; the second cell's database dies.
    again = start_flaskbench("run", "--config", str(config), log=tmp_path / "again.log")
    wait_for(lambda: len(list((tmp_path / "results").glob("*/raw"))) == 2, 60, "the new run")
    (run,) = [p.parent for p in (tmp_path / "results").glob("*/raw") if p.parent != killed]
    assert not [p for p in stale if p.exists()], "the killed run's data outlived the next start"
    second = run / "raw" / "pool-db_pool_size8--report--r1"
    wait_for(lambda: traffic_started(second), 300, "traffic in the second cell")
    dying = pid_of(services_of(second)["db"]["where"])
    os.kill(dying, signal.SIGKILL)
    assert again.wait(timeout=300) == 1, (tmp_path / "again.log").read_text()[-2000:]

    cells = {p.parent.name: json.loads(p.read_text()) for p in (run / "raw").glob("*/cell.json")}
    capped, died = cells["pool-db_pool_size3--report--r1"], cells[second.name]
    assert capped["status"] == "ok", capped
    assert died["status"] == "failed"
    assert died["reason"].startswith(
        "service db (postgres) was killed by signal 9 while the cell ran: "
    ), died
    assert died["reason"].endswith("; see service-db.log")
    rows = {(r["target"], r["users"]): r for r in summary(run)}
    at_8 = rows[("pool-db_pool_size3", "8")]
    assert (at_8["peak_inflight_process"], at_8["db_busy_peak"]) == ("8", "3")
    assert float(at_8["services_pss_mb"]) > 0
    report = (run / "report.md").read_text()
    assert (
        "8 requests in flight per process, at most 3 of them holding a database connection: "
        "the pool caps it" in report
    )
    # One cache for the run, a fresh database per cell.
    before, after = services_of(run / "raw" / capped["cell_id"]), services_of(second)
    assert before["cache"]["where"] == after["cache"]["where"]
    assert before["db"]["where"] != after["db"]["where"]
    # Nothing of either run is left: no server, no data in memory.
    servers = [pid_of(s["where"]) for s in (*before.values(), *after.values())]
    assert gone(servers)
    assert not list(MEMORY.glob(f"flaskbench-{again.pid}-*"))
    assert not list(MEMORY.glob(f"flaskbench-{killed_pid}-*"))


def containers(run_id: str, *labels: str) -> list[Any]:
    return list_containers(docker_client(), {"label": [f"flaskbench.run={run_id}", *labels]})


@pytest.mark.docker
def test_docker_services_a_dying_one_and_a_killed_runs(tmp_path: Path) -> None:
    """With the built-in app (its image is every docker test's): what happens to services
    does not depend on the app, and the catalog's pool cap is measured locally above."""
    require_docker()
    config = write_config(
        tmp_path,
        {"sync": ALL_TARGETS["sync"]},
        {"io": {"io_ms": 100}},
        users=[1, 2],
        runner="docker",
    )
    config.write_text(config.read_text() + SERVICES)

    # A run whose database is killed mid-cell: that cell fails, naming it; nothing is left.
    dying = start_flaskbench("run", "--config", str(config), log=tmp_path / "dying.log")
    run = the_run_dir(tmp_path)
    cell = run / "raw" / "sync--io--r1"
    wait_for(lambda: traffic_started(cell), 300, "traffic")
    services = [c for c in containers(run.name, "flaskbench.service") if "sampler" not in c.name]
    # Labelled as the run's containers, each under a deadline of its own.
    assert sorted(c.labels["flaskbench.service"] for c in services) == ["cache", "db"]
    for container in services:
        assert container.attrs["Config"]["Cmd"][0] == "timeout"
        assert container.labels["flaskbench.owner"] == str(dying.pid)
    (database,) = [c for c in services if c.labels["flaskbench.service"] == "db"]
    database.kill()
    assert dying.wait(timeout=300) == 1
    status = json.loads((cell / "cell.json").read_text())
    assert status["reason"].startswith(
        "service db (postgres) exited with code 137 (signal 9) while the cell ran: "
    ), status
    assert "database system is ready to accept connections" in (cell / "service-db.log").read_text()
    assert services_of(cell)["db"]["where"] == f"container {database.name}"
    assert containers(run.name) == []

    # A run killed outright: its services outlive it until the next run (or a clean) starts.
    killed = start_flaskbench("run", "--config", str(config), log=tmp_path / "killed.log")
    wait_for(lambda: len(list((tmp_path / "results").glob("*/raw"))) == 2, 60, "the new run")
    (second,) = [p.parent for p in (tmp_path / "results").glob("*/raw") if p.parent != run]
    wait_for(lambda: containers(second.name, "flaskbench.service=db"), 300, "its database")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert containers(second.name, "flaskbench.service")
    cleaned = flaskbench("clean", "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    # Gone, by this clean (or by any run that started on this machine meanwhile: the same).
    assert containers(second.name) == []
