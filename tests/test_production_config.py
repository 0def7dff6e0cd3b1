"""The production shape in the config: a proxy in front of a target (and in sweeps), slow and
connection-per-request clients, and open-loop staircases; each bad value one line naming the key
and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flaskbench.config.load import Config, Overrides, load_config
from flaskbench.config.problems import ConfigError
from flaskbench.config.sweeps import expand_sweep
from flaskbench.config.units import format_size, parse_rate, parse_size
from flaskbench.proxies.reverse_proxy import ProxySpec
from flaskbench.servers.registry import describe

PROJECT = Path(__file__).resolve().parent.parent
HEAD = '[cpus]\ntarget = "0"\nload = "1"\n'
TARGET = '[targets.sync]\nserver = "gunicorn"\n'


def config(tmp_path: Path, text: str, overrides: Overrides | None = None) -> Config:
    path = tmp_path / "bench.toml"
    path.write_text(HEAD + text)
    return load_config(path, overrides or Overrides())


def problems(tmp_path: Path, text: str, overrides: Overrides | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, text, overrides)
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "size"),
    [("64KB", 65536), ("64KiB", 65536), ("1MB", 1048576), ("1.5MB", 1572864), (512, 512)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["64XB", "", "0", "0.5B", True, "-1KB", 1.5])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match=r"size|whole number"):
        parse_size(text)


def test_rates_need_per_second() -> None:
    assert parse_rate("64KB/s") == 65536
    assert format_size(parse_rate("512KB/s")) == "512KB"
    for bad in ("64KB", "fast", 64):
        with pytest.raises(ValueError, match="as a rate"):
            parse_rate(bad)


def test_clients_keepalive_and_transfers(tmp_path: Path) -> None:
    found = config(
        tmp_path,
        TARGET
        + '[workloads.up]\nupload = "1MB"\nclient = { send_rate = "512KB/s" }\n'
        + '[workloads.down]\ndownload = "1MB"\nclient = { receive_rate = "1MB/s" }\n'
        + "keepalive = false\n"
        + '[workloads.own]\npath = "/upload"\nmethod = "POST"\nbody_size = "64KB"\n',
    )
    up, down, own = found.workloads
    assert (up.kind, up.upload_bytes, up.client and up.client.send_rate) == (
        "upload",
        1048576,
        524288,
    )
    assert up.traffic[0].body_size == 1048576
    assert up.traffic[0].method == "POST"
    assert up.keepalive
    assert not down.keepalive
    assert down.traffic[0].path == "/bytes?n=1048576"
    assert down.manner == "clients read 1MB/s; a new connection per request"
    assert own.traffic[0].body_size == 65536
    assert own.path == "POST /upload (64KB)"


def test_bad_client_values_are_one_line_each(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        TARGET
        + '[workloads.up]\nupload = "1XB"\nclient = { send_rate = "512KB", speed = 1 }\n'
        + 'keepalive = "no"\n'
        + '[workloads.both]\nupload = "1MB"\ndownload = "1MB"\n'
        + '[workloads.body]\npath = "/upload"\nmethod = "POST"\nform = { a = "b" }\n'
        + 'body_size = "1MB"\n',
    )
    assert [p.split(": ", 2)[1] for p in found] == [
        "workloads.up.upload",
        "workloads.up.client.send_rate",
        "workloads.up.client.speed",
        "workloads.up.keepalive",
        "workloads.both.download",
        "workloads.body.body_size",
    ]
    assert found[0].startswith(f"{tmp_path / 'bench.toml'}:7: ")
    assert "write it like '64KB/s'" in found[1]


def test_open_loop_in_load_and_in_a_workload(tmp_path: Path) -> None:
    found = config(
        tmp_path,
        TARGET + "[load]\nrates = [10, 20, 40]\n[workloads.io]\nio_ms = 50\n"
        '[workloads.fixed]\nio_ms = 50\nrates = [5]\narrival = "fixed"\n',
    )
    io, fixed = found.workloads
    assert found.staircase.users == ()
    assert io.open_loop is not None
    assert io.open_loop.rates == (10, 20, 40)
    assert io.open_loop.arrival == "poisson"
    assert fixed.open_loop is not None
    assert (fixed.open_loop.rates, fixed.open_loop.arrival) == (
        (5,),
        "fixed",
    )
    assert found.as_run["load"]["rates"] == [10, 20, 40]
    # Closed loop for all but the workload that sets rates.
    mixed = config(
        tmp_path,
        TARGET + "[load]\nusers = [1, 8]\n[workloads.io]\nio_ms = 50\n"
        "[workloads.open]\nio_ms = 50\nrates = [5, 10]\n",
    )
    assert mixed.workloads[0].open_loop is None
    assert mixed.workloads[1].open_loop is not None


def test_quick_rates_replace_load_users(tmp_path: Path) -> None:
    found = config(
        tmp_path,
        TARGET + "[load]\nusers = [1, 8]\n[quick]\nrates = [5]\n[workloads.io]\nio_ms = 5\n",
        Overrides(quick=True),
    )
    assert found.workloads[0].open_loop is not None
    assert found.workloads[0].open_loop.rates == (5,)


def test_bad_open_loops_are_one_line_each(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        TARGET + "[load]\nusers = [1, 8]\nrates = [10]\n[workloads.io]\nio_ms = 5\n"
        'rates = [0, 10]\n[workloads.cpu]\ncpu_ms = 5\narrival = "bursty"\n'
        "[workloads.down]\ndownload = 10\nrates = [20, 10]\n",
    )
    assert [p.split(": ", 2)[1] for p in found] == [
        "load.rates",
        "workloads.io.rates",
        "workloads.cpu.arrival",
        "workloads.down.rates",
    ]
    assert ":8: load.rates: set users" in found[0]
    assert "a rate of 0" in found[1]
    assert "open loop only" in found[2]
    assert "increasing" in found[3]


def test_own_locust_file_cannot_walk_an_open_loop(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text("class Visitor:\n    pass\n")
    found = problems(
        tmp_path,
        TARGET + '[workloads.mine]\nlocustfile = "mine.py"\nuser_class = "Visitor"\nrates = [10]\n',
    )
    assert found == [
        f"{tmp_path / 'bench.toml'}:9: workloads.mine.rates: applies to flaskbench's own "
        "requests (path, requests, io_ms...), not to a Locust user class of your own, which "
        "opens its connections and paces itself"
    ]


def test_goal_at_a_rate(tmp_path: Path) -> None:
    found = config(
        tmp_path,
        TARGET + "[load]\nrates = [10, 40]\n[workloads.io]\nio_ms = 5\n"
        "[goal]\np99_ms = 100\nrate = 40\n",
    )
    assert found.goal is not None
    assert found.goal.rate == 40
    bad = problems(
        tmp_path,
        TARGET + "[load]\nrates = [10, 40]\n[workloads.io]\nio_ms = 5\n"
        "[goal]\np99_ms = 100\nrate = 30\n",
    )
    assert len(bad) == 1
    assert "goal.rate: must be a rate every open-loop workload offers (10, 40)" in bad[0]
    closed = problems(
        tmp_path, TARGET + "[workloads.io]\nio_ms = 5\n[goal]\np99_ms = 9\nrate = 4\n"
    )
    assert len(closed) == 1
    assert "goal.rate: applies to open-loop workloads" in closed[0]


def test_users_option_on_an_open_loop_config_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        TARGET + "[load]\nrates = [10]\n[workloads.io]\nio_ms = 5\n",
        Overrides(users="1,2"),
    )
    assert found == [
        "command line: --users: [load] sets rates: every workload walks an open loop, not users"
    ]


def test_a_target_behind_a_proxy(tmp_path: Path) -> None:
    found = config(
        tmp_path,
        '[targets.g]\nserver = "gunicorn"\nworker_class = "gthread"\nthreads = 4\n'
        'proxy = "nginx"\nproxy_keepalive = true\n[targets.d]\nserver = "gunicorn"\n'
        'proxy = "none"\n[workloads.io]\nio_ms = 5\n',
    )
    behind, direct = found.targets
    assert behind.proxy == ProxySpec(
        "nginx", buffering=True, request_buffering=True, keepalive=True
    )
    assert direct.proxy is None
    assert "behind nginx (buffering on, request buffering on, upstream keep-alive)" in describe(
        behind
    )
    assert "nginx" not in describe(direct)


def test_bad_proxy_values_are_one_line_each(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "[run]\nport = 18080\nmaster_port = 18081\n"
        '[targets.a]\nserver = "gunicorn"\nproxy = "apache"\n'
        '[targets.b]\nserver = "gunicorn"\nproxy_buffering = false\n'
        '[targets.c]\nserver = "gunicorn"\nproxy = "nginx"\nproxy_keepalive = "yes"\n'
        '[targets.d]\nserver = "gunicorn"\nproxy = "nginx"\n'
        "[workloads.io]\nio_ms = 5\n",
    )
    assert [p.split(": ", 2)[1] for p in found] == [
        "targets.a.proxy",
        "targets.b.proxy_buffering",
        "targets.c.proxy_keepalive",
        "run.master_port",
    ]
    assert "unknown proxy 'apache'; use one of 'none', 'nginx'" in found[0]
    assert "applies behind a proxy only" in found[1]
    assert "run.port + 1" in found[3]


def test_sweeps_vary_the_proxy() -> None:
    expansion = expand_sweep(
        "s",
        {
            "server": "gunicorn",
            "worker_class": "gthread",
            "threads": 4,
            "proxy": ["none", "nginx"],
            "proxy_keepalive": [False, True],
        },
        1,
    )
    assert expansion.problems == []
    # Without a proxy, its settings have no effect: one direct target, not two.
    assert [t.name for t in expansion.targets] == ["s-direct", "s-nginx-noupka", "s-nginx-upka"]
    assert [t.proxy.keepalive if t.proxy else None for t in expansion.targets] == [
        None,
        False,
        True,
    ]
    bad = expand_sweep("s", {"server": "gunicorn", "proxy": ["nginx", "haproxy"]}, 1)
    assert bad.problems == [("proxy", "unknown proxy 'haproxy'; use one of 'none', 'nginx'")]


def test_the_production_example_documents_every_key_it_adds() -> None:
    path = PROJECT / "examples" / "production.toml"
    config = load_config(path, Overrides(quick=True))
    assert {t.name for t in config.targets if t.proxy} == {
        "sync-nginx",
        "gthread-nginx",
        "gevent-nginx",
    }
    assert config.staircase.users == (8, 32)
    text = path.read_text()
    for key in (
        "proxy",
        "proxy_buffering",
        "proxy_request_buffering",
        "proxy_keepalive",
        "client",
        "send_rate",
        "receive_rate",
        "keepalive",
        "upload",
        "download",
        "body_size",
        "rates",
        "arrival",
        "[goal] rate",
    ):
        assert key in text, key
