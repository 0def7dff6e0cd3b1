"""Compose stacks: one compose project on one engine, started with `up -d`, watched through its
main container, and read back (logs, raw files) through the engine when it stops; and the run's
Locust swarm as one stack per host."""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from flaskbench import PROJECT_ROOT
from flaskbench.execute.engines import Engine, is_connection_error, is_gone, list_containers
from flaskbench.execute.runners.runner import REMOVED, describe_exit

COMPOSE_DIR = PROJECT_ROOT / "compose"


# After the deadline, `timeout` sends SIGTERM, then SIGKILL this many seconds later.
DEADLINE_KILL_AFTER_S = 20


# Where a cell's processes write their raw files inside their containers (see app.Dockerfile).
RESULTS_DIR = "/results"
# The run's Locust master: where its orders arrive, and where it writes each cell's files.
INBOX_DIR = "/inbox"
CELLS_DIR = "/cells"
# The unprivileged user every container runs as (nobody:nogroup).
NOBODY_ID = 65534


# How often the hosts that only run Locust workers are asked whether they still answer.
WORKER_HOST_CHECK_S = 1.0
# What a container killed with SIGKILL exits with; one killed so may be under removal, which
# takes the engine up to this long.
KILLED = 137
REMOVAL_SETTLE_S = 2.0


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
    def api(self) -> Iterator[None]:
        """Engine calls, whose connection failure is the host's loss."""
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
        with self.api():
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
            with self.api():
                containers[0].reload()
        except Exception as exc:
            if is_gone(exc):
                return None
            raise
        return dict(containers[0].attrs["State"])

    def returncode(self) -> int | None:
        return _code(self._state())

    def exit_description(self) -> str:
        state = self._settled_state()
        if state is None:
            return self.removed_description()
        notes = ["OOM-killed"] if state.get("OOMKilled") else []
        return describe_exit(_code(state), notes)

    def _settled_state(self) -> dict[str, Any] | None:
        """The main container's state once a removal under way is over: `docker rm -f` kills
        the container first (SIGKILL, 137) and removes it a moment later."""
        deadline = time.monotonic() + REMOVAL_SETTLE_S
        state = self._state()
        while state is not None and _code(state) == KILLED and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self._state()
        return state

    def removed_description(self) -> str:
        name = self._seen.get(self.name_of(self.main_service, 1), self.project)
        return f"container {name} was removed while the cell ran (not by flaskbench)"

    def _bring_home(self) -> None:
        """Each container's log, and the raw files of those that write any, into the cell; a
        container removed meanwhile by someone else has nothing left to bring."""
        for container in self.containers():
            try:
                with self.api():
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


def _code(state: dict[str, Any] | None) -> int | None:
    """A container's exit code; None while it runs; REMOVED once it is gone."""
    if state is None:
        return REMOVED
    if state.get("Status") in ("created", "running", "restarting"):
        return None
    return int(state.get("ExitCode", -1))


_NUMBER = "com.docker.compose.container-number"


def _log_file(name: str) -> str:
    return f"{name}.log"


def _extract_files(stream: Iterator[bytes], directory: Path) -> None:
    """The regular files of a directory archive from the engine, flat into `directory`, owned
    by whoever runs flaskbench (never the container's user, never outside `directory`)."""
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        for member in archive.getmembers():
            source = archive.extractfile(member) if member.isfile() else None
            if source is not None:
                (directory / Path(member.name).name).write_bytes(source.read())


class DockerSwarm:
    """The run's Locust swarm: a master and its workers, in one stack per host. Orders go into
    the master's inbox and each cell's files come out of it through the engine; its events
    are its log. Losing any of its hosts ends the swarm."""

    def __init__(self, master: ComposeStack, others: list[ComposeStack], cell_dirs: Path) -> None:
        self.master = master
        self.others = others
        self._cell_dirs = cell_dirs
        self._checked = time.monotonic()

    @property
    def stacks(self) -> list[ComposeStack]:
        return [self.master, *self.others]

    def _container(self) -> Any:
        found = self.master.containers("master")
        if not found:
            raise RuntimeError(self.master.removed_description())
        return found[0]

    def put_order(self, name: str, text: str) -> None:
        data = text.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            member = tarfile.TarInfo(name)
            member.size, member.mode, member.mtime = len(data), 0o644, int(time.time())
            # The master's user owns what is in its inbox (it reads orders, never removes them).
            member.uid = member.gid = NOBODY_ID
            tar.addfile(member, io.BytesIO(data))
        with self.master.api():
            self._container().put_archive(INBOX_DIR, archive.getvalue())

    def lines(self) -> Iterator[str]:
        with self.master.api():
            stream = self._container().logs(stream=True, follow=True, stdout=True, stderr=False)
        pending = b""
        for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode(errors="replace")

    def out_dir(self, cell_id: str) -> str:
        return f"{CELLS_DIR}/{cell_id}"

    def bring_home(self, cell_id: str) -> None:
        with self.master.api():
            stream, _stat = self._container().get_archive(self.out_dir(cell_id))
            _extract_files(stream, self._cell_dirs / cell_id)

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


def swarm_names(swarm: int, workers_before: int) -> Callable[[str, int], str]:
    """The run's `swarm`th swarm's logs; workers are numbered across hosts: a host's first
    follows the previous hosts' last."""

    def name(service: str, number: int) -> str:
        if service == "worker":
            return f"worker-{swarm}-{workers_before + number}"
        return f"master-{swarm}"

    return name


def started_stack(stack: ComposeStack) -> ComposeStack:
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
