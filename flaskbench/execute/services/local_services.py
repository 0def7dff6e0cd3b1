"""The local runner's services: Debian's `postgres` and `redis-server` as plain processes of this
host, started by fb-service.sh as an unprivileged user (`nobody` when flaskbench runs as root,
else as whoever runs it), pinned with taskset, their data in memory (/dev/shm), and killed by the
kernel if flaskbench dies (PR_SET_PDEATHSIG). A killed run's data directories carry its pid in
their name, so the next run removes them (runners/local_runner.py, remove_stale_files).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flaskbench.config.services import ServiceSpec
from flaskbench.config.units import format_cpus
from flaskbench.execute.runners.local_runner import (
    MEMORY,
    LocalProcess,
    die_with_parent,
    kill_session,
)
from flaskbench.execute.runners.runner import describe_exit
from flaskbench.execute.services.kinds import KINDS
from flaskbench.execute.services.service import (
    LOOPBACK,
    SAMPLER,
    SCRIPT,
    Address,
    Kind,
    ServiceFailed,
    last_lines,
)
from flaskbench.results.contract import ServiceDetails, service_csv

# What a service gets to stop (SIGINT or SIGTERM) before it is killed.
STOP_GRACE_S = 15
# Between two readiness probes.
PROBE_S = 0.05


def service_user() -> tuple[int, int] | None:
    """(uid, gid) to run services as: postgres refuses root, so root runs them as nobody; anyone
    else runs them as themselves (None)."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def installed(kind: Kind, version: str | None) -> str | None:
    """The version of the kind's server installed here (None: not installed)."""
    try:
        done = subprocess.run(
            kind.version_argv(kind.bin_dir(version)), capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return kind.parse_version(done.stdout + done.stderr) if done.returncode == 0 else None


def missing_service(spec: ServiceSpec) -> str | None:
    """Why `spec` cannot run here, naming the config key and the fix, or None."""
    kind = KINDS[spec.kind]
    found = installed(kind, spec.wanted_version)
    if found is None:
        program = kind.version_argv(kind.bin_dir(spec.wanted_version))[0]
        what = f"{spec.kind} {spec.wanted_version}" if spec.wanted_version else spec.kind
        packages = " ".join(kind.packages(spec.wanted_version))
        return (
            f"services.{spec.name}: {what} is not installed here ({program} is missing); "
            f"apt-get install {packages}"
        )
    if not kind.version_matches(spec.version, found):
        return (
            f"services.{spec.name}.version: {spec.version} asked for, this host has {spec.kind} "
            f"{found}; install that version or change the key"
        )
    return None


class LocalInstance:
    """One service process, and the directory it keeps everything in."""

    def __init__(
        self,
        spec: ServiceSpec,
        address: Address,
        directory: Path,
        env: dict[str, str],
        cpus: tuple[int, ...],
        user: tuple[int, int] | None,
    ) -> None:
        self.spec = spec
        self.address = address
        self._kind = KINDS[spec.kind]
        self._directory = directory
        self._log = directory / "service.log"
        self._bin = self._kind.bin_dir(spec.wanted_version)
        # Its log, once its directory is gone.
        self._kept: str | None = None
        self._started = time.monotonic()
        with self._log.open("ab") as handle:
            self.popen = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    format_cpus(cpus),
                    "sh",
                    str(SCRIPT),
                    *self._kind.argv(spec.settings),
                ],
                cwd=directory,
                env={"PATH": f"{self._bin}:/usr/bin:/bin", "LANG": "C.UTF-8", **env},
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user[0] if user else None,
                group=user[1] if user else None,
                extra_groups=[] if user else None,
                # After the switch of user, which would clear it: the kernel kills the service
                # when the thread that started it (flaskbench's main thread) ends.
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        # taskset and the script exec, so this is the server's pid.
        self.where = f"pid {self.popen.pid}"

    def wait_ready(self, timeout_s: float) -> float:
        probe = self._kind.ready_argv(self._bin, self.address.port)
        deadline = self._started + timeout_s
        while True:
            if self.popen.poll() is not None:
                raise ServiceFailed(
                    f"service {self.spec.name} ({self.spec.kind}) {self.exit_description()} "
                    f"before it answered: {last_lines(self.log())}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                done = subprocess.run(probe, capture_output=True, timeout=5)
                if done.returncode == 0:
                    return time.monotonic() - self._started
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"service {self.spec.name} ({self.spec.kind}) did not answer within "
                    f"{timeout_s:g}s (run.ready_timeout): {last_lines(self.log())}"
                )
            time.sleep(PROBE_S)

    def returncode(self) -> int | None:
        return self.popen.poll()

    def exit_description(self) -> str:
        return describe_exit(self.popen.poll())

    def log(self) -> str:
        if self._kept is not None:
            return self._kept
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, self._kind.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=STOP_GRACE_S)
        # Postgres' backends end with their server; anything left in its session goes now.
        kill_session(self.popen.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._kept = self.log()
        shutil.rmtree(self._directory, ignore_errors=True)


class LocalSampler:
    def __init__(
        self, instance: LocalInstance, cell_dir: Path, scratch: Path, cpus: tuple[int, ...]
    ):
        kind = instance.spec.kind
        target = (
            ["--url", KINDS[kind].fields(instance.address)["url"]]
            if kind == "postgres"
            else ["--port", str(instance.address.port)]
        )
        self._log = (
            scratch / f"sampler-{instance.spec.name}-{os.getpid()}-{time.monotonic_ns()}.log"
        )
        self._process = LocalProcess(
            [
                sys.executable,
                str(SAMPLER),
                "--kind",
                kind,
                *target,
                "--pid",
                str(instance.popen.pid),
                "--out",
                str(cell_dir.resolve() / service_csv(instance.spec.name)),
            ],
            cwd=scratch,
            log=self._log,
            cpus=cpus,
            grace_s=5,
        )

    def stop(self) -> str:
        self._process.stop()
        try:
            said = self._log.read_text(errors="replace").strip()
        except OSError:
            said = ""
        self._log.unlink(missing_ok=True)
        return said


class LocalServices:
    """Starts the services of a run as processes of this host, each in a directory of its own
    under one directory in /dev/shm (named for this process, removed at the end)."""

    def __init__(self, cpus: tuple[int, ...]) -> None:
        self._cpus = cpus
        self._user = service_user()
        # One password per run, for every service that takes one: a cluster made once can be
        # copied for every later start (PGTEMPLATE).
        self._password = secrets.token_hex(12)
        self._scratch: Path | None = None
        self._count = 0

    def _root(self) -> Path:
        if self._scratch is None:
            where = MEMORY if MEMORY.is_dir() else None
            self._scratch = Path(
                tempfile.mkdtemp(prefix=f"flaskbench-{os.getpid()}-services-", dir=where)
            )
            # Entered by the services' user, listed by nobody else.
            self._scratch.chmod(0o711)
            self._own_dir(self._scratch / "templates")
        return self._scratch

    def _own_dir(self, path: Path) -> Path:
        path.mkdir(mode=0o700)
        if self._user:
            os.chown(path, *self._user)
        return path

    def prepare(self, specs: tuple[ServiceSpec, ...]) -> dict[str, ServiceDetails]:
        problems = [problem for spec in specs if (problem := missing_service(spec))]
        if problems:
            raise RuntimeError("; ".join(problems))
        details: dict[str, ServiceDetails] = {}
        for spec in specs:
            kind = KINDS[spec.kind]
            argv = kind.version_argv(kind.bin_dir(spec.wanted_version))
            details[spec.name] = {
                "kind": spec.kind,
                "version": installed(kind, spec.wanted_version) or "?",
                "program": argv[0],
            }
        return details

    def launch(self, spec: ServiceSpec, label: str, deadline_s: int) -> LocalInstance:
        """(No deadline needed here: the kernel ends a local service with flaskbench.)"""
        root = self._root()
        self._count += 1
        directory = self._own_dir(root / f"{spec.name}-{self._count}")
        kind = KINDS[spec.kind]
        address = Address(LOOPBACK, free_port(), self._password if spec.kind == "postgres" else "")
        env = kind.env(address, str(directory))
        if spec.kind == "postgres":
            # Made by the service's first start, copied by the later ones (each service its own).
            env["PGTEMPLATE"] = str(root / "templates" / spec.name)
        try:
            return LocalInstance(spec, address, directory, env, self._cpus, self._user)
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise ServiceFailed(
                f"service {spec.name} ({spec.kind}) could not start: {exc}"
            ) from None

    def sampler(self, instance: object, cell_dir: Path, deadline_s: int) -> LocalSampler:
        assert isinstance(instance, LocalInstance)
        return LocalSampler(instance, cell_dir, self._root(), self._cpus)

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
