"""The run directory: layout, atomic writes, cell status markers and the file manifest.

Every file is written to a temporary name and renamed into place, so a reader never sees half a
file, and a cell counts as finished only once its `cell.json` exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flaskbench.results.contract import (
    CELL_FORMAT,
    CELL_JSON,
    META_JSON,
    RAW_DIR,
    SUMMARY_CSV,
    CellJson,
    CellState,
    ContractError,
    MetaJson,
    read_cell,
    read_meta,
)

CELL_STATUSES = ("ok", "degraded", "failed")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CellStatus:
    cell_id: str
    status: CellState
    reason: str
    started: float
    ended: float

    def record(self) -> CellJson:
        return {"format": CELL_FORMAT, **asdict(self)}  # type: ignore[typeddict-item]


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def raw(self) -> Path:
        return self.path / RAW_DIR

    @property
    def meta_path(self) -> Path:
        return self.path / META_JSON

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_CSV

    def cell_dir(self, cell_id: str) -> Path:
        return self.raw / cell_id

    def read_meta(self) -> MetaJson:
        if not self.meta_path.is_file():
            raise RunDirError(
                f"{self.path}: no meta.json here; is this a flaskbench run directory?"
            )
        try:
            return read_meta(self.meta_path)
        except ContractError as exc:
            raise RunDirError(f"{exc}; the run directory is damaged") from None

    def write_meta(self, meta: MetaJson) -> None:
        atomic_write_json(self.meta_path, meta)

    def write_cell_status(self, status: CellStatus) -> None:
        atomic_write_json(self.cell_dir(status.cell_id) / CELL_JSON, status.record())

    def cell_status(self, cell_id: str) -> CellStatus | None:
        path = self.cell_dir(cell_id) / CELL_JSON
        if not path.is_file():
            return None
        try:
            record = read_cell(path)
            return CellStatus(
                record["cell_id"],
                record["status"],
                record["reason"],
                record["started"],
                record["ended"],
            )
        except (ContractError, KeyError) as exc:
            raise RunDirError(
                f"{path}: cannot read the cell status ({exc}); delete it to re-run"
            ) from None

    def statuses(self) -> dict[str, CellStatus]:
        if not self.raw.is_dir():
            return {}
        found = {}
        for cell_dir in sorted(self.raw.iterdir()):
            if cell_dir.is_dir() and (status := self.cell_status(cell_dir.name)):
                found[status.cell_id] = status
        return found

    def raw_files(self) -> Iterator[Path]:
        if self.raw.is_dir():
            yield from sorted(
                p for p in self.raw.rglob("*") if p.is_file() and not p.name.startswith(".")
            )

    def manifest(self) -> dict[str, str]:
        return {str(p.relative_to(self.path)): sha256_file(p) for p in self.raw_files()}

    def record_outputs(self, paths: Iterable[Path]) -> None:
        """The SHA-256 of what the report wrote (and the config copy), under `outputs` in
        meta.json, so a published copy can be checked like the raw files."""
        meta = self.read_meta()
        meta["outputs"] = {
            str(p.relative_to(self.path)): sha256_file(p) for p in sorted(paths) if p.is_file()
        }
        self.write_meta(meta)


class RunDirError(Exception):
    """The run directory cannot be used as asked; the message says why and what to do."""


def create_run_dir(results_dir: Path) -> RunDir:
    """A new directory per run; the random suffix keeps two runs in one second apart."""
    path = new_output_dir(results_dir)
    (path / RAW_DIR).mkdir()
    return RunDir(path)


def new_output_dir(parent: Path, prefix: str = "") -> Path:
    """A fresh directory named by the UTC time, never one that exists."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = parent / f"{prefix + '-' if prefix else ''}{stamp}-{secrets.token_hex(3)}"
    path.mkdir()
    return path


def open_run_dir(path: Path) -> RunDir:
    run = RunDir(path)
    run.read_meta()
    return run


def verify(run: RunDir) -> list[str]:
    """Problems with the run's raw files against the manifest in meta.json; empty when intact."""
    recorded = run.read_meta().get("files")
    if not isinstance(recorded, dict):
        return [f"{run.meta_path}: lists no files; the run did not finish writing its manifest"]
    problems = []
    actual = run.manifest()
    for name, digest in sorted(recorded.items()):
        if name not in actual:
            problems.append(f"{run.path / name}: missing")
        elif actual[name] != digest:
            problems.append(f"{run.path / name}: changed since the run (SHA-256 differs)")
    problems += [
        f"{run.path / name}: not in the manifest (added after the run)"
        for name in sorted(set(actual) - set(recorded))
    ]
    return problems
