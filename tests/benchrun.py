"""Running the real `flaskbench` command in tests: small configs, free ports, bounded time."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent.parent

ALL_TARGETS = {
    "dev": {"server": "werkzeug", "threaded": True},
    "dev-single": {"server": "werkzeug", "threaded": False},
    "dev-procs": {"server": "werkzeug", "threaded": False, "processes": 4},
    "sync": {"server": "gunicorn", "worker_class": "sync", "workers": 2},
    "gthread": {"server": "gunicorn", "worker_class": "gthread", "workers": 2, "threads": 4},
    "gevent": {"server": "gunicorn", "worker_class": "gevent", "workers": 1},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(
    directory: Path,
    targets: dict[str, dict[str, Any]],
    workloads: dict[str, dict[str, int]],
    *,
    users: list[int] | None = None,
    warmup: str = "1s",
    measure: str = "2s",
    runner: str = "local",
    locust_workers: int = 0,
    ready_timeout: str = "20s",
    request_timeout: str = "10s",
    port: int | None = None,
    master_port: int | None = None,
) -> Path:
    lines = [
        "[run]",
        f'runner = "{runner}"',
        f"port = {port or free_port()}",
        f"master_port = {master_port or free_port()}",
        f'results_dir = "{directory / "results"}"',
        f'ready_timeout = "{ready_timeout}"',
        "[load]",
        f"users = {users or [1, 4]}",
        f'warmup = "{warmup}"',
        f'measure = "{measure}"',
        f"locust_workers = {locust_workers}",
        f'request_timeout = "{request_timeout}"',
    ]
    for name, settings in targets.items():
        lines.append(f"[targets.{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    for name, settings in workloads.items():
        lines.append(f"[workloads.{name}]")
        lines += [f"{key} = {value}" for key, value in settings.items()]
    path = directory / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def flaskbench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flaskbench", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_flaskbench(*args: str, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "flaskbench", *args],
            cwd=PROJECT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )


def run_dir_of(result: subprocess.CompletedProcess[str]) -> Path:
    """`flaskbench run` prints the run directory as its last line."""
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{result.stderr}"
    path = Path(lines[-1])
    assert path.is_dir(), f"last line is not a directory: {lines[-1]!r}\n{result.stderr}"
    return path


def summary(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "summary.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def live_run_stand_in(seconds: int) -> subprocess.Popen[bytes]:
    """A process whose command line says flaskbench, as a live run's does: the owner of
    containers that must be left alone. Returned once it is that process, not the shell that
    is about to become it."""
    process = subprocess.Popen(["bash", "-c", f"exec -a flaskbench-live-run sleep {seconds}"])
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    wait_for(lambda: cmdline.read_bytes().startswith(b"flaskbench-live-run"), 10, "the exec")
    return process


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def children_of(pid: int) -> list[int]:
    """Every live descendant of pid (from /proc), to check nothing is left running."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains text (ours carry the config's unique path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def interrupt(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> int:
    process.send_signal(sig)
    return process.wait(timeout=60)


def require_docker() -> None:
    """Skip without a Docker daemon, unless CI demands Docker (then fail)."""
    from flaskbench.execute.engines import docker_unavailable

    problem = docker_unavailable()
    if problem is None:
        return
    if os.environ.get("FLASKBENCH_REQUIRE_DOCKER") == "1":
        pytest.fail(f"FLASKBENCH_REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(problem)


def docker_leftovers(run_id: str) -> list[str]:
    from flaskbench.execute.engines import docker_client, list_containers

    client = docker_client()
    return [c.name for c in list_containers(client, {"label": f"flaskbench.run={run_id}"})]
