"""The services of a run through its cells: started before a cell's target (its app's setup
runs against them), watched while the cell runs, stopped after it; per cell, a fresh one each
time (`per_cell = true`), or one for the whole run, restarted for the next cell if it died.

What starts them is a backend (local processes, or containers): this module only says when.
Every cell records where its services were (services.json), their log (service-NAME.log) and
what the sampler saw (service-NAME.csv).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from flaskbench.config.app import App
from flaskbench.config.env import fill
from flaskbench.config.load import Config
from flaskbench.config.services import ServiceSpec
from flaskbench.execute.services.kinds import KINDS
from flaskbench.execute.services.service import Address, ServiceFailed, last_lines
from flaskbench.results.contract import (
    SERVICES_FORMAT,
    SERVICES_JSON,
    ServiceDetails,
    ServicesJson,
    service_csv,
    service_log,
)
from flaskbench.results.rundir import atomic_write_text
from flaskbench.servers.server import Target

# How often a cell asks its services whether they still run (a container's answer is an API call).
CHECK_EVERY_S = 1.0


class Instance(Protocol):
    """One started service: a process, or a container."""

    spec: ServiceSpec
    address: Address
    # Where it runs, for services.json and messages: "pid 4711", "container fb-...".
    where: str

    def wait_ready(self, timeout_s: float) -> float:
        """Block until it answers; the seconds since it was started. Raises ServiceFailed."""
        ...

    def returncode(self) -> int | None: ...

    def exit_description(self) -> str: ...

    def log(self) -> str:
        """Everything it has written so far."""
        ...

    def stop(self) -> None:
        """Stop it and remove its data."""
        ...


class Sampler(Protocol):
    def stop(self) -> str:
        """Stop it, its CSV written into the cell; what it said on stderr."""
        ...


class Backend(Protocol):
    def prepare(self, specs: tuple[ServiceSpec, ...]) -> dict[str, ServiceDetails]:
        """Check that every service can be started here (programs, versions) and say with
        what; raises RuntimeError naming the config key otherwise."""
        ...

    def launch(self, spec: ServiceSpec, label: str, deadline_s: int) -> Instance:
        """Start it (not waiting for it to answer); it stops itself after `deadline_s` if
        nobody is left to stop it. Raises ServiceFailed."""
        ...

    def sampler(self, instance: Instance, cell_dir: Path, deadline_s: int) -> Sampler: ...

    def close(self) -> None: ...


def values_of(instances: Mapping[str, Instance]) -> dict[str, dict[str, str]]:
    """What each service's placeholders become."""
    return {
        name: KINDS[instance.spec.kind].fields(instance.address)
        for name, instance in instances.items()
    }


def app_for(app: App, target: Target | None, values: Mapping[str, Mapping[str, str]]) -> App:
    """The app as one target runs it: [app] env, then the target's own env, with the services'
    addresses filled in (there and in app.setup)."""
    env = dict(app.env) | dict(target.env if target else {})
    return replace(
        app,
        env=tuple((name, fill(text, values)) for name, text in env.items()),
        setup=fill(app.setup, values) if app.setup else app.setup,
    )


def start_services(
    backend: Backend,
    specs: list[ServiceSpec],
    label: str,
    deadline_s: int,
    ready_s: float,
    log_dir: Path | None = None,
) -> dict[str, tuple[Instance, float]]:
    """Start services side by side: each launched here (a local process must be started by the
    thread that lives as long as it does: the kernel ends it with that thread), then waited for
    together. Everything started is stopped again if one fails, its log kept in `log_dir`."""
    launched: dict[str, Instance] = {}
    try:
        for spec in specs:
            launched[spec.name] = backend.launch(spec, label, deadline_s)
        with ThreadPoolExecutor(max_workers=max(1, len(launched))) as pool:
            ready = dict(
                zip(
                    launched,
                    pool.map(lambda i: _ready_or_failure(i, ready_s), launched.values()),
                    strict=True,
                )
            )
        failures = [problem for problem in ready.values() if isinstance(problem, str)]
        if failures:
            raise ServiceFailed("; ".join(failures))
    except BaseException:
        for name, instance in launched.items():
            with suppress(Exception):
                if log_dir is not None:
                    atomic_write_text(log_dir / service_log(name), instance.log())
                instance.stop()
        raise
    return {name: (launched[name], float(ready[name])) for name in launched}


def _ready_or_failure(instance: Instance, timeout_s: float) -> float | str:
    try:
        return instance.wait_ready(timeout_s)
    except ServiceFailed as exc:
        return str(exc)


