"""Beyond one machine, on real separate engines: two hosts emulated with network namespaces, a
Docker daemon each (tests/netns.py). The target runs on host a, the Locust master and two
workers on host b; this machine reaches neither address, only the engines.

Only the namespaces' own addresses (10.231.0.0/24) and their loopback receive traffic.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from benchrun import (
    ALL_TARGETS,
    flaskbench,
    interrupt,
    live_run_stand_in,
    run_dir_of,
    start_flaskbench,
    summary,
    wait_for,
)
from leftovers_guard import Guard, guard_labels
from netns import EmulatedHost, Relay, emulated_hosts, require_hosts
from test_faults import served, the_run_dir

from flaskbench.execute.engines import list_containers
from flaskbench.execute.leftovers import controller_id
from flaskbench.execute.runners.docker.docker_runner import CLOCK_SKEW_ENV
from flaskbench.measure.analyze import SUMMARY_COLUMNS
from flaskbench.results.contract import HOSTS_FORMAT

pytestmark = [pytest.mark.docker, pytest.mark.load, pytest.mark.hosts]

PORT, MASTER_PORT = 18380, 15380
SKEW_S = 3.0


@pytest.fixture(scope="module")
def hosts(guard: Guard) -> Iterator[list[EmulatedHost]]:
    require_hosts()
    with emulated_hosts() as made:
        # Each test's teardown removes whatever it left on them, so nothing cascades.
        guard.engines.update({host.engine: host.client() for host in made})
        try:
            yield made
        finally:
            for host in made:
                guard.engines.pop(host.engine, None)


def write_hosts_config(
    directory: Path,
    target: str,
    load: str,
    address: str,
    targets: tuple[str, ...] = ("sync",),
    users: tuple[int, ...] = (1, 4),
) -> Path:
    lines = [
        "[run]",
        f"port = {PORT}",
        f"master_port = {MASTER_PORT}",
        f'results_dir = "{directory / "results"}"',
        'ready_timeout = "20s"',
        "[hosts]",
        f'target = "{target}"',
        f'load = ["{load}"]',
        f'target_address = "{address}"',
        "workers_per_host = 2",
        "[load]",
        f"users = {list(users)}",
        'warmup = "1s"',
        'measure = "2s"',
        'request_timeout = "10s"',
        "[workloads.io]",
        "io_ms = 100",
    ]
    for name in targets:
        lines.append(f"[targets.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in ALL_TARGETS[name].items()]
    path = directory / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def containers(host: EmulatedHost, *labels: str) -> list[Any]:
    return list_containers(host.client(), {"label": list(labels)})


def everything_on(*hosts: EmulatedHost) -> list[str]:
    return [c.name for host in hosts for c in list_containers(host.client())]


def target_answered(engine: Any, run_dir: Path, cell: str = "sync--io--r1") -> bool:
    """The cell's target on `engine` (a client) has served a request, Locust's readiness check:
    the cell is under way, its containers up and watched."""
    return served(run_dir / "raw" / cell, engine) > 0


def trial_order(run_dir: Path) -> list[str]:
    """The run's cells in the order they run (the trial's shuffled order, in meta.json)."""
    return list(json.loads((run_dir / "meta.json").read_text())["trials"]["order"][0])


def test_doctor_checks_every_host_and_a_missing_engine_stops_the_run_first(
    tmp_path: Path, hosts: list[EmulatedHost]
) -> None:
    a, b = hosts
    config = write_hosts_config(tmp_path, a.engine, b.engine, a.address)
    doctor = flaskbench("doctor", "--config", str(config))
    assert doctor.returncode == 0, doctor.stdout
    lines = doctor.stdout.splitlines()
    assert f"ok   host {a.engine}: target: Docker Engine" in doctor.stdout
    assert f"ok   host {b.engine}: master, workers: Docker Engine" in doctor.stdout
    clocks = [line for line in lines if line.startswith("ok   clock:")]
    assert len(clocks) == 2
    assert "CPU placement: target on CPU 0,1 of" in doctor.stdout

    missing = write_hosts_config(
        tmp_path, a.engine, "unix:///run/flaskbench-test/gone.sock", a.address
    )
    doctor = flaskbench("doctor", "--config", str(missing))
    assert doctor.returncode == 1
    (gone,) = [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
    assert gone.startswith(
        "FAIL host unix:///run/flaskbench-test/gone.sock: master, workers: does not answer: "
    )
    assert "-> make `docker -H unix:///run/flaskbench-test/gone.sock info` work" in gone
    run = flaskbench("run", "--config", str(missing), "--allow-remote-target")
    assert run.returncode == 2
    assert "FAIL host unix:///run/flaskbench-test/gone.sock" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "results").exists()
    assert everything_on(a, b) == []


def test_target_on_one_host_and_two_workers_on_another(
    tmp_path: Path, hosts: list[EmulatedHost], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = hosts
    config = write_hosts_config(tmp_path, a.engine, b.engine, a.address)
    # Host b's Locust workers run their clocks 3 s ahead of the master's.
    monkeypatch.setenv(CLOCK_SKEW_ENV, str(SKEW_S))
    refused = flaskbench("run", "--config", str(config))
    assert refused.returncode == 2
    assert "--allow-remote-target" in refused.stderr
    result = flaskbench("run", "--config", str(config), "--allow-remote-target", timeout=900)
    assert result.returncode == 0, result.stderr
    assert f"load goes to {a.address}:{PORT} (--allow-remote-target)" in result.stderr
    run = run_dir_of(result)

    # The same summary as a single-host run; a sync worker never holds more than 1 request.
    rows = {int(r["users"]): r for r in summary(run)}
    assert set(rows) == {1, 4}
    assert list(summary(run)[0]) == list(SUMMARY_COLUMNS)
    assert all(r["peak_inflight_process"] == "1" for r in rows.values())
    assert rows[4]["peak_inflight_server"] == "2"
    # 2 slots of 100 ms: at most 20/s, and about twice what 1 user gets on these hosts.
    assert float(rows[1]["rps"]) <= 10.1
    assert float(rows[1]["rps"]) * 1.5 < float(rows[4]["rps"]) <= 20.2

    # Every host's raw files came home through the engines.
    cell = run / "raw" / "sync--io--r1"
    from_a = {"gauge.csv", "target.log"}
    from_b = {"loadgen.json", "locust_stats.csv", "locust-master.log"}
    assert from_a | from_b | {"resources.csv", "hosts.json"} <= {p.name for p in cell.iterdir()}
    # The swarm's own output, over the run: its master on b, a worker on each host.
    assert {p.name for p in (run / "swarm").iterdir()} == {
        "master-1.log",
        "worker-1-1.log",
        "worker-1-2.log",
    }
    with (cell / "resources.csv").open() as handle:
        sampled = {(r["host"], r["name"]) for r in csv.DictReader(handle)}
    assert sampled == {
        (a.engine, "target"),
        (b.engine, "locust-master"),
        (b.engine, "locust-worker-1"),
        (b.engine, "locust-worker-2"),
    }

    hosts_json = json.loads((cell / "hosts.json").read_text())
    assert hosts_json["format"] == HOSTS_FORMAT
    assert (hosts_json["target"], hosts_json["master"]) == (a.engine, b.engine)
    # The windows are the master's: each worker measured its 3 s and stamped accordingly.
    loadgen = json.loads((cell / "loadgen.json").read_text())
    assert loadgen["workers"] == 2
    offsets = [clock["applied_s"] for clock in loadgen["clocks"].values()]
    assert offsets == [pytest.approx(-SKEW_S, abs=0.05)] * 2
    first, last = loadgen["steps"][0]["start"], loadgen["steps"][-1]["measure_end"]
    assert all(first <= bucket["t"] <= last + 1 for bucket in loadgen["buckets"])

    meta = json.loads((run / "meta.json").read_text())
    assert [h["roles"] for h in meta["hosts"]] == [["target"], ["master", "workers"]]
    for host in meta["hosts"]:
        assert all(host[key] for key in ("engine_version", "cpu_model", "kernel", "cpus"))
    assert meta["allow_remote_target"] is True
    assert meta["load_goes_to"] == f"{a.address}:{PORT}"
    images = meta["runner"]["details"]["images"]
    assert images["mode"] == "copy"
    assert images["same_image_ids"] is True
    assert set(images["hosts"]) == {a.engine, b.engine}

    report = (run / "report.md").read_text()
    assert "## Hosts" in report
    assert f"| sync--io--r1 | 4 | {b.engine} | loadgen |" in report
    assert "copied to every host with Docker's save and load" in report
    assert flaskbench("verify", str(run)).returncode == 0
    assert everything_on(a, b) == []
    assert not [v.name for v in a.client().volumes.list() + b.client().volumes.list()]


def test_a_host_lost_mid_cell_fails_only_that_cell_by_name(
    tmp_path: Path, hosts: list[EmulatedHost]
) -> None:
    a, b = hosts
    with Relay(b.socket, tmp_path / "b.sock") as relay:
        config = write_hosts_config(
            tmp_path, a.engine, relay.engine, a.address, ("sync", "gevent"), users=(1,)
        )
        process = start_flaskbench(
            "run", "--config", str(config), "--allow-remote-target", log=tmp_path / "out.log"
        )

        def cell_running() -> bool:
            master = containers(b, "flaskbench.cell=swarm-1", "com.docker.compose.service=master")
            target = containers(a, "com.docker.compose.service=target")
            return any(c.status == "running" for c in master) and bool(target)

        wait_for(cell_running, 600, "the Locust master on host b and a target on host a")
        run_dir = the_run_dir(tmp_path)
        # Every container carries the run's labels, on both hosts.
        for host, count in ((a, 1), (b, 3)):
            labelled = containers(host, f"flaskbench.run={run_dir.name}")
            assert len(labelled) == count
            for container in labelled:
                assert {
                    "flaskbench.run",
                    "flaskbench.cell",
                    "flaskbench.owner",
                    "flaskbench.owner_started",
                    "flaskbench.controller",
                    "flaskbench.ports",
                } <= set(container.labels)
        # The first cell loses host b; the second runs once it is back (whichever the shuffled
        # order put first).
        first, second = trial_order(run_dir)
        engine_a = a.client()
        wait_for(
            lambda: target_answered(engine_a, run_dir, first), 120, "the target's first request"
        )
        relay.cut()
        wait_for((run_dir / "raw" / first / "cell.json").is_file, 120, "cell 1 to fail")
        relay.start()
        assert process.wait(timeout=300) == 1

    lost = json.loads((run_dir / "raw" / first / "cell.json").read_text())
    assert lost["status"] == "failed"
    assert lost["reason"].startswith(f"host {relay.engine} (master, workers) stopped answering: ")
    later = json.loads((run_dir / "raw" / second / "cell.json").read_text())
    assert later["status"] == "ok"
    assert {row["target"] for row in summary(run_dir)} == {second.split("--")[0]}
    # What the lost host kept was taken down once it answered again.
    assert everything_on(a, b) == []


def test_a_target_container_removed_on_its_host_fails_that_cell_only(
    tmp_path: Path, hosts: list[EmulatedHost]
) -> None:
    a, b = hosts
    config = write_hosts_config(
        tmp_path, a.engine, b.engine, a.address, ("sync", "gevent"), users=(2,)
    )
    process = start_flaskbench(
        "run", "--config", str(config), "--allow-remote-target", log=tmp_path / "out.log"
    )

    def target_serving() -> list[Any]:
        master = containers(b, "flaskbench.cell=swarm-1", "com.docker.compose.service=master")
        target = containers(a, "flaskbench.cell=sync--io--r1", "com.docker.compose.service=target")
        return target if any(c.status == "running" for c in master) else []

    wait_for(target_serving, 600, "the first cell's target on host a and its master on host b")
    run_dir = the_run_dir(tmp_path)
    engine_a = a.client()
    wait_for(lambda: target_answered(engine_a, run_dir), 120, "the target's first request")
    (container,) = target_serving()
    container.remove(force=True)
    assert process.wait(timeout=300) == 1
    cell = run_dir / "raw" / "sync--io--r1"
    failed = json.loads((cell / "cell.json").read_text())
    assert failed["status"] == "failed"
    assert failed["reason"].startswith(
        f"target container {container.name} was removed while the cell ran (not by flaskbench)"
    )
    assert not (cell / "error.txt").exists()
    assert "Traceback" not in (tmp_path / "out.log").read_text()
    later = json.loads((run_dir / "raw" / "gevent--io--r1" / "cell.json").read_text())
    assert later["status"] == "ok"
    assert everything_on(a, b) == []


def test_ctrl_c_then_resume_across_hosts(tmp_path: Path, hosts: list[EmulatedHost]) -> None:
    a, b = hosts
    config = write_hosts_config(tmp_path, a.engine, b.engine, a.address, users=(1,))
    process = start_flaskbench(
        "run", "--config", str(config), "--allow-remote-target", log=tmp_path / "out.log"
    )
    wait_for(
        lambda: any(
            c.status == "running" for c in containers(b, "com.docker.compose.service=master")
        ),
        600,
        "the Locust master on host b",
    )
    run_dir = the_run_dir(tmp_path)
    assert interrupt(process) == 130
    assert f"flaskbench run --resume {run_dir}" in (tmp_path / "out.log").read_text()
    assert everything_on(a, b) == []
    resumed = flaskbench("run", "--resume", str(run_dir), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert [row["users"] for row in summary(run_dir)] == ["1"]
    assert everything_on(a, b) == []


def empty_image(host: EmulatedHost) -> str:
    """An image with nothing in it: containers made from it are never started."""
    image, _ = host.client().images.build(
        fileobj=io.BytesIO(b'FROM scratch\nCMD ["/none"]\n'), tag="fbt-empty:1", rm=True
    )
    return str(image.id)


def test_clean_removes_crashed_runs_containers_on_every_host_and_nothing_else(
    tmp_path: Path, hosts: list[EmulatedHost]
) -> None:
    a, b = hosts
    here = controller_id()
    live = live_run_stand_in(120)
    started = f"{psutil.Process(live.pid).create_time():.2f}"
    dead = {"flaskbench.owner": "4194305", "flaskbench.controller": here}
    made: dict[str, tuple[EmulatedHost, dict[str, str]]] = {
        "crashed-a": (a, {**dead, "flaskbench.run": "crashed"}),
        "crashed-b": (b, {**dead, "flaskbench.run": "crashed"}),
        "live-b": (
            b,
            {
                "flaskbench.run": "live",
                "flaskbench.owner": str(live.pid),
                "flaskbench.owner_started": started,
                "flaskbench.controller": here,
            },
        ),
        "elsewhere-b": (b, {**dead, "flaskbench.controller": "other-machine/1234"}),
        "foreign-a": (a, {"other": "app"}),
    }
    try:
        images = {host.name: empty_image(host) for host in hosts}
        for name, (host, labels) in made.items():
            host.client().containers.create(
                images[host.name], name=name, labels={**labels, **guard_labels()}
            )
        config = write_hosts_config(tmp_path, a.engine, b.engine, a.address)
        cleaned = flaskbench("clean", "--config", str(config), "--json")
        assert cleaned.returncode == 0, cleaned.stderr
        removed = {
            (item["container"], item["host"])
            for item in json.loads(cleaned.stdout)
            if item["host"] in (a.engine, b.engine)
        }
        assert removed == {("crashed-a", a.engine), ("crashed-b", b.engine)}
        assert sorted(everything_on(a)) == ["foreign-a"]
        assert sorted(everything_on(b)) == ["elsewhere-b", "live-b"]
    finally:
        live.kill()
        live.wait()
        for name, (host, _) in made.items():
            for container in list_containers(host.client(), {"name": name}):
                container.remove(force=True)
