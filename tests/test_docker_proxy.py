"""A target behind nginx with the docker runner: nginx from Debian's package in the target image,
in a container of its own on the target's CPUs, sampled apart, its config and log in the cell."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from benchrun import docker_leftovers, flaskbench, require_docker, run_dir_of, summary, write_config

pytestmark = [pytest.mark.docker, pytest.mark.load]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_docker()
    directory = tmp_path_factory.mktemp("docker-proxy")
    targets = {"sync-nginx": {"server": "gunicorn", "workers": 1, "proxy": "nginx"}}
    config = write_config(directory, targets, {"io": {"io_ms": 20}}, users=[2], runner="docker")
    # The first run builds the target image with nginx (a minute more); later runs reuse it.
    result = flaskbench("run", "--config", str(config), timeout=900)
    assert result.returncode == 0, result.stderr
    return run_dir_of(result)


def test_the_proxy_runs_in_a_container_beside_the_target(run: Path) -> None:
    cell = run / "raw" / "sync-nginx--io--r1"
    assert "listen 127.0.0.1:" in (cell / "proxy.conf").read_text()
    assert "/tmp/proxy/" in (cell / "proxy.conf").read_text()
    assert "accepts connections" in (cell / "proxy.log").read_text()
    with (cell / "resources.csv").open() as handle:
        found = {(r["side"], r["name"]) for r in csv.DictReader(handle)}
    assert {("target", "target"), ("target", "proxy")} <= found
    (row,) = summary(run)
    assert row["proxy"] == "nginx"
    assert float(row["proxy_cpu_pct"]) >= 0
    assert float(row["proxy_rss_mb"]) > 0
    assert row["peak_inflight_process"] == "1"


def test_no_container_is_left(run: Path) -> None:
    assert docker_leftovers(run.name) == []
