"""Config parsing and validation: every problem reported at once, with file, line and fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flaskbench.config.load import Overrides, load_config
from flaskbench.config.problems import ConfigError
from flaskbench.config.units import parse_cpus, parse_duration

PROJECT = Path(__file__).resolve().parent.parent
MINIMAL = """
[cpus]
target = "0"
load = "1"

[targets.sync]
server = "gunicorn"
worker_class = "sync"
workers = 2

[workloads.io]
io_ms = 100
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, overrides: Overrides | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides or Overrides())
    return caught.value.problems


def test_default_config_is_valid_and_covers_six_targets_and_four_workloads() -> None:
    config = load_config(PROJECT / "bench.toml")
    assert [t.name for t in config.targets] == [
        "dev",
        "dev-single",
        "dev-procs",
        "sync",
        "gthread",
        "gevent",
    ]
    assert [w.name for w in config.workloads] == ["io", "cpu", "mixed", "noop"]
    assert config.staircase.users == (1, 2, 4, 8, 16, 32, 64, 128)
    assert not set(config.cpus.target) & set(config.cpus.load)


def test_default_config_models() -> None:
    targets = {t.name: t for t in load_config(PROJECT / "bench.toml").targets}
    assert (targets["dev"].worker_class, targets["dev"].threads) == ("threaded", None)
    assert targets["dev-single"].worker_class == "single"
    assert (targets["dev-procs"].worker_class, targets["dev-procs"].workers) == ("processes", 4)
    assert (targets["gthread"].workers, targets["gthread"].threads) == (2, 4)
    assert targets["gevent"].setting("worker_connections") == 1000
    # Every result-changing gunicorn setting is pinned, not left to gunicorn's defaults.
    assert targets["sync"].settings["max_requests"] == 0
    assert targets["sync"].settings["backlog"] == 2048


def test_workload_paths() -> None:
    workloads = {w.name: w for w in load_config(PROJECT / "bench.toml").workloads}
    assert workloads["io"].path == "/io?ms=100"
    assert workloads["cpu"].path == "/cpu?ms=10"
    assert workloads["mixed"].path == "/mixed?io=50&cpu=5"
    assert workloads["noop"].path == "/hello"


def test_quick_uses_the_quick_staircase() -> None:
    config = load_config(PROJECT / "bench.toml", Overrides(quick=True))
    full = load_config(PROJECT / "bench.toml")
    assert config.staircase != full.staircase
    assert len(config.staircase.users) < len(full.staircase.users)


def test_cli_overrides_select_and_reshape(tmp_path: Path) -> None:
    config = load_config(
        PROJECT / "bench.toml",
        Overrides(targets="sync,gevent", workloads="io", users="1,4", step_time="7s", warmup="3s"),
    )
    assert [t.name for t in config.targets] == ["sync", "gevent"]
    assert [w.name for w in config.workloads] == ["io"]
    assert (config.staircase.users, config.staircase.measure_s, config.staircase.warmup_s) == (
        (1, 4),
        7,
        3,
    )


def test_every_problem_is_reported_at_once_with_line_numbers(tmp_path: Path) -> None:
    text = """[run]
runner = "kubernetes"
colour = "blue"

[load]
users = [4, 2]
warmup = "soon"
measure = "0s"

[cpus]
target = "0"
load = "0"

[targets.web]
server = "gunicorn"
worker_class = "tornado"
workers = 0

[targets.old]
server = "werkzeug"
threaded = true
processes = 4

[targets.meinheld]
server = "bjoern"

[targets.sy]
server = "gunicorn"
worker_class = "sync"
threads = 4

[workloads.io]
io_ms = -1
"""
    found = problems(tmp_path, text)
    joined = "\n".join(found)
    expected = [
        ":2: run.runner: unknown runner 'kubernetes'",
        ":3: run.colour: unknown key",
        ":6: load.users: user counts must be distinct and increasing",
        ":7: load.warmup: cannot read 'soon' as a duration",
        ":8: load.measure: must be a whole number of seconds, 1s or more",
        ":12: cpus.load: shares CPU(s) 0 with cpus.target",
        ":16: targets.web.worker_class: unknown gunicorn worker class 'tornado'",
        ":17: targets.web.workers: must be a positive integer",
        ":22: targets.old.processes: Werkzeug cannot combine threads and processes",
        ":25: targets.meinheld.server: unknown server 'bjoern'",
        ":30: targets.sy.threads: only the gthread worker class uses threads",
        ":33: workloads.io.io_ms: must be an integer between 0 and 60000",
    ]
    for fragment in expected:
        assert fragment in joined, f"missing {fragment!r} in:\n{joined}"
    assert len(found) == len(expected)
    assert all(line.startswith(str(tmp_path / "bench.toml")) for line in found)


