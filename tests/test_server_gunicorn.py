"""gunicorn (flaskbench/servers/gunicorn.py): settings, command line, what has no effect per
worker class, and gthread's worker_connections, which caps its threads."""

from __future__ import annotations

import pytest
from servertests import argv, option, problems_of, resolved

from flaskbench.config.sweeps import expand_sweep
from flaskbench.measure.theory import expected_slots
from flaskbench.servers.registry import describe, rule_of_thumb, server_of


def test_command_line_takes_every_setting_and_nothing_from_the_apps_directory() -> None:
    target = resolved("gunicorn", worker_class="gthread", workers=3, threads=4, keepalive=5)
    command = argv(target)
    assert command[:2] == ["-m", "gunicorn"]
    # Settings from the harness's package, which sets none, not the app's gunicorn.conf.py.
    assert option(command, "--config") == "python:flaskbench_target"
    assert option(command, "--worker-class") == "gthread"
    assert (option(command, "--workers"), option(command, "--threads")) == ("3", "4")
    assert option(command, "--keep-alive") == "5"
    assert command[-1] == "flaskbench_target.appload:application"


@pytest.mark.parametrize(
    ("threads", "connections", "per_worker"),
    [(4, 2, 2), (4, 4, 4), (4, 1000, 4), (1, 3, 1)],
)
def test_gthread_serves_at_most_worker_connections_at_once(
    threads: int, connections: int, per_worker: int
) -> None:
    target = resolved(
        "gunicorn",
        worker_class="gthread",
        workers=2,
        threads=threads,
        worker_connections=connections,
    )
    assert expected_slots(target) == 2 * per_worker


def test_gthread_says_when_worker_connections_caps_it() -> None:
    capped = resolved(
        "gunicorn", worker_class="gthread", workers=2, threads=4, worker_connections=2
    )
    assert describe(capped) == "gunicorn gthread, 2 workers x 4 threads (at most 2 connections)"
    (note,) = server_of(capped).notes(capped, 8)
    assert "only 2 of its 4 threads ever run a request" in note
    assert "no connection is kept alive" in note
    equal = resolved("gunicorn", worker_class="gthread", workers=2, threads=4, worker_connections=4)
    assert describe(equal) == "gunicorn gthread, 2 workers x 4 threads"
    (note,) = server_of(equal).notes(equal, 8)
    assert "keeps no connection alive" in note
    roomy = resolved("gunicorn", worker_class="gthread", workers=2, threads=4)
    assert server_of(roomy).notes(roomy, 8) == ()


def test_what_has_no_effect_per_worker_class() -> None:
    gunicorn = server_of(resolved("gunicorn"))
    assert gunicorn.unused({"worker_class": "sync"}) == {
        "threads",
        "keepalive",
        "worker_connections",
    }
    assert gunicorn.unused({"worker_class": "gthread"}) == frozenset()
    assert gunicorn.unused({"worker_class": "gevent"}) == {"threads"}


def test_a_sweep_runs_what_makes_a_difference_once_each() -> None:
    table = {
        "server": "gunicorn",
        "worker_class": ["sync", "gthread"],
        "threads": 4,
        "worker_connections": [2, 1000],
        "keepalive": [0, 2],
    }
    expansion = expand_sweep("g", {k: v for k, v in table.items() if k != "threads"}, 1)
    names = [t.name for t in expansion.targets]
    # Sync ignores keep-alive and worker_connections: one target. gthread: every combination.
    assert names == [
        "g-sync",
        "g-gthread-c2-ka0",
        "g-gthread-c2-ka2",
        "g-gthread-c1000-ka0",
        "g-gthread-c1000-ka2",
    ]


def test_bad_settings() -> None:
    assert problems_of("gunicorn", workers=0, keepalive=-1) == {
        "workers": "must be a positive integer",
        "keepalive": "must be an integer of 0 or more",
    }
    assert (
        "only the gthread worker class uses threads"
        in (problems_of("gunicorn", worker_class="sync", threads=4)["threads"])
    )
    assert (
        "unknown gunicorn worker class 'eventlet'"
        in (problems_of("gunicorn", worker_class="eventlet")["worker_class"])
    )


def test_its_rule_of_thumb_is_two_workers_a_core_and_one() -> None:
    three = resolved("gunicorn", worker_class="sync", workers=3)
    two = resolved("gunicorn", worker_class="sync", workers=2)
    found = rule_of_thumb([two, three], cores=1)
    assert found is not None
    assert (found.target, found.by, found.rule) == (
        three,
        "gunicorn",
        "2 x 1 cores + 1 = 3 sync workers",
    )
    assert rule_of_thumb([two], cores=1) is None
