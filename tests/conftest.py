"""What every test shares: nothing it starts outlives it (tests/leftovers_guard.py), and the
gauge's tests' fixtures: a fresh gauge file, a writer and a reader on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flaskbench_target import gauge

# Nothing a test starts outlives it; the session fails, naming the test, if anything does.
pytest_plugins = ("leftovers_guard", "pytester")


@pytest.fixture
def gauge_path(tmp_path: Path) -> str:
    path = str(tmp_path / "gauge")
    gauge.create(path)
    return path


@pytest.fixture
def counter(gauge_path: str) -> Iterator[gauge.Gauge]:
    opened = gauge.Gauge(gauge_path)
    yield opened
    opened.close()


@pytest.fixture
def reader(gauge_path: str) -> Iterator[gauge.GaugeReader]:
    opened = gauge.GaugeReader(gauge_path)
    yield opened
    opened.close()
