"""The docker runner's services: each a container of the services image on the target's engine,
hardened like every container of a run (unprivileged, read-only, no capabilities, its data in a
tmpfs), on the target's host network listening on 127.0.0.1, pinned with cpuset, labelled like
every container of the run (a crashed run's are found and removed by the next run), and stopping
itself at its deadline if nobody is left to stop it. Its sampler is a second container of the
same image that shares the service's processes (to measure them) and network (to ask it), and
writes its samples to its output, read back through the engine when it stops.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from flaskbench.config.services import ServiceSpec
from flaskbench.config.units import format_cpus
from flaskbench.execute.engines import Engine, is_connection_error, is_gone
from flaskbench.execute.leftovers import CELL_LABEL, PORTS_LABEL, RUN_LABEL, this_process
from flaskbench.execute.runners.docker.compose import DEADLINE_KILL_AFTER_S
from flaskbench.execute.runners.docker.docker_runner import NOBODY
from flaskbench.execute.runners.runner import REMOVED, describe_exit
from flaskbench.execute.services.kinds import KINDS
from flaskbench.execute.services.local_services import PROBE_S, STOP_GRACE_S
from flaskbench.execute.services.service import (
    LOOPBACK,
    Address,
    ServiceFailed,
    last_lines,
)
from flaskbench.results.contract import ServiceDetails, service_csv

# Which service a container is (beside the run's labels).
SERVICE_LABEL = "flaskbench.service"
# The service's tmpfs: its whole data directory.
DATA = "/data"
DATA_SIZE = "1g"
# Between the answers of the services' version commands.
VERSIONS_APART = "@@flaskbench@@"
# What follows a kind's programs on a container's PATH.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian's Python (with its psycopg), whatever Python the base image brings first on PATH.
SAMPLER_COMMAND = ["/usr/bin/python3", "/opt/flaskbench/sampler.py"]
_HARDENED: dict[str, Any] = {
    "detach": True,
    "network_mode": "host",
    "user": NOBODY,
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
}


class ContainerInstance:
    def __init__(self, container: Any, spec: ServiceSpec, address: Address, engine: Engine):
        self.container = container
        self.spec = spec
        self.address = address
        self.where = f"container {container.name}"
        self._engine = engine
        self._kind = KINDS[spec.kind]
        self._started = time.monotonic()
        self._kept: str | None = None

    @contextmanager
    def _api(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if is_connection_error(exc):
                raise self._engine.lost(exc) from None
            raise

    def wait_ready(self, timeout_s: float) -> float:
        probe = self._kind.ready_argv(
            self._kind.bin_dir(self.spec.wanted_version), self.address.port
        )
        deadline = self._started + timeout_s
        while True:
            if self.returncode() is not None:
                raise ServiceFailed(
                    f"service {self.spec.name} ({self.spec.kind}) {self.exit_description()} "
                    f"before it answered: {last_lines(self.log())}"
                )
            with self._api(), suppress(Exception):
                if self.container.exec_run(probe).exit_code == 0:
                    return time.monotonic() - self._started
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"service {self.spec.name} ({self.spec.kind}) did not answer within "
                    f"{timeout_s:g}s (run.ready_timeout): {last_lines(self.log())}"
                )
            time.sleep(PROBE_S)

    def returncode(self) -> int | None:
        try:
            with self._api():
                self.container.reload()
        except Exception as exc:
            if is_gone(exc):
                return REMOVED
            raise
        state = self.container.attrs["State"]
        if state.get("Status") in ("created", "running", "restarting"):
            return None
        return int(state.get("ExitCode", -1))

    def exit_description(self) -> str:
        code = self.returncode()
        if code == REMOVED:
            return f"was removed (container {self.container.name}, not by flaskbench)"
        return describe_exit(code)

    def log(self) -> str:
        if self._kept is not None:
            return self._kept
        try:
            with self._api():
                return bytes(self.container.logs(stdout=True, stderr=True)).decode(errors="replace")
        except Exception as exc:
            if is_gone(exc):
                return ""
            raise

    def stop(self) -> None:
        try:
            with self._api():
                self.container.stop(timeout=STOP_GRACE_S)
                self._kept = self.log()
                self.container.remove(force=True, v=True)
        except Exception as exc:
            if not is_gone(exc):
                raise
            self._kept = self._kept or ""


class ContainerSampler:
    def __init__(self, container: Any, cell_dir: Path, name: str) -> None:
        self._container = container
        self._out = cell_dir / service_csv(name)

    def stop(self) -> str:
        """Stopped (SIGTERM: it ends its last row), its output written into the cell."""
        container = self._container
        try:
            container.stop(timeout=5)
            self._out.write_bytes(container.logs(stdout=True, stderr=False))
            said = bytes(container.logs(stdout=False, stderr=True)).decode(errors="replace")
        finally:
            with suppress(Exception):
                container.remove(force=True, v=True)
        return said.strip()


class DockerServices:
    """Starts the services of a run on the target's engine."""

    def __init__(
        self,
        engine: Engine,
        image: Callable[[tuple[ServiceSpec, ...]], str],
        run_id: str,
        cpus: tuple[int, ...],
        free_port: Callable[[], int],
        password: str,
    ) -> None:
        self._engine = engine
        self._build = image
        self._image = ""
        self._run_id = run_id
        self._cpus = cpus
        self._free_port = free_port
        self._password = password
        self._count = 0

    def _next(self) -> int:
        """A number for the next container's name (names are unique on an engine)."""
        self._count += 1
        return self._count

    def _labels(self, label: str, port: int, service: str) -> dict[str, str]:
        return {
            RUN_LABEL: self._run_id,
            CELL_LABEL: label,
            PORTS_LABEL: str(port),
            SERVICE_LABEL: service,
            **this_process().labels(),
        }

    def prepare(self, specs: tuple[ServiceSpec, ...]) -> dict[str, ServiceDetails]:
        """The image (built once per machine), and the version of every service in it, asked
        of one container for all of them."""
        self._image = self._build(specs)
        commands = [
            shlex.join(KINDS[s.kind].version_argv(KINDS[s.kind].bin_dir(s.wanted_version)))
            for s in specs
        ]
        output = self._engine.client.containers.run(
            self._image,
            ["sh", "-c", f"; echo {VERSIONS_APART}; ".join(commands)],
            remove=True,
            network_mode="none",
            user=NOBODY,
            labels=self._labels("prepare", 0, "versions"),
        )
        answers = bytes(output).decode(errors="replace").split(VERSIONS_APART)
        details: dict[str, ServiceDetails] = {}
        for spec, answer in zip(specs, answers, strict=True):
            kind = KINDS[spec.kind]
            found = kind.parse_version(answer)
            if not kind.version_matches(spec.version, found):
                raise RuntimeError(
                    f"services.{spec.name}.version: {spec.version} asked for, the services "
                    f"image has {spec.kind} {found}; change the key"
                )
            details[spec.name] = {"kind": spec.kind, "version": found, "image": self._image}
        return details

    def launch(self, spec: ServiceSpec, label: str, deadline_s: int) -> ContainerInstance:
        kind = KINDS[spec.kind]
        address = Address(
            LOOPBACK, self._free_port(), self._password if spec.kind == "postgres" else ""
        )
        stop = kind.stop_signal.name
        path = f"{kind.bin_dir(spec.wanted_version)}:{SYSTEM_PATH}"
        try:
            container = self._engine.client.containers.run(
                self._image,
                [
                    "timeout",
                    "-s",
                    stop.removeprefix("SIG"),
                    f"--kill-after={DEADLINE_KILL_AFTER_S}",
                    str(deadline_s),
                    "fb-service",
                    *kind.argv(spec.settings),
                ],
                name=f"fb-{self._run_id}-{spec.name}-{self._next()}".lower(),
                environment={**kind.env(address, DATA), "PATH": path},
                tmpfs={DATA: f"rw,size={DATA_SIZE},uid=65534,gid=65534,mode=0700"},
                cpuset_cpus=format_cpus(self._cpus),
                # A real PID 1 passes the stop signal on (through timeout to the server).
                init=True,
                stop_signal=stop,
                labels=self._labels(label, address.port, spec.name),
                **_HARDENED,
            )
        except Exception as exc:
            if is_connection_error(exc):
                raise self._engine.lost(exc) from None
            raise ServiceFailed(
                f"service {spec.name} ({spec.kind}) could not start: {exc}"
            ) from None
        return ContainerInstance(container, spec, address, self._engine)

    def sampler(self, instance: object, cell_dir: Path, deadline_s: int) -> ContainerSampler:
        assert isinstance(instance, ContainerInstance)
        spec = instance.spec
        kind = KINDS[spec.kind]
        target = (
            ["--url", kind.fields(instance.address)["url"]]
            if spec.kind == "postgres"
            else ["--port", str(instance.address.port)]
        )
        container = self._engine.client.containers.run(
            self._image,
            [
                "timeout",
                f"--kill-after={DEADLINE_KILL_AFTER_S}",
                str(deadline_s),
                *SAMPLER_COMMAND,
                "--kind",
                spec.kind,
                *target,
                "--program",
                kind.program,
            ],
            name=f"{instance.container.name}-sampler-{self._next()}",
            # The service's processes, to read their CPU time and memory.
            pid_mode=f"container:{instance.container.id}",
            cpuset_cpus=format_cpus(self._cpus),
            labels=self._labels(cell_dir.name, 0, spec.name),
            **_HARDENED,
        )
        return ContainerSampler(container, cell_dir, spec.name)

    def close(self) -> None:
        """Nothing of the run's own: every container goes with its cell, or with the run's
        services (lifecycle.Services.close)."""
