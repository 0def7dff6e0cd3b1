"""waitress (flaskbench/servers/waitress.py): settings, command line, and how many clients its
connection_limit really lets in."""

from __future__ import annotations

from servertests import argv, in_process, problems_of, resolved

from flaskbench.measure.theory import expected_slots
from flaskbench.servers.registry import describe


def test_settings_and_command_line() -> None:
    target = resolved("waitress", threads=8, connection_limit=200, backlog=64, channel_timeout=30)
    assert (target.workers, target.threads) == (1, 8)
    serve, args = in_process(argv(target))
    assert serve == [
        "--call",
        "waitress.runner:run",
        "--argv0",
        "waitress-serve",
        "--quiet-logger",
        "waitress.queue",
    ]
    assert args == [
        "--listen=127.0.0.1:18080",
        "--threads=8",
        "--connection-limit=200",
        "--backlog=64",
        "--channel-timeout=30",
        "flaskbench_target.appload:application",
    ]
    assert describe(target) == "waitress, 1 process x 8 threads"


def test_bad_settings() -> None:
    assert problems_of("waitress", threads=0, backlog=True) == {
        "threads": "must be a positive integer",
        "backlog": "must be a positive integer",
    }


def test_its_own_sockets_count_against_the_connection_limit() -> None:
    # Its listening socket and its wake-up pipe take two of connection_limit: 6 leaves room for
    # 4 clients, 5 for 3, fewer than 4 threads.
    assert resolved("waitress", threads=4, connection_limit=6).threads == 4
    problem = problems_of("waitress", threads=4, connection_limit=5)["connection_limit"]
    assert problem.startswith("leaves room for 3 clients, fewer than threads")
    assert "connection_limit - 2" in problem
    assert expected_slots(resolved("waitress", threads=4, connection_limit=6)) == 4
