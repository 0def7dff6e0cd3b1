"""Sweeps expand into targets, counts relative to cores, and the goal's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import MINIMAL, problems, write

from flaskbench.config.goal import Goal
from flaskbench.config.load import load_config
from flaskbench.config.sweeps import CountError, count, expand_sweep


def names(table: dict[str, object], cores: int = 1) -> list[str]:
    expansion = expand_sweep("s", table, cores)
    assert expansion.problems == []
    return [t.name for t in expansion.targets]


def test_every_combination_is_a_target_named_by_what_varies() -> None:
    table = {"server": "gunicorn", "worker_class": "gthread", "workers": [1, 2], "threads": [1, 4]}
    assert names(table) == ["s-w1-t1", "s-w1-t4", "s-w2-t1", "s-w2-t4"]
    expansion = expand_sweep("s", table, 1)
    target = expansion.targets[3]
    assert (target.worker_class, target.workers, target.threads, target.sweep) == (
        "gthread",
        2,
        4,
        "s",
    )


def test_a_setting_without_effect_is_left_out_so_the_combination_runs_once() -> None:
    table = {
        "server": "gunicorn",
        "worker_class": ["sync", "gthread"],
        "workers": [1, 2],
        "threads": [1, 4],
    }
    assert names(table) == [
        "s-sync-w1",
        "s-sync-w2",
        "s-gthread-w1-t1",
        "s-gthread-w1-t4",
        "s-gthread-w2-t1",
        "s-gthread-w2-t4",
    ]


def test_an_impossible_combination_is_dropped_and_said_once() -> None:
    table = {"server": "werkzeug", "threaded": [True, False], "processes": [1, 4, 8]}
    expansion = expand_sweep("dev", table, 1)
    assert [t.name for t in expansion.targets] == [
        "dev-threaded-p1",
        "dev-no-threaded-p1",
        "dev-no-threaded-p4",
        "dev-no-threaded-p8",
    ]
    assert len(expansion.dropped) == 2
    assert expansion.dropped[0].startswith("sweep.dev: threaded = True, processes = 4 dropped:")
    assert "cannot combine threads and processes" in expansion.dropped[0]
    assert expansion.problems == []


def test_counts_relative_to_cores_keep_what_was_written() -> None:
    table = {"server": "gunicorn", "worker_class": "sync", "workers": ["cores", "2*cores+1"]}
    expansion = expand_sweep("sync", table, 2)
    assert [(t.name, t.workers, dict(t.expressions)) for t in expansion.targets] == [
        ("sync-w2", 2, {"workers": "cores"}),
        ("sync-w5", 5, {"workers": "2*cores+1"}),
    ]


@pytest.mark.parametrize(
    ("expression", "cores", "value"),
    [("cores", 4, 4), ("2*cores+1", 4, 9), ("(cores - 1) * 2", 3, 4), ("cores // 2", 5, 2)],
)
def test_count_expressions(expression: str, cores: int, value: int) -> None:
    assert count(expression, cores) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("2*cores+x", "use whole numbers, `cores`"),
        ("cores - 1", "is 0 with 1 cores; it must be 1 or more"),
        ("2**cores", "use whole numbers"),
        ("cores +", "cannot read"),
        ("cores // 0", "divides by zero"),
    ],
)
def test_bad_count_expressions(expression: str, message: str) -> None:
    with pytest.raises(CountError, match=message.replace("*", r"\*").replace("(", r"\(")):
        count(expression, 1)


def test_bad_values_are_errors_not_drops() -> None:
    expansion = expand_sweep("s", {"server": "gunicorn", "workers": [0, 2], "speed": 3}, 1)
    assert expansion.problems == [
        (
            "speed",
            "unknown key; known keys here: backlog, graceful_timeout, keepalive, "
            "max_requests, proxy, proxy_buffering, proxy_keepalive, proxy_request_buffering, "
            "threads, timeout, version, worker_class, worker_connections, workers",
        ),
    ]
    expansion = expand_sweep("s", {"server": "gunicorn", "workers": [0, 2]}, 1)
    assert expansion.problems == [("workers", "must be a positive integer")]
    assert [t.name for t in expansion.targets] == ["s-w2"]


SWEEP = """
[cpus]
target = "0"
load = "1"

[load]
users = [1, 8, 32]

[sweep.gt]
server = "gunicorn"
worker_class = "gthread"
workers = [1, 2]
threads = [1, 4, 16]

[workloads.io]
io_ms = 100
"""


def test_a_config_of_sweeps_needs_no_targets_table(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SWEEP + "[goal]\np99_ms = 250\n"))
    assert len(config.targets) == 6
    assert config.goal == Goal(p99_ms=250.0, users=32, max_rss_mb=None, max_error_rate=0.0)


def test_a_target_and_a_sweep_may_not_share_a_name(tmp_path: Path) -> None:
    text = SWEEP + '[targets.gt-w1-t1]\nserver = "gunicorn"\n'
    (found,) = problems(tmp_path, text)
    assert "two targets are named gt-w1-t1" in found


def test_plain_targets_take_counts_relative_to_cores_too(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL.replace("workers = 2", 'workers = "2*cores+1"')))
    (target,) = config.targets
    assert (target.workers, dict(target.expressions)) == (3, {"workers": "2*cores+1"})


@pytest.mark.parametrize(
    ("goal", "key", "message"),
    [
        ("users = 8", "goal.p99_ms", "required"),
        ("p99_ms = -1", "goal.p99_ms", "required"),
        ("p99_ms = 250\nusers = 16", "goal.users", "one of the staircase's user counts (1, 8, 32)"),
        ("p99_ms = 250\nmax_rss_mb = 0", "goal.max_rss_mb", "positive number"),
        ("p99_ms = 250\nmax_error_rate = 1.5", "goal.max_error_rate", "from 0 to below 1"),
        ("p99_ms = 250\np50_ms = 10", "goal.p50_ms", "unknown key"),
    ],
)
def test_bad_goals_are_one_line_each(tmp_path: Path, goal: str, key: str, message: str) -> None:
    (found,) = problems(tmp_path, SWEEP + f"[goal]\n{goal}\n")
    assert f": {key}: " in found
    assert message in found


def test_stop_when_saturated_is_a_flag(tmp_path: Path) -> None:
    text = SWEEP.replace("[load]\n", "[load]\nstop_when_saturated = true\n")
    assert load_config(write(tmp_path, text)).stop_when_saturated
    (found,) = problems(tmp_path, text.replace("= true", '= "yes"'))
    assert "load.stop_when_saturated: must be true or false" in found
