"""The local runner: the cell's command lines as plain processes on this host, pinned with taskset.

Every process gets its own session, so stopping it stops everything it forked, even what a
killed launcher orphaned, and the kernel kills it when the orchestrator dies (PR_SET_PDEATHSIG),
so a crash leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from flaskbench import PROJECT_ROOT
from flaskbench.config.app import HARNESS, App, snapshot
from flaskbench.config.load import Config
from flaskbench.config.units import format_cpus
from flaskbench.execute.appenv import AppEnvError, environment_python
from flaskbench.execute.commands import (
    PROXY_CONF_ENV,
    STOP_GRACE_S,
    Paths,
    check_command,
    harness_env,
    master_command,
    proxy_command,
    proxy_config,
    target_command,
    worker_command,
)
from flaskbench.execute.provenance import package_versions
from flaskbench.execute.runners.runner import (
    CellContext,
    CellFailed,
    ResourceSampler,
    Runner,
    Service,
    describe_exit,
    is_server_process,
)
from flaskbench.execute.services.lifecycle import Backend
from flaskbench.execute.swarm import SwarmHandle, SwarmKey
from flaskbench.proxies.proxy_registry import proxy_of
from flaskbench.results.contract import (
    PROXY_CONF,
    PROXY_LOG,
    PROXY_RESOURCE,
    RAW_DIR,
    RESOURCES_CSV,
    SWARM_DIR,
    TARGET_LOG,
    RunnerDetails,
)
from flaskbench.results.rundir import CellStatus, atomic_write_text

_PR_SET_PDEATHSIG = 1
# Only what the processes need: no server's or Locust's settings variables from the caller's
# shell (WEB_CONCURRENCY, LOCUST_*...) can change a result.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")


def die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: os.environ[key] for key in _PASSED_ENV if key in os.environ}
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    return env | (extra or {})


class LocalProcess:
    """One process we started (and its process group)."""

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        log: Path,
        cpus: tuple[int, ...],
        grace_s: float,
        env: dict[str, str] | None = None,
        piped: bool = False,
    ) -> None:
        """`piped`: its standard output is read through `popen.stdout` (only its errors go to
        `log`)."""
        self.argv = ["taskset", "-c", format_cpus(cpus), *argv]
        self._grace_s = grace_s
        with log.open("ab") as handle:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=clean_env(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if piped else handle,
                stderr=handle if piped else subprocess.STDOUT,
                start_new_session=True,
                # Only a prctl() call runs between fork and exec, which is safe with threads.
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def returncode(self) -> int | None:
        return self.popen.poll()

    def exit_description(self) -> str:
        return describe_exit(self.popen.poll())

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=self._grace_s)
        # The leader may be gone while something it forked lingers, even in a group of its own:
        # a server's workers can outlive a killed launcher and master (for up to half their
        # timeout, with a forking server's master gone), holding the port the next cell needs.
        kill_session(self.popen.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def kill_session(session: int) -> None:
    """SIGKILL every process left in a session (they keep its id when orphaned)."""
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(process.pid) == session:
                process.kill()


class LocalSwarm:
    """A Locust master and its workers as processes here; its orders are files in a private
    inbox, and it writes a cell's files straight into the cell's directory."""

    def __init__(self, run_dir: Path, inbox: Path) -> None:
        self._run_dir = run_dir
        self.inbox = inbox
        self.master: LocalProcess | None = None
        self.workers: list[LocalProcess] = []

    def put_order(self, name: str, text: str) -> None:
        partial = self.inbox / f".{name}"
        partial.write_text(text)
        partial.rename(self.inbox / name)

    def lines(self) -> Iterator[str]:
        assert self.master is not None
        assert self.master.popen.stdout is not None
        for line in self.master.popen.stdout:
            yield line.decode(errors="replace")

    def out_dir(self, cell_id: str) -> str:
        return str((self._run_dir / RAW_DIR / cell_id).resolve())

    def bring_home(self, cell_id: str) -> None:
        """Nothing to bring: the master wrote into the cell's directory."""

    def returncode(self) -> int | None:
        return self.master.returncode() if self.master else None

    def exit_description(self) -> str:
        return self.master.exit_description() if self.master else "never started"

    def stop(self) -> None:
        for process in [*([self.master] if self.master else []), *self.workers]:
            process.stop()
        shutil.rmtree(self.inbox, ignore_errors=True)


class LocalSampler(ResourceSampler):
    """CPU of a process tree, with its reaped children, so forked workers are not missed."""

    def __init__(self, out: Path, roots: dict[str, tuple[str, int]]) -> None:
        super().__init__(out)
        self._roots = roots
        self._last: dict[str, tuple[float, float]] = {}

    def sample(self) -> None:
        now = time.time()
        for name, (side, pid) in self._roots.items():
            try:
                cpu_s, rss = _tree_usage(pid)
            except psutil.Error:
                continue
            if name in self._last:
                then, then_cpu = self._last[name]
                self.record(now, side, name, 100 * (cpu_s - then_cpu) / (now - then), rss)
            self._last[name] = (now, cpu_s)
            if side == "target":
                self.record_server_memory(now, _server_pids(pid))