def test_duplicate_target_names_are_an_error_with_a_line(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '\n[targets.sync]\nserver = "werkzeug"\n')
    assert found == [
        f"{tmp_path / 'bench.toml'}:14: targets.sync is defined twice; "
        "every table and key must be unique"
    ]


def test_cpus_beyond_the_host_are_rejected(tmp_path: Path) -> None:
    too_many = max(os.sched_getaffinity(0)) + 1
    found = problems(tmp_path, MINIMAL.replace('load = "1"', f'load = "{too_many}"'))
    assert any(f"cpus.load: CPU(s) {too_many} not available here" in p for p in found)


def test_unwritable_results_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root writes anywhere; a path under a regular file can never be created.
        blocker = tmp_path / "file"
        blocker.write_text("")
        target = blocker / "results"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "results"
    found = problems(tmp_path, f'[run]\nresults_dir = "{target}"\n' + MINIMAL)
    assert any("run.results_dir" in p and "not writable" in p for p in found)


def test_bad_cli_input_names_the_option(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        MINIMAL,
        Overrides(targets="sync,nope", users="1,x", step_time="1.5s", repeats=0),
    )
    joined = "\n".join(found)
    assert "command line: --targets: unknown name(s) 'nope'" in joined
    assert "command line: --users: cannot read '1,x'" in joined
    assert "command line: --step-time: must be a whole number of seconds" in joined
    assert 'command line: --repeats: must be a number of trials, 1 or more, or "auto"' in joined


def test_remote_host_needs_explicit_permission(tmp_path: Path) -> None:
    text = '[run]\nhost = "10.0.0.5"\n' + MINIMAL
    assert any("--allow-remote-target" in p for p in problems(tmp_path, text))
    config = load_config(write(tmp_path, text), Overrides(allow_remote_target=True))
    assert config.host == "10.0.0.5"


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "\nworkers = = 3\n")
    assert found == [
        f"{tmp_path / 'bench.toml'}:14: not valid TOML: Invalid value; fix the syntax there"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("15s", 15), ("2m", 120), ("500ms", 0.5), (30, 30), ("1h", 3600)]
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["fast", "10 parsecs", "", True, "-1s"])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_cpus() -> None:
    assert parse_cpus("0") == (0,)
    assert parse_cpus("0-2,5") == (0, 1, 2, 5)
    with pytest.raises(ValueError, match="CPU list"):
        parse_cpus("a-b")


@pytest.mark.parametrize(
    ("value", "mode"), [("true", "on"), ("false", "off"), ('"alternate"', "alternate")]
)
def test_gauge_modes(tmp_path: Path, value: str, mode: str) -> None:
    assert load_config(write(tmp_path, f"[run]\ngauge = {value}\n" + MINIMAL)).gauge == mode


def test_unknown_gauge_mode(tmp_path: Path) -> None:
    found = problems(tmp_path, '[run]\ngauge = "sometimes"\n' + MINIMAL)
    assert found == [f'{tmp_path / "bench.toml"}:2: run.gauge: must be true, false or "alternate"']


@pytest.mark.parametrize("example", sorted((PROJECT / "examples").glob("*.toml")), ids=str)
def test_every_example_config_is_valid(example: Path) -> None:
    # The two-machine example sends load to another machine's address, as it should.
    assert load_config(example, Overrides(allow_remote_target=True)).targets
