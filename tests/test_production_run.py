"""The production shape end to end with the local runner: a target behind nginx beside the same
server served directly, slow uploads and an open loop; and nginx failing to start, which fails
its cell with its error log while the run goes on. (The docker runner's proxy:
test_docker_proxy.py.)"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchrun import PROJECT, run_dir_of, summary, write_config

pytestmark = pytest.mark.load

SYNC = {"server": "gunicorn", "worker_class": "sync", "workers": 1}
BEHIND = {**SYNC, "proxy": "nginx"}
# 1 MB at 1 MB/s: well beyond what the kernel buffers of a body waiting to be accepted.
WORKLOADS = {
    "upload": {"upload": '"1MB"', "client": '{ send_rate = "1MB/s" }'},
    "open": {"io_ms": 20, "rates": "[5, 10]", "arrival": '"fixed"'},
}


def run_flaskbench(
    config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flaskbench", "run", "--config", str(config)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("production")
    config = write_config(
        directory, {"sync": SYNC, "sync-nginx": BEHIND}, WORKLOADS, users=[4], measure="3s"
    )
    result = run_flaskbench(config)
    assert result.returncode == 0, result.stderr
    return run_dir_of(result)


def rows(run: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    return {(r["target"], r["workload"], r["users"] or r["offered_rps"]): r for r in summary(run)}


def test_the_proxy_is_started_with_its_config_and_sampled_apart(run: Path) -> None:
    cell = run / "raw" / "sync-nginx--upload--r1"
    meta = json.loads((run / "meta.json").read_text())
    port = int(meta["load_goes_to"].rsplit(":", 1)[1])
    conf = (cell / "proxy.conf").read_text()
    assert f"listen 127.0.0.1:{port};" in conf
    assert f"server 127.0.0.1:{port + 1};" in conf
    assert "proxy_http_version" not in conf
    assert "accepts connections" in (cell / "proxy.log").read_text()
    with (cell / "resources.csv").open() as handle:
        sides = {(r["side"], r["name"]) for r in csv.DictReader(handle)}
    assert {("target", "target"), ("target", "proxy")} <= sides
    assert meta["targets"]["sync-nginx"]["proxy"]["name"] == "nginx"
    assert meta["targets"]["sync"]["proxy"] is None
    found = rows(run)
    assert found[("sync-nginx", "upload", "4")]["proxy"] == "nginx"
    assert found[("sync-nginx", "upload", "4")]["proxy_cpu_pct"] != ""
    assert found[("sync", "upload", "4")]["proxy_cpu_pct"] == ""
    assert not (run / "raw" / "sync--upload--r1" / "proxy.conf").exists()
    report = (run / "report.md").read_text()
    assert "gunicorn sync, 1 worker, behind nginx (buffering on, request buffering on" in report


def test_the_gauge_counts_inside_the_app_behind_the_proxy(run: Path) -> None:
    for target in ("sync", "sync-nginx"):
        assert rows(run)[(target, "upload", "4")]["peak_inflight_process"] == "1"


def test_slow_uploads_hold_a_sync_worker_direct_and_not_behind_the_proxy(run: Path) -> None:
    found = rows(run)
    direct, behind = found[("sync", "upload", "4")], found[("sync-nginx", "upload", "4")]
    # The model: what the kernel cannot buffer of 1 MB, at 1 MB/s; nothing behind nginx.
    assert float(direct["transfer_held_ms"]) == pytest.approx(1000 * (1048576 - 163840) / 1048576)
    assert float(behind["transfer_held_ms"]) == 0

    def in_app_ms(row: dict[str, str]) -> float:
        return 1000 * float(row["mean_inflight_server"]) / float(row["rps"])

    # The client's pace bounds the time in the app from below (a busy machine only adds), and
    # behind nginx the body arrives at loopback speed.
    assert in_app_ms(direct) >= 0.7 * float(direct["transfer_held_ms"])
    assert in_app_ms(behind) < 0.25 * in_app_ms(direct)
    assert "its slow clients hold a slot of the server direct" in (run / "report.md").read_text()


def test_an_open_loop_offers_its_rates(run: Path) -> None:
    found = rows(run)
    for target in ("sync", "sync-nginx"):
        for rate in (5, 10):
            row = found[(target, "open", str(rate))]
            assert row["users"] == ""
            # Evenly spaced arrivals: the rate in each of the window's 3 seconds, give or take.
            assert abs(int(row["scheduled"]) - 3 * rate) <= 2
            assert row["late_sends"] != ""
            assert float(row["utilisation"]) == pytest.approx(rate / (1 / 0.02))
    report = (run / "report.md").read_text()
    assert "An open loop: requests offered at each rate, arriving evenly spaced" in report
    assert (run / "charts" / "open-latency.png").is_file()


def test_a_comparison_names_an_open_loops_steps_by_their_rate(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "comparison"
    result = subprocess.run(
        [sys.executable, "-m", "flaskbench", "compare", str(run), str(run), "--out", str(out)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with (out / "comparison.csv").open() as file:
        found = {(r["workload"], r["users"], r["offered_rps"]) for r in csv.DictReader(file)}
    assert ("open", "5", "5") in found
    assert ("upload", "4", "") in found
    table = (out / "comparison.md").read_text()
    assert "| 10 req/s offered |" in table
    assert "| 4 users |" in table


def test_nginx_failing_to_start_fails_its_cell_with_its_error_log(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "nginx"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'nginx: [emerg] unknown directive \"bogus\" in proxy.conf:1' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    config = write_config(
        tmp_path, {"sync": SYNC, "sync-nginx": BEHIND}, {"io": {"io_ms": 10}}, users=[1]
    )
    result = run_flaskbench(config, {"PATH": f"{fake.parent}:{os.environ['PATH']}"})
    assert result.returncode == 1, result.stderr
    run = run_dir_of(result)
    failed = json.loads((run / "raw" / "sync-nginx--io--r1" / "cell.json").read_text())
    assert failed["status"] == "failed"
    assert failed["reason"].startswith("the proxy exited with code 1: nginx: [emerg] unknown")
    assert failed["reason"].endswith("; see proxy.log")
    assert json.loads((run / "raw" / "sync--io--r1" / "cell.json").read_text())["status"] == "ok"
