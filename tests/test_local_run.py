"""A short local-runner run of all six targets, end to end through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchrun import ALL_TARGETS, flaskbench, run_dir_of, summary, write_config

from flaskbench.results.contract import META_FORMAT

pytestmark = pytest.mark.load


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("local")
    config = write_config(directory, ALL_TARGETS, {"io": {"io_ms": 100}}, users=[1, 4])
    result = flaskbench("run", "--config", str(config), "--runner", "local", timeout=400)
    assert result.returncode == 0, result.stderr
    return run_dir_of(result), result.stderr


def by_target(run_dir: Path) -> dict[tuple[str, int], dict[str, str]]:
    return {(row["target"], int(row["users"])): row for row in summary(run_dir)}


def test_every_target_has_a_row_per_step(run: tuple[Path, str]) -> None:
    rows = by_target(run[0])
    assert set(rows) == {(t, u) for t in ALL_TARGETS for u in (1, 4)}
    assert all(row["failures"] == "0" for row in rows.values())
    assert "local runner (asked for the local runner)" in run[1]


def test_in_flight_matches_each_worker_model(run: tuple[Path, str]) -> None:
    rows = by_target(run[0])
    assert rows[("dev-single", 4)]["peak_inflight_server"] == "1"
    assert rows[("sync", 4)]["peak_inflight_process"] == "1"
    assert int(rows[("sync", 4)]["peak_inflight_server"]) == 2
    assert int(rows[("dev-procs", 4)]["peak_inflight_process"]) == 1
    assert int(rows[("gthread", 4)]["peak_inflight_server"]) <= 8
    # Unbounded models follow the users exactly: a request stops counting before its client can
    # have the response and send the next one.
    assert rows[("dev", 4)]["peak_inflight_server"] == "4"
    assert rows[("gevent", 4)]["peak_inflight_server"] == "4"


def test_throughput_follows_the_slots(run: tuple[Path, str]) -> None:
    rows = by_target(run[0])
    rps = {t: float(rows[(t, 4)]["rps"]) for t in ("dev-single", "sync", "gevent")}
    # /io?ms=100 holds a slot for 100 ms: 1, 2 and 4 slots can serve at most 10, 20 and 40/s on
    # any machine...
    assert rps["dev-single"] <= 10.2
    assert rps["sync"] <= 20.2
    assert rps["gevent"] <= 40.5
    # ...and each serves about twice the one before, whatever this machine's speed.
    assert rps["sync"] > 1.5 * rps["dev-single"]
    assert rps["gevent"] > 1.5 * rps["sync"]


def test_run_directory_holds_raw_data_meta_and_report(run: tuple[Path, str]) -> None:
    run_dir = run[0]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["format"] == META_FORMAT
    assert meta["runner"]["name"] == "local"
    assert meta["cpus"]["target"] != meta["cpus"]["load"]
    assert meta["packages"]["gunicorn"]
    assert meta["git"]["commit"]
    assert meta["started"] <= meta["ended"]
    for name in (
        "gauge.csv",
        "loadgen.json",
        "resources.csv",
        "host_cpu.csv",
        "locust_stats.csv",
        "target.log",
    ):
        assert (run_dir / "raw" / "sync--io--r1" / name).is_file(), name
    # The headline chart and the workload's five.
    assert (run_dir / "report.html").read_text().count("data:image/png") == 6
    assert set(meta["outputs"]) >= {"summary.csv", "report.html", "report.md", "config.toml"}
    assert flaskbench("verify", str(run_dir)).returncode == 0


def test_report_rebuilds_from_raw_data_alone(run: tuple[Path, str]) -> None:
    run_dir = run[0]
    before = (run_dir / "summary.csv").read_text()
    (run_dir / "summary.csv").unlink()
    (run_dir / "report.md").unlink()
    result = flaskbench("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert (run_dir / "summary.csv").read_text() == before
    assert "## The answer" in (run_dir / "report.md").read_text()
