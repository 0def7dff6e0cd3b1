"""Each server's settings, validation and command line (flaskbench/servers/registry.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flaskbench_target import asgiserve

from flaskbench.config.load import load_config
from flaskbench.config.problems import ConfigError
from flaskbench.servers import registry as servers
from flaskbench.servers.registry import (
    SERVERS,
    Setting,
    Target,
    describe,
    resolve_target,
    server_argv,
)

PROJECT = Path(__file__).resolve().parent.parent


def resolved(server: str, **settings: Setting) -> Target:
    target, problems = resolve_target("t", server, settings)
    assert problems == []
    assert target is not None
    return target


def problems_of(server: str, **settings: Setting) -> dict[str, str]:
    target, problems = resolve_target("t", server, settings)
    assert target is None
    return {problem.key: problem.message for problem in problems}


def argv(target: Target) -> list[str]:
    return server_argv(target, "127.0.0.1", 18080)


def option(command: list[str], name: str) -> str:
    """The value after `name` in a command line."""
    return command[command.index(name) + 1]


@pytest.mark.parametrize(
    ("server", "workers", "threads", "worker_class"),
    [
        ("waitress", 1, 4, "threads"),
        ("uwsgi", 1, 1, "prefork"),
        ("granian", 1, 512, "wsgi"),
        ("asgi", 1, 10, "a2wsgi"),
    ],
)
def test_defaults_are_the_servers_own_written_out(
    server: str, workers: int, threads: int, worker_class: str
) -> None:
    target = resolved(server)
    assert (target.workers, target.threads, target.worker_class) == (workers, threads, worker_class)
    # Every setting reaches the command line, default or not.
    command = " ".join(argv(target))
    for key, value in SERVERS[server].defaults.items():
        assert (key.replace("_", "-") if isinstance(value, bool) else str(value)) in command


def test_waitress_settings_and_command_line() -> None:
    target = resolved("waitress", threads=8, connection_limit=200, backlog=64, channel_timeout=30)
    assert (target.workers, target.threads) == (1, 8)
    assert argv(target) == [
        "-m",
        "flaskbench_target.serve",
        "waitress",
        "--listen=127.0.0.1:18080",
        "--threads=8",
        "--connection-limit=200",
        "--backlog=64",
        "--channel-timeout=30",
        "flaskbench_target.appload:application",
    ]
    assert describe(target) == "waitress, 1 process x 8 threads"


def test_waitress_rejects_bad_settings() -> None:
    assert problems_of("waitress", threads=0, backlog=True) == {
        "threads": "must be a positive integer",
        "backlog": "must be a positive integer",
    }
    assert (
        "is below threads"
        in problems_of("waitress", threads=8, connection_limit=4)["connection_limit"]
    )


def test_uwsgi_settings_and_command_line() -> None:
    target = resolved("uwsgi", processes=2, threads=2, listen=1024, harakiri=30)
    assert (target.workers, target.threads) == (2, 2)
    command = argv(target)
    assert command[:3] == ["-m", "flaskbench_target.serve", "uwsgi"]
    assert option(command, "--http-socket") == "127.0.0.1:18080"
    assert option(command, "--add-header") == "Connection: close"
    assert (option(command, "--processes"), option(command, "--threads")) == ("2", "2")
    assert (option(command, "--listen"), option(command, "--harakiri")) == ("1024", "30")
    # Threads enabled, stopped by SIGTERM, never serving without the app, no request log.
    for flag in ("--master", "--enable-threads", "--die-on-term", "--need-app", "--strict"):
        assert flag in command
    assert "--disable-logging" in command
    assert command[-2:] == ["--module", "flaskbench_target.appload:application"]
    assert describe(target) == "uWSGI, 2 processes x 2 threads"
    assert describe(resolved("uwsgi")) == "uWSGI, 1 process x 1 thread"


def test_uwsgi_rejects_bad_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert problems_of("uwsgi", processes=0, harakiri=-1) == {
        "processes": "must be a positive integer",
        "harakiri": "must be an integer of 0 or more (0 turns it off)",
    }
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("512\n")
    monkeypatch.setattr(servers, "SOMAXCONN", somaxconn)
    assert "net.core.somaxconn (512 on this host)" in problems_of("uwsgi", listen=1024)["listen"]
    assert resolved("uwsgi", listen=512).settings["listen"] == 512
    # Where the limit cannot be read, uWSGI itself is the judge.
    monkeypatch.setattr(servers, "SOMAXCONN", tmp_path / "missing")
    assert resolved("uwsgi", listen=1024).settings["listen"] == 1024


def test_granian_settings_and_command_line() -> None:
    target = resolved("granian", workers=2, blocking_threads=4, backlog=256, backpressure=64)
    assert (target.workers, target.threads) == (2, 4)
    command = argv(target)
    assert command[:3] == ["-m", "flaskbench_target.serve", "granian"]
    assert option(command, "--interface") == "wsgi"
    assert (option(command, "--host"), option(command, "--port")) == ("127.0.0.1", "18080")
    assert option(command, "--workers") == "2"
    assert option(command, "--blocking-threads") == "4"
    assert (option(command, "--backlog"), option(command, "--backpressure")) == ("256", "64")
    assert option(command, "--http") == "1"
    assert "--respawn-failed-workers" in command
    assert command[-1] == "flaskbench_target.appload:application"
    assert describe(target) == "granian WSGI, 2 workers x 4 blocking threads"


def test_granian_rejects_bad_settings() -> None:
    assert problems_of("granian", workers=0, backlog=100) == {
        "workers": "must be a positive integer",
        "backlog": "granian takes 128 or more",
    }
    assert (
        "is below blocking_threads"
        in problems_of("granian", blocking_threads=8, backpressure=4)["backpressure"]
    )


def test_asgi_settings_and_command_lines() -> None:
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


def test_asgi_rejects_bad_settings() -> None:
    assert "unknown adapter 'hypercorn'" in problems_of("asgi", adapter="hypercorn")["adapter"]
    assert "no thread pool to size" in problems_of("asgi", adapter="asgiref", threads=4)["threads"]
    assert problems_of("asgi", workers=0, reset_contextvars=1) == {
        "workers": "must be a positive integer",
        "reset_contextvars": "must be true or false",
    }


def test_the_asgi_harness_reads_the_command_line_it_is_given() -> None:
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
def test_the_asgi_harness_refuses_what_servers_py_would_never_write(arguments: list[str]) -> None:
    common = ["--workers", "1", "--backlog", "8", "--host", "127.0.0.1", "--port", "1"]
    common.append("--no-reset-contextvars")
    with pytest.raises(SystemExit) as exited:
        asgiserve.parse_args([*arguments, *common])
    assert exited.value.code == 2


def test_unknown_keys_and_bad_values_are_named_in_the_config(tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(
        '[cpus]\ntarget = "0"\nload = "1"\n'
        '[targets.w]\nserver = "waitress"\nthreads = 4\nworkers = 2\n'
        '[targets.a]\nserver = "asgi"\nadapter = "asgiref"\nthreads = 4\n'
        "[workloads.io]\nio_ms = 100\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert [line.split(": ", 2)[:2] for line in caught.value.problems] == [
        [f"{config}:7", "targets.w.workers"],
        [f"{config}:11", "targets.a.threads"],
    ]
    assert (
        "known keys here: backlog, channel_timeout, connection_limit, threads"
        in (caught.value.problems[0])
    )


def test_the_servers_example_is_valid_and_comparable() -> None:
    config = load_config(PROJECT / "examples" / "servers.toml")
    slots = {t.name: t.workers * (t.threads or 0) for t in config.targets}
    assert {t.server for t in config.targets} >= {"waitress", "uwsgi", "granian", "asgi"}
    # Four slots each, except asgiref, which cannot have more than one per process.
    assert {name: n for name, n in slots.items() if n != 4} == {
        t.name: t.workers for t in config.targets if t.worker_class == "asgiref"
    }
