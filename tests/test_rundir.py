"""Run directories: never overwritten, atomic files, cell markers, manifest and verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from flaskbench.config.load import Overrides, load_config
from flaskbench.plan.cells import make_plan
from flaskbench.results.rundir import (
    CellStatus,
    RunDir,
    RunDirError,
    atomic_write_text,
    create_run_dir,
    open_run_dir,
    verify,
)

PROJECT = Path(__file__).resolve().parent.parent


def test_each_run_gets_a_new_directory(tmp_path: Path) -> None:
    first = create_run_dir(tmp_path)
    second = create_run_dir(tmp_path)
    assert first.path != second.path
    assert first.raw.is_dir()


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_cell_status_round_trip_and_damage(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path)
    status = CellStatus("sync--io--r1", "ok", "", 1.0, 2.0)
    run.write_cell_status(status)
    assert run.statuses() == {"sync--io--r1": status}
    (run.cell_dir("gevent--io--r1")).mkdir()
    (run.cell_dir("gevent--io--r1") / "cell.json").write_text("{")
    with pytest.raises(RunDirError, match=r"gevent--io--r1/cell\.json: cannot read"):
        run.statuses()


def test_verify_finds_changed_missing_and_added_files(tmp_path: Path) -> None:
    run = create_run_dir(tmp_path)
    for name in ("a.csv", "b.csv", "c.csv"):
        atomic_write_text(run.cell_dir("x--y--r1") / name, name)
    run.write_meta({"files": run.manifest()})
    assert verify(run) == []
    (run.cell_dir("x--y--r1") / "a.csv").write_text("tampered")
    (run.cell_dir("x--y--r1") / "b.csv").unlink()
    (run.cell_dir("x--y--r1") / "d.csv").write_text("new")
    problems = verify(run)
    assert any("a.csv: changed since the run" in p for p in problems)
    assert any("b.csv: missing" in p for p in problems)
    assert any("d.csv: not in the manifest" in p for p in problems)


def test_open_run_dir_rejects_other_directories(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"no meta\.json here"):
        open_run_dir(tmp_path)
    RunDir(tmp_path).meta_path.write_text("[1, 2]")
    with pytest.raises(RunDirError, match="not a JSON object"):
        open_run_dir(tmp_path)


def test_plan_expands_targets_workloads_trials() -> None:
    config = load_config(PROJECT / "bench.toml", Overrides(repeats=2, targets="sync,gevent"))
    plan = make_plan(config)
    assert len(plan.cells) == 2 * 4 * 2
    ids = [c.cell_id for c in plan.cells]
    assert len(set(ids)) == len(ids)
    # Trial after trial.
    assert [c.repeat for c in plan.cells] == [1] * 8 + [2] * 8
    assert len(plan.without({ids[0]}).cells) == 15
