"""What every runner does for one cell, whatever starts the processes.

A runner starts a target, waits until it answers, checks that the workload's URL works,
starts the Locust swarm and a resource sampler, watches both until the staircase is done, and
tears everything down, whatever happens. It reports how the cell ended; the raw files it
leaves are read later by `collect`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from flaskbench.commands import LOADGEN_JSON
from flaskbench.config import Config
from flaskbench.plan import LOADGEN_STARTUP_S, Cell, Plan
from flaskbench.probes import http_get, port_in_use
from flaskbench.rundir import CellStatus, atomic_write_text

# Beyond everything a cell may take, before its containers stop themselves: stopping the
# stacks and saving their logs.
TEARDOWN_MARGIN_S = 30
TARGET_LOG = "target.log"
RESOURCES_CSV = "resources.csv"
# In the run directory: what checking the app printed (its traceback, if it failed).
APP_CHECK_LOG = "app-check.log"

# Lines a server writes when it loses a worker mid-run: the cell finishes but is degraded.
_WORKER_TROUBLE = (
    (re.compile(r"WORKER TIMEOUT \(pid:(\d+)\)"), "gunicorn worker {0} timed out and was killed"),
    (
        re.compile(r"Worker \(pid:(\d+)\) was sent SIGKILL"),
        "gunicorn worker {0} was killed (SIGKILL; out of memory?)",
    ),
    (
        re.compile(r"Worker \(pid:(\d+)\) was sent code (\d+)"),
        "gunicorn worker {0} exited with code {1}",
    ),
    (
        re.compile(r"Worker \(pid:(\d+)\) exited with code (\d+)"),
        "gunicorn worker {0} exited with code {1}",
    ),
    # uWSGI's master (core/master.c): only for a worker that dies while the server is not
    # stopping ("worker N buried" then).
    (
        re.compile(
            r"DAMN ! worker \d+ \(pid: (\d+)\) (?:MISTERIOUSLY |died, )killed by signal (\d+)"
        ),
        "uWSGI worker {0} was killed by signal {1}",
    ),
    (re.compile(r"DAMN ! worker \d+ \(pid: (\d+)\) died :\("), "uWSGI worker {0} died"),
    (
        re.compile(r"HARAKIRI ON WORKER \d+ \(pid: (\d+)"),
        "uWSGI worker {0} passed its harakiri timeout and was killed",
    ),
    # granian names workers by index. It respawns only a worker that died on its own; its
    # "Unexpected exit" line can also come from a worker stopping on the SIGTERM the launcher
    # sends the whole group before the main process has asked it to.
    (re.compile(r"Respawning worker-(\d+)"), "granian worker-{0} died and was respawned"),
    # uvicorn's supervisor, for a worker that died or stopped answering its health check.
    (re.compile(r"Child process \[(\d+)\] died"), "uvicorn worker {0} died and was replaced"),
)


class CellFailed(Exception):
    """The cell produced no usable measurements; the message says why."""


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
    """Samples CPU and memory of both sides once a second into resources.csv."""

    interval_s = 1.0

    def __init__(self, out: Path) -> None:
        self._out = out
        self._rows: list[tuple[float, str, str, float, float]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def record(self, t: float, side: str, name: str, cpu_pct: float, rss_mb: float) -> None:
        with self._lock:
            self._rows.append((round(t, 3), side, name, round(cpu_pct, 1), round(rss_mb, 1)))

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
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(("t", "side", "name", "cpu_pct", "rss_mb"))
        with self._lock:
            writer.writerows(sorted(self._rows))
        atomic_write_text(self._out, buffer.getvalue())


class Runner(ABC):
    name = "runner"

    def __init__(self, config: Config, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.run_id = ""

    def prepare(self, run_dir: Path) -> dict[str, Any]:
        """Get ready to run cells and check that the app loads, before any cell starts;
        return what meta.json should record. Raises RuntimeError with one line on failure."""
        self.run_id = run_dir.name
        details = self.setup()
        self._check_app(run_dir / APP_CHECK_LOG)
        details["app_packages"] = self.app_packages()
        return details

    def close(self) -> None:  # noqa: B027 (most runners make nothing to remove)
        """Remove what `prepare` made for the run (and nothing a finished run needs)."""

    @abstractmethod
    def setup(self) -> dict[str, Any]:
        """Build what cells need (images, the app's environment); what meta.json records."""

    @abstractmethod
    def run_check(self, log: Path) -> tuple[int, str]:
        """Set the app up and load it once where targets run (commands.check_command);
        (exit code, its stdout), with everything it printed appended to `log`."""

    @abstractmethod
    def app_packages(self) -> dict[str, str]:
        """{distribution: version} of the environment the app is served from."""

    def _check_app(self, log: Path) -> None:
        app = self.config.app
        self.say(
            f"flaskbench: checking that {app.wsgi} loads{' after app.setup' * bool(app.setup)}"
        )
        code, out = self.run_check(log)
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
        failure = ""
        try:
            self._check_port(ctx)
            target = self.start_target(ctx)
            self._wait_ready(ctx, target)
            loadgen = self.start_loadgen(ctx)
            sampler = self.start_sampler(ctx, target, loadgen).start()
            self._watch(ctx, target, loadgen)
        except CellFailed as exc:
            failure = str(exc)
        except Exception as exc:  # one broken cell must not end the run
            failure = f"{type(exc).__name__}: {exc}"
            _save_traceback(ctx.cell_dir)
        finally:
            # Load first, so the target's last seconds are not spent refusing connections.
            teardown = [
                problem
                for service in (loadgen, sampler, target)
                if service is not None and (problem := _stop(service, ctx.cell_dir))
            ]
        if not failure:
            failure = self._loadgen_failure(ctx, loadgen)
        troubles = worker_troubles(_read_log(ctx.cell_dir / TARGET_LOG)) + teardown
        status = "failed" if failure else ("degraded" if troubles else "ok")
        # What the server logged about its workers often explains a failure too.
        reason = "; ".join(filter(None, [failure, *troubles]))
        return CellStatus(ctx.cell.cell_id, status, reason, started, time.time())

    def _check_port(self, ctx: CellContext) -> None:
        if port_in_use(ctx.config.host, ctx.config.port):
            raise CellFailed(
                f"port {ctx.config.port} on {ctx.config.host} is already in use by another "
                "process; free it or set run.port"
            )

    def _wait_ready(self, ctx: CellContext, target: Service) -> None:
        deadline = time.monotonic() + ctx.config.ready_timeout_s
        while time.monotonic() < deadline:
            if target.returncode() is not None:
                raise CellFailed(
                    f"target {target.exit_description()} before it answered; see {TARGET_LOG}"
                )
            # Any answer will do: an app need not serve "/".
            if http_get(ctx.config.host, ctx.config.port, "/", timeout=1.0)[0]:
                return
            time.sleep(0.2)
        raise CellFailed(
            f"target did not answer within {ctx.config.ready_timeout_s}s "
            f"(run.ready_timeout); see {TARGET_LOG}"
        )

    def _watch(self, ctx: CellContext, target: Service, loadgen: Service) -> None:
        planned = ctx.plan.load_seconds_per_cell
        begun = time.monotonic()
        while loadgen.returncode() is None:
            elapsed = time.monotonic() - begun
            ctx.on_progress(min(elapsed, planned))
            if target.returncode() is not None:
                raise CellFailed(
                    f"target {target.exit_description()} {elapsed:.0f}s into the staircase; "
                    f"see {TARGET_LOG}"
                )
            if elapsed > planned + LOADGEN_STARTUP_S:
                raise CellFailed(
                    f"Locust had not finished {planned + LOADGEN_STARTUP_S}s after it started "
                    f"(planned {planned}s); stopped it"
                )
            time.sleep(0.25)
        ctx.on_progress(planned)

    def _loadgen_failure(self, ctx: CellContext, loadgen: Service | None) -> str:
        if loadgen is None:
            return ""
        path = ctx.cell_dir / LOADGEN_JSON
        if not path.is_file():
            return (
                f"Locust {loadgen.exit_description()} without writing {LOADGEN_JSON}; "
                "see locust-master.log"
            )
        return verification_failure(path)


def verification_failure(loadgen_json: Path) -> str:
    """Why the Locust master refused to send load (its check of every request), or ""."""
    try:
        verification = json.loads(loadgen_json.read_text()).get("verification") or {}
    except (OSError, ValueError, AttributeError):
        return ""
    failure = verification.get("failure")
    if verification.get("ok", True) or not isinstance(failure, dict):
        return ""
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
        ctx.config.ready_timeout_s
        + ctx.config.request_timeout_s
        + LOADGEN_STARTUP_S
        + ctx.plan.load_seconds_per_cell
        + TEARDOWN_MARGIN_S
    )


def _stop(service: Service | ResourceSampler, cell_dir: Path) -> str:
    """Stop one thing; if that fails, say so and let the caller go on with the rest."""
    try:
        service.stop()
    except Exception as exc:
        _save_traceback(cell_dir)
        return f"teardown: {type(exc).__name__}: {exc}"
    return ""


def _save_traceback(cell_dir: Path) -> None:
    with (cell_dir / "error.txt").open("a") as handle:
        handle.write(traceback.format_exc())


def worker_troubles(log: str) -> list[str]:
    """Worker deaths a server logged, in order, once each."""
    found: dict[str, None] = {}
    for line in log.splitlines():
        for pattern, template in _WORKER_TROUBLE:
            if match := pattern.search(line):
                found[template.format(*match.groups())] = None
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