@dataclass
class Services:
    """The run's services, as the runner's backend starts them."""

    config: Config
    backend: Backend | None = None
    # How long a service of the whole run may live (it stops itself after that).
    run_deadline_s: int = 0
    _run: dict[str, tuple[Instance, float]] = field(default_factory=dict)

    @property
    def specs(self) -> tuple[ServiceSpec, ...]:
        return self.config.services

    def prepare(self) -> dict[str, ServiceDetails]:
        return self.backend.prepare(self.specs) if self.backend and self.specs else {}

    @contextmanager
    def for_check(self) -> Iterator[Config]:
        """The config the app's one-off check runs with: the first target's environment,
        against services started for it (the run's own, when they last the run)."""
        first = self.config.targets[0] if self.config.targets else None
        if not self.specs:
            yield replace(self.config, app=app_for(self.config.app, first, {}))
            return
        lasting = self._ensure_run_services()
        per_check = [s for s in self.specs if s.per_cell]
        try:
            started = self._started(per_check, "check", self.run_deadline_s)
        except ServiceFailed as exc:
            raise RuntimeError(f"the app's check needs its services: {exc}") from None
        try:
            instances = {name: i for name, (i, _) in (lasting | started).items()}
            yield replace(self.config, app=app_for(self.config.app, first, values_of(instances)))
        finally:
            for instance, _ in started.values():
                with suppress(Exception):
                    instance.stop()

    def _ensure_run_services(self) -> dict[str, tuple[Instance, float]]:
        """The services that last the run, (re)started where they are not running."""
        for spec in self.specs:
            if spec.per_cell or spec.name not in self._run:
                continue
            instance = self._run[spec.name][0]
            if instance.returncode() is not None:
                del self._run[spec.name]
                with suppress(Exception):
                    instance.stop()
        missing = [s for s in self.specs if not s.per_cell and s.name not in self._run]
        try:
            self._run |= self._started(missing, "run", self.run_deadline_s)
        except ServiceFailed as exc:
            raise RuntimeError(f"the run's services: {exc}") from None
        return dict(self._run)

    def _started(
        self, specs: list[ServiceSpec], label: str, deadline_s: int
    ) -> dict[str, tuple[Instance, float]]:
        if not specs:
            return {}
        assert self.backend is not None
        return start_services(self.backend, specs, label, deadline_s, self.config.ready_timeout_s)

    def start_cell(
        self, target: Target, cell_id: str, cell_dir: Path, deadline_s: int
    ) -> CellServices:
        """The cell's services, answering, their samplers running and services.json written.
        Raises ServiceFailed (the cell fails, the run goes on)."""
        cell = CellServices(self.config.app, target, cell_dir)
        if not self.specs:
            return cell
        assert self.backend is not None
        try:
            shared = self._ensure_run_services()
        except RuntimeError as exc:
            raise ServiceFailed(str(exc)) from None
        own = [s for s in self.specs if s.per_cell]
        ready_s = self.config.ready_timeout_s
        fresh = start_services(self.backend, own, cell_id, deadline_s, ready_s, cell_dir)
        started = shared | fresh
        cell.instances = {spec.name: started[spec.name][0] for spec in self.specs}
        cell.owned = [instance for instance, _ in fresh.values()]
        ready = {spec.name: started[spec.name][1] for spec in self.specs}
        try:
            for name, instance in cell.instances.items():
                cell.samplers[name] = self.backend.sampler(instance, cell_dir, deadline_s)
        except BaseException:
            cell.stop()
            raise
        cell.write_record(ready)
        return cell

    def close(self) -> None:
        for instance, _ in self._run.values():
            with suppress(Exception):
                instance.stop()
        self._run = {}
        if self.backend is not None:
            self.backend.close()


@dataclass
class CellServices:
    """A cell's view of the services: their addresses in its app, and their stop."""

    app: App
    target: Target
    cell_dir: Path
    instances: dict[str, Instance] = field(default_factory=dict)
    # The cell's own (per_cell) instances, stopped with it; the others outlive it.
    owned: list[Instance] = field(default_factory=list)
    samplers: dict[str, Sampler] = field(default_factory=dict)
    _checked: float = 0.0

    def cell_app(self) -> App:
        return app_for(self.app, self.target, values_of(self.instances))

    def failure(self) -> str:
        """Why a service of the cell is no longer running, or ""."""
        if not self.instances or time.monotonic() - self._checked < CHECK_EVERY_S:
            return ""
        self._checked = time.monotonic()
        for name, instance in self.instances.items():
            if instance.returncode() is not None:
                kind = instance.spec.kind
                return (
                    f"service {name} ({kind}) {instance.exit_description()} while the cell ran: "
                    f"{last_lines(instance.log())}; see {service_log(name)}"
                )
        return ""

    def stop(self) -> list[str]:
        """Stop the samplers, then the cell's own services; keep every service's log. What
        could not be done, one line each."""
        problems = []
        said: dict[str, str] = {}
        for name, sampler in self.samplers.items():
            try:
                said[name] = sampler.stop()
            except Exception as exc:
                problems.append(f"teardown: the sampler of service {name}: {exc}")
        for name, instance in self.instances.items():
            try:
                if instance in self.owned:
                    instance.stop()
                log = instance.log() + (f"\n{said[name]}" if said.get(name) else "")
                atomic_write_text(self.cell_dir / service_log(name), log)
            except Exception as exc:
                problems.append(f"teardown: service {name}: {type(exc).__name__}: {exc}")
        self.samplers = {}
        self.owned = []
        return problems

    def write_record(self, ready: Mapping[str, float]) -> None:
        record: ServicesJson = {
            "format": SERVICES_FORMAT,
            "services": {
                name: {
                    "kind": instance.spec.kind,
                    "per_cell": instance.spec.per_cell,
                    "host": instance.address.host,
                    "port": instance.address.port,
                    "where": instance.where,
                    "ready_s": round(ready[name], 3),
                    "samples": service_csv(name),
                }
                for name, instance in self.instances.items()
            },
        }
        atomic_write_text(self.cell_dir / SERVICES_JSON, json.dumps(record, indent=1) + "\n")
