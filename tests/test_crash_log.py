"""An internal error's traceback goes into the run directory, else into the system's temp
directory: never into the working directory, which is often a checkout."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import NoReturn

import pytest
from fakerun import make_run

from flaskbench import cli

PROJECT = Path(__file__).resolve().parent.parent
FORCED = "RuntimeError: forced by the test"


def crash(*_args: object, **_kwargs: object) -> NoReturn:
    raise RuntimeError("forced by the test")


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory; the temp directory is tmp_path/temp."""
    directory = tmp_path / "cwd"
    directory.mkdir()
    (tmp_path / "temp").mkdir()
    monkeypatch.chdir(directory)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    monkeypatch.delenv("FLASKBENCH_DEBUG", raising=False)
    return directory


def logged_in(err: str) -> Path:
    """The file the error message names."""
    assert err.startswith("flaskbench: internal error: "), err
    return Path(err.split("(traceback in ", 1)[1].rstrip().removesuffix(")"))


def test_a_crash_with_a_run_directory_is_logged_in_it(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run", {})
    monkeypatch.setattr(cli, "verify", crash)
    assert cli.main(["verify", str(run.path)]) == cli.EXIT_USAGE
    log = logged_in(capsys.readouterr().err)
    assert log == run.path / cli.CRASH_LOG
    assert FORCED in log.read_text()
    assert list(cwd.iterdir()) == []
    assert list((tmp_path / "temp").iterdir()) == []


def test_a_crash_without_a_run_directory_is_logged_in_the_temp_directory(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "all_checks", crash)
    assert cli.main(["doctor", "--config", str(PROJECT / "bench.toml")]) == cli.EXIT_USAGE
    log = logged_in(capsys.readouterr().err)
    assert log.parent == tmp_path / "temp"
    assert log.name.startswith("flaskbench-crash-")
    assert FORCED in log.read_text()
    assert list(cwd.iterdir()) == []


def test_a_run_directory_that_takes_no_log_sends_it_to_the_temp_directory(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run", {})
    # Unwritable whoever runs the tests (root writes to a read-only directory).
    (run.path / cli.CRASH_LOG).mkdir()
    monkeypatch.setattr(cli, "verify", crash)
    assert cli.main(["verify", str(run.path)]) == cli.EXIT_USAGE
    log = logged_in(capsys.readouterr().err)
    assert log.parent == tmp_path / "temp"
    assert FORCED in log.read_text()
    assert list(cwd.iterdir()) == []


def test_a_second_crash_of_the_same_run_keeps_the_first_traceback(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run", {})
    monkeypatch.setattr(cli, "verify", crash)
    for _ in range(2):
        assert cli.main(["verify", str(run.path)]) == cli.EXIT_USAGE
    assert (run.path / cli.CRASH_LOG).read_text().count(FORCED) == 2


def test_with_nowhere_to_write_the_traceback_goes_to_stderr(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    monkeypatch.setattr(cli, "all_checks", crash)
    assert cli.main(["doctor", "--config", str(PROJECT / "bench.toml")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert FORCED in err
    assert err.rstrip().endswith("(no file took the traceback: above)")
    assert list(cwd.iterdir()) == []
