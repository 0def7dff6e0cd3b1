"""Where each side of a run's cells runs: which Docker engine runs the target, the Locust master
and each host's workers, on which CPUs. Runners start exactly that."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flaskbench.config.hosts import DEFAULT_ENGINE, HostFacts, engine_label
from flaskbench.config.load import Config
from flaskbench.config.units import format_cpus


class PlacementError(Exception):
    """The hosts cannot run the config as written; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Placement:
    """Where each side of every cell runs. A single-host run is one engine for both sides."""

    target: str
    master: str
    # (engine, Locust workers there), in the order of hosts.load.
    workers: tuple[tuple[str, int], ...]
    target_address: str
    master_address: str
    target_cpus: tuple[int, ...]
    # The CPUs the load has on each engine that runs part of it (the master's included).
    load_cpus: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def engines(self) -> tuple[str, ...]:
        """Every engine the run uses, each once: the target's, the master's, the workers'."""
        return tuple(dict.fromkeys([self.target, self.master, *(e for e, _ in self.workers)]))

    @property
    def worker_count(self) -> int:
        return sum(count for _, count in self.workers)

    @property
    def load_cores(self) -> int:
        return sum(len(cpus) for engine, cpus in self.load_cpus if self.workers_on(engine))

    def workers_on(self, engine: str) -> int:
        return sum(count for e, count in self.workers if e == engine)

    def cpus_for_load(self, engine: str) -> tuple[int, ...]:
        return dict(self.load_cpus)[engine]

    def roles(self, engine: str) -> tuple[str, ...]:
        roles = [
            role
            for role, here in (
                ("target", engine == self.target),
                ("master", engine == self.master),
                ("workers", self.workers_on(engine) > 0),
            )
            if here
        ]
        return tuple(roles)

    def describe(self) -> dict[str, object]:
        """For meta.json."""
        return {
            "target": {"engine": self.target, "address": self.target_address},
            "master": {"engine": self.master, "address": self.master_address},
            "workers": [{"engine": e, "count": n} for e, n in self.workers],
            "cpus": {
                "target": format_cpus(self.target_cpus),
                "load": {engine or "local": format_cpus(c) for engine, c in self.load_cpus},
            },
        }


def single_host(config: Config) -> Placement:
    """Both sides on the engine Docker finds by itself (or, with the local runner, here)."""
    return Placement(
        target=DEFAULT_ENGINE,
        master=DEFAULT_ENGINE,
        workers=((DEFAULT_ENGINE, config.locust_workers),),
        target_address=config.host,
        master_address="127.0.0.1",
        target_cpus=config.cpus.target,
        load_cpus=((DEFAULT_ENGINE, config.cpus.load),),
    )


def place(config: Config, facts: Mapping[str, HostFacts]) -> Placement:
    """The placement `[hosts]` asks for, on the CPUs the hosts' engines report. Without
    `[cpus]`, a side with a host to itself has all of it and two sides sharing one host split
    it in halves, as on a single host."""
    hosts = config.hosts
    if hosts is None:
        return single_host(config)
    problems: list[str] = []
    target_host = facts[hosts.target]
    shared = {
        engine
        for engine in (hosts.master, *hosts.load)
        if facts[engine].daemon_id == target_host.daemon_id
    }
    target_cpus = _side_cpus(
        config.cpus.target, target_host, "target", bool(shared), first_half=True, problems=problems
    )
    load_cpus = []
    for engine in dict.fromkeys([hosts.master, *hosts.load]):
        cpus = _side_cpus(
            config.cpus.load, facts[engine], "load", engine in shared, False, problems
        )
        if engine in shared and set(cpus) & set(target_cpus):
            problems.append(
                f"cpus.load: shares CPU(s) {format_cpus(sorted(set(cpus) & set(target_cpus)))} "
                f"with cpus.target on {engine_label(engine)}, which runs both sides; give each "
                "side its own CPUs"
            )
        load_cpus.append((engine, cpus))
    if problems:
        raise PlacementError(problems)
    per_host = dict(load_cpus)
    return Placement(
        target=hosts.target,
        master=hosts.master,
        workers=tuple((e, hosts.workers_per_host or len(per_host[e])) for e in hosts.load),
        target_address=hosts.target_address,
        master_address=hosts.master_address,
        target_cpus=target_cpus,
        load_cpus=tuple(load_cpus),
    )


def _side_cpus(
    wanted: tuple[int, ...],
    host: HostFacts,
    side: str,
    shared: bool,
    first_half: bool,
    problems: list[str],
) -> tuple[int, ...]:
    every = tuple(range(host.cpus))
    if wanted:
        if extra := [c for c in wanted if c >= host.cpus]:
            problems.append(
                f"cpus.{side}: CPU(s) {format_cpus(extra)} do not exist on "
                f"{engine_label(host.engine)}, which has {host.cpus} (0-{host.cpus - 1})"
            )
        return wanted
    if not shared:
        return every
    if host.cpus < 2:
        problems.append(
            f"cpus: {engine_label(host.engine)} runs both sides and has {host.cpus} CPU; "
            "pinning them apart needs 2"
        )
        return every
    half = host.cpus // 2
    return every[:half] if first_half else every[half:]
