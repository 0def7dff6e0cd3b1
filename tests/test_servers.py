"""What holds for every server (flaskbench/servers/): each is found by itself, its defaults are
its own, written out, and every setting reaches its command line; the config names bad keys.
Each server's own behaviour is tested in tests/test_server_<name>.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from servertests import argv, resolved

from flaskbench import servers
from flaskbench.config.load import load_config
from flaskbench.config.problems import ConfigError
from flaskbench.servers.registry import SERVERS

PROJECT = Path(__file__).resolve().parent.parent


def test_every_module_of_the_package_is_a_server_found_by_itself() -> None:
    modules = {p.stem for p in Path(servers.__file__).parent.glob("*.py")}
    assert set(SERVERS) == modules - {"__init__", "server", "registry"}
    for server in SERVERS.values():
        assert server.slots_rule
        # What meta.json records of it, and where its pins are (Werkzeug's come with the app).
        assert server.packages
        assert server.pins is not None or server.name == "werkzeug"


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_defaults_are_the_servers_own_written_out(server: str) -> None:
    target = resolved(server)
    assert target.workers >= 1
    # Every number and name reaches the command line, default or not.
    command = argv(target)
    for key, value in target.settings.items():
        if not isinstance(value, bool):
            assert any(str(value) in part for part in command), key


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
        "known keys here: backlog, channel_timeout, connection_limit, proxy, proxy_buffering, "
        "proxy_keepalive, proxy_request_buffering, threads" in (caught.value.problems[0])
    )


def test_the_servers_example_is_valid_and_comparable() -> None:
    config = load_config(PROJECT / "examples" / "servers.toml")
    slots = {t.name: t.workers * (t.threads or 0) for t in config.targets}
    assert {t.server for t in config.targets} >= {"waitress", "uwsgi", "granian", "asgi"}
    # Four slots each, except asgiref, which cannot have more than one per process.
    assert {name: n for name, n in slots.items() if n != 4} == {
        t.name: t.workers for t in config.targets if t.worker_class == "asgiref"
    }