def _server_pids(root: int) -> list[int]:
    """The server's processes under the target's root (the launcher, left out)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process(root).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if is_server_process(" ".join(process.cmdline())):
                    found.append(process.pid)
    return found


def _tree_usage(pid: int) -> tuple[float, float]:
    root = psutil.Process(pid)
    cpu_s = 0.0
    rss = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            cpu_s += times.user + times.system + times.children_user + times.children_system
            rss += process.memory_info().rss
        except psutil.Error:
            continue
    return cpu_s, rss / 1024 / 1024


MEMORY = Path("/dev/shm")


def _gauge_file(ctx: CellContext) -> Path:
    return MEMORY / f"flaskbench-{os.getpid()}-{ctx.cell.cell_id}.gauge"


def _proxy_dir(ctx: CellContext) -> Path:
    """Where the proxy writes (its pid, the temp files of buffered bodies): in memory, as the
    docker runner's tmpfs, so that spilling a response costs no disk writes."""
    return MEMORY / f"flaskbench-{os.getpid()}-{ctx.cell.cell_id}.proxy"


def remove_stale_files(memory: Path = MEMORY) -> None:
    """A run killed outright cannot remove its gauge files, app copies and services' data, and
    in memory they would stay until the next boot: remove those of runs (the pid in their name)
    that are gone."""
    for entry in memory.glob("flaskbench-*-*"):
        pid = entry.name.split("-")[1]
        if not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


