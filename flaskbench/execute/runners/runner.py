"""What every runner does for one cell, whatever starts the processes.

A runner keeps the run's Locust swarm up (execute/swarm.py) and, for each cell, starts a target
(its services first, and the proxy in front of it, if it has one) and a resource sampler and
sends the swarm the cell's order: its master waits until the target answers (as seen from where
the load comes from), checks every request of the workload before any load, and walks the
staircase. The runner follows the cell to its end and tears the target down, whatever happens.
It reports how the cell ended; the raw files it leaves are read later by `collect`.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from flaskbench.config.app import TARGET_PACKAGE
from flaskbench.config.hosts import DEFAULT_ENGINE, engine_label
from flaskbench.config.load import Config
from flaskbench.execute.commands import READINESS, cell_options, cell_ports
from flaskbench.execute.engines import HostLost
from flaskbench.execute.environments import (
    Built,
    Outcome,
    dotenv_notes,
    outcomes,
    plan_environments,
)
from flaskbench.execute.hostcpu import HostCpuSampler
from flaskbench.execute.probes import port_in_use
from flaskbench.execute.services.lifecycle import Backend, CellServices, Services
from flaskbench.execute.services.service import ServiceFailed
from flaskbench.execute.swarm import (
    SWARM_STARTUP_S,
    Swarm,
    SwarmFailed,
    SwarmHandle,
    SwarmKey,
    swarm_key,
)
from flaskbench.plan.cells import Cell, Plan, make_plan, ready_budget_s
from flaskbench.plan.placement import Placement, single_host
from flaskbench.results.contract import (
    APP_CHECK_LOG,
    APP_ERROR,
    ERROR_TXT,
    HOST_CPU_CSV,
    LOADGEN_JSON,
    MASTER_LOG,
    MEMORY_CSV,
    PROXY_LOG,
    SETUP_LOG,
    TARGET_LOG,
    CellState,
    ContractError,
    HostRecord,
    RunnerDetails,
    read_loadgen,
)
from flaskbench.results.rundir import CellStatus, atomic_write_text
from flaskbench.servers.registry import server_of
from flaskbench.servers.server import Server, Target

# Beyond everything a cell may take, before its containers stop themselves: stopping the
# stacks and saving their logs.
TEARDOWN_MARGIN_S = 30
# What a service's returncode() is once something other than flaskbench removed it (a
# container someone ran `docker rm` on): it left no exit code, and no log to read.
REMOVED = -256
# How long a cell waits for its port to be free before it fails.
PORT_RELEASE_S = 10
# After a cell's last window, how long its master may take to write the cell's files.
CELL_DONE_S = 30


class CellFailed(Exception):
    """The cell produced no usable measurements; the message says why."""


class RunStopped(Exception):
    """The run cannot go on (a host is gone); the message says why and what to do."""


class Service(Protocol):
    """Something a runner started for a cell: its target."""

    def returncode(self) -> int | None: ...

    def exit_description(self) -> str: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class CellContext:
    cell: Cell
    cell_dir: Path
    config: Config
    plan: Plan
    # Called with the seconds of the cell's staircase done so far, for the progress bar.
    on_progress: Callable[[float], None]
    # The cell after it in the run: its target starts as soon as this one's has stopped.
    following: CellContext | None = None


@dataclass
class CellParts:
    """What a cell starts before its load: its services, then its target and the proxy in
    front of it (the next cell's start during the cell before). `ctx` carries the services'
    addresses in its app once they answer."""

    ctx: CellContext
    services: CellServices | None = None
    target: Service | None = None
    proxy: Service | None = None


class ResourceSampler(ABC):
    """Samples CPU and memory of both sides once a second into resources.csv, and the memory of
    each of the server's processes into memory.csv."""

    interval_s = 1.0

    def __init__(self, out: Path) -> None:
        self._out = out
        self._rows: list[tuple[float, str, str, float, float, str]] = []
        self._memory: list[tuple[float, int, float]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def record(
        self, t: float, side: str, name: str, cpu_pct: float, rss_mb: float, host: str = "local"
    ) -> None:
        with self._lock:
            self._rows.append((round(t, 3), side, name, round(cpu_pct, 1), round(rss_mb, 1), host))

    def record_server_memory(self, t: float, pids: Iterable[int]) -> None:
        """Each server process's proportional set size (PSS: a page that processes share, as
        forked workers do, is shared out among them), so their sum counts it once. Processes
        whose memory map cannot be read (another user's, without root) are left out."""
        found = [(pid, mb) for pid in pids if (mb := pss_mb(pid)) is not None]
        with self._lock:
            self._memory += [(round(t, 3), pid, round(mb, 2)) for pid, mb in found]

    @abstractmethod
    def sample(self) -> None:
        """Take one sample of every process or container and `record` it."""

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            _write_csv(
                self._out, ("t", "side", "name", "cpu_pct", "rss_mb", "host"), sorted(self._rows)
            )
            _write_csv(
                self._out.with_name(MEMORY_CSV), ("t", "pid", "pss_mb"), sorted(self._memory)
            )


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def pss_mb(pid: int) -> float | None:
    """A process's proportional set size in MiB (Linux 4.14+), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def is_server_process(cmdline: str) -> bool:
    """Not one of what a target runs around its server: the launcher, `timeout`, an init."""
    program = cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
    return f"{TARGET_PACKAGE}.launch" not in cmdline and program not in (
        "timeout",
        "docker-init",
        "tini",
    )


class Runner(ABC):
    name = "runner"

    def __init__(self, config: Config, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.run_id = ""
        self.run_dir = Path()
        self.placement = single_host(config)
        self.services = Services(config)
        # The run's Locust swarm, started by the first cell; and how many were started.
        self._swarm: Swarm | None = None
        self._swarms = 0
        # The next cell's target and services, started as the previous cell's stopped.
        self._next: CellParts | None = None
        # The environments targets are served from, what each build reported (setup fills it,
        # in the plan's order), and each target's server version or why it is left out.
        self.environments = plan_environments(config.app, config.targets, config.revision_apps)
        self.built: list[Built] = []
        self.keys = [environment.key() for environment in self.environments.environments]
        self.outcome = Outcome({}, {})

    def prepare(self, run_dir: Path, placement: Placement) -> RunnerDetails:
        """Get ready to run cells where `placement` says (the environments built, each target's
        server version known or the target left out) and check that the app loads (against its
        services, when it has any), before any cell starts; return what meta.json should
        record. Raises RuntimeError with one line on failure, or when no target can run."""
        self.run_id = run_dir.name
        self.run_dir = run_dir
        self.placement = placement
        details = self.setup()
        self.outcome = outcomes(self.config.targets, self.environments, self.built, self.keys)
        runnable = self.runnable()
        if not runnable:
            reasons = "; ".join(f"{n}: {why}" for n, why in self.outcome.left_out.items())
            raise RuntimeError(f"no target can run: {reasons}")
        first = self.environments.of_target[runnable[0].name]
        for note in dotenv_notes(self.config.app, self.built[first].packages):
            self.say(note)
        if self.config.services:
            self.services = Services(
                self.config, self.service_backend(), run_deadline_s(self.config, placement)
            )
            details["services"] = self.services.prepare()
        with self.services.for_check() as checked:
            self._check_app(run_dir / APP_CHECK_LOG, checked, first)
        details["app_packages"] = self.built[first].packages
        return details

    def runnable(self) -> list[Target]:
        """The targets whose environment has their server, at a version they can run on."""
        return [t for t in self.config.targets if t.name not in self.outcome.left_out]

    def server_version(self, target: Target) -> str | None:
        """The installed version of a target's server, which its command line follows."""
        record = self.outcome.versions.get(target.name)
        return record["version"] if record else None

    def hosts(self) -> list[HostRecord]:
        """Every host the run uses, for meta.json (none: everything ran here)."""
        return []

    def before_cell(self) -> None:  # noqa: B027 (a local run has no hosts to lose)
        """Make sure every host can run the next cell; raises RunStopped when one cannot."""

    def close(self) -> None:
        """Stop the run's swarm (and a target started for a cell that will not run), and
        remove what `prepare` made for the run (and nothing a finished run needs)."""
        self._end_swarm()
        self._drop_next()
        self.services.close()

    def service_backend(self) -> Backend:
        """What starts the config's services where this runner runs the target."""
        raise RuntimeError(f"the {self.name} runner cannot start [services]")

    @abstractmethod
    def setup(self) -> RunnerDetails:
        """Build what cells need (images, the environments, filling `built`); what meta.json
        records."""

    @abstractmethod
    def run_check(self, log: Path, config: Config, environment: int) -> tuple[int, str]:
        """Set the app up (as `config` has it: its services' addresses filled in) and load it
        once where targets run, from that environment (commands.check_command); (exit code, its
        stdout), with everything it printed appended to `log`."""

    def _check_app(self, log: Path, config: Config, environment: int) -> None:
        app = config.app
        self.say(
            f"flaskbench: checking that {app.wsgi} loads{' after app.setup' * bool(app.setup)}"
        )
        code, out = self.run_check(log, config, environment)
        if code == 0:
            return
        text = log.read_text(errors="replace") if log.is_file() else ""
        if setup := re.search(r"launch: setup failed: (.*)", text):
            raise RuntimeError(f"app.setup: {setup.group(1)}; full output in {log}")
        error = next((line[7:] for line in out.splitlines() if line.startswith("error: ")), "")
        raise RuntimeError(
            f"app.wsgi: cannot load {app.wsgi} from {app.path}: "
            f"{error or f'the check exited with code {code}'}; check app.path and app.wsgi "
            f"(traceback in {log})"
        )

    @abstractmethod
    def start_target(self, ctx: CellContext) -> Service: ...

    @abstractmethod
    def start_swarm(self, key: SwarmKey, number: int) -> SwarmHandle:
        """The run's `number`th Locust swarm: its master and its workers, their output into the
        run's swarm directory."""

    @abstractmethod
    def start_proxy(self, ctx: CellContext) -> Service:
        """The proxy in front of the cell's target (it has one), its config written into the
        cell (PROXY_CONF), its output into PROXY_LOG."""

    @abstractmethod
    def start_sampler(
        self, ctx: CellContext, target: Service, swarm: SwarmHandle, proxy: Service | None
    ) -> ResourceSampler: ...

    def _swarm_for(self, cell: Cell) -> Swarm:
        """The swarm that runs this cell: the run's, unless it ended or the cell needs another
        (a workload's own Locust file)."""
        key = swarm_key(cell)
        if self._swarm is not None and (self._swarm.key != key or not self._swarm.alive()):
            self._end_swarm()
        if self._swarm is None:
            self._swarms += 1
            swarm = Swarm(key, self.start_swarm(key, self._swarms))
            try:
                swarm.wait_ready(SWARM_STARTUP_S + 10)
            except BaseException:
                with suppress(Exception):
                    swarm.stop()
                raise
            self._swarm = swarm
        return self._swarm

    def _end_swarm(self) -> None:
        """Stop the swarm; one that cannot be stopped (its host is gone) is said so, not
        raised: it ends by itself once no order comes."""
        swarm, self._swarm = self._swarm, None
        if swarm is None:
            return
        try:
            swarm.stop()
        except Exception as exc:
            self.say(f"flaskbench: could not stop the Locust swarm: {exc}")

    def run_cell(self, ctx: CellContext) -> CellStatus:
        started = time.time()
        parts = self._taken_next(ctx)
        if parts is None:
            _fresh_dir(ctx.cell_dir)
            parts = CellParts(ctx)
        sampler: ResourceSampler | None = None
        swarm: Swarm | None = None
        host_cpu = start_host_cpu(ctx) if self.placement.engines == (DEFAULT_ENGINE,) else None
        failure = ""
        try:
            swarm = self._swarm_for(ctx.cell)
            if parts.target is None:
                self._start_parts(parts)
            assert parts.target is not None
            ctx = parts.ctx
            sampler = self.start_sampler(ctx, parts.target, swarm.handle, parts.proxy).start()
            self._follow(ctx, swarm, parts)
        except (CellFailed, HostLost, SwarmFailed, ServiceFailed) as exc:
            failure = str(exc)
        except Exception as exc:  # one broken cell must not end the run
            failure = f"{type(exc).__name__}: {exc}"
            _save_traceback(ctx.cell_dir)
        except BaseException:
            self._end_swarm()
            _stop_parts(ctx.cell_dir, sampler, parts, host_cpu)
            raise
        if failure:
            # It may still be walking the cell's staircase: a new swarm takes the next cell.
            self._end_swarm()
        # The last window is over: while the master writes the cell's files, the target and
        # its services stop and the next cell's start.
        with ThreadPoolExecutor(max_workers=1) as pool:
            files = (
                pool.submit(self._loadgen_files, ctx, swarm)
                if not failure and swarm is not None
                else None
            )
            teardown = _stop_parts(ctx.cell_dir, sampler, parts, host_cpu)
            if files is not None and ctx.following is not None:
                self._start_next(ctx.following)
            if files is not None:
                failure = files.result()
        log = _read_log(ctx.cell_dir / TARGET_LOG)
        if not failure:
            failure = self._loadgen_failure(ctx) or self._app_failure(ctx, log)
        troubles = worker_troubles(server_of(ctx.cell.target), log) + teardown
        status: CellState = "failed" if failure else ("degraded" if troubles else "ok")
        # What the server logged about its workers often explains a failure too.
        reason = "; ".join(filter(None, [failure, *troubles]))
        return CellStatus(ctx.cell.cell_id, status, reason, started, time.time())

    def _start_parts(self, parts: CellParts) -> None:
        """The cell's services, then its target: the app's setup runs against the services,
        with their addresses in its environment. What started is in `parts`, whatever fails."""
        ctx = parts.ctx
        self._check_port(ctx)
        parts.services = self.services.start_cell(
            ctx.cell.target,
            ctx.cell.cell_id,
            ctx.cell_dir,
            cell_deadline_s(ctx) + ctx.config.ready_timeout_s,
        )
        parts.ctx = replace(ctx, config=replace(ctx.config, app=parts.services.cell_app()))
        parts.target = self.start_target(parts.ctx)
        if ctx.cell.target.proxy is not None:
            parts.proxy = self.start_proxy(parts.ctx)

    def _start_next(self, ctx: CellContext) -> None:
        """Start the next cell's services and target now; if that fails, what started stops
        and the cell itself tries again, and says why."""
        parts = CellParts(ctx)
        try:
            self.before_cell()
            _fresh_dir(ctx.cell_dir)
            self._start_parts(parts)
        except Exception:
            _stop_parts(ctx.cell_dir, None, parts, None)
            return
        self._next = parts

    def _taken_next(self, ctx: CellContext) -> CellParts | None:
        """The cell's target and services if the previous cell started them (those started
        for another cell stop)."""
        if self._next is not None and self._next.ctx.cell.cell_id == ctx.cell.cell_id:
            parts, self._next = self._next, None
            # Started ahead, its context knew neither the cell after it (whose start it
            # overlaps in turn) nor the progress bar: this cell's do.
            parts.ctx = replace(parts.ctx, on_progress=ctx.on_progress, following=ctx.following)
            return parts
        self._drop_next()
        return None

    def _drop_next(self) -> None:
        parts, self._next = self._next, None
        if parts is not None:
            _stop_parts(parts.ctx.cell_dir, None, parts, None)

    def _check_port(self, ctx: CellContext) -> None:
        # The previous cell's processes were killed a moment ago: a loaded machine may take a
        # few seconds to reap them and let go of the port.
        deadline = time.monotonic() + PORT_RELEASE_S
        for port in cell_ports(ctx.cell, ctx.config):
            while port_in_use(ctx.config.host, port):
                if time.monotonic() > deadline:
                    behind = " (the server's, behind the proxy)" if port != ctx.config.port else ""
                    raise CellFailed(
                        f"port {port}{behind} on {ctx.config.host} is already in use by another "
                        "process; free it or set run.port"
                    )
                time.sleep(0.2)

    def _follow(self, ctx: CellContext, swarm: Swarm, parts: CellParts) -> None:
        """Send the cell's order and follow it to its last window: its target, its services
        and its proxy must live that long."""
        target, services, proxy = parts.target, parts.services, parts.proxy
        assert target is not None
        planned = ctx.plan.load_seconds(ctx.cell)
        begun = time.monotonic()

        def check() -> None:
            elapsed = time.monotonic() - begun
            ctx.on_progress(min(elapsed, planned))
            if services is not None and (gone := services.failure()):
                raise CellFailed(gone)
            if (code := target.returncode()) is not None:
                see = "" if code == REMOVED else f"; see {TARGET_LOG}"
                raise CellFailed(
                    startup_failure(_read_log(ctx.cell_dir / TARGET_LOG))
                    or f"target {target.exit_description()} {elapsed:.0f}s into the staircase" + see
                )
            if proxy is not None and proxy.returncode() is not None:
                raise CellFailed(proxy_failure(proxy, self.proxy_log(ctx, proxy)))

        swarm.order(ctx.cell, cell_options(ctx.cell, ctx.config))
        allowed = planned + ready_budget_s(ctx.config) + ctx.config.request_timeout_s
        try:
            swarm.next_event(begun + allowed, "measured", check)
        except SwarmFailed as exc:
            raise SwarmFailed(f"{exc} (planned {planned}s of steps)") from None
        ctx.on_progress(planned)

    def proxy_log(self, ctx: CellContext, proxy: Service) -> str:
        """What the proxy has written so far (its error log)."""
        return _read_log(ctx.cell_dir / PROXY_LOG)

    def _loadgen_files(self, ctx: CellContext, swarm: Swarm) -> str:
        """Once the master wrote the cell's files, they come home; why not, or ""."""
        try:
            done = swarm.next_event(time.monotonic() + CELL_DONE_S, "done")
            if done.get("error"):
                return f"the Locust master refused the cell: {done['error']}"
            swarm.handle.bring_home(ctx.cell.cell_id)
        except (SwarmFailed, HostLost) as exc:
            self._end_swarm()
            return str(exc)
        return ""

    def _app_failure(self, ctx: CellContext, log: str) -> str:
        """A cell whose app raised while serving has failed: its traceback goes beside it."""
        found = app_errors(log)
        if found is None:
            return ""
        count, traceback_text = found
        (ctx.cell_dir / APP_ERROR).write_text(traceback_text + "\n")
        last = traceback_text.splitlines()[-1].strip()
        return (
            f"the app raised {last} ({count} time{'s' if count != 1 else ''} while serving); "
            f"traceback in {APP_ERROR} and the report"
        )

    def _loadgen_failure(self, ctx: CellContext) -> str:
        path = ctx.cell_dir / LOADGEN_JSON
        if not path.is_file():
            return f"the Locust master wrote no {LOADGEN_JSON}; see {MASTER_LOG}"
        return verification_failure(path)


def _fresh_dir(cell_dir: Path) -> None:
    """A cell's directory, empty: an interrupted or failed attempt's files must not mix with
    the new attempt's."""
    if cell_dir.exists():
        shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)


def proxy_failure(proxy: Service, log: str) -> str:
    """Why the proxy in front of the target ended: its own last words (its error log)."""
    said = [
        line.strip()
        for line in log.splitlines()
        if re.search(r"\[(emerg|alert|crit|error)\]|^proxy: error: ", line)
    ]
    words = " | ".join(said[-3:]) or "it said nothing"
    return f"the proxy {proxy.exit_description()}: {words}; see {PROXY_LOG}"


def startup_failure(log: str) -> str:
    """Why a target ended before it answered, when the launcher or the app said so."""
    if setup := re.search(r"launch: setup failed: (.*)", log):
        return f"app.setup failed: {setup.group(1)}; see {SETUP_LOG}"
    if load := re.search(r"appload: cannot load [^:]*(?::[^:]*)?: (.*)", log):
        return f"the app did not load: {load.group(1)}; see {TARGET_LOG}"
    return ""


def app_errors(log: str) -> tuple[int, str] | None:
    """Tracebacks the server logged while serving (the app raised): how many, and the first,
    with the line before it, which names the request on most servers."""
    lines = log.splitlines()
    found: list[list[str]] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("Traceback (most recent call last):"):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
            end += 1
        end = min(end, len(lines) - 1)
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        chained = before.startswith(("During handling", "The above exception"))
        if not chained and not lines[end].startswith(("KeyboardInterrupt", "SystemExit")):
            found.append(lines[max(index - 1, 0) : end + 1])
        index = end + 1
    return (len(found), "\n".join(found[0])) if found else None


def verification_failure(loadgen_json: Path) -> str:
    """Why the Locust master refused to send load (its check of every request), or ""."""
    try:
        verification = read_loadgen(loadgen_json).get("verification")
    except ContractError:
        return ""
    failure = verification["failure"] if verification else None
    if verification is None or verification["ok"] or not isinstance(failure, dict):
        return ""
    if failure.get("request") == READINESS:
        return (
            f"target did not answer {failure.get('expected')} (run.ready_timeout); see {TARGET_LOG}"
        )
    status = failure.get("status")
    got = f"HTTP {status}" if status else "no answer"
    body = " | ".join(str(failure.get("body", "")).strip().splitlines()[:3])
    return (
        f"verification: {failure.get('request')} gave {got}, expected {failure.get('expected')}"
        f"{f' ({body})' if body else ''}; no load was sent"
    )


def cell_deadline_s(ctx: CellContext) -> int:
    """How long anything a cell starts may live: the longest the orchestrator waits for the
    target to answer and for Locust to walk the staircase, plus the teardown."""
    return _deadline_s(ctx.config, ctx.plan.load_seconds(ctx.cell))


def _deadline_s(config: Config, load_s: int) -> int:
    return ready_budget_s(config) + config.request_timeout_s + load_s + TEARDOWN_MARGIN_S


def run_deadline_s(config: Config, placement: Placement) -> int:
    """How long a service of the whole run may live: every cell at its longest, each after
    its services' start, and the app's check before them."""
    plan = make_plan(config, placement)
    cells = sum(
        _deadline_s(config, plan.load_seconds(cell)) + config.ready_timeout_s for cell in plan.cells
    )
    return cells + 3 * ready_budget_s(config) + TEARDOWN_MARGIN_S


def _stop_parts(
    cell_dir: Path,
    sampler: ResourceSampler | None,
    parts: CellParts,
    host_cpu: HostCpuSampler | None,
    proxy: Service | None = None,
) -> list[str]:
    """Stop what a cell started, all at once, which keeps the time between cells short, and
    its services after its target (its app's connections end before they do); say what could
    not be stopped."""
    started = [s for s in (sampler, parts.target, host_cpu, parts.proxy) if s is not None]
    with ThreadPoolExecutor(max_workers=max(len(started), 1)) as pool:
        found = list(pool.map(lambda service: _stop(service, cell_dir), started))
    problems = [problem for problem in found if problem]
    return problems + (parts.services.stop() if parts.services else [])


def start_host_cpu(ctx: CellContext) -> HostCpuSampler:
    """Busy and steal time of both sides' CPUs, whichever runner starts the processes, when
    both run on this machine (its /proc/stat says nothing of another host's)."""
    sides = {"target": ctx.config.cpus.target, "load": ctx.config.cpus.load}
    return HostCpuSampler(ctx.cell_dir / HOST_CPU_CSV, sides).start()


def _stop(service: Service | ResourceSampler | HostCpuSampler, cell_dir: Path) -> str:
    """Stop one thing; if that fails, say so and let the caller go on with the rest."""
    try:
        service.stop()
    except HostLost as exc:
        return (
            f"teardown: {engine_label(exc.engine)} did not answer; what the cell left there "
            "goes once it answers again, or stops by itself at its deadline"
        )
    except Exception as exc:
        _save_traceback(cell_dir)
        return f"teardown: {type(exc).__name__}: {exc}"
    return ""


def _save_traceback(cell_dir: Path) -> None:
    with (cell_dir / ERROR_TXT).open("a") as handle:
        handle.write(traceback.format_exc())


def worker_troubles(server: Server, log: str) -> list[str]:
    """Worker deaths the server logged, in order, once each."""
    found: dict[str, None] = {}
    for line in log.splitlines():
        for trouble in server.worker_troubles:
            if match := trouble.pattern.search(line):
                found[trouble.message.format(*match.groups())] = None
    return list(found)


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def describe_exit(code: int | None, signals: Sequence[str] = ()) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        return f"was killed by signal {-code}"
    if code > 128 and code - 128 < 65:
        return f"exited with code {code} (signal {code - 128})"
    extra = f" ({', '.join(signals)})" if signals else ""
    return f"exited with code {code}{extra}"
