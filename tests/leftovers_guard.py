"""What tests leave behind, and its removal: every test's processes, containers and network
namespaces go in the test's own teardown whatever happened, so one failure never shows up in
another test; and the session fails, naming the test, if anything outlives it all.

What counts as a test's own, so that nothing of anybody else's is touched:
- processes: this session's descendants that were not running when the test started, and
  processes whose command line names the test's temporary directory (orphans re-parented away);
- containers: on this machine's engine, those whose `flaskbench.owner` is a process of this
  session (a `flaskbench` the test started) or that a test of this session made itself and
  labelled so (`guard_labels`); never one that another session's test labelled, since other
  sessions (another checkout, CI) may share the engine; on an engine a fixture made for the
  session (an emulated host), every container that was not there when the test started;
- network namespaces: those named with this session's tag (tests/netns.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

OWNER_LABEL = "flaskbench.owner"
RUN_LABEL = "flaskbench.run"
TEST_LABEL = "flaskbench.test"
# The session whose test made a container: sessions that share an engine leave each other's be.
SESSION_LABEL = "flaskbench.test_session"
# A flaskbench run still going when its test ended gets this long to tear its cell down.
INTERRUPT_GRACE_S = 60


def session_tag() -> str:
    """The prefix of everything this session names itself (network namespaces, links)."""
    return f"fbt{os.getpid() % 100000}"


def session_id() -> str:
    """This session among every one that may share this machine's engine (pid and start time:
    a pid alone may be reused)."""
    from flaskbench.execute.leftovers import controller_id

    process = psutil.Process()
    return f"{controller_id()}/{process.pid}/{process.create_time():.2f}"


def guard_labels() -> dict[str, str]:
    """Labels for a container a test makes itself, so that it is removed whatever happens: the
    test's, and this session's (other sessions sharing the engine leave it alone)."""
    return {
        TEST_LABEL: os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
        SESSION_LABEL: session_id(),
    }


@dataclass(frozen=True)
class Span:
    nodeid: str
    start: float
    end: float


@dataclass
class Guard:
    started: float = field(default_factory=time.time)
    spans: list[Span] = field(default_factory=list)
    # Engines a fixture made for the session (emulated hosts): everything on them is ours.
    engines: dict[str, Any] = field(default_factory=dict)
    # What each test's teardown had to remove: (test, what).
    removed: list[tuple[str, str]] = field(default_factory=list)
    # This session's temporary directory, where its runs write their results.
    basetemp: Path | None = None

    # -- one test ---------------------------------------------------------------------------

    def before(self) -> Snapshot:
        return Snapshot(
            time.time(),
            set(descendants(os.getpid())),
            {url: _ids(client) for url, client in self.engines.items()},
        )

    def after(self, nodeid: str, snapshot: Snapshot, tmp_path: Path | None) -> None:
        """Remove what the test left, whatever happened to it."""
        new = [pid for pid in descendants(os.getpid()) if pid not in snapshot.descendants]
        if tmp_path is not None:
            new += [pid for pid in mentioning(str(tmp_path)) if pid not in new]
        removed = stop_processes(new)
        local = local_client()
        if local is not None:
            removed += remove(local, self._ours(local, snapshot.at), "this machine")
        for url, client in self.engines.items():
            with contextlib.suppress(Exception):
                before = snapshot.containers.get(url, set())
                removed += remove(client, [c for c in _list(client) if c.id not in before], url)
        self.removed += [(nodeid, what) for what in removed]
        self.spans.append(Span(nodeid, snapshot.at, time.time()))

    # -- the session ------------------------------------------------------------------------

    def left_at_end(self) -> list[str]:
        """What is still there once every test and fixture ended: one line each, naming the
        test that made it (the one running when it was created)."""
        lines = []
        for pid in descendants(os.getpid()):
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                command = " ".join(process.cmdline())
                lines.append(f"{self.maker(process.create_time())}: process {pid}: {command}")
        local = local_client()
        if local is not None:
            for container in self._ours(local, self.started):
                test = container.labels.get(TEST_LABEL) or self.maker(_created(container))
                lines.append(f"{test}: container {container.name} on this machine")
        lines += [f"?: network namespace {name}" for name in namespaces(session_tag())]
        return lines

    def _ours(self, client: Any, since: float) -> list[Any]:
        return ours(client, since, self.basetemp) if self.basetemp else []

    def maker(self, created: float) -> str:
        """The test that was running at that time."""
        found = [s.nodeid for s in self.spans if s.start - 1 <= created <= s.end + 1]
        return found[-1] if found else "a fixture outside any test"


@dataclass(frozen=True)
class Snapshot:
    at: float
    descendants: set[int]
    containers: dict[str, set[str]]


def ours(client: Any, since: float, basetemp: Path) -> list[Any]:
    """Containers of this machine's engine that this session's tests made (labelled so), and
    those of this session's runs (their run directory is under its temporary directory) that
    ended without removing them (their owner is gone), created since then. Another session's
    are never touched."""
    from flaskbench.execute.leftovers import controller_id, flaskbench_alive, owner_alive

    here = controller_id()
    found = {c.id: c for c in _list(client, {"label": f"{SESSION_LABEL}={session_id()}"})}
    for container in _list(client, {"label": OWNER_LABEL}):
        labels = dict(container.labels)
        if TEST_LABEL in labels:
            # A test's stand-in for a crashed run: its own session removes it (found above).
            continue
        mine = _run_of_this_session(labels.get(RUN_LABEL, ""), basetemp)
        recent = _created(container) >= since - 1
        if mine and recent and not owner_alive(labels, here, flaskbench_alive):
            found[container.id] = container
    return list(found.values())


def _run_of_this_session(run_id: str, basetemp: Path) -> bool:
    """Whether a run directory of that name is in this session's temporary directory (tests
    write results under their tmp_path, one or two levels down)."""
    if not run_id or "/" in run_id:
        return False
    return any(basetemp.glob(f"*/results/{run_id}")) or any(basetemp.glob(f"*/*/results/{run_id}"))


def _created(container: Any) -> float:
    from flaskbench.execute.engines import engine_time

    try:
        return engine_time(container.attrs["Created"])
    except (KeyError, ValueError):
        return 0.0


def descendants(pid: int) -> list[int]:
    with contextlib.suppress(psutil.Error):
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    return []


def mentioning(text: str) -> list[int]:
    """Live processes (not this one) whose command line contains `text`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.pid != os.getpid() and text in " ".join(process.info["cmdline"] or ()):
                found.append(process.pid)
    return found


