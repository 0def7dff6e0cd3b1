"""The shared cell procedure, with stand-in servers: readiness, verification, worker deaths."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from benchrun import ALL_TARGETS, flaskbench, processes_mentioning, summary, write_config

from flaskbench.config.load import load_config
from flaskbench.execute import commands
from flaskbench.execute.runners.local_runner import LocalProcess, LocalRunner, remove_stale_files
from flaskbench.execute.runners.runner import CellContext, worker_troubles
from flaskbench.plan.cells import make_plan
from flaskbench.servers.registry import SERVERS

pytestmark = pytest.mark.load


def test_a_target_that_never_answers_fails_its_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write_config(tmp_path, {"sync": ALL_TARGETS["sync"]}, {"io": {"io_ms": 100}})
    text = config_path.read_text().replace('ready_timeout = "20s"', 'ready_timeout = "2s"')
    config_path.write_text(text)
    config = load_config(config_path)
    marker = str(tmp_path / "never-listens")
    # A server that starts, says something, and never listens.
    monkeypatch.setattr(
        commands,
        "server_argv",
        lambda *_: ["-c", f"print('starting {marker}', flush=True); import time; time.sleep(60)"],
    )
    plan = make_plan(config)
    cell_dir = tmp_path / "raw" / plan.cells[0].cell_id
    runner = LocalRunner(config, print)
    # What prepare() would set: the run's directory, where the swarm keeps its logs.
    runner.run_dir = tmp_path
    try:
        status = runner.run_cell(CellContext(plan.cells[0], cell_dir, config, plan, lambda _: None))
    finally:
        runner.close()
    assert status.status == "failed"
    assert status.reason == ("target did not answer within 2s (run.ready_timeout); see target.log")
    assert f"starting {marker}" in (cell_dir / "target.log").read_text()
    assert processes_mentioning(marker) == []


def test_every_cell_after_the_first_was_started_during_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workloads = {"a": {"io_ms": 10}, "b": {"io_ms": 10}, "c": {"io_ms": 10}}
    config = load_config(
        write_config(tmp_path, {"sync": ALL_TARGETS["sync"]}, workloads, users=[1], measure="1s")
    )
    plan = make_plan(config)
    cells = list(plan.cells)
    runner = LocalRunner(config, print)
    runner.run_dir = tmp_path
    ahead: list[str] = []
    start_next = LocalRunner._start_next

    def recorded(self: LocalRunner, ctx: CellContext) -> None:
        ahead.append(ctx.cell.cell_id)
        start_next(self, ctx)

    monkeypatch.setattr(LocalRunner, "_start_next", recorded)
    progress: dict[str, list[float]] = {}

    def context(index: int, following: CellContext | None = None) -> CellContext:
        cell = cells[index]
        seen = progress.setdefault(cell.cell_id, [])
        return CellContext(
            cell, tmp_path / "raw" / cell.cell_id, config, plan, seen.append, following
        )

    def cell_context(index: int) -> CellContext:
        # As the run makes them: the cell after knows no cell after it, nor the progress bar.
        after = None
        if index + 1 < len(cells):
            after = replace(context(index + 1), on_progress=lambda _: None)
        return context(index, after)

    try:
        statuses = [runner.run_cell(cell_context(i)) for i in range(len(cells))]
    finally:
        runner.close()
    assert [s.status for s in statuses] == ["ok"] * 3
    # Each cell's target started while the one before it wrote its files, the third too.
    assert ahead == [cell.cell_id for cell in cells[1:]]
    # A cell started ahead still moves the progress bar as its staircase goes.
    assert all(progress[cell.cell_id] for cell in cells)


def test_a_worker_timeout_is_named_in_the_cell(tmp_path: Path) -> None:
    sync = {**ALL_TARGETS["sync"], "timeout": 1}
    config = write_config(tmp_path, {"sync": sync}, {"slow": {"cpu_ms": 3000}}, users=[1])
    result = flaskbench("run", "--config", str(config), "--runner", "local", timeout=300)
    assert result.returncode == 1
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    reason = (run_dir / "raw" / "sync--slow--r1" / "cell.json").read_text()
    assert '"status": "failed"' in reason
    assert "timed out and was killed" in reason
    assert "WORKER TIMEOUT" in (run_dir / "raw" / "sync--slow--r1" / "target.log").read_text()
    assert summary(run_dir) == []


def test_worker_troubles_are_read_from_gunicorn_logs() -> None:
    log = "\n".join(
        [
            "[2026-01-01 00:00:00 +0000] [7] [CRITICAL] WORKER TIMEOUT (pid:9)",
            "[7] [ERROR] Worker (pid:9) was sent SIGKILL! Perhaps out of memory?",
            "[7] [ERROR] Worker (pid:12) was sent SIGKILL! Perhaps out of memory?",
            "[2026-01-01 00:00:03 +0000] [7] [INFO] Booting worker with pid: 13",
        ]
    )
    gunicorn = SERVERS["gunicorn"]
    assert worker_troubles(gunicorn, log) == [
        "gunicorn worker 9 timed out and was killed",
        "gunicorn worker 9 was killed (SIGKILL; out of memory?)",
        "gunicorn worker 12 was killed (SIGKILL; out of memory?)",
    ]
    assert worker_troubles(gunicorn, "[INFO] Booting worker with pid: 13") == []
    # Another server's log lines are not this one's.
    assert worker_troubles(SERVERS["uwsgi"], log) == []


def test_stopping_a_local_process_ends_what_it_orphaned(tmp_path: Path) -> None:
    # The leader exits at once, leaving a child in a process group of its own: what gunicorn's
    # workers are after their launcher and master were killed.
    orphan_maker = (
        "import subprocess, sys; "
        "child = subprocess.Popen(['sleep', '60'], process_group=0); "
        "print(child.pid, flush=True)"
    )
    log = tmp_path / "leader.log"
    leader = LocalProcess([sys.executable, "-c", orphan_maker], tmp_path, log, (0,), grace_s=1)
    leader.popen.wait(timeout=10)
    orphan = psutil.Process(int(log.read_text()))
    assert orphan.is_running()
    leader.stop()
    orphan.wait(timeout=5)
    assert not orphan.is_running()


# Real lines: a worker killed with SIGKILL mid-request, then the server stopped by the launcher.
UWSGI_LOG = """\
spawned uWSGI worker 1 (pid: 2501, cores: 2)
spawned uWSGI worker 2 (pid: 2503, cores: 2)
DAMN ! worker 1 (pid: 2501) died, killed by signal 9 :( trying respawn ...
Respawned uWSGI worker 1 (new pid: 2519)
Thu Nov 26 13:04:20 2026 - *** HARAKIRI ON WORKER 2 (pid: 2503, try: 1, graceful: yes) ***
DAMN ! worker 2 (pid: 2503) died :( trying respawn ...
SIGINT/SIGTERM received...killing workers...
worker 2 buried after 1 seconds
worker 1 buried after 1 seconds
goodbye to uWSGI.
"""
GRANIAN_LOG = """\
[INFO] Spawning worker-1 with PID: 2546
[INFO] Spawning worker-2 with PID: 2548
[ERROR] Unexpected exit from worker-1
[INFO] Respawning worker-1
[INFO] Spawning worker-1 with PID: 2565
[INFO] Stopping old worker-1
[INFO] Stopped old worker-1
[INFO] Shutting down granian
[INFO] Stopping worker-1
[INFO] Stopped worker-1
[INFO] Granian shutdown completed, see ya!
"""
UVICORN_LOG = """\
INFO:     Started server process [2727]
INFO:     Started server process [2728]
INFO:     Waiting for child process [2728]
INFO:     Child process [2728] died
INFO:     Started server process [2743]
INFO:     Received SIGTERM, exiting.
INFO:     Terminated child process [2727]
INFO:     Waiting for child process [2727]
INFO:     Stopping parent process [2725]
"""


def test_worker_troubles_are_read_from_uwsgi_granian_and_uvicorn_logs() -> None:
    assert worker_troubles(SERVERS["uwsgi"], UWSGI_LOG) == [
        "uWSGI worker 2501 was killed by signal 9",
        "uWSGI worker 2503 passed its harakiri timeout and was killed",
        "uWSGI worker 2503 died",
    ]
    assert worker_troubles(SERVERS["granian"], GRANIAN_LOG) == [
        "granian worker-1 died and was respawned"
    ]
    assert worker_troubles(SERVERS["asgi"], UVICORN_LOG) == [
        "uvicorn worker 2728 died and was replaced"
    ]


def test_a_clean_stop_of_every_server_is_no_trouble() -> None:
    stops = [
        ("uwsgi", UWSGI_LOG.split("SIGINT/SIGTERM")[1]),
        ("granian", GRANIAN_LOG.split("Stopped old")[1]),
        ("asgi", UVICORN_LOG.split("Received SIGTERM")[1]),
        # A granian worker stopping on the group's SIGTERM before the main process asked it to.
        ("granian", "[ERROR] Unexpected exit from worker-2\n[INFO] Shutting down granian"),
        (
            "uwsgi",
            "spawned uWSGI worker 1 (pid: 2501, cores: 2)\n"
            "Respawned uWSGI worker 1 (new pid: 2519)",
        ),
        # gunicorn 20.x, for every worker at a normal stop.
        (
            "gunicorn",
            "[INFO] Handling signal: term\nWorker with pid 12 was terminated due to signal 15",
        ),
    ]
    assert [worker_troubles(SERVERS[name], log) for name, log in stops] == [[]] * len(stops)


def test_a_killed_runs_files_in_memory_are_removed_by_the_next(tmp_path: Path) -> None:
    gone = psutil.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    mine = psutil.Process().pid
    for pid in (gone.pid, mine):
        (tmp_path / f"flaskbench-{pid}-sync--io--r1.gauge").write_text("x")
        (tmp_path / f"flaskbench-{pid}-abc123").mkdir()
        (tmp_path / f"flaskbench-{pid}-abc123" / "app.db").write_text("x")
    (tmp_path / "flaskbench-gauge-7").write_text("someone else's")
    remove_stale_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"flaskbench-{mine}-sync--io--r1.gauge", f"flaskbench-{mine}-abc123", "flaskbench-gauge-7"]
    )
