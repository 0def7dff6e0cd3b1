"""The compare-check benchmark's figures on runs whose answer is known (no load is run)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from fakerun import Step, make_run

from flaskbench.config.workloads import Request, Workload
from flaskbench.measure.analyze import Analysis, analyze_run
from flaskbench.measure.collect import load_run
from flaskbench.selfcheck.compare_check import (
    BASE,
    MORE,
    false_positives,
    power,
    splits,
    valid_steps,
)

TRIALS = (1, 2, 3, 4)


def step(users: int, rps: int, **kwargs: object) -> Step:
    return Step(users=users, rps=rps, latency_ms=1000 * users / rps, **kwargs)  # type: ignore[arg-type]


def analysis(tmp_path: Path, cells: dict[str, list[Step]]) -> Analysis:
    workloads = {
        w.name: asdict(w) | {"path": w.path}
        for w in (
            Workload("io", io_ms=100),
            Workload(BASE, requests=(Request("/cpu?ms=10"),)),
            Workload(MORE, requests=(Request("/cpu?ms=10.5"),)),
        )
    }
    run = make_run(tmp_path / "run", cells, meta={"workloads": workloads})
    return analyze_run(load_run(run))


def test_every_four_trials_split_into_their_odd_and_their_even(tmp_path: Path) -> None:
    cells = {f"sync--io--r{t}": [step(4, 40)] for t in range(1, 11)}
    found = [
        tuple(sorted({r.repeat for r in side.analysis.rows}) for side in pair)
        for pair in splits(analysis(tmp_path, cells))
    ]
    # Trials 9 and 10 make no split of their own: two against two needs four.
    assert found == [([1, 3], [2, 4]), ([5, 7], [6, 8])]


def test_alike_halves_hold_and_halves_apart_do_not(tmp_path: Path) -> None:
    alike = {f"sync--io--r{t}": [step(4, 4000), step(8, 8000)] for t in TRIALS}
    figure = false_positives(analysis(tmp_path / "a", alike), minimum=4)
    assert (figure.line.split(" (")[0], figure.holds) == (
        "false-positive rate: 0.0% of 4 valid comparisons",
        True,
    )
    # Odd trials 10% above even ones at 4 users: its throughput and, by Little's law, its p99.
    apart = {f"sync--io--r{t}": [step(4, 4400 if t % 2 else 4000), step(8, 8000)] for t in TRIALS}
    figure = false_positives(analysis(tmp_path / "b", apart), minimum=4)
    assert (figure.line.split(" (")[0], figure.holds) == (
        "false-positive rate: 50.0% of 4 valid comparisons",
        False,
    )


def test_too_few_valid_comparisons_do_not_hold(tmp_path: Path) -> None:
    cells = {f"sync--io--r{t}": [step(4, 4000)] for t in TRIALS}
    assert not false_positives(analysis(tmp_path, cells)).holds


def test_flagged_comparisons_count_apart_and_are_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The odd trials 10% up at 8 users, and a trial's failed requests flag that step.
    cells = {
        f"sync--io--r{t}": [step(4, 4000), step(8, 8800 if t % 2 else 8000, failures=8 * (t == 1))]
        for t in TRIALS
    }
    figure = false_positives(analysis(tmp_path, cells), minimum=2)
    assert "with the flagged steps too: 2 of 4 judged different" in capsys.readouterr().out
    assert (figure.line.split(" (")[0], figure.holds) == (
        "false-positive rate: 0.0% of 2 valid comparisons",
        True,
    )


def test_power_counts_the_saturated_steps_found_slower(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {1: 1000, 2: 1010, 3: 990, 4: 1000}
    found = {1: 952, 2: 962, 3: 943, 4: 952}
    # Lost in the noise between trials: 5% less in two trials, 5% more in the other two.
    missed = {1: 950, 2: 1060, 3: 940, 4: 1050}
    cells = {}
    for t in TRIALS:
        cells[f"sync--{BASE}--r{t}"] = [
            step(4, base[t], target_cpu=95),
            step(8, base[t], target_cpu=95),
            step(1, 500, target_cpu=50),
        ]
        cells[f"sync--{MORE}--r{t}"] = [
            step(4, found[t], target_cpu=95),
            step(8, missed[t], target_cpu=95),
            step(1, 476, target_cpu=50),
        ]
    figure = power(analysis(tmp_path, cells))
    printed = capsys.readouterr().out
    # The step at 1 user did not saturate the target's CPU: not a test of power.
    assert "1 users" not in printed
    assert "4 users  0.952" in printed
    assert (figure.line.split(" (")[0], figure.holds) == ("power: found 1 of 2", False)


def test_power_leaves_flagged_steps_out_of_its_figure_and_says_what_they_gave(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = {}
    for t in TRIALS:
        # Failed requests in a trial flag the step: 5% slower all the same.
        failures = 40 if t == 1 else 0
        cells[f"sync--{BASE}--r{t}"] = [step(4, 1000 + t, target_cpu=95, failures=failures)]
        cells[f"sync--{MORE}--r{t}"] = [step(4, 952 + t, target_cpu=95)]
    figure = power(analysis(tmp_path, cells))
    printed = capsys.readouterr().out
    assert "slower (flagged)" in printed
    assert "with the flagged steps too: found 1 of 1" in printed
    assert (figure.line.split(" (")[0], figure.holds) == ("power: found 0 of 0", False)


def test_valid_steps_are_the_reports_each_over_its_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = {
        # Failed requests in one trial of four make the step wrong.
        **{f"sync--io--r{t}": [step(4, 40, failures=40 if t == 1 else 0)] for t in TRIALS},
        **{f"gthread--io--r{t}": [step(4, 40), step(8, 80)] for t in TRIALS},
    }
    figure = valid_steps(analysis(tmp_path, cells))
    line = "valid: 2 of 3 steps, each over 4 trials"
    assert (figure.line.split(" (")[0], figure.holds) == (line, False)
    assert "trials' measurements unflagged: 11 of 12; flags: failures 1" in capsys.readouterr().out
