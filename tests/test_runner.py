"""The shared cell procedure, with stand-in servers: readiness, verification, worker deaths."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest
from benchrun import ALL_TARGETS, flaskbench, processes_mentioning, summary, write_config

from flaskbench import commands
from flaskbench.config import load_config
from flaskbench.plan import expand
from flaskbench.runners.base import CellContext, worker_troubles
from flaskbench.runners.local import LocalProcess, LocalRunner

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
    plan = expand(config)
    cell_dir = tmp_path / "raw" / plan.cells[0].cell_id
    runner = LocalRunner(config, print)
    status = runner.run_cell(CellContext(plan.cells[0], cell_dir, config, plan, lambda _: None))
    assert status.status == "failed"
    assert status.reason == ("target did not answer within 2s (run.ready_timeout); see target.log")
    assert f"starting {marker}" in (cell_dir / "target.log").read_text()
    assert processes_mentioning(marker) == []


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
    assert worker_troubles(log) == [
        "gunicorn worker 9 timed out and was killed",
        "gunicorn worker 9 was killed (SIGKILL; out of memory?)",
        "gunicorn worker 12 was killed (SIGKILL; out of memory?)",
    ]
    assert worker_troubles("[INFO] Booting worker with pid: 13") == []


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
