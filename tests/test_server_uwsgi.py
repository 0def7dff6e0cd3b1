"""uWSGI (flaskbench/servers/uwsgi.py): settings, command line, keep-alive or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from servertests import argv, in_process, option, problems_of, resolved

from flaskbench.servers import server
from flaskbench.servers.registry import describe, server_of


def test_settings_and_command_line() -> None:
    target = resolved("uwsgi", processes=2, threads=2, listen=1024, harakiri=30)
    assert (target.workers, target.threads) == (2, 2)
    serve, command = in_process(argv(target))
    # uWSGI reads every UWSGI_* variable as an option: they go first.
    assert serve == ["--call", "pyuwsgi:run", "--drop-env", "UWSGI_"]
    assert option(command, "--http-socket") == "127.0.0.1:18080"
    assert option(command, "--add-header") == "Connection: close"
    assert "--http11-socket" not in command
    assert (option(command, "--processes"), option(command, "--threads")) == ("2", "2")
    assert (option(command, "--listen"), option(command, "--harakiri")) == ("1024", "30")
    # Threads enabled, stopped by SIGTERM, never serving without the app, no request log.
    for flag in ("--master", "--enable-threads", "--die-on-term", "--need-app", "--strict"):
        assert flag in command
    assert "--disable-logging" in command
    assert command[-2:] == ["--module", "flaskbench_target.appload:application"]
    assert describe(target) == "uWSGI, 2 processes x 2 threads"
    assert describe(resolved("uwsgi")) == "uWSGI, 1 process x 1 thread"


def test_keepalive_serves_http11_and_keeps_the_connection() -> None:
    target = resolved("uwsgi", processes=1, threads=2, keepalive=True)
    _, command = in_process(argv(target))
    assert option(command, "--http11-socket") == "127.0.0.1:18080"
    assert "--http-socket" not in command
    # Connections stay open: no "Connection: close" is added.
    assert "--add-header" not in command
    assert describe(target) == "uWSGI, 1 process x 2 threads, keep-alive"
    (note,) = server_of(target).notes(target, 8)
    assert "an idle client holds a slot" in note
    assert server_of(target).notes(resolved("uwsgi"), 8) == ()


def test_bad_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert problems_of("uwsgi", processes=0, harakiri=-1, keepalive="yes") == {
        "processes": "must be a positive integer",
        "harakiri": "must be an integer of 0 or more (0 turns it off)",
        "keepalive": "must be true or false",
    }
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("512\n")
    monkeypatch.setattr(server, "SOMAXCONN", somaxconn)
    assert "net.core.somaxconn (512 on this host)" in problems_of("uwsgi", listen=1024)["listen"]
    assert resolved("uwsgi", listen=512).settings["listen"] == 512
    # Where the limit cannot be read, uWSGI itself is the judge.
    monkeypatch.setattr(server, "SOMAXCONN", tmp_path / "missing")
    assert resolved("uwsgi", listen=1024).settings["listen"] == 1024
