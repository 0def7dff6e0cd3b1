"""The results contract (flaskbench/results/contract.py): every JSON file of a run carries its
format, old runs keep loading, newer ones are refused in one line, and what reads a run never
imports what ran it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import stepstats
from fakerun import Step, make_run

from flaskbench import PROJECT_ROOT
from flaskbench.execute.swarm import HEARTBEAT_FILE
from flaskbench.results.contract import (
    CELL_FORMAT,
    LOADGEN_FORMAT,
    SWARM_FORMAT,
    ContractError,
    read_cell,
    read_hosts,
    read_loadgen,
    read_meta,
    read_services,
)
from flaskbench.results.rundir import CellStatus, RunDir

PACKAGE = Path(__file__).resolve().parent.parent / "flaskbench"


def test_a_meta_json_from_before_format_numbers_loads_with_what_its_absence_means(
    tmp_path: Path,
) -> None:
    path = tmp_path / "meta.json"
    path.write_text(
        json.dumps(
            {
                "run_id": "old",
                "cpus": {"target": "0", "load": "1"},
                "git": {"commit": None, "dirty": None},
                "machine": {"cpu_model": "Old CPU"},
                "staircase": {"warmup_s": 5, "measure_s": 15},
            }
        )
    )
    meta = read_meta(path)
    assert meta["format"] == 1
    assert meta["goal"] is None
    assert meta["repeats"] == 1
    assert meta["stop_when_saturated"] is False
    # No checkout then: None, as format 2 writes it.
    assert meta["git"] is None
    assert meta["app"]["builtin"] is True
    assert meta["machine"]["cpu_model"] == "Old CPU"
    assert meta["machine"]["model"] == {"vendor": None, "product": None}
    assert meta["staircase"] == {"users": [], "warmup_s": 5, "measure_s": 15}


@pytest.mark.parametrize("reader", [read_meta, read_cell, read_loadgen, read_hosts, read_services])
def test_a_newer_format_is_refused_in_one_line(tmp_path: Path, reader: object) -> None:
    path = tmp_path / "file.json"
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ContractError) as refused:
        reader(path)  # type: ignore[operator]
    assert str(refused.value).startswith(f"{path}: format 99 is newer than this flaskbench reads")
    assert str(refused.value).endswith("update flaskbench to read it")


def test_the_load_generator_writes_the_format_the_contract_reads() -> None:
    assert stepstats.FORMAT == LOADGEN_FORMAT


def test_the_locust_master_speaks_the_swarm_format_and_knows_the_heartbeat() -> None:
    """master.py cannot be imported here (Locust would patch this process): its constants are
    read from its source."""
    tree = ast.parse((PROJECT_ROOT / "locustfiles" / "master.py").read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert constants["FORMAT"] == SWARM_FORMAT
    assert constants["HEARTBEAT_FILE"] == HEARTBEAT_FILE


def test_what_is_not_a_json_object_is_named(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text("[1, 2]")
    with pytest.raises(ContractError, match=r"meta.json: not a JSON object"):
        read_meta(path)


def test_a_cell_json_carries_its_format(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"sync--io--r1": [Step(1, 10, 100)]})
    record = json.loads((run.cell_dir("sync--io--r1") / "cell.json").read_text())
    assert record["format"] == CELL_FORMAT
    assert RunDir(run.path).statuses()["sync--io--r1"] == CellStatus(
        "sync--io--r1", "ok", "", record["started"], record["ended"]
    )


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


@pytest.mark.parametrize("stage", ["results", "measure", "report"])
def test_what_reads_a_run_never_imports_what_ran_it(stage: str) -> None:
    for module in sorted((PACKAGE / stage).glob("*.py")):
        runners = {m for m in imports(module) if m.startswith("flaskbench.execute")}
        assert not runners, f"{module.name} imports {sorted(runners)}"
