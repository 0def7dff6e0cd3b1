"""`[hosts]`: validation of the table, and how the plan places each side on the hosts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_config import MINIMAL, problems, write

from flaskbench.config.hosts import DEFAULT_ENGINE, HostFacts
from flaskbench.config.load import Overrides, load_config
from flaskbench.execute.engines import compose_env
from flaskbench.plan.cells import make_plan
from flaskbench.plan.placement import PlacementError, place, single_host

TARGETS = """
[targets.sync]
server = "gunicorn"
worker_class = "sync"
workers = 2

[workloads.io]
io_ms = 100
"""
TWO_VMS = (
    """
[hosts]
target = "ssh://bench@vm-a"
load = ["ssh://bench@vm-b"]
target_address = "10.0.0.5"
"""
    + TARGETS
)
REMOTE = Overrides(allow_remote_target=True)


def facts(engine: str, cpus: int, daemon: str = "") -> HostFacts:
    return HostFacts(
        engine=engine,
        daemon_id=daemon or f"id-of-{engine}",
        hostname=engine,
        cpus=cpus,
        kernel="6.1",
        os="Debian",
        engine_version="24.0",
        memory_gib=8.0,
        clock_offset_s=0.0,
        clock_uncertainty_s=0.001,
    )


def test_two_vms_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TWO_VMS), REMOTE)
    hosts = config.hosts
    assert hosts is not None
    assert hosts.target == "ssh://bench@vm-a"
    assert hosts.load == ("ssh://bench@vm-b",)
    # The master goes with the first load host; its workers reach it on that host's loopback.
    assert (hosts.master, hosts.master_address) == ("ssh://bench@vm-b", "127.0.0.1")
    assert hosts.workers_per_host is None
    assert hosts.images == "copy"
    # The load goes to the target's address, and nothing pins either side yet.
    assert config.host == "10.0.0.5"
    assert (config.cpus.target, config.cpus.load) == ((), ())


def test_a_single_host_config_has_no_hosts_and_one_engine_for_both_sides(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.hosts is None
    placement = make_plan(config).placement
    assert placement == single_host(config)
    assert placement.engines == (DEFAULT_ENGINE,)
    assert placement.roles(DEFAULT_ENGINE) == ("target", "master", "workers")
    assert (placement.target_cpus, placement.cpus_for_load(DEFAULT_ENGINE)) == ((0,), (1,))


def test_every_problem_with_hosts_is_reported_with_its_line(tmp_path: Path) -> None:
    text = (
        '[run]\nhost = "127.0.0.1"\nrunner = "local"\n'
        "[load]\nlocust_workers = 2\n"
        "[hosts]\n"
        'target = "http://vm-a"\n'
        'load = ["ssh://vm-b", "no-such-context", "ssh://vm-b"]\n'
        'target_address = "vm-a"\n'
        "workers_per_host = 0\n"
        'images = "rsync"\n'
        "speed = 3\n" + TARGETS
    )
    found = problems(tmp_path, text)
    where = {line.split(": ")[1]: line for line in found}
    assert sorted(where) == [
        "hosts.images",
        "hosts.load",
        "hosts.speed",
        "hosts.target",
        "hosts.target_address",
        "hosts.workers_per_host",
        "load.locust_workers",
        "run.host",
        "run.runner",
    ]
    assert where["hosts.target"].startswith(f"{tmp_path / 'bench.toml'}:7: ")
    assert "use ssh://, tcp:// or unix://" in where["hosts.target"]
    assert "no docker context named 'no-such-context'" in where["hosts.load"]
    assert "not an IP address" in where["hosts.target_address"]
    assert "hosts.workers_per_host" in where["load.locust_workers"]
    assert "needs the docker runner" in where["run.runner"]


def test_a_remote_target_needs_explicit_permission(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, TWO_VMS)
    assert "hosts.target_address: 10.0.0.5 is not a loopback address" in problem
    assert "--allow-remote-target" in problem


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback address, which load from another host cannot reach"),
        ("0.0.0.0", "listens everywhere"),
    ],
)
def test_addresses_the_load_cannot_use(tmp_path: Path, address: str, why: str) -> None:
    text = TWO_VMS.replace('"10.0.0.5"', f'"{address}"')
    (problem,) = problems(tmp_path, text, REMOTE)
    assert why in problem


def test_workers_on_several_hosts_need_the_masters_address(tmp_path: Path) -> None:
    text = TWO_VMS.replace('["ssh://bench@vm-b"]', '["ssh://bench@vm-b", "ssh://bench@vm-c"]')
    (problem,) = problems(tmp_path, text, REMOTE)
    assert "hosts.master_address: required when Locust workers run on another host" in problem
    fixed = text.replace("[hosts]\n", '[hosts]\nmaster_address = "10.0.0.6"\n')
    hosts = load_config(write(tmp_path, fixed), REMOTE).hosts
    assert hosts is not None
    assert hosts.master_address == "10.0.0.6"


def test_the_master_may_run_on_the_controller(tmp_path: Path) -> None:
    text = TWO_VMS.replace(
        "[hosts]\n", '[hosts]\nmaster = "controller"\nmaster_address = "10.0.0.1"\n'
    )
    hosts = load_config(write(tmp_path, text), REMOTE).hosts
    assert hosts is not None
    assert hosts.master == DEFAULT_ENGINE
    assert hosts.engines == ("ssh://bench@vm-a", DEFAULT_ENGINE, "ssh://bench@vm-b")


def test_a_docker_context_names_an_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from docker.context import ContextAPI

    # The context store sits beside the config file, which must exist for docker to find it.
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    ContextAPI.create_context("vm-b", host="ssh://bench@vm-b")
    text = TWO_VMS.replace('["ssh://bench@vm-b"]', '["vm-b"]')
    hosts = load_config(write(tmp_path, text), REMOTE).hosts
    assert hosts is not None
    assert hosts.load == ("vm-b",)
    assert compose_env("vm-b")["DOCKER_CONTEXT"] == "vm-b"
    assert compose_env("ssh://bench@vm-a")["DOCKER_HOST"] == "ssh://bench@vm-a"
    assert "DOCKER_HOST" not in compose_env("vm-b")


def test_cpus_are_not_checked_against_this_machine_with_hosts(tmp_path: Path) -> None:
    text = '[cpus]\ntarget = "0-63"\nload = "auto"\n' + TWO_VMS
    config = load_config(write(tmp_path, text), REMOTE)
    assert (config.cpus.target, config.cpus.load) == (tuple(range(64)), ())


def test_separate_hosts_are_whole_and_get_a_worker_per_cpu(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TWO_VMS), REMOTE)
    a, b = "ssh://bench@vm-a", "ssh://bench@vm-b"
    placement = place(config, {a: facts(a, 4), b: facts(b, 8)})
    assert placement.target_cpus == (0, 1, 2, 3)
    assert placement.cpus_for_load(b) == tuple(range(8))
    assert placement.workers == ((b, 8),)
    assert placement.worker_count == 8
    assert placement.load_cores == 8
    assert placement.roles(a) == ("target",)
    assert placement.roles(b) == ("master", "workers")
    assert placement.target_address == "10.0.0.5"


def test_workers_per_host_and_pinning_apply_on_every_host(tmp_path: Path) -> None:
    text = '[cpus]\ntarget = "1"\nload = "0-1"\n' + TWO_VMS.replace(
        '["ssh://bench@vm-b"]',
        '["ssh://bench@vm-b", "ssh://bench@vm-c"]\nworkers_per_host = 3\n'
        'master_address = "10.0.0.6"',
    )
    config = load_config(write(tmp_path, text), REMOTE)
    a, b, c = "ssh://bench@vm-a", "ssh://bench@vm-b", "ssh://bench@vm-c"
    placement = place(config, {a: facts(a, 2), b: facts(b, 4), c: facts(c, 4)})
    assert placement.target_cpus == (1,)
    assert placement.workers == ((b, 3), (c, 3))
    assert placement.cpus_for_load(b) == placement.cpus_for_load(c) == (0, 1)
    assert placement.load_cores == 4
    assert placement.engines == (a, b, c)


def test_two_sides_sharing_a_host_split_it_even_under_two_names(tmp_path: Path) -> None:
    text = TWO_VMS.replace('["ssh://bench@vm-b"]', '["ssh://bench@vm-a-again"]')
    config = load_config(write(tmp_path, text), REMOTE)
    a, a_again = "ssh://bench@vm-a", "ssh://bench@vm-a-again"
    # Two names, one daemon: the sides are pinned apart as on a single host.
    placement = place(config, {a: facts(a, 4, "same"), a_again: facts(a_again, 4, "same")})
    assert placement.target_cpus == (0, 1)
    assert placement.cpus_for_load(a_again) == (2, 3)
    assert placement.workers == ((a_again, 2),)


def test_cpus_a_host_does_not_have_are_named(tmp_path: Path) -> None:
    text = '[cpus]\ntarget = "0-3"\n' + TWO_VMS
    config = load_config(write(tmp_path, text), REMOTE)
    a, b = "ssh://bench@vm-a", "ssh://bench@vm-b"
    with pytest.raises(PlacementError) as caught:
        place(config, {a: facts(a, 2), b: facts(b, 2)})
    assert caught.value.problems == [
        "cpus.target: CPU(s) 2,3 do not exist on ssh://bench@vm-a, which has 2 (0-1)"
    ]


def test_overlapping_cpus_on_a_shared_host_are_refused(tmp_path: Path) -> None:
    text = '[cpus]\ntarget = "0-1"\nload = "1-2"\n' + TWO_VMS.replace(
        '["ssh://bench@vm-b"]', '["ssh://bench@vm-a"]'
    ).replace('"10.0.0.5"', '"127.0.0.1"')
    config = load_config(write(tmp_path, text), REMOTE)
    a = "ssh://bench@vm-a"
    with pytest.raises(PlacementError) as caught:
        place(config, {a: facts(a, 4)})
    assert "shares CPU(s) 1 with cpus.target on ssh://bench@vm-a" in str(caught.value)
    # A host to each side: the same CPU numbers are no conflict.
    b = "ssh://bench@vm-b"
    assert config.hosts is not None
    apart = replace(config, hosts=replace(config.hosts, load=(b,), master=b))
    assert place(apart, {a: facts(a, 4), b: facts(b, 4)}).cpus_for_load(b) == (1, 2)
