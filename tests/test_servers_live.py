"""waitress, uWSGI, granian and Flask behind uvicorn, started with their real command lines
(servers.py) by the launcher: the gauge counts each one's slots per process, and each starts
and stops cleanly."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from test_launch import (
    TARGETS,
    TIMEOUT_S,
    check_contract,
    concurrent_gets,
    final_served,
    free_port,
    launch,
    wait_for_port,
)

from flaskbench.measure.theory import expected_slots
from flaskbench.servers.registry import SERVERS, resolve_target, server_argv
from flaskbench.servers.server import Setting, Target

pytestmark = pytest.mark.load


def command(port: int, server: str, **settings: Setting) -> list[str]:
    target, problems = resolve_target("t", server, settings)
    assert target is not None, problems
    return [sys.executable, *server_argv(target, "127.0.0.1", port)]


def live_members(pgid: int) -> list[str]:
    """Processes left in a process group, but for zombies (killed, not reaped yet)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            found.append(stat)
    return found


@pytest.mark.parametrize(
    ("server", "settings", "clients", "per_process", "processes", "in_process"),
    [
        pytest.param("waitress", {"threads": 2}, 4, 2, 1, True, id="waitress-2-threads"),
        pytest.param("uwsgi", {"processes": 2, "threads": 2}, 8, 2, 2, False, id="uwsgi-2x2"),
        pytest.param("granian", {"blocking_threads": 2}, 4, 2, 1, False, id="granian-1x2"),
        pytest.param("asgi", {"adapter": "a2wsgi", "threads": 2}, 4, 2, 1, True, id="a2wsgi-2"),
        pytest.param(
            "asgi", {"adapter": "asgiref", "reset_contextvars": True}, 3, 1, 1, True, id="asgiref"
        ),
        pytest.param(
            "asgi", {"adapter": "asgiref", "workers": 2}, 6, 1, 2, False, id="asgiref-2-workers"
        ),
        # A gthread worker holds at most worker_connections connections: 2 of its 4 threads run.
        pytest.param(
            "gunicorn",
            {"worker_class": "gthread", "workers": 1, "threads": 4, "worker_connections": 2},
            4,
            2,
            1,
            False,
            id="gthread-4-threads-2-connections",
        ),
    ],
)
def test_each_server_is_gauged_per_process_and_stops_clean(
    tmp_path: Path,
    server: str,
    settings: dict[str, Setting],
    clients: int,
    per_process: int,
    processes: int,
    in_process: bool,
) -> None:
    """`in_process`: the process the launcher started serves; otherwise its workers do, and
    neither uWSGI's master, granian's main process nor uvicorn's supervisor gets a row."""
    target, _ = resolve_target("t", server, settings)
    assert target is not None
    # What the model expects is what the server does.
    assert expected_slots(target) == per_process * processes
    port = free_port()
    gauge_csv = str(tmp_path / "gauge.csv")
    with launch(tmp_path, command(port, server, **settings), "--gauge-out", gauge_csv) as launched:
        server_pid = launched.server_pid()
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=300", clients) == [200] * clients
        launched.wait_until_served(clients)
        assert launched.stop() == 0
        rows = launched.gauge_rows()
        assert live_members(server_pid) == [], "processes of the server outlived the launcher"
    check_contract(rows)
    served = final_served(rows)
    assert served.pop(0) == clients
    assert sum(served.values()) == clients
    assert 1 <= len(served) <= processes
    assert (server_pid in served) == in_process
    assert max(row.peak for row in rows if row.pid != 0) == per_process
    server_peak = max(row.peak for row in rows if row.pid == 0)
    assert per_process <= server_peak <= per_process * processes
    assert rows[-1].inflight == 0
    log = launched.log.read_text()
    assert "after we asked it to stop" in log
    assert "Traceback" not in log


def test_uwsgi_fills_both_processes_and_ignores_uwsgi_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uWSGI reads every UWSGI_* variable as an option: this one would open a second socket.
    stray = free_port()
    monkeypatch.setenv("UWSGI_HTTP_SOCKET", f"127.0.0.1:{stray}")
    port = free_port()
    server = command(port, "uwsgi", processes=2, threads=2)
    gauge_csv = str(tmp_path / "gauge.csv")
    with launch(tmp_path, server, "--gauge-out", gauge_csv) as launched:
        wait_for_port(port, launched)
        # Twice as many clients as slots, twice: both workers serve, 4 at once at most.
        for _ in range(2):
            assert concurrent_gets(port, "/io?ms=300", 8) == [200] * 8
        launched.wait_until_served(16)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", stray), 1).close()
        assert launched.stop() == 0
        rows = launched.gauge_rows()
    served = final_served(rows)
    assert served.pop(0) == 16
    assert len(served) == 2
    assert max(row.peak for row in rows if row.pid != 0) == 2
    assert max(row.peak for row in rows if row.pid == 0) == 4
    log = launched.log.read_text()
    assert "serve: ignoring UWSGI_HTTP_SOCKET: the server would read it as an option" in log