class LocalRunner(Runner):
    name = "local"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each environment's Python, in the plan's order (flaskbench's own until setup).
        self._pythons = [sys.executable] * len(self.environments.environments)
        # A user's app: a snapshot per run (what every cell copies from; one per revision with
        # app.revision), by environment, and a copy per cell, under one private directory
        # removed at the end.
        self._scratch: Path | None = None
        self._sources: list[Path] = []

    def _paths(self, cell_dir: Path, app_dir: Path | None, environment: int) -> Paths:
        harness = str(HARNESS)
        return Paths(
            python=self._pythons[environment],
            locust_python=sys.executable,
            harness=harness,
            locustfiles=str(PROJECT_ROOT / "locustfiles"),
            cell=str(cell_dir.resolve()),
            app_dir=str(app_dir) if app_dir else harness,
            app_src=str(self._sources[environment]) if app_dir and self._sources else None,
        )

    def _cell_paths(self, ctx: CellContext) -> Paths:
        app_dir = self._scratch / ctx.cell.cell_id if self._scratch else None
        environment = self.environments.of_target[ctx.cell.target.name]
        return replace(
            self._paths(ctx.cell_dir, app_dir, environment),
            gauge_file=str(_gauge_file(ctx)),
            user_locustfile=ctx.cell.workload.locustfile,
        )

    def _target_env(self, paths: Paths, app: App) -> dict[str, str]:
        """The app's own environment, with its virtualenv's commands first (for app.setup), and
        what starts the launcher."""
        path = f"{Path(paths.python).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**app.resolved_env(), "PATH": path, **harness_env(paths)}

    def run_cell(self, ctx: CellContext) -> CellStatus:
        try:
            return super().run_cell(ctx)
        finally:
            # A launcher killed outright cannot remove its gauge file; this can.
            _gauge_file(ctx).unlink(missing_ok=True)
            shutil.rmtree(_proxy_dir(ctx), ignore_errors=True)
            if self._scratch:
                shutil.rmtree(self._scratch / ctx.cell.cell_id, ignore_errors=True)

    def setup(self) -> RunnerDetails:
        if shutil.which("taskset") is None:
            raise RuntimeError(
                "taskset is missing; install util-linux (apt-get install util-linux)"
            )
        remove_stale_files()
        try:
            for index, environment in enumerate(self.environments.environments):
                self._pythons[index], built = environment_python(environment, self.say)
                self.built.append(built)
        except AppEnvError as exc:
            raise RuntimeError(str(exc)) from None
        if not self.config.app.builtin:
            # In memory where the system has it, as the docker runner's tmpfs: what the app
            # writes (SQLite files, instance folders) then costs no journal or writeback work by
            # kernel threads, which would run beside the target and count as other processes.
            self._scratch = Path(
                tempfile.mkdtemp(
                    prefix=f"flaskbench-{os.getpid()}-", dir=MEMORY if MEMORY.is_dir() else None
                )
            )
            self._sources = self._snapshots(self._scratch)
        return {
            "python": sys.executable,
            "packages": package_versions(),
            "app_python": self._pythons[0],
        }

    def _snapshots(self, scratch: Path) -> list[Path]:
        """Each environment's app as every cell starts from it, one snapshot per app tree."""
        trees: dict[Path, Path] = {}
        for environment in self.environments.environments:
            path = environment.app.path
            if path not in trees:
                trees[path] = scratch / f"app-{len(trees)}"
                snapshot(path, trees[path], (self.config.results_dir,))
        return [trees[e.app.path] for e in self.environments.environments]

    def close(self) -> None:
        super().close()
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def service_backend(self) -> Backend:
        # Imported here: the services' module imports this one.
        from flaskbench.execute.services.local_services import LocalServices

        return LocalServices(self.config.cpus.services or self.config.cpus.target)

    def run_check(self, log: Path, config: Config, environment: int) -> tuple[int, str]:
        with tempfile.TemporaryDirectory(prefix="flaskbench-check-") as directory:
            scratch = Path(directory)
            app_dir = scratch / "app" if self._scratch else None
            paths = self._paths(scratch, app_dir, environment)
            with log.open("ab") as errors:
                done = subprocess.run(
                    check_command(config, paths),
                    cwd=scratch,
                    env=clean_env(self._target_env(paths, config.app)),
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                    timeout=2 * self.config.ready_timeout_s + 30,
                )
            with log.open("a") as handle:
                handle.write(done.stdout)
        return done.returncode, done.stdout

    def start_target(self, ctx: CellContext) -> Service:
        paths = self._cell_paths(ctx)
        version = self.server_version(ctx.cell.target)
        return LocalProcess(
            target_command(ctx.cell, ctx.config, paths, version),
            cwd=HARNESS,
            log=ctx.cell_dir / TARGET_LOG,
            cpus=ctx.config.cpus.target,
            # The launcher's own grace, and time to write the gauge's last rows.
            grace_s=STOP_GRACE_S + 5,
            env=self._target_env(paths, ctx.config.app),
        )

    def start_proxy(self, ctx: CellContext) -> Service:
        spec = ctx.cell.target.proxy
        assert spec is not None
        proxy = proxy_of(spec)
        binary = proxy.binary(os.environ.get("PATH"))
        if binary is None:
            raise CellFailed(f"{proxy.name} is not installed here; {proxy.install_hint()}")
        directory = _proxy_dir(ctx)
        directory.mkdir(exist_ok=True)
        # Run as root, the proxy's workers drop to an unprivileged user, who must reach it.
        directory.chmod(0o755)
        paths = replace(self._cell_paths(ctx), proxy_dir=str(directory), proxy_binary=binary)
        text = proxy_config(ctx.cell, ctx.config, paths, len(ctx.config.cpus.target))
        atomic_write_text(ctx.cell_dir / PROXY_CONF, text)
        return LocalProcess(
            proxy_command(ctx.cell, ctx.config, paths),
            cwd=directory,
            log=ctx.cell_dir / PROXY_LOG,
            cpus=ctx.config.cpus.target,
            grace_s=5,
            env={**harness_env(paths), PROXY_CONF_ENV: text},
        )

    def start_swarm(self, key: SwarmKey, number: int) -> SwarmHandle:
        config = self.config
        directory = self.run_dir / SWARM_DIR
        directory.mkdir(exist_ok=True)
        inbox = Path(
            tempfile.mkdtemp(
                prefix=f"flaskbench-{os.getpid()}-inbox-", dir=MEMORY if MEMORY.is_dir() else None
            )
        )
        paths = replace(
            self._paths(directory, None, 0), user_locustfile=key.locustfile, inbox=str(inbox)
        )
        workers = config.locust_workers
        swarm = LocalSwarm(self.run_dir, inbox)
        try:
            swarm.master = LocalProcess(
                master_command(key, config, paths, workers),
                cwd=PROJECT_ROOT,
                log=directory / f"master-{number}.log",
                cpus=config.cpus.load,
                grace_s=5,
                piped=True,
            )
            for index in range(1, workers + 1):
                swarm.workers.append(
                    LocalProcess(
                        worker_command(key, config, paths),
                        cwd=PROJECT_ROOT,
                        log=directory / f"worker-{number}-{index}.log",
                        cpus=config.cpus.load,
                        grace_s=5,
                    )
                )
        except BaseException:
            swarm.stop()
            raise
        return swarm

    def start_sampler(
        self, ctx: CellContext, target: Service, swarm: SwarmHandle, proxy: Service | None
    ) -> ResourceSampler:
        assert isinstance(target, LocalProcess)
        assert isinstance(swarm, LocalSwarm)
        assert swarm.master is not None
        roots = {"target": ("target", target.pid), "locust-master": ("loadgen", swarm.master.pid)}
        if isinstance(proxy, LocalProcess):
            roots[PROXY_RESOURCE] = ("target", proxy.pid)
        for index, worker in enumerate(swarm.workers, start=1):
            roots[f"locust-worker-{index}"] = ("loadgen", worker.pid)
        return LocalSampler(ctx.cell_dir / RESOURCES_CSV, roots)
