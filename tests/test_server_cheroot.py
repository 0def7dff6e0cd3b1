"""cheroot (flaskbench/servers/cheroot.py), the server added by writing its module: settings,
command line, its keep-alive cap, and, live, its threads held to the gauge and a clean stop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from servertests import argv, option, problems_of, resolved
from test_launch import concurrent_gets, free_port, launch, wait_for_port

from flaskbench.execute.runners.runner import app_errors
from flaskbench.measure.theory import expected_slots
from flaskbench.servers.registry import SERVERS, describe, server_argv, server_of


def test_settings_and_command_line() -> None:
    target = resolved("cheroot", threads=4, request_queue_size=64)
    assert (target.workers, target.threads, expected_slots(target)) == (1, 4, 4)
    command = argv(target)
    assert command[:2] == ["-m", "cheroot"]
    assert option(command, "--bind") == "127.0.0.1:18080"
    assert (option(command, "--threads"), option(command, "--request-queue-size")) == ("4", "64")
    assert command[-1] == "flaskbench_target.appload:application"
    assert describe(target) == "cheroot, 1 process x 4 threads"
    # SIGTERM would drop the requests in flight; SIGINT stops it cleanly.
    assert SERVERS["cheroot"].stop_signal == "INT"


def test_bad_settings() -> None:
    assert problems_of("cheroot", threads=0, timeout=True) == {
        "threads": "must be a positive integer",
        "timeout": "must be a positive integer",
    }


def test_it_keeps_ten_connections_alive_at_most() -> None:
    target = resolved("cheroot")
    assert server_of(target).notes(target, 8) == ()
    (note,) = server_of(target).notes(target, 32)
    assert "at most 10 idle keep-alive connections" in note


@pytest.mark.load
def test_its_threads_are_its_slots_and_it_stops_cleanly(tmp_path: Path) -> None:
    target = resolved("cheroot", threads=4)
    port = free_port()
    server = [sys.executable, *server_argv(target, "127.0.0.1", port)]
    gauge_csv = str(tmp_path / "gauge.csv")
    with launch(tmp_path, server, "--gauge-out", gauge_csv, "--stop-signal", "INT") as launched:
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=300", 8) == [200] * 8
        launched.wait_until_served(8)
        assert launched.stop() == 0
        rows = launched.gauge_rows()
    assert max(row.peak for row in rows if row.pid == 0) == 4
    log = launched.log.read_text()
    # Python ends on the interrupt it handled: "killed by SIGINT", within the grace period.
    assert "after we asked it to stop" in log
    assert "grace period had run out" not in log
    # cheroot re-raises the interrupt it stopped on (HTTPServer.safe_start): that traceback is
    # its stop, not the app's error.
    assert app_errors(log) is None