def keep_alive_gets(port: int, clients: int, requests: int) -> Counter[int]:
    """Statuses of `clients` connections sending `requests` requests each, one after another."""
    statuses: Counter[int] = Counter()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        try:
            for _ in range(requests):
                connection.request("GET", "/io?ms=10")
                response = connection.getresponse()
                response.read()
                statuses[response.status] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3 * TIMEOUT_S)
    return statuses


@pytest.mark.parametrize("reset", [True, False])
def test_asgiref_needs_fresh_contexts_on_keep_alive_connections(
    tmp_path: Path, reset: bool
) -> None:
    port = free_port()
    server = command(port, "asgi", adapter="asgiref", reset_contextvars=reset)
    with launch(tmp_path, server) as launched:
        wait_for_port(port, launched)
        statuses = keep_alive_gets(port, 8, 20)
        assert launched.stop() == 0
    log = launched.log.read_text()
    assert sum(statuses.values()) == 160
    if reset:
        assert statuses == {200: 160}
        assert "CurrentThreadExecutor" not in log
    else:
        # uvicorn's default: the next request on a connection inherits the context of the
        # previous response's send, and with it asgiref's executor for that request, gone.
        assert statuses[500] > 0
        assert "CurrentThreadExecutor already quit or is broken" in log


def test_waitress_lets_in_two_clients_fewer_than_its_connection_limit(tmp_path: Path) -> None:
    """Its listening socket and wake-up pipe count against connection_limit: with 5, three
    clients are served at once, whatever its 4 threads (flaskbench refuses such a target; the
    server is started here without flaskbench's check)."""
    settings = {**SERVERS["waitress"].defaults, "threads": 4, "connection_limit": 5}
    target = Target("t", "waitress", "threads", 1, 4, settings)
    port = free_port()
    server = [sys.executable, *server_argv(target, "127.0.0.1", port)]
    gauge_csv = str(tmp_path / "gauge.csv")
    with launch(tmp_path, server, "--gauge-out", gauge_csv) as launched:
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=500", 4) == [200] * 4
        launched.wait_until_served(4)
        assert launched.stop() == 0
        rows = launched.gauge_rows()
    assert max(row.peak for row in rows if row.pid == 0) == 3


def test_uwsgi_with_keepalive_serves_many_requests_on_one_connection(tmp_path: Path) -> None:
    port = free_port()
    server = command(port, "uwsgi", threads=2, keepalive=True)
    with launch(tmp_path, server) as launched:
        wait_for_port(port, launched)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        try:
            for _ in range(5):
                connection.request("GET", "/io?ms=10")
                response = connection.getresponse()
                response.read()
                assert response.status == 200
                assert response.getheader("Connection", "").lower() != "close"
            # Still the first connection: it was never closed.
            assert connection.sock is not None
        finally:
            connection.close()
        assert launched.stop() == 0


def test_uwsgi_says_it_closes_every_connection(tmp_path: Path) -> None:
    # Its http-socket closes each connection after one response: a client that reused one
    # would have its next request dropped, unless the response says Connection: close.
    port = free_port()
    with launch(tmp_path, command(port, "uwsgi", threads=2)) as launched:
        wait_for_port(port, launched)
        assert keep_alive_gets(port, 4, 10) == {200: 40}
        assert launched.stop() == 0


@pytest.mark.parametrize(
    ("server", "settings"),
    [
        pytest.param("waitress", {}, id="waitress"),
        pytest.param("uwsgi", {"processes": 2}, id="uwsgi"),
        pytest.param("granian", {}, id="granian"),
        pytest.param("asgi", {"adapter": "a2wsgi"}, id="a2wsgi"),
        pytest.param("asgi", {"adapter": "asgiref"}, id="asgiref"),
    ],
)
def test_a_server_whose_app_cannot_load_exits_instead_of_serving(
    tmp_path: Path, server: str, settings: dict[str, Setting]
) -> None:
    port = free_port()
    with launch(tmp_path, command(port, server, **settings), "--app", "nonexistent:app") as done:
        code = done.process.wait(3 * TIMEOUT_S)
    log = done.log.read_text()
    assert code != 0, log
    assert "exited with code" in log
    assert "on its own" in log
    assert "appload: cannot load nonexistent:app" in log


@pytest.mark.parametrize(
    ("arguments", "code", "said"),
    [
        (["--call", "hypercorn.run:main", "--"], 1, "serve: cannot start hypercorn.run:main: "),
        (["--call", "waitress.runner:nothing", "--"], 1, "AttributeError"),
        (["--call", "waitress"], 2, "put -- before the server's arguments"),
    ],
)
def test_serve_says_in_one_line_what_it_cannot_start(
    arguments: list[str], code: int, said: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flaskbench_target.serve", *arguments],
        cwd=TARGETS,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == code
    assert said in result.stderr
    assert "Traceback" not in result.stderr
