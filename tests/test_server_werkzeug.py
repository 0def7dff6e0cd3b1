"""Werkzeug's dev server (flaskbench/servers/werkzeug.py): its three models, and its backlog."""

from __future__ import annotations

from servertests import argv, problems_of, resolved

from flaskbench.measure.theory import expected_slots
from flaskbench.servers.registry import describe, server_of


def test_three_models_and_their_command_lines() -> None:
    threaded, single = resolved("werkzeug"), resolved("werkzeug", threaded=False)
    forking = resolved("werkzeug", threaded=False, processes=4)
    assert [t.worker_class for t in (threaded, single, forking)] == [
        "threaded",
        "single",
        "processes",
    ]
    assert [expected_slots(t) for t in (threaded, single, forking)] == [None, 1, 4]
    assert argv(forking) == [
        *("-m", "flaskbench_target.devserver", "--host", "127.0.0.1", "--port", "18080"),
        *("--no-threaded", "--processes", "4"),
    ]
    assert describe(forking) == "Werkzeug dev server, a process per request, up to 4"


def test_threads_and_processes_cannot_go_together() -> None:
    problem = problems_of("werkzeug", threaded=True, processes=2)["processes"]
    assert "cannot combine threads and processes" in problem


def test_its_fixed_backlog_is_said_where_the_staircase_reaches_it() -> None:
    single = resolved("werkzeug", threaded=False)
    server = server_of(single)
    # 127 connections wait at 128 users: the backlog of 128 holds them, and no more.
    assert server.notes(single, 64) == ()
    (full,) = server.notes(single, 128)
    assert "backlog fixed at 128" in full
    assert "127 connections wait there for its 1 slot" in full
    assert "one user more and the kernel would drop new connections" in full
    (over,) = server.notes(single, 256)
    assert "more than it holds: the kernel drops new connections" in over
    # A thread per connection accepts every one of them.
    assert server.notes(resolved("werkzeug"), 256) == ()