def stop_processes(pids: Iterable[int]) -> list[str]:
    """Stop them: a flaskbench run is interrupted first so that it tears its cell down (its
    containers included), everything else is killed. Returns what was still running."""
    running: dict[int, tuple[psutil.Process, str]] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                running[pid] = (process, " ".join(process.cmdline())[:80])
    runs = [process for process, command in running.values() if _is_flaskbench(command)]
    for process in runs:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGINT)
    psutil.wait_procs(runs, timeout=INTERRUPT_GRACE_S)
    for process, _ in running.values():
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs([process for process, _ in running.values()], timeout=10)
    return [f"process {pid} ({command})" for pid, (_, command) in running.items()]


def _is_flaskbench(command: str) -> bool:
    return " -m flaskbench " in f"{command} " or command.split(" ", 1)[0].endswith("/flaskbench")


def local_client() -> Any | None:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:  # no engine here: nothing of ours can be in it
        return None
    return client


def _list(client: Any, filters: dict[str, Any] | None = None) -> list[Any]:
    from flaskbench.execute.engines import list_containers

    return list_containers(client, filters)


def _ids(client: Any) -> set[str]:
    with contextlib.suppress(Exception):
        return {c.id for c in _list(client)}
    return set()


def remove(client: Any, containers: list[Any], where: str) -> list[str]:
    """Remove containers with their volumes (a compose project's named ones too)."""
    removed = []
    projects = set()
    for container in containers:
        projects.add(container.labels.get("com.docker.compose.project"))
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed.append(f"container {container.name} on {where}")
    for project in projects - {None}:
        with contextlib.suppress(Exception):
            filters = {"label": f"com.docker.compose.project={project}"}
            for volume in client.volumes.list(filters=filters):
                volume.remove(force=True)
    return removed


def namespaces(prefix: str) -> list[str]:
    try:
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in listed.splitlines() if line.startswith(prefix)]


# -- the plugin (tests/conftest.py loads it) ----------------------------------------------

GUARD = pytest.StashKey[Guard]()
LEFT = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[GUARD] = Guard()


@pytest.fixture(autouse=True)
def _nothing_outlives_the_test(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Whatever happened in the test, what it started goes in its own teardown."""
    guard = request.config.stash[GUARD]
    guard.basetemp = tmp_path_factory.getbasetemp()
    snapshot = guard.before()
    yield
    guard.after(request.node.nodeid, snapshot, request.node.funcargs.get("tmp_path"))


@pytest.fixture(scope="session")
def guard(request: pytest.FixtureRequest) -> Guard:
    """For fixtures that make engines of their own (emulated hosts) to register them."""
    return request.config.stash[GUARD]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Anything a test made that is still there now fails the session, naming the test."""
    guard = session.config.stash.get(GUARD, None)
    if guard is None:
        return
    left = guard.left_at_end()
    session.config.stash[LEFT] = left
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    guard = terminalreporter.config.stash.get(GUARD, None)
    if guard is not None and guard.removed:
        terminalreporter.section("removed after tests (each test's own teardown)")
        for test, what in guard.removed:
            terminalreporter.write_line(f"{test}: {what}")
    left = terminalreporter.config.stash.get(LEFT, [])
    if left:
        terminalreporter.section("LEFT BEHIND after the session", red=True, bold=True)
        for line in left:
            terminalreporter.write_line(f"LEFT BEHIND by {line}", red=True)
