"""The tests' own guard (tests/leftovers_guard.py), run on a session of its own: what a test
leaves goes in its teardown, and what outlives the session fails it, naming the test."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from leftovers_guard import OWNER_LABEL, SESSION_LABEL, TEST_LABEL, guard_labels, ours

HERE = Path(__file__).resolve().parent


def sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


def test_what_a_test_leaves_goes_with_it_and_what_outlives_the_session_is_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = str(pytester.path)
    pytester.makepyfile(
        test_leaky=f"""
import subprocess
import sys

import pytest

SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]


@pytest.fixture(scope="session")
def daemon():
    # Never stopped, and started before the test's guard looks: it outlives the session.
    return subprocess.Popen([*SLEEP, "daemon {marker}"])


def test_leaves_a_process():
    subprocess.Popen([*SLEEP, "leaked {marker}"])


def test_uses_the_daemon(daemon):
    pass
"""
    )
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    result = pytester.runpytest_subprocess("-p", "leftovers_guard", "-p", "no:cacheprovider")
    try:
        output = result.stdout.str()
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.assert_outcomes(passed=2)
        # The test's own teardown removed what it left, and said so.
        assert "test_leaky.py::test_leaves_a_process: process" in output
        assert not sleepers(f"leaked {marker}")
        # What no test's teardown could remove fails the session, with the test it came from.
        (left,) = [line for line in output.splitlines() if line.startswith("LEFT BEHIND by")]
        assert left.startswith("LEFT BEHIND by test_leaky.py::test_uses_the_daemon: process ")
        assert f"daemon {marker}" in left
    finally:
        for process in sleepers(marker):
            process.send_signal(signal.SIGKILL)


@dataclass
class FakeContainer:
    id: str
    labels: dict[str, str]
    attrs: dict[str, Any] = field(
        default_factory=lambda: {"Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    )


class FakeContainers:
    """An engine's containers, filtered by label as Docker does (`key` or `key=value`)."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self._containers = containers

    def list(self, filters: dict[str, Any], **_kwargs: object) -> list[FakeContainer]:
        key, _, value = filters["label"].partition("=")
        return [
            c for c in self._containers if key in c.labels and (not value or c.labels[key] == value)
        ]


@dataclass
class FakeEngine:
    containers: FakeContainers


def test_only_this_sessions_containers_are_its_own(tmp_path: Path) -> None:
    """Other sessions may share the engine (another checkout, CI): their tests' containers,
    stand-ins for crashed runs included, and their runs' are theirs to remove."""
    # This session's runs write their results under its temporary directory.
    (tmp_path / "test_a0" / "results" / "crashed").mkdir(parents=True)
    crashed = {OWNER_LABEL: "4194305", "flaskbench.run": "crashed"}
    elsewhere = {OWNER_LABEL: "4194305", "flaskbench.run": "another-sessions-run"}
    other = {TEST_LABEL: "test_x.py::test_y", SESSION_LABEL: "elsewhere/1/2.00"}
    engine = FakeEngine(
        FakeContainers(
            [
                FakeContainer("mine", guard_labels()),
                FakeContainer("my stand-in", {**crashed, **guard_labels()}),
                FakeContainer("another session's", other),
                FakeContainer("another session's stand-in", {**crashed, **other}),
                # Labelled by a session from before sessions were told apart.
                FakeContainer("an older session's", {**crashed, TEST_LABEL: "test_x.py::test_y"}),
                FakeContainer("a crashed run's", crashed),
                FakeContainer("another session's crashed run's", elsewhere),
                FakeContainer("a stranger's", {"other": "app"}),
            ]
        )
    )
    found = {c.id for c in ours(engine, since=time.time() - 60, basetemp=tmp_path)}
    assert found == {"mine", "my stand-in", "a crashed run's"}
