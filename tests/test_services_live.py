"""The services themselves, on both runners' backends, against real servers: the sampler counts
what the app holds (and not itself), a service that cannot start says why with its log, and a
stopped one leaves nothing behind."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from benchrun import live_run_stand_in, require_docker

from flaskbench.config.services import ServiceSpec
from flaskbench.execute.services.docker_services import DockerServices
from flaskbench.execute.services.lifecycle import Backend, start_services
from flaskbench.execute.services.local_services import LocalServices, free_port
from flaskbench.execute.services.service import ServiceFailed

pytestmark = pytest.mark.load

POSTGRES = ServiceSpec("db", "postgres", None)
REDIS = ServiceSpec("cache", "redis", None)
BAD = ServiceSpec("db", "postgres", None, settings={"shared_buffers": "plenty"})


def docker_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: subprocess.Popen[bytes]
) -> Any:
    from flaskbench.config.hosts import DEFAULT_ENGINE
    from flaskbench.execute.engines import connect
    from flaskbench.execute.images import resolve_base
    from flaskbench.execute.leftovers import Owner, controller_id
    from flaskbench.execute.services import docker_services
    from flaskbench.execute.services.services_image import ensure_services_image

    require_docker()
    # Its containers' owner: a live process that says flaskbench, as a run's does (any run on
    # this machine removes containers whose owner is not one, taking them for a crashed run's).
    started = f"{psutil.Process(owner.pid).create_time():.2f}"
    owned = Owner(owner.pid, started, controller_id())
    monkeypatch.setattr(docker_services, "this_process", lambda: owned)
    engine = connect(DEFAULT_ENGINE)
    base = resolve_base(engine.client, "python:3.12-slim", print)
    tag = ensure_services_image(
        engine.client, base, (POSTGRES, REDIS), print, tmp_path / "build.log"
    )
    # A run id under this test's directory: the tests' guard takes its containers as the test's.
    (tmp_path / "results" / tmp_path.name).mkdir(parents=True)
    return DockerServices(engine, lambda _: tag, tmp_path.name, (0,), free_port, "secret")


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    if request.param == "local":
        made: Backend = LocalServices((0,))
        made.prepare((POSTGRES, REDIS))
        yield made
        made.close()
        return
    owner = live_run_stand_in(600)
    try:
        made = docker_backend(tmp_path, monkeypatch, owner)
        made.prepare((POSTGRES, REDIS))
        yield made
        made.close()
    finally:
        owner.kill()
        owner.wait()


def samples(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_the_sampler_counts_the_apps_connections_not_its_own(
    backend: Backend, tmp_path: Path
) -> None:
    db = backend.launch(POSTGRES, "test", 120)
    cache = backend.launch(REDIS, "test", 120)
    try:
        assert db.wait_ready(60) > 0
        assert cache.wait_ready(60) > 0
        url = f"postgresql://bench:{db.address.password}@127.0.0.1:{db.address.port}/bench"
        sampling = [backend.sampler(db, tmp_path, 120), backend.sampler(cache, tmp_path, 120)]
        # One session running a statement, one inside a transaction, one idle; two clients
        # of the cache.
        running = psycopg.connect(url, autocommit=True)
        waiting = psycopg.connect(url)
        idle = psycopg.connect(url, autocommit=True)
        waiting.execute("SELECT 1")
        query = threading.Thread(target=running.execute, args=("SELECT pg_sleep(2.5)",))
        query.start()
        clients = [socket.create_connection(("127.0.0.1", cache.address.port)) for _ in range(2)]
        time.sleep(2.2)
        said = [sampler.stop() for sampler in sampling]
        query.join()
        for connection in (running, waiting, idle):
            connection.close()
        for client in clients:
            client.close()
    finally:
        db.stop()
        cache.stop()
    assert "Error" not in " ".join(said)
    rows = samples(tmp_path / "service-db.csv")
    counted = {(r["open"], r["busy"], r["active"]) for r in rows if r["open"]}
    assert ("3", "2", "1") in counted, counted
    assert max(int(r["open"]) for r in rows if r["open"]) == 3
    memory = [float(r["pss_mb"]) for r in rows if r["pss_mb"]]
    # Its processes' memory was read (a cluster's are tens of MB), and CPU once a second.
    assert memory
    assert min(memory) > 5
    assert [r for r in rows if r["cpu_pct"]]
    cached = samples(tmp_path / "service-cache.csv")
    assert max(int(r["open"]) for r in cached if r["open"]) == 2
    assert {r["busy"] for r in cached} == {""}
    assert "database system is shut down" in db.log()


def test_a_service_that_cannot_start_says_why_and_leaves_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    before = {p.pid for p in psutil.process_iter()}
    started = time.monotonic()
    with pytest.raises(ServiceFailed) as failed:
        start_services(backend, [REDIS, BAD], "test", 60, 30, tmp_path)
    message = str(failed.value)
    assert message.startswith("service db (postgres) exited with code ")
    assert 'invalid value for parameter "shared_buffers": "plenty"' in message
    assert "invalid value" in (tmp_path / "service-db.log").read_text()
    # It failed as soon as it had exited, not at the ready timeout.
    assert time.monotonic() - started < 25
    # Neither it nor the service that did start is left: no process, no container, no data.
    new = [p for p in psutil.process_iter(["name"]) if p.pid not in before]
    servers = [p for p in new if p.info["name"] in ("postgres", "redis-server")]
    assert psutil.wait_procs(servers, timeout=10)[1] == []
    assert not list(Path("/dev/shm").glob(f"flaskbench-{os.getpid()}-services-*/db-*"))
    assert not list(Path("/dev/shm").glob(f"flaskbench-{os.getpid()}-services-*/cache-*"))
    if isinstance(backend, DockerServices):
        from flaskbench.execute.engines import docker_client, list_containers

        labels = f"flaskbench.run={tmp_path.name}"
        assert list_containers(docker_client(), {"label": labels}) == []
