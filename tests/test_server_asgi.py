"""Flask behind uvicorn with an ASGI adapter (flaskbench/servers/asgi.py): settings, command
lines, what its harness reads, and what several workers do."""

from __future__ import annotations

import pytest
from flaskbench_target import asgiserve
from servertests import argv, problems_of, resolved

from flaskbench.servers.registry import describe, server_of


def test_settings_and_command_lines() -> None:
    a2wsgi = resolved("asgi", adapter="a2wsgi", workers=2, threads=4, backlog=128)
    assert (a2wsgi.worker_class, a2wsgi.workers, a2wsgi.threads) == ("a2wsgi", 2, 4)
    assert argv(a2wsgi) == [
        "-m",
        "flaskbench_target.asgiserve",
        "--adapter",
        "a2wsgi",
        "--threads",
        "4",
        "--workers",
        "2",
        "--backlog",
        "128",
        "--host",
        "127.0.0.1",
        "--port",
        "18080",
        "--no-reset-contextvars",
    ]
    assert describe(a2wsgi) == "uvicorn + a2wsgi, 2 workers x 4 threads"
    asgiref = resolved("asgi", adapter="asgiref", workers=2, reset_contextvars=True)
    # One thread per process, whatever the settings: asgiref has no pool to size.
    assert (asgiref.worker_class, asgiref.workers, asgiref.threads) == ("asgiref", 2, 1)
    assert "--threads" not in argv(asgiref)
    assert argv(asgiref)[-1] == "--reset-contextvars"
    assert describe(asgiref) == "uvicorn + asgiref WsgiToAsgi, 2 workers x 1 thread"


def test_bad_settings() -> None:
    assert "unknown adapter 'hypercorn'" in problems_of("asgi", adapter="hypercorn")["adapter"]
    assert "no thread pool to size" in problems_of("asgi", adapter="asgiref", threads=4)["threads"]
    assert problems_of("asgi", workers=0, reset_contextvars=1) == {
        "workers": "must be a positive integer",
        "reset_contextvars": "must be true or false",
    }


def test_several_workers_queue_each_in_its_own_pool() -> None:
    two = resolved("asgi", adapter="a2wsgi", workers=2, threads=4)
    queue, nodelay = server_of(two).notes(two, 16)
    assert "each uvicorn worker accepts without a limit" in queue
    assert "its own pool of 4 threads" in queue
    assert "requests can queue in one worker while another idles" in queue
    assert "TCP_NODELAY" in nodelay
    assert server_of(two).notes(resolved("asgi", workers=1), 16) == ()


def test_where_asgirefs_slots_come_from() -> None:
    asgiref = resolved("asgi", adapter="asgiref")
    basis = server_of(asgiref).code_basis(asgiref)
    assert basis is not None
    assert "asgiref/sync.py" in basis
    assert server_of(asgiref).code_basis(resolved("asgi")) is None


def test_the_harness_reads_the_command_line_it_is_given() -> None:
    a2wsgi = resolved("asgi", adapter="a2wsgi", threads=4)
    args = asgiserve.parse_args(argv(a2wsgi)[2:])
    assert (args.adapter, args.threads, args.workers, args.port) == ("a2wsgi", 4, 1, 18080)
    assert args.reset_contextvars is False
    asgiref = asgiserve.parse_args(argv(resolved("asgi", adapter="asgiref"))[2:])
    assert (asgiref.adapter, asgiref.threads) == ("asgiref", None)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--adapter", "asgiref", "--threads", "2"],
        ["--adapter", "a2wsgi"],
        ["--adapter", "a2wsgi", "--threads", "0"],
    ],
)
def test_the_harness_refuses_what_the_module_would_never_write(arguments: list[str]) -> None:
    common = ["--workers", "1", "--backlog", "8", "--host", "127.0.0.1", "--port", "1"]
    common.append("--no-reset-contextvars")
    with pytest.raises(SystemExit) as exited:
        asgiserve.parse_args([*arguments, *common])
    assert exited.value.code == 2
