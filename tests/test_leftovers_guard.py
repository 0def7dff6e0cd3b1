"""The tests' own guard (tests/leftovers_guard.py), run on a session of its own: what a test
leaves goes in its teardown, and what outlives the session fails it, naming the test."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

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
