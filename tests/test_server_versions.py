"""Every server from the oldest version flaskbench supports to the one it pins: each started by
the launcher (in that environment's Python) with the command line its module writes for that
version, serving the built-in app on /io, its gauge's peaks equal to its slots, and a clean stop;
a gunicorn worker killed under either version is told in that version's words.

The oldest versions go into one environment, built once per content by flaskbench's own builder
(under .venv-apps/, reused by later runs): they install side by side. The pinned ones are
flaskbench's own environment.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from test_launch import (
    TIMEOUT_S,
    check_contract,
    concurrent_gets,
    final_served,
    free_port,
    launch,
    wait_for_port,
)

from flaskbench.config.app import built_in_app
from flaskbench.execute.appenv import environment_python
from flaskbench.execute.environments import Environment
from flaskbench.execute.runners.runner import worker_troubles
from flaskbench.measure.theory import expected_slots
from flaskbench.servers.registry import SERVERS, resolve_target, server_argv, server_of
from flaskbench.servers.server import Setting

pytestmark = pytest.mark.load

# The oldest release of each server at or above the oldest its module supports (granian has
# one release per 1.x minor), and the oldest gevent the gunicorn module supports.
OLDEST = {
    "gunicorn": "20.1.0",
    "waitress": "2.1.0",
    "uwsgi": "2.0.21",
    "granian": "1.4.4",
    "asgi": "0.30.0",
    "cheroot": "8.6.0",
}
OLDEST_GEVENT = "22.10.2"


class OldestEnvironment(Environment):
    """Every server at its oldest, gunicorn with the oldest gevent its module supports."""

    def spec(self, app_args: list[str], pins: Mapping[Path, str], result: str) -> dict[str, Any]:
        spec = super().spec(app_args, pins, result)
        for server in spec["servers"]:
            if server["name"] == "gunicorn":
                server["options"] = [
                    [f"gunicorn=={OLDEST['gunicorn']}", f"gevent=={OLDEST_GEVENT}"]
                ]
        return spec


@pytest.fixture(scope="module")
def environments() -> dict[str, tuple[str, dict[str, str]]]:
    """{"oldest"/"pinned": (its Python, {canonical distribution: version})}."""
    servers = tuple((name, OLDEST[name]) for name in SERVERS if name in OLDEST)
    python, built = environment_python(OldestEnvironment(built_in_app(), servers), print)
    assert all(built.chosen[name] == 0 for name in OLDEST), built.failures
    pinned = Environment(built_in_app(), ())
    own, found = environment_python(pinned, print)
    return {"oldest": (python, built.installed), "pinned": (own, found.installed)}


CASES = [
    # server, settings, clients, per process, processes
    pytest.param("gunicorn", {"workers": 2}, 4, 1, 2, id="gunicorn-sync-2"),
    pytest.param(
        "gunicorn", {"worker_class": "gthread", "workers": 1, "threads": 2}, 4, 2, 1, id="gthread"
    ),
    pytest.param(
        "gunicorn",
        {"worker_class": "gevent", "workers": 1, "worker_connections": 3},
        6,
        3,
        1,
        id="gevent",
    ),
    pytest.param("waitress", {"threads": 2}, 4, 2, 1, id="waitress"),
    pytest.param("uwsgi", {"processes": 2, "threads": 2}, 8, 2, 2, id="uwsgi-2x2"),
    pytest.param("granian", {"blocking_threads": 2}, 4, 2, 1, id="granian"),
    pytest.param("asgi", {"adapter": "a2wsgi", "threads": 2}, 4, 2, 1, id="a2wsgi"),
    pytest.param("cheroot", {"threads": 2}, 4, 2, 1, id="cheroot"),
]


@pytest.mark.parametrize("which", ["oldest", "pinned"])
@pytest.mark.parametrize(("server", "settings", "clients", "per_process", "processes"), CASES)
def test_each_version_serves_exactly_its_slots(
    tmp_path: Path,
    environments: dict[str, tuple[str, dict[str, str]]],
    which: str,
    server: str,
    settings: dict[str, Setting],
    clients: int,
    per_process: int,
    processes: int,
) -> None:
    python, installed = environments[which]
    target, problems = resolve_target("t", server, settings)
    assert target is not None, problems
    assert expected_slots(target) == per_process * processes
    version = installed[server_of(target).package]
    if which == "oldest":
        assert version == OLDEST[server]
    port = free_port()
    command = [python, *server_argv(target, "127.0.0.1", port, version)]
    gauge_csv = str(tmp_path / "gauge.csv")
    with launch(tmp_path, command, "--gauge-out", gauge_csv, python=python) as launched:
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=300", clients) == [200] * clients
        launched.wait_until_served(clients)
        assert launched.stop() == 0
        rows = launched.gauge_rows()
    check_contract(rows)
    served = final_served(rows)
    assert served.pop(0) == clients
    assert 1 <= len(served) <= processes
    assert max(row.peak for row in rows if row.pid != 0) == per_process
    assert max(row.peak for row in rows if row.pid == 0) == per_process * processes
    log = launched.log.read_text()
    assert "after we asked it to stop" in log
    assert worker_troubles(SERVERS[server], log) == [], log


@pytest.mark.parametrize(
    ("which", "said"),
    [
        ("oldest", "gunicorn worker {} was killed by signal 9"),
        ("pinned", "gunicorn worker {} was killed (SIGKILL; out of memory?)"),
    ],
)
def test_a_killed_gunicorn_worker_is_told_in_its_versions_words(
    tmp_path: Path,
    environments: dict[str, tuple[str, dict[str, str]]],
    which: str,
    said: str,
) -> None:
    python, installed = environments[which]
    target, _ = resolve_target("t", "gunicorn", {"workers": 2})
    assert target is not None
    port = free_port()
    command = [python, *server_argv(target, "127.0.0.1", port, installed["gunicorn"])]
    gauge_csv = str(tmp_path / "gauge.csv")
    with launch(tmp_path, command, "--gauge-out", gauge_csv, python=python) as launched:
        wait_for_port(port, launched)
        assert concurrent_gets(port, "/io?ms=10", 2) == [200, 200]
        launched.wait_until_served(2)
        worker = next(row.pid for row in launched.gauge_rows() if row.pid != 0)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT_S
        while not worker_troubles(SERVERS["gunicorn"], launched.log.read_text()):
            assert time.monotonic() < deadline, launched.log.read_text()
            time.sleep(0.1)
        assert launched.stop() == 0
    # Only the killed worker, though 20.x logs every worker's SIGTERM at the stop too.
    assert worker_troubles(SERVERS["gunicorn"], launched.log.read_text()) == [said.format(worker)]
