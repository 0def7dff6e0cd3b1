"""The compare-check benchmark's verdicts on runs whose answer is known (no load is run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakerun import Step, make_run

from flaskbench.selfcheck.compare_check import detection, false_positives


def step(users: int, rps: int, **kwargs: object) -> Step:
    return Step(users=users, rps=rps, latency_ms=1000 * users / rps, **kwargs)  # type: ignore[arg-type]


def run(tmp_path: Path, name: str, rps: dict[int, int], **kwargs: object) -> Path:
    steps = [step(users, value, **kwargs) for users, value in rps.items()]
    return make_run(tmp_path / "results" / name, {"gthread--io--r1": steps}).path


def test_two_alike_runs_hold_and_a_shifted_one_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steady = {1: 1000, 4: 4000, 16: 8000}
    first = run(tmp_path, "a", steady)
    again = run(tmp_path, "b", steady)
    shifted = run(tmp_path, "c", {1: 1000, 4: 4400, 16: 8000})
    assert false_positives([first, again])
    assert "false-positive rate: 0.0% of 6" in capsys.readouterr().out
    assert not false_positives([first, shifted])
    printed = capsys.readouterr().out
    # 10% more at 4 users, and by Little's law a lower p99: 2 of 6 judged different.
    assert "false-positive rate: 33.3% of 6" in printed
    assert "DOES NOT HOLD" in printed


def test_flagged_steps_do_not_count_but_are_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run(tmp_path, "a", {4: 4000})
    busy = run(tmp_path, "b", {4: 3000}, failures=40)
    assert not false_positives([first, busy])
    printed = capsys.readouterr().out
    assert "valid (neither side flagged): 0" in printed
    assert "counting flagged steps too: 2 of 2 judged different" in printed


def test_detection_needs_every_saturated_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_thread = run(tmp_path, "a", {1: 10, 2: 20, 4: 20, 8: 20})
    four_threads = run(tmp_path, "b", {1: 10, 2: 20, 4: 40, 8: 80})
    missed = run(tmp_path, "c", {1: 10, 2: 20, 4: 40, 8: 20})
    assert detection([one_thread, four_threads])
    assert "saturated steps (users > 2): 2, judged faster: 2: holds" in capsys.readouterr().out
    assert not detection([one_thread, missed])
    assert "judged faster: 1: DOES NOT HOLD" in capsys.readouterr().out
