"""granian (flaskbench/servers/granian.py): settings, command line, and its defaults, which
follow the worker count."""

from __future__ import annotations

import pytest
from servertests import argv, in_process, option, problems_of, resolved

from flaskbench.servers.registry import describe, server_of


def test_settings_and_command_line() -> None:
    target = resolved("granian", workers=2, blocking_threads=4, backlog=256, backpressure=64)
    assert (target.workers, target.threads) == (2, 4)
    serve, command = in_process(argv(target))
    # Its click command called directly: GRANIAN_* variables are read only as `granian`.
    assert serve == ["--call", "granian.cli:cli.main"]
    assert option(command, "--interface") == "wsgi"
    assert (option(command, "--host"), option(command, "--port")) == ("127.0.0.1", "18080")
    assert option(command, "--workers") == "2"
    assert option(command, "--blocking-threads") == "4"
    assert (option(command, "--backlog"), option(command, "--backpressure")) == ("256", "64")
    assert option(command, "--http") == "1"
    assert "--respawn-failed-workers" in command
    assert command[-1] == "flaskbench_target.appload:application"
    assert describe(target) == "granian WSGI, 2 workers x 4 blocking threads"


@pytest.mark.parametrize(
    ("settings", "backpressure", "blocking_threads"),
    [
        # granian/server/common.py: backpressure = max(128, backlog) // workers, blocking threads
        # half of that, unless given.
        ({}, 1024, 512),
        ({"workers": 2}, 512, 256),
        ({"workers": 4, "backlog": 2048}, 512, 256),
        ({"workers": 2, "backpressure": 10}, 10, 5),
        ({"workers": 2, "blocking_threads": 8}, 512, 8),
    ],
)
def test_its_defaults_follow_the_worker_count(
    settings: dict[str, int], backpressure: int, blocking_threads: int
) -> None:
    target = resolved("granian", **settings)
    assert target.settings["backpressure"] == backpressure
    assert target.settings["blocking_threads"] == blocking_threads
    assert target.threads == blocking_threads
    _, command = in_process(argv(target))
    assert option(command, "--backpressure") == str(backpressure)
    assert option(command, "--blocking-threads") == str(blocking_threads)


def test_several_workers_can_queue_in_one_while_another_idles() -> None:
    two = resolved("granian", workers=2, blocking_threads=4)
    (note,) = server_of(two).notes(two, 32)
    assert "backpressure (512)" in note
    assert "requests can queue in one worker while another idles" in note
    assert server_of(two).notes(resolved("granian"), 32) == ()


def test_bad_settings() -> None:
    assert problems_of("granian", workers=0, backlog=100) == {
        "workers": "must be a positive integer",
        "backlog": "granian takes 128 or more",
    }
    assert (
        "is below blocking_threads"
        in problems_of("granian", blocking_threads=8, backpressure=4)["backpressure"]
    )
