"""What every runner does for one cell, whatever starts the processes.

A runner starts a target, waits until it answers (as seen from where the load comes from),
starts the Locust swarm, whose master checks every request of the workload before any load, and
a resource sampler, watches both until the staircase is done, and tears everything down,
whatever happens. It reports how the cell ended; the raw files it leaves are read later by
`collect`.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flaskbench.config.app import TARGET_PACKAGE
from flaskbench.config.hosts import DEFAULT_ENGINE, engine_label
from flaskbench.config.load import Config
from flaskbench.execute.commands import READINESS
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
from flaskbench.plan.cells import LOADGEN_STARTUP_S, Cell, Plan, ready_budget_s
from flaskbench.plan.placement import Placement, single_host
from flaskbench.results.contract import (
    APP_CHECK_LOG,
    APP_ERROR,
    ERROR_TXT,
    HOST_CPU_CSV,
    LOADGEN_JSON,
    MEMORY_CSV,
    SETUP_LOG,
    TARGET_LOG,
    CellState,
    ContractError,
    HostRecord,
    RunnerDetails,
    read_loadgen,
)
from flaskbench.results.rundir import CellStatus, atomic_write_text
from flaskbench.servers.base import Server, Target
from flaskbench.servers.registry import server_of

# Beyond everything a cell may take, before its containers stop themselves: stopping the
# stacks and saving their logs.
TEARDOWN_MARGIN_S = 30
# What a service's returncode() is once something other than flaskbench removed it (a
# container someone ran `docker rm` on): it left no exit code, and no log to read.
REMOVED = -256
# How long a cell waits for its port to be free before it fails.
PORT_RELEASE_S = 10


class CellFailed(Exception):
    """The cell produced no usable measurements; the message says why."""


class RunStopped(Exception):
    """The run cannot go on (a host is gone); the message says why and what to do."""


class Service(Protocol):
    """Something a runner started: a target, or a Locust master with its workers."""

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
        self.placement = single_host(config)
        # The environments targets are served from, what each build reported (setup fills it,
        # in the plan's order), and each target's server version or why it is left out.
        self.environments = plan_environments(config.app, config.targets)
        self.built: list[Built] = []
        self.keys = [environment.key() for environment in self.environments.environments]
        self.outcome = Outcome({}, {})

    def prepare(self, run_dir: Path, placement: Placement) -> RunnerDetails:
        """Get ready to run cells where `placement` says (the environments built, each target's
        server version known or the target left out) and check that the app loads, before any
        cell starts; return what meta.json should record. Raises RuntimeError with one line on
        failure, or when no target can run."""
        self.run_id = run_dir.name
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
        self._check_app(run_dir / APP_CHECK_LOG, first)
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

    def close(self) -> None:  # noqa: B027 (most runners make nothing to remove)
        """Remove what `prepare` made for the run (and nothing a finished run needs)."""

    @abstractmethod
    def setup(self) -> RunnerDetails:
        """Build what cells need (images, the environments, filling `built`); what meta.json
        records."""

    @abstractmethod
    def run_check(self, log: Path, environment: int) -> tuple[int, str]:
        """Set the app up and load it once where targets run, from that environment
        (commands.check_command); (exit code, its stdout), with everything it printed appended
        to `log`."""

    def _check_app(self, log: Path, environment: int) -> None:
        app = self.config.app
        self.say(
            f"flaskbench: checking that {app.wsgi} loads{' after app.setup' * bool(app.setup)}"
        )
        code, out = self.run_check(log, environment)
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
    def start_loadgen(self, ctx: CellContext) -> Service: ...

    @abstractmethod
    def start_sampler(
        self, ctx: CellContext, target: Service, loadgen: Service
    ) -> ResourceSampler: ...

    def run_cell(self, ctx: CellContext) -> CellStatus:
        ctx.cell_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        target: Service | None = None
        loadgen: Service | None = None
        sampler: ResourceSampler | None = None
        host_cpu = start_host_cpu(ctx) if self.placement.engines == (DEFAULT_ENGINE,) else None
        failure = ""
        try:
            self._check_port(ctx)
            # Locust starts while the target does: its master waits until the target answers,
            # so neither start-up waits for the other.
            target = self.start_target(ctx)
            loadgen = self.start_loadgen(ctx)
            sampler = self.start_sampler(ctx, target, loadgen).start()
            self._watch(ctx, target, loadgen)
        except (CellFailed, HostLost) as exc:
            failure = str(exc)
        except Exception as exc:  # one broken cell must not end the run
            failure = f"{type(exc).__name__}: {exc}"
            _save_traceback(ctx.cell_dir)
        finally:
            teardown = _stop_all(ctx.cell_dir, loadgen, sampler, target, host_cpu)
        log = _read_log(ctx.cell_dir / TARGET_LOG)
        if not failure:
            failure = self._loadgen_failure(ctx, loadgen) or self._app_failure(ctx, log)
        troubles = worker_troubles(server_of(ctx.cell.target), log) + teardown
        status: CellState = "failed" if failure else ("degraded" if troubles else "ok")
        # What the server logged about its workers often explains a failure too.
        reason = "; ".join(filter(None, [failure, *troubles]))
        return CellStatus(ctx.cell.cell_id, status, reason, started, time.time())

    def _check_port(self, ctx: CellContext) -> None:
        # The previous cell's processes were killed a moment ago: a loaded machine may take a
        # few seconds to reap them and let go of the port.
        deadline = time.monotonic() + PORT_RELEASE_S
        while port_in_use(ctx.config.host, ctx.config.port):
            if time.monotonic() > deadline:
                raise CellFailed(
                    f"port {ctx.config.port} on {ctx.config.host} is already in use by another "
                    "process; free it or set run.port"
                )
            time.sleep(0.2)

    def _watch(self, ctx: CellContext, target: Service, loadgen: Service) -> None:
        planned = ctx.plan.load_seconds_per_cell
        allowed = planned + LOADGEN_STARTUP_S + ready_budget_s(ctx.config)
        begun = time.monotonic()
        while loadgen.returncode() is None:
            elapsed = time.monotonic() - begun
            ctx.on_progress(min(elapsed, planned))
            if (code := target.returncode()) is not None:
                see = "" if code == REMOVED else f"; see {TARGET_LOG}"
                raise CellFailed(
                    startup_failure(_read_log(ctx.cell_dir / TARGET_LOG))
                    or f"target {target.exit_description()} {elapsed:.0f}s into the staircase" + see
                )
            if elapsed > allowed:
                raise CellFailed(
                    f"Locust had not finished {allowed}s after it started "
                    f"(planned {planned}s); stopped it"
                )
            time.sleep(0.1)
        ctx.on_progress(planned)

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

    def _loadgen_failure(self, ctx: CellContext, loadgen: Service | None) -> str:
        if loadgen is None:
            return ""
        path = ctx.cell_dir / LOADGEN_JSON
        if not path.is_file():
            see = "" if loadgen.returncode() == REMOVED else "; see locust-master.log"
            return f"Locust {loadgen.exit_description()} without writing {LOADGEN_JSON}{see}"
        return verification_failure(path)


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
    return (
        ready_budget_s(ctx.config)
        + ctx.config.request_timeout_s
        + LOADGEN_STARTUP_S
        + ctx.plan.load_seconds_per_cell
        + TEARDOWN_MARGIN_S
    )


def _stop_all(
    cell_dir: Path,
    loadgen: Service | None,
    sampler: ResourceSampler | None,
    target: Service | None,
    host_cpu: HostCpuSampler | None,
) -> list[str]:
    """Stop what a cell started; say what could not be stopped. Load that is still going stops
    first, so the target's last seconds are not spent refusing connections; the rest stops at
    once, which keeps the time between cells short."""
    first: list[Service] = []
    if loadgen is not None and _may_run(loadgen):
        first, loadgen = [loadgen], None
    rest = [s for s in (loadgen, sampler, target, host_cpu) if s is not None]
    problems = [problem for service in first if (problem := _stop(service, cell_dir))]
    with ThreadPoolExecutor(max_workers=max(len(rest), 1)) as pool:
        found = list(pool.map(lambda service: _stop(service, cell_dir), rest))
    return problems + [problem for problem in found if problem]


def _may_run(service: Service) -> bool:
    """Whether it may still be running: a host that stopped answering cannot say it is not."""
    try:
        return service.returncode() is None
    except Exception:
        return True


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
